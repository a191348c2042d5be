"""Choosing what to label: rank an unlabelled pool by what the model assertions flag on it.

``sparsecheck select CONFIG --pool POOL --budget N --out selected.csv`` scores a pool (a split of
the config, or a file in any data format it takes; labels, if any, are ignored) with the model,
runs the label-free assertions on it (:func:`pool_assertions`: the config's own and
``select.assertions``) and ranks ``N`` examples for a labelling tool. Strategies:

``bal`` (default)
    Bandit-based active learning after Kang et al., "Model Assertions for Monitoring and Improving
    ML Models" (MLSys 2020), Algorithm 1. Each assertion with failing examples is an arm. Each
    draw takes the arm with the highest estimated marginal reduction in assertion failures per
    label, plus an exploration term, and takes that arm's most severe example not yet chosen. The
    gain of an arm is the chance that a label drawn from it corrects a model error (an error
    learned from is a failure removed): the posterior mean of a Beta(1, 1) prior updated with the
    labels acquired in earlier rounds (``--labelled``) on examples the arm flagged: one success
    per label that disagrees with the prediction the model made when the example was selected.
    The exploration term is UCB1's, ``c * sqrt(2 ln t / (1 + n_a))`` with ``t`` the labels and
    draws so far and ``n_a`` those of the arm (the paper uses epsilon-greedy; UCB is
    deterministic, so a selection can be reproduced). Without labels every arm has the same gain
    and the draws go round the arms, most severe first: the paper's first round. With no
    assertion signal (no arm, or every arm drawn empty) the rest of the budget falls back to
    uncertainty sampling.
``uncertainty``
    Least margin first: the smallest gap between the two most probable classes.
``random``
    A seeded random sample.
``assertion:NAME``
    The failing examples of one assertion, most severe first (fewer than the budget when it
    flags fewer).

The CSV (:data:`SELECTION_COLUMNS`) has, per example: ``id``, ``rank``, ``strategy``, ``arm``
(the assertion it was drawn from, or ``uncertainty``/``random``), ``assertions`` (every
assertion that fired on it with its severity, ``name:severity`` separated by ``;``), ``severity``
(the largest), ``confidence``, ``margin``, ``prediction`` (class index), ``predicted_class``,
``gain`` (BAL's estimate when drawn) and an empty ``label`` column: filled in, the file is what
``--labelled`` takes in the next round (a plain ``id,label`` CSV works too).

Examples
--------
>>> import pandas as pd
>>> table = pd.DataFrame({"id": list("abcdef"), "prediction": [0, 0, 1, 1, 0, 1],
...                       "prob_0": [0.9, 0.6, 0.3, 0.45, 0.99, 0.2], "prob_1": [0.1, 0.4, 0.7, 0.55, 0.01, 0.8]})
>>> failures = pd.DataFrame({"id": ["b", "c", "e"], "assertion": ["same-key", "same-key", "no-flicker"],
...                          "severity": [0.5, 0.9, 0.8]})
>>> sel = select_examples(table, failures, 3)
>>> sel.rows[["id", "arm", "assertions"]].values.tolist()
[['c', 'same-key', 'same-key:0.9'], ['e', 'no-flicker', 'no-flicker:0.8'], ['b', 'same-key', 'same-key:0.5']]
>>> select_examples(table, failures, 2, strategy="uncertainty").rows["id"].tolist()
['d', 'b']
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pandas as pd

from sparsecheck._runtime import resolve_device
from sparsecheck.assertions import AssertionContext, run_assertions
from sparsecheck.config import pool_assertions
from sparsecheck.data import load_dataset
from sparsecheck.data.precomputed import PrecomputedFeatures, is_features, load_features
from sparsecheck.errors import ConfigError, DataError, ParameterError, TrackingError
from sparsecheck.features.extraction import extract_features
from sparsecheck.outputs import write_json_atomic
from sparsecheck.pipeline.batch import batch_metadata
from sparsecheck.pipeline.context import RunContext, SplitView
from sparsecheck.tracking.run_logging import start_run
from sparsecheck.select_arms import SELECTION_COLUMNS, _arm_stats, _bal, _least_margin, _probabilities, _selection_rows
from sparsecheck.tracking.tags import TAG_POOL

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.config import Config
    from sparsecheck.data import ImageDataset
    from sparsecheck.data.precomputed import PrecomputedFeatures
    from sparsecheck.models import Model

logger = logging.getLogger(__name__)

__all__ = ["STRATEGIES", "SELECTION_COLUMNS", "PoolScores", "Selection", "load_pool",
           "score_pool", "select_examples", "load_labelled", "select_experiment_name", "log_to_mlflow",
           "failures_table", "parse_strategy", "check_pool",
           "check_budget"]

STRATEGIES = ("bal", "uncertainty", "random")
#: the config's splits a pool may name
SPLITS = ("train", "val", "test")


def select_experiment_name(experiment: str) -> str:
    """The experiment select and weak-labels runs go to: ``<experiment>-select``."""
    return f"{experiment}-select"


def parse_strategy(strategy: str, names: Sequence[str] | None) -> tuple[str, str | None]:
    """``"bal"`` → ``("bal", None)``; ``"assertion:NAME"`` → ``("assertion", NAME)``."""
    kind, _, arm = str(strategy).partition(":")
    if kind == "assertion" and arm:
        if names is not None and arm not in names:
            raise ParameterError(f"--strategy {strategy}: unknown assertion {arm!r}; the pool is checked with "
                                 f"{', '.join(names) or 'no assertions'}", parameter="strategy")
        return kind, arm
    if kind not in STRATEGIES or arm:
        raise ParameterError(f"--strategy: unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)} or "
                             "assertion:NAME", parameter="strategy")
    return kind, None


# --------------------------------------------------------------------------- the pool
def load_pool(config: "Config", pool: str | Path) -> "ImageDataset | PrecomputedFeatures":
    """The pool ``--pool`` names: a split of the config (``train``, ``val``, ``test``) or a file in
    any data format a split takes (images or precomputed features with logits). Labels are dropped.

    Raises
    ------
    ConfigError
        a split the config does not have.
    DataError
        a missing or unreadable file, or a pool without ids (a selection must name examples a
        labelling tool can find).
    """
    name = str(pool)
    if name in SPLITS:
        path = getattr(config.data, name)
        if path is None:
            raise ConfigError(f"--pool {name}: the config has no data.{name}", key=f"data.{name}")
        where = f"--pool {name} (data.{name})"
    else:
        path = Path(pool)
        where = "--pool"
        if not path.exists():
            raise DataError(f"{where}: file not found", path=path)
    label = name if name in SPLITS else "pool"
    try:
        if is_features(path):
            ds: Any = load_features(path, name=label)
            if ds.logits is None:
                raise DataError("precomputed features without logits: the pool needs the model's predictions "
                                "(extract it with `sparsecheck extract --out`, which stores them)", path=path)
        else:
            geometry = config.model.input.to_spec().geometry
            ds = load_dataset(path, name=label, class_names=config.data.class_names, geometry=geometry,
                              skip_unreadable=config.data.skip_unreadable, num_workers=config.features.num_workers)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from exc
    # the loaders number examples "<name>/<i>" when the file has no ids: such ids name nothing outside
    if len(ds) and np.array_equal(ds.ids, np.array([f"{label}/{i}" for i in range(len(ds))])):
        raise DataError(f"{where}: {path} has no example ids (an 'id' array or column); a selection must name "
                        "examples a labelling tool can find", path=path)
    return ds  # labels, if any, are ignored (score_pool leaves them out of the prediction table)


@dataclass
class PoolScores:
    """A pool scored by the model: its prediction table and what the assertions flag on it.

    Attributes
    ----------
    source : str
        Where the pool came from.
    fingerprint : str
        The pool's content hash.
    table : DataFrame
        The prediction table (:meth:`sparsecheck.pipeline.RunContext.prediction_table`) without labels.
    assertions : list of Assertion
        What was checked (:func:`pool_assertions`).
    suite : SuiteResult
        The results, with every failing example.
    class_names : list of str
    model : dict
        ``fingerprint`` and ``source`` of the model.
    mlflow_model : dict or None
        The MLflow model version it was loaded from, if any.
    notes : list of str
    """

    source: str
    fingerprint: str
    table: pd.DataFrame
    assertions: list[Any]
    suite: Any
    class_names: list[str]
    model: dict[str, Any] = field(default_factory=dict)
    mlflow_model: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def failures(self) -> pd.DataFrame:
        """Every failing example of every assertion: ``id``, ``assertion``, ``severity``."""
        return failures_table(self.suite)

    @property
    def assertion_names(self) -> list[str]:
        return [a.name for a in self.assertions]


def failures_table(suite: Iterable[Any]) -> pd.DataFrame:
    """The failing examples of a suite's results as one long table: ``id``, ``assertion``, ``severity``."""
    parts = [pd.DataFrame({"id": r.failing_examples["id"].astype(str).to_numpy(), "assertion": r.name,
                           "severity": r.failing_examples["severity"].to_numpy(dtype=np.float64)})
             for r in suite if r.status != "error" and len(r.failing_examples)]
    if not parts:
        return pd.DataFrame({"id": pd.Series(dtype=str), "assertion": pd.Series(dtype=str),
                             "severity": pd.Series(dtype=np.float64)})
    return pd.concat(parts, ignore_index=True)


