"""A second, minimal modality for the tests: tabular vectors (``N×D`` float arrays).

It proves the seam of :mod:`sparsecheck.modalities`: registered next to the image modality, it
runs the whole pipeline (:mod:`tests.test_tabular_modality`) without any stage knowing what an
example is. Each job of :class:`~sparsecheck.modalities.base.Modality` is done in the plainest
honest way for vectors:

* a split is an ``.npz`` with ``vectors`` (N×D), ``y`` and ``ids``;
* the model's input is the vectors as float32;
* the local explainer fits a least-squares model of a feature's activation on random masks of
  the columns (the others set to 0), seeded;
* automatic attributes are the vector's norm, binned into terciles;
* a cue sets one column to a value (declared: ``{type: set, column: j, value: v}``; estimated:
  the column where the examples with the value differ most from the others within classes);
* the invariance transform adds Gaussian noise.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from sparsecheck.errors import ConfigError, DataError
from sparsecheck.modalities import Modality, get_modality, modality_names, register_modality
from sparsecheck.modalities.base import Perturbation
from sparsecheck.outputs import atomic_write

NAME = "tabular"


class TabularNet(nn.Module):
    """A two-layer perceptron over D columns; the head's input is the feature layer."""

    def __init__(self, d: int = 6, hidden: int = 12, n_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Linear(d, hidden)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))


def make_tabular_net(d: int = 6, hidden: int = 12, n_classes: int = 3, seed: int = 0) -> TabularNet:
    torch.manual_seed(seed)
    return TabularNet(d, hidden, n_classes).eval()


# --------------------------------------------------------------------------- 1. splits
@dataclass
class VectorSplit:
    name: str
    source: str
    vectors: np.ndarray
    ids: np.ndarray
    labels: np.ndarray | None
    metadata: pd.DataFrame | None = None
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.vectors)

    def batch(self, rows: Any) -> np.ndarray:
        return self.vectors[rows].copy()

    def fingerprint(self) -> str:
        return self.digest()

    def digest(self) -> str:
        h = hashlib.sha256(np.ascontiguousarray(self.vectors).tobytes())
        if self.labels is not None:
            h.update(np.asarray(self.labels, np.int64).tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class VectorInput:
    """Raw vectors → a float32 tensor."""

    def transform(self, raw: Any, device: Any = "cpu") -> torch.Tensor:
        return torch.as_tensor(np.asarray(raw, dtype=np.float32), device=device)


# --------------------------------------------------------------------------- 4. the local explainer
@dataclass
class VectorExplanation:
    feature: int
    example: np.ndarray
    weights: np.ndarray
    example_id: str | None = None
    num_samples: int = 0
    seconds: float = 0.0
    forward_seconds: float = 0.0

    def attribution_map(self) -> np.ndarray:
        return self.weights

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "example_id": self.example_id, "num_samples": self.num_samples}


@dataclass
class MaskExplainer:
    """Least squares of the target on random column masks (masked columns set to 0)."""

    num_samples: int = 200
    seed: int = 0
    last_batch_size_: int | None = None

    def _fit(self, example: np.ndarray, target: Any, columns: Sequence[int]) -> tuple[np.ndarray, int, float]:
        example = np.asarray(example, dtype=np.float32)
        rng = np.random.default_rng(self.seed)
        masks = rng.integers(0, 2, size=(int(self.num_samples), example.size)).astype(np.float32)
        masks[0] = 1.0
        fwd0 = float(getattr(target, "forward_seconds", 0.0))
        values = np.asarray(target(masks * example[None]), dtype=np.float64)
        self.last_batch_size_ = len(masks)
        design = np.column_stack([masks, np.ones(len(masks))])
        coef, *_ = np.linalg.lstsq(design, values[:, list(columns)], rcond=None)
        return coef[:-1], len(masks), float(getattr(target, "forward_seconds", 0.0)) - fwd0

    def explain_many(self, example: Any, target: Any, *, columns: Sequence[int], features: Sequence[int],
                     example_id: str | None = None) -> list[VectorExplanation]:
        start = time.perf_counter()
        coef, n, forward = self._fit(example, target, columns)
        seconds = time.perf_counter() - start
        return [VectorExplanation(int(f), np.asarray(example), coef[:, j], example_id, n, seconds, forward)
                for j, f in enumerate(features)]

    def attribute(self, example: Any, target: Any) -> np.ndarray:
        return self._fit(example, target, [0])[0][:, 0]


