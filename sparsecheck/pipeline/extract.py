"""``sparsecheck extract CONFIG``: extract the deep features of every split once, for many runs.

Without ``--out`` the features go into the feature cache (``features.cache_dir``), under the
same keys :func:`~sparsecheck.pipeline.loading.extract_stage` looks up, so a later
``sparsecheck run CONFIG`` reads them instead of running the model. With ``--out DIR`` they are
written as portable feature directories ``DIR/train``, ``DIR/val``, ``DIR/test`` (the layout of
:mod:`sparsecheck.data.precomputed`), which a config's ``data.train|val|test`` can name directly,
with or without the model.

Under ``torchrun`` every rank extracts a contiguous shard of each split and writes its rows into
the shared files; rank 0 finishes each output once all ranks are done
(:func:`~sparsecheck.features.extraction.extract_to`)::

    torchrun --standalone --nproc_per_node 2 -m sparsecheck extract config.yaml

Examples
--------
>>> from sparsecheck.pipeline.extract import run_extract     # doctest: +SKIP
>>> done = run_extract("config.yaml", device="cpu")           # doctest: +SKIP
>>> [s.split for s in done.splits]                             # doctest: +SKIP
['train', 'val', 'test']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sparsecheck.config import load_config
from sparsecheck.errors import ConfigError
from sparsecheck.features.distributed import Ranks, ranks_from_env
from sparsecheck.features.extraction import extract_features, extract_to
from sparsecheck.outputs import claim_out_dir
from sparsecheck.pipeline.loading import load_inputs

logger = logging.getLogger(__name__)

__all__ = ["ExtractedSplit", "ExtractRun", "run_extract"]


@dataclass
class ExtractedSplit:
    """One split's features: where they are, their shape, and whether this call computed them."""

    split: str
    path: Path
    n: int
    dim: int
    layer: str
    from_cache: bool
    seconds: float

    def line(self) -> str:
        how = "already in the cache" if self.from_cache else f"extracted in {self.seconds:.1f}s"
        return f"{self.split}: {self.n} × {self.dim} features ({self.layer}) in {self.path} ({how})"


@dataclass
class ExtractRun:
    """What :func:`run_extract` did, as seen from one rank."""

    ranks: Ranks
    splits: list[ExtractedSplit] = field(default_factory=list)
    precomputed: list[str] = field(default_factory=list)  # splits that already are features: nothing to do
    out: Path | None = None

    def lines(self) -> list[str]:
        """What the command prints (rank 0)."""
        lines = [s.line() for s in self.splits]
        lines += [f"{s}: already precomputed features (data.{s}); nothing to extract" for s in self.precomputed]
        if self.ranks.world_size > 1:
            lines.append(f"shared across {self.ranks.world_size} ranks")
        if self.out is not None and self.splits:
            names = ", ".join(f"data.{s.split}: {s.path}" for s in self.splits)
            lines.append(f"to run on them, set {names} (model optional; if given, its fingerprint is checked)")
        elif self.splits:
            lines.append("`sparsecheck run` with this config now reads these features from the cache")
        return lines


def run_extract(config: str | Path, *, out: str | Path | None = None, device: str = "auto",
                force: bool = False, trust_pickle: bool = False) -> ExtractRun:
    """Extract the features of every image split of ``config`` into the cache, or into ``out``.

    Parameters
    ----------
    config : path
        The run's YAML config.
    out : path, optional
        Write ``out/<split>`` feature directories instead of filling the cache.
    device : "auto", "cpu" or "cuda"
        Under torchrun with CUDA, each rank takes GPU ``LOCAL_RANK``.
    force : bool
        Write into a non-empty ``out`` that sparsecheck did not create.
    trust_pickle : bool
        Set ``model.trust_pickle`` (``--trust-pickle``): load a model file whose archive holds pickles.

    Raises
    ------
    ConfigError, DataError, ModelError
        for bad input (exit 2), on every rank alike.
    RankError
        on the ranks that did not fail themselves, when another rank failed.
    """
    with ranks_from_env(device) as ranks:
        with ranks.together("reading the config and loading the model and data"):
            cfg = load_config(config)
            if trust_pickle:
                cfg.model.trust_pickle = True
            if out is None and cfg.features.cache_dir is None:
                raise ConfigError("is null, and extract fills the feature cache: set it, or pass --out DIR to "
                                  "write portable feature directories", key="features.cache_dir")
            inputs = load_inputs(cfg)
        done = ExtractRun(ranks, precomputed=sorted(inputs.precomputed), out=None if out is None else Path(out))
        if out is not None:
            with ranks.together(f"preparing --out {out}"):
                if ranks.is_main:
                    claim_out_dir(out, force=force, note="feature directories written by sparsecheck extract",
                                  outputs=[s for s in ("train", "val", "test") if s in inputs.datasets])
        common = dict(layer=cfg.model.feature_layer, batch_size=cfg.features.batch_size, device=device,
                      num_workers=cfg.features.num_workers, precision=cfg.features.precision, ranks=ranks)
        for split in ("train", "val", "test"):
            ds = inputs.datasets.get(split)
            if ds is None:
                continue
            if out is not None:
                written = extract_to(Path(out) / split, inputs.model, ds, inputs.input_spec, desc=split,
                                     meta={"split": split}, **common)  # type: ignore[arg-type]
                done.splits.append(ExtractedSplit(split, written.path, written.n, written.dim, written.layer,
                                                  False, written.seconds))
            else:
                fs = extract_features(inputs.model, ds, inputs.input_spec, cache_dir=cfg.features.cache_dir,
                                      desc=split, **common)  # type: ignore[arg-type]
                assert fs.cache_path is not None
                done.splits.append(ExtractedSplit(split, fs.cache_path, len(fs), int(fs.features.shape[1]), fs.layer,
                                                  fs.from_cache, fs.seconds))
    return done