def score_pool(config: "Config", pool: "str | Path | ImageDataset | PrecomputedFeatures", *,
               metadata: str | Path | None = None, model: "Model | None" = None, device: str = "auto",
               tracking_uri: str | None = None) -> PoolScores:
    """Predict on a pool and run :func:`pool_assertions` on it, keeping every failing example.

    Parameters
    ----------
    config : Config
    pool : str, path, ImageDataset or PrecomputedFeatures
        A split name, a file (:func:`load_pool`) or an already loaded pool.
    metadata : path, optional
        The pool's metadata table (CSV/Parquet keyed by id: the columns the assertions name, such
        as a key or a sequence and time). Default: the config's ``data.metadata`` when it covers
        the pool's ids, else a manifest's own columns.
    model : Model, optional
        Already loaded (else from the config).
    device : str
    tracking_uri : str, optional
        For a model loaded from MLflow.

    Returns
    -------
    PoolScores
    """
    pool_assertions(config)  # a malformed select.assertions fails before the model runs
    ds = pool if hasattr(pool, "ids") and not isinstance(pool, (str, Path)) else load_pool(config, pool)
    dev = resolve_device(device)
    spec = None
    if isinstance(ds, PrecomputedFeatures):
        features, logits = ds.features, ds.logits
        model_info = {"fingerprint": ds.model_fingerprint, "source": ds.source}
        origin = None
    else:
        if model is None:
            model = config.model.load(tracking_uri=tracking_uri or config.mlflow.tracking_uri)
        spec = config.model.input_spec(model)
        if ds.geometry is not None:  # the dataset already brings each image to the spec's geometry
            spec = spec.without_geometry()
        fs = extract_features(model, ds, spec, layer=config.model.feature_layer,
                              batch_size=config.features.batch_size, device=dev,
                              num_workers=config.features.num_workers, precision=config.features.precision,
                              cache_dir=config.features.cache_dir, desc=f"pool {ds.name}")
        features, logits = fs.features, fs.logits
        model_info = {"fingerprint": model.fingerprint(), "source": str(model.source)}
        origin = getattr(model, "origin", None)
    class_names = list(config.data.class_names or [str(k) for k in range(np.asarray(logits).shape[1])])
    meta, note = batch_metadata(config, ds, metadata)
    notes = [note.replace("the batch's", "the pool's")] if note else []
    ctx = RunContext(config=config, class_names=class_names, device=str(dev),
                     splits={"pool": SplitView("pool", ds.ids, None, features, logits, meta)})
    table = ctx.prediction_table("pool")
    images = None if isinstance(ds, PrecomputedFeatures) else ds
    assertions, suite, more = check_pool(config, table, class_names=class_names,
                                         model=model if images is not None else None, dataset=images,
                                         input_spec=spec, device=str(dev))
    logger.info("pool %s: %d examples, %d of %d assertions flag examples", ds.source, len(table),
                sum(1 for r in suite if r.status != "error" and len(r.failing_examples)), len(assertions))
    return PoolScores(ds.source, ds.fingerprint(), table, assertions, suite, class_names, model_info,
                      None if origin is None else origin.to_dict(), notes + more)