# --------------------------------------------------------------------------- 5. automatic attributes
@dataclass
class NormTerciles:
    """``auto:norm``: the vector's Euclidean norm, low / mid / high by the test split's terciles."""

    cuts: np.ndarray | None = None

    def _table(self, vectors: np.ndarray) -> pd.DataFrame:
        levels = np.array(["low", "mid", "high"])[np.searchsorted(self.cuts, np.linalg.norm(vectors, axis=1))]
        return pd.DataFrame({"auto:norm": levels})

    def fit_transform(self, split: Any, *, batch_size: int, reference: Any = None) -> pd.DataFrame:
        vectors = split.batch(slice(None))
        self.cuts = np.quantile(np.linalg.norm(vectors, axis=1), [1 / 3, 2 / 3])
        return self._table(vectors)

    def transform(self, split: Any, rows: np.ndarray, *, batch_size: int) -> pd.DataFrame:
        return self._table(split.batch(np.asarray(rows)))

    def to_dict(self) -> dict[str, Any]:
        return {"columns": ["auto:norm"], "levels": {"auto:norm": ["low", "mid", "high"]}}


# --------------------------------------------------------------------------- 6. cues
@dataclass(frozen=True)
class SetColumn:
    column: int
    value: float

    @property
    def name(self) -> str:
        return f"set(column {self.column}, {self.value:g})"

    @property
    def control(self) -> None:
        return None

    def apply_labelled(self, raw: Any, labels: np.ndarray | None) -> np.ndarray:
        out = np.array(raw, dtype=np.float32, copy=True)
        out[:, self.column] = self.value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": "set", "column": self.column, "value": self.value}


@dataclass
class ColumnEstimate:
    put: SetColumn
    remove: SetColumn | None
    alternates: Sequence["ColumnEstimate"] = field(default_factory=list)

    def describe(self) -> str:
        return f"column {self.put.column} is {self.put.value:.2f} with the value, {self.remove.value:.2f} without"

    def to_dict(self) -> dict[str, Any]:
        return {"put": self.put.to_dict(), "remove": None if self.remove is None else self.remove.to_dict()}


# --------------------------------------------------------------------------- 7. invariance
@dataclass(frozen=True)
class GaussianNoise:
    name: str = "noise"
    uses_gradient: bool = False

    def check_magnitude(self, magnitude: float) -> None:
        if not magnitude > 0:
            raise ValueError("the noise's standard deviation must be positive")

    def apply(self, raw: Any, perturbation: Perturbation) -> np.ndarray:
        x = torch.as_tensor(np.asarray(raw, dtype=np.float32))
        noise = torch.randn(x.shape, generator=perturbation.generator) * float(perturbation.magnitude)
        return (x + noise).numpy()


# --------------------------------------------------------------------------- the modality
class TabularModality(Modality):
    name = NAME
    noun = "row"

    def load_split(self, source: Any, *, name: str, config: Any = None, transform: Any = None,
                   class_names: list[str] | None = None) -> VectorSplit:
        path = Path(source)
        try:
            with np.load(path, allow_pickle=False) as npz:
                vectors = np.asarray(npz["vectors"], dtype=np.float32)
                labels = np.asarray(npz["y"], dtype=np.int64) if "y" in npz.files else None
                ids = np.asarray(npz["ids"]).astype(str)
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"cannot read a table of vectors: {exc}", path=path) from exc
        return VectorSplit(name, str(path), vectors, ids, labels)

    def input_transform(self, config: Any, model: Any = None) -> VectorInput:
        return VectorInput()

    def describe_split(self, split: Any, config: Any = None) -> dict[str, Any]:
        return {"columns": int(split.vectors.shape[1])}

    def render_card(self, card: Any, path: Path, *, top: Any = None, bottom: Any = None) -> Path:
        return _bars(path, f"feature {card.feature}", [("top", top), ("bottom", bottom)])

    def render_cue(self, path: Path, *, estimate: Any, cue_name: str, examples: Sequence[tuple[Any, str]],
                   title: str) -> Path:
        return _bars(path, f"{title}: {cue_name}", [(caption, np.asarray(x)[None]) for x, caption in examples])

    def explainer(self, *, num_samples: int, seed: int, convergence: float | None = None) -> MaskExplainer:
        return MaskExplainer(num_samples=int(num_samples), seed=int(seed))

    def automatic_attributes(self, *, seed: int) -> NormTerciles:
        return NormTerciles()

    def parse_intervention(self, spec: Mapping[str, Any], *, key: str) -> tuple[SetColumn, SetColumn | None]:
        def cue(part: str) -> SetColumn | None:
            raw = spec.get(part)
            if raw is None:
                return None
            if not isinstance(raw, Mapping) or raw.get("type") != "set":
                raise ConfigError("a tabular cue is {type: set, column: J, value: V}", key=f"{key}.{part}", value=raw)
            return SetColumn(int(raw["column"]), float(raw["value"]))

        put = cue("put")
        if put is None:
            raise ConfigError("needs 'put'", key=f"{key}.put")
        return put, cue("remove")

    def estimate_cue(self, examples: Any, has_value: np.ndarray, labels: np.ndarray, *,
                     seed: int) -> ColumnEstimate | None:
        has = np.asarray(has_value, bool)
        if has.all() or not has.any():
            return None
        x = np.asarray(examples[np.arange(len(has))], dtype=np.float64)
        gaps = []
        for c in np.unique(labels):
            in_c = labels == c
            if (in_c & has).any() and (in_c & ~has).any():
                gaps.append(x[in_c & has].mean(axis=0) - x[in_c & ~has].mean(axis=0))
        if not gaps:
            return None
        j = int(np.argmax(np.abs(np.mean(gaps, axis=0))))
        return ColumnEstimate(SetColumn(j, float(x[has, j].mean())), SetColumn(j, float(x[~has, j].mean())))

    def invariance_transforms(self) -> Mapping[str, GaussianNoise]:
        return {"noise": GaussianNoise()}