def check_pool(config: "Config", table: pd.DataFrame, **context: Any) -> tuple[list[Any], Any, list[str]]:
    """Run :func:`pool_assertions` on a pool's prediction table, keeping every failing example.

    ``context`` goes to :class:`~sparsecheck.assertions.AssertionContext` (``class_names``,
    ``model``, ``dataset``, ``input_spec``, ``device``); assertions lacking an input are skipped.

    Returns
    -------
    (list of Assertion, SuiteResult, list of str)
        What was checked, the results, and notes on what was skipped or could not run.
    """
    assertions = pool_assertions(config)
    data = AssertionContext(table, split="pool", **context)
    suite = run_assertions(assertions, data, needs_labels=False, skip_unavailable=True, max_examples=None)
    notes = []
    for skipped in suite.skipped:
        lacks = ", ".join(m.replace("column:", "metadata column ") for m in skipped.get("missing", []))
        notes.append(f"assertion {skipped.get('name')!r} skipped: the pool lacks {lacks}")
    for r in suite.errored:
        notes.append(f"assertion {r.name!r} could not run on the pool: {r.message}")
    return assertions, suite, notes


# --------------------------------------------------------------------------- labels from earlier rounds
def load_labelled(paths: Iterable[str | Path], class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Labels acquired in earlier rounds: CSVs with ``id`` and ``label`` (a class index or name).

    A selection CSV with its ``label`` column filled in is the intended input: its ``prediction``
    and ``assertions`` columns then say what the model predicted and which assertions fired when
    the example was selected (what BAL's gain estimates need, even after the model was retrained).
    Rows with an empty label are not labelled yet and are left out. A later file wins for an id
    given twice.

    Returns
    -------
    DataFrame
        ``id`` (str), ``label`` (int), and ``prediction`` (int or NA) and ``assertions`` (str or NA)
        when the files have them.

    Raises
    ------
    DataError
        a missing file, a file without ``id`` and ``label`` columns, or a label that is not a class.
    """
    frames = []
    names = list(class_names or [])
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise DataError("--labelled: file not found", path=path)
        try:
            raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        except Exception as exc:
            raise DataError(f"--labelled: cannot read CSV: {exc}", path=path) from exc
        missing = [c for c in ("id", "label") if c not in raw.columns]
        if missing:
            raise DataError(f"--labelled: no {' or '.join(repr(c) for c in missing)} column (columns: "
                            f"{list(raw.columns)}); give id,label rows", path=path)
        raw = raw[raw["label"].str.strip() != ""]
        labels = [_class_index(v.strip(), names, path) for v in raw["label"]]
        frame = pd.DataFrame({"id": raw["id"].astype(str).to_numpy(), "label": np.asarray(labels, dtype=np.int64)})
        for col in ("prediction", "assertions"):
            if col in raw.columns:
                frame[col] = raw[col].to_numpy()
        frames.append(frame)
    if not frames:
        return pd.DataFrame({"id": pd.Series(dtype=str), "label": pd.Series(dtype=np.int64)})
    out = pd.concat(frames, ignore_index=True)
    return out.drop_duplicates("id", keep="last").reset_index(drop=True)


def _class_index(value: str, names: list[str], path: Path) -> int:
    if value in names:
        return names.index(value)
    if re.fullmatch(r"\d+", value) and (not names or int(value) < len(names)):
        return int(value)
    shown = f"; classes: {', '.join(names)}" if names else ""
    raise DataError(f"--labelled: label {value!r} is not a class{shown}", path=path)


# --------------------------------------------------------------------------- the selection
@dataclass
class Selection:
    """What :func:`select_examples` chose.

    Attributes
    ----------
    rows : DataFrame
        The selection, best first, in the columns of :data:`SELECTION_COLUMNS`.
    strategy : str
    arms : DataFrame
        One row per assertion with failing examples: ``assertion``, ``n_failing`` (in the pool),
        ``n_labelled`` (acquired labels on examples it flagged), ``n_errors`` (of those, labels
        that disagree with the prediction), ``gain`` (BAL's estimate before this selection),
        ``n_selected``.
    budget : int
    notes : list of str
    """

    rows: pd.DataFrame
    strategy: str
    arms: pd.DataFrame
    budget: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: strategy, budget, the number selected per arm, the arms and the notes."""
        return {"strategy": self.strategy, "budget": self.budget, "n_selected": len(self.rows),
                "by_arm": {str(k): int(v) for k, v in self.rows["arm"].value_counts().items()},
                "arms": self.arms.to_dict(orient="records"), "notes": list(self.notes)}

    def summary(self) -> str:
        """What the command prints: how many were selected, from which arm, and the notes."""
        by_arm = self.rows["arm"].value_counts()
        lines = [f"selected {len(self.rows)} of a budget of {self.budget} ({self.strategy}): "
                 + (", ".join(f"{n} from {arm}" for arm, n in by_arm.items()) or "nothing")]
        for row in self.arms.itertuples():
            lines.append(f"  arm {row.assertion}: {row.n_failing} failing in the pool, {row.n_labelled} labelled "
                         f"({row.n_errors} model errors), gain {row.gain:.2f}, {row.n_selected} selected")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def select_examples(table: pd.DataFrame, failures: pd.DataFrame, budget: int, *, strategy: str = "bal",
                    labelled: pd.DataFrame | None = None, class_names: Sequence[str] | None = None,
                    assertions: Sequence[str] | None = None, seed: int = 0, exploration: float = 1.0) -> Selection:
    """Rank ``budget`` examples of a pool for labelling (see the module docstring for the strategies).

    Parameters
    ----------
    table : DataFrame
        The pool's prediction table: ``id``, ``prediction`` and ``prob_<k>`` (``confidence`` optional).
    failures : DataFrame
        ``id``, ``assertion``, ``severity``: every failing example of every assertion
        (:meth:`PoolScores.failures`).
    budget : int
        How many to select; at most the number of pool examples not labelled yet.
    strategy : str
        ``bal``, ``uncertainty``, ``random`` or ``assertion:NAME``.
    labelled : DataFrame, optional
        Labels from earlier rounds (:func:`load_labelled`): those ids are never selected, and
        feed BAL's gain estimates.
    class_names : sequence of str, optional
        For the ``predicted_class`` column.
    assertions : sequence of str, optional
        The names of the assertions that were checked (for ``assertion:NAME``); default those in
        ``failures``.
    seed : int
        For ``random``.
    exploration : float
        BAL's exploration weight ``c`` (0: pure exploitation).

    Returns
    -------
    Selection

    Raises
    ------
    ParameterError
        an unknown strategy or assertion name, or a budget below 1 or larger than the unlabelled pool.
    """
    names = list(assertions) if assertions is not None else list(dict.fromkeys(failures["assertion"]))
    kind, only = parse_strategy(strategy, names)
    if exploration < 0:
        raise ParameterError(f"The 'exploration' parameter must be >= 0. Got {exploration!r} instead.",
                             parameter="exploration")
    ids = table["id"].astype(str).to_numpy()
    labelled = labelled if labelled is not None else pd.DataFrame({"id": [], "label": []})
    done = set(labelled["id"].astype(str)) & set(ids)
    notes = []
    unknown = len(set(labelled["id"].astype(str)) - done)
    if unknown:
        notes.append(f"{unknown} labelled ids are not in the pool (ignored)")
    free = np.array([i not in done for i in ids])
    check_budget(budget, ids, labelled["id"])
    probs = _probabilities(table)
    top2 = np.sort(probs, axis=1)[:, -2:] if probs.shape[1] > 1 else np.c_[np.zeros(len(probs)), probs]
    margin = top2[:, 1] - top2[:, 0]
    failures = failures.assign(id=failures["id"].astype(str))
    arms = _arm_stats(failures, table, labelled, names)
    picks: list[tuple[int, str, float]] = []  # (row, arm, gain)
    if kind == "random":
        order = np.random.default_rng(seed).permutation(np.flatnonzero(free))
        picks = [(int(i), "random", math.nan) for i in order[:budget]]
    elif kind == "uncertainty":
        picks = [(int(i), "uncertainty", math.nan) for i in _least_margin(margin, free, ids)[:budget]]
    else:
        row_of = pd.Series(np.arange(len(ids)), index=ids)
        queues = {}
        for name, group in failures.groupby("assertion", sort=False):
            if only is not None and name != only:
                continue
            group = group[group["id"].isin(row_of.index)].sort_values(["severity", "id"], ascending=[False, True],
                                                                      kind="stable")
            rows = row_of[group["id"]].to_numpy()
            queues[str(name)] = [int(r) for r in rows if free[r]]
        if kind == "assertion":
            picks = [(r, str(only), math.nan) for r in queues.get(str(only), [])[:budget]]
            if len(picks) < budget:
                notes.append(f"assertion {only!r} flags {len(picks)} unlabelled examples, fewer than the budget "
                             f"of {budget}")
        else:
            picks = _bal(queues, arms, budget, exploration)
            if len(picks) < budget:
                taken = np.zeros(len(ids), dtype=bool)
                taken[[p[0] for p in picks]] = True
                rest = _least_margin(margin, free & ~taken, ids)[:budget - len(picks)]
                picks += [(int(i), "uncertainty", math.nan) for i in rest]
                notes.append(("no assertion flags an unlabelled example: " if not queues or not any(queues.values())
                              else f"the assertions flag {budget - len(rest)} unlabelled examples: ")
                             + f"{len(rest)} chosen by uncertainty (least margin) instead")
    arms["n_selected"] = [sum(1 for p in picks if p[1] == a) for a in arms["assertion"]]
    rows = _selection_rows(table, failures, picks, kind if only is None else f"assertion:{only}", probs, margin,
                           class_names)
    return Selection(rows, strategy, arms, int(budget), notes)


def check_budget(budget: int, ids: Iterable[str], labelled: Iterable[str] = ()) -> None:
    """A budget is a whole number from 1 to the number of pool examples (``ids``) not labelled yet.

    Raises
    ------
    ParameterError
        naming the budget and the pool's size.
    """
    if not isinstance(budget, (int, np.integer)) or isinstance(budget, bool) or budget < 1:
        raise ParameterError(f"--budget must be a whole number >= 1. Got {budget!r} instead.", parameter="budget")
    pool = set(map(str, ids))
    free = len(pool - set(map(str, labelled)))
    if budget > free:
        raise ParameterError(f"--budget {budget} is larger than the pool: {free} examples not labelled yet "
                             f"(of {len(pool)})", parameter="budget")


# --------------------------------------------------------------------------- outputs
def log_to_mlflow(config: "Config", scores: PoolScores, kind: str, files: dict[str, Path], *,
                  params: dict[str, Any], metrics: dict[str, float], summary: dict[str, Any],
                  tracking_uri: str | None = None) -> Any:
    """Log one select or weak-labels invocation as an MLflow run in ``<experiment>-select``.

    The run is tagged ``sparsecheck.kind`` (``select`` or ``weak-labels``), with the model's
    fingerprint (``sparsecheck.model_fingerprint``; for a registered model also
    ``sparsecheck.model_name``/``model_version``) and the pool's (``sparsecheck.pool_fingerprint``);
    ``files`` become artifacts, with ``<kind>.json`` (``summary`` plus the pool, model and notes).

    Returns
    -------
    TrackingInfo

    Raises
    ------
    TrackingError
        MLflow unreachable or refusing.
    """
    from mlflow.entities import Metric, Param


    cfg = config.mlflow.model_copy(update={
        "experiment": select_experiment_name(config.mlflow.experiment),
        "tags": {**config.mlflow.tags, TAG_POOL: scores.fingerprint},
        "run_name": f"{kind}-{Path(scores.source).stem}-{scores.fingerprint[:8]}"})
    results = {"model": scores.model, "mlflow_model": scores.mlflow_model}
    with start_run(cfg, kind=kind, results=results, tracking_uri=tracking_uri) as run:
        now = int(time.time() * 1000)
        plist = [Param(k, str(v)) for k, v in {**params, "pool": scores.source}.items()]
        mlist = [Metric(re.sub(r"[^\w.\-/ :]", "_", k), float(v), now, 0) for k, v in metrics.items()
                 if np.isfinite(v)]
        try:
            run.client.log_batch(run.info.run_id, metrics=mlist, params=plist)
            with tempfile.TemporaryDirectory(prefix=f"sparsecheck-{kind}-") as tmp:
                doc = Path(tmp) / f"{kind}.json"
                write_json_atomic(doc, {**summary, "pool": {"source": scores.source, "fingerprint": scores.fingerprint,
                                                            "n": len(scores.table)},
                                        "model": scores.model, "mlflow_model": scores.mlflow_model,
                                        "notes": list(scores.notes)})
                for path in [*files.values(), doc]:
                    run.client.log_artifact(run.info.run_id, str(path))
        except Exception as exc:
            raise TrackingError(f"logging the {kind} run {run.info.run_id} to {run.info.tracking_uri} failed: "
                                f"{' '.join(str(exc).split())[:300]}") from exc
        run.status = "ok"
    logger.info("logged %s run %s (experiment %s)", kind, run.info.run_id, cfg.experiment)
    return run.info