def _bars(path: Path, title: str, rows: Sequence[tuple[str, Any]]) -> Path:
    """A PNG with one bar chart per row of vectors (each vector's values, side by side)."""
    from matplotlib.figure import Figure

    rows = [(label, np.atleast_2d(np.asarray(v, dtype=np.float64))) for label, v in rows if v is not None and len(v)]
    fig = Figure(figsize=(4, 1 + 1.2 * max(1, len(rows))), dpi=60)
    fig.suptitle(title, fontsize=8)
    for i, (label, vectors) in enumerate(rows):
        ax = fig.add_subplot(len(rows), 1, i + 1)
        for k, v in enumerate(vectors):
            ax.bar(np.arange(v.size) + k / (len(vectors) + 1), v, width=1 / (len(vectors) + 1))
        ax.set_ylabel(label, fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    return path


def register() -> Modality:
    """Register the tabular modality once (the registry refuses a second one of a name)."""
    if NAME not in modality_names():
        register_modality(TabularModality())
    return get_modality(NAME)


# --------------------------------------------------------------------------- data for the tests
def write_tabular_project(tmp: Path, *, n: int = 300, seed: int = 0) -> dict:
    """Train/val/test ``.npz`` tables of 6 columns and 3 classes, a metadata CSV, a trained
    :class:`TabularNet` (weights file) and the config dict that runs them as ``data.modality: tabular``.

    Columns 0-2 carry the class (column c is high for class c). Column 5 is a shortcut: rows with
    ``tag=yes`` (80% of class 0, 10% of the others) have it at 3, the others at 0; in the test split
    class 0 is tagged as often, so a model that learned the tag keeps relying on it there.
    """
    rng = np.random.default_rng(seed)
    ids_all, tags_all = [], []
    for k, split in enumerate(["train", "val", "test"]):
        y = rng.integers(0, 3, size=n)
        x = rng.normal(0.0, 1.0, size=(n, 6)).astype(np.float32)
        x[np.arange(n), y] += 1.2
        tag = rng.random(n) < np.where(y == 0, 0.8, 0.1)
        x[:, 5] = np.where(tag, 3.0, 0.0) + rng.normal(0, 0.1, n)
        ids = np.array([f"{split}-{i:04d}" for i in range(n)])
        np.savez(tmp / f"{split}.npz", vectors=x, y=y, ids=ids)
        ids_all.extend(ids)
        tags_all.extend(np.where(tag, "yes", "no"))
        if split == "train":
            train_x, train_y = x, y
    pd.DataFrame({"id": ids_all, "tag": tags_all,
                  "site": rng.choice(["a", "b"], size=len(ids_all))}).to_csv(tmp / "metadata.csv", index=False)
    net = make_tabular_net(seed=seed).train()
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    xt, yt = torch.as_tensor(train_x), torch.as_tensor(train_y)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    torch.save(net.eval().state_dict(), tmp / "weights.pt")
    return {"model": {"factory": "tests.tabular:make_tabular_net", "weights": "weights.pt"},
            "data": {"modality": NAME, "train": "train.npz", "val": "val.npz", "test": "test.npz",
                     "metadata": "metadata.csv", "class_names": ["zero", "one", "two"],
                     "spurious_attributes": ["tag"]},
            "features": {"batch_size": 64, "cache_dir": "cache"},
            "analysis": {"lime_examples": 2, "lime_samples": 64, "explain_features": 2, "sanity_features": 1,
                         "sanity_examples": 1},
            "assertions": [{"name": "robust-to-noise", "type": "invariance", "transform": "noise",
                            "magnitude": 0.05, "max_failing_rate": 0.5, "severity": "warning"}],
            "mlflow": {"enabled": False}}
