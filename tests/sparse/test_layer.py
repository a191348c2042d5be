"""Tests of the sparse decision layer and its two path solvers (small, seeded problems)."""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone

import sparsecheck.sparse as sparse_pkg
from sparsecheck.errors import DataError, ParameterError
from sparsecheck.sparse import SparseDecisionLayer
from sparsecheck.sparse.layer import _select
from sparsecheck.sparse.solvers import (
    PathProblem,
    elastic_net_objective,
    feature_statistics,
    fista_path,
    glm_saga_path,
)


def planted(n: int = 600, d: int = 40, n_classes: int = 3, *, seed: int = 0, k: int = 3,
            offset: float = 1.0, scale: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Features with a nonzero mean and uneven scales; labels sampled from a sparse model."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + offset
    Xs = (X - X.mean(0)) / X.std(0)
    W = np.zeros((n_classes, d))
    for c in range(n_classes):
        W[c, rng.choice(d, size=k, replace=False)] = scale
    logits = Xs @ W.T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(n_classes, p=row) for row in p])
    return X.astype(np.float32), y


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return planted()


@pytest.fixture(scope="module")
def layer(data) -> SparseDecisionLayer:
    X, y = data
    return SparseDecisionLayer(n_lambdas=20, solver="fista", device="cpu").fit(X, y)


def standardised(layer: SparseDecisionLayer, X: np.ndarray) -> torch.Tensor:
    return torch.from_numpy((X.astype(np.float64) - layer.mean_) / layer.std_)


# --------------------------------------------------------------------------- the path


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000))
def test_nnz_grows_along_the_path(seed):
    X, y = planted(300, 30, 3, seed=seed)
    path = SparseDecisionLayer(n_lambdas=12, lambda_min_ratio=1e-2, device="cpu", early_stop=False,
                               random_state=seed).fit(X, y).path_
    nnz = path["nnz"].to_numpy()
    assert nnz[0] == 0 and nnz[-1] > 0
    assert (np.diff(path["lambda"]) < 0).all()
    drops = -np.diff(nnz)
    assert drops.max() <= max(2, 0.1 * nnz.max()), nnz  # near-monotone: only small dips
    assert pd.Series(nnz).corr(pd.Series(np.arange(len(nnz))), method="spearman") > 0.9


def test_lambda_max_is_the_first_all_zero_lambda(data):
    from glm_saga.elasticnet import maximum_reg

    X, y = data
    alpha = 0.9
    layer = SparseDecisionLayer(alpha=alpha, n_lambdas=2, lambda_min_ratio=0.98, device="cpu").fit(X, y)
    assert layer.path_["nnz"].tolist()[0] == 0
    assert layer.path_["nnz"].tolist()[1] > 0  # 2% below lambda_max some weight is nonzero
    # lambda_max matches glm_saga's own formula on the same standardised training rows
    train = np.setdiff1d(np.arange(len(y)), _held_out_rows(layer, X, y))
    reference = maximum_reg(standardised(layer, X[train]).float(), torch.from_numpy(y[train]), group=False) / alpha
    assert layer.lambda_max_ == pytest.approx(reference, rel=1e-5)
    assert layer.path_["lambda"].iloc[0] == pytest.approx(layer.lambda_max_, rel=2e-4)


def _held_out_rows(layer, X, y):
    from sparsecheck.sparse.layer import _encode_labels, _holdout

    return _holdout(_encode_labels(y)[1], layer.random_state)[1]


def test_selection_is_the_sparsest_within_tolerance(layer):
    path = layer.path_
    val, nnz = path["val_accuracy"].to_numpy(), path["nnz"].to_numpy()
    own = path["min_own_features"].to_numpy()
    assert own[layer.selected_index_] == (layer.weight_ > 0).sum(axis=1).min()
    eligible = val >= val.max() - layer.tolerance - 1e-12
    assert eligible[layer.selected_index_]
    # the sparsest of those in which every class has a feature of its own, when any has
    owned = eligible & (own >= 1)
    assert nnz[layer.selected_index_] == nnz[owned if owned.any() else eligible].min()
    assert layer.selected_lambda_ == path["lambda"].iloc[layer.selected_index_]
    assert (layer.weight_ != 0).sum() == nnz[layer.selected_index_]
    for tolerance in (0.0, 0.02, 0.2, 1.0):
        i = _select(path, tolerance, None)
        ok = val >= val.max() - tolerance - 1e-12
        pool = ok & (own >= 1) if (ok & (own >= 1)).any() else ok
        assert ok[i] and nnz[i] == nnz[pool].min()
    assert _select(path, 0.0, None) in np.flatnonzero(val == val.max())
    # the all-zero layer owns nothing: a layer with a feature for every class is taken when there is one
    assert own[0] == 0
    assert nnz[_select(path, 1.0, None)] == (0 if not (own >= 1).any() else nnz[own >= 1].min())
    # without the column (a layer saved before it), the sparsest within tolerance
    assert nnz[_select(path.drop(columns="min_own_features"), 1.0, None)] == 0


def test_a_class_told_only_by_the_others_features_gets_one_of_its_own():
    """Two classes, one strong feature for class 0 and a weaker one for class 1: the sparsest layer
    within tolerance holds only the strong one (class 1 is "feature 0 staying low"); the layer
    selected gives class 1 a positive weight of its own."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000)
    X = rng.normal(size=(2000, 10)).astype(np.float32)
    X[:, 0] += 2.5 * (y == 0)          # class 0's own feature, strong
    X[:, 1] += 0.8 * (y == 1)          # class 1's own feature, weaker
    layer = SparseDecisionLayer(n_lambdas=40, solver="fista", device="cpu", random_state=0).fit(X, y)
    path = layer.path_
    val, own = path["val_accuracy"].to_numpy(), path["min_own_features"].to_numpy()
    eligible = val >= val.max() - layer.tolerance - 1e-12
    assert (eligible & (own == 0) & (path["nnz"].to_numpy() > 0)).any()   # the old rule had a layer without
    assert (layer.weight_ > 0).sum(axis=1).min() >= 1
    assert layer.weight_[1, 1] > 0


def test_features_per_class_caps_the_mean(data):
    X, y = data
    layer = SparseDecisionLayer(n_lambdas=30, features_per_class=4, device="cpu").fit(X, y)
    mean_fpc = layer.path_["mean_features_per_class"].to_numpy()
    assert (layer.weight_ != 0).sum(axis=1).mean() <= 4
    assert mean_fpc[layer.selected_index_] <= 4
    assert mean_fpc[-1] > 4  # the path stopped at the first layer over the cap ...
    assert layer.selected_index_ == len(mean_fpc) - 2  # ... and the one before it was selected
    assert len(layer.path_) < 30


def fit_in_precision(device: str, precision: str, data: tuple[np.ndarray, np.ndarray]) -> SparseDecisionLayer:
    X, y = data
    return SparseDecisionLayer(n_lambdas=20, solver="fista", device=device, precision=precision).fit(
        X[:500], y[:500], X[500:], y[500:])


def assert_same_selection(a: SparseDecisionLayer, b: SparseDecisionLayer) -> None:
    """Two fits that differ only in how the features were held select the same layer."""
    ra, rb = a.path_.iloc[a.selected_index_], b.path_.iloc[b.selected_index_]
    assert a.selected_index_ == b.selected_index_
    assert set(a.used_features().tolist()) == set(b.used_features().tolist())
    assert abs(ra["val_accuracy"] - rb["val_accuracy"]) <= 0.01
    np.testing.assert_allclose(b.weight_, a.weight_, atol=0.02 * float(np.abs(a.weight_).max()))


def test_bf16_features_select_the_same_layer_as_fp32(data):
    """bf16 rounds only the features (products run in float32 on blocks converted on the fly)."""
    assert_same_selection(fit_in_precision("cpu", "fp32", data), fit_in_precision("cpu", "bf16", data))


def test_early_stop_ends_the_path_past_the_selection_and_keeps_it():
    """Many classes and few rows: past the best layer the path overfits; it stops once the
    validation accuracy stayed out of reach while lambda halved, and selects the same layer."""
    X, y = planted(n=900, d=60, n_classes=12, k=2, seed=3)
    kw = dict(n_lambdas=30, solver="fista", device="cpu")
    full = SparseDecisionLayer(early_stop=False, **kw).fit(X[:600], y[:600], X[600:], y[600:])
    short = SparseDecisionLayer(**kw).fit(X[:600], y[:600], X[600:], y[600:])
    assert len(full.path_) == 30 and len(short.path_) < 30
    acc = short.path_["val_accuracy"].to_numpy()
    lam = short.path_["lambda"].to_numpy()
    margin = max(short.tolerance / 10, np.sqrt(acc.max() * (1 - acc.max()) / 300))  # 300 validation rows
    out = acc < acc.max() - min(margin, short.tolerance)
    assert out[-2:].all() and lam[-1] * 2 <= lam[np.flatnonzero(~out)[-1] + 1]
    assert short.selected_index_ == full.selected_index_
    np.testing.assert_array_equal(short.weight_, full.weight_)


def test_fast_solver_reaches_glm_saga_objective():
    X, y = planted(360, 10, 3, seed=1)
    X, y, Xv, yv = X[:300], y[:300], X[300:], y[300:]
    cpu, alpha = torch.device("cpu"), 0.99
    mean, std, grad0 = feature_statistics(X, None, y, 3, cpu)
    lambdas = np.abs(grad0).max() / alpha * np.geomspace(1.0, 0.1, 4)
    problem = PathProblem(X=X, rows=None, y=y, X_val=Xv, val_rows=None, y_val=yv, mean=mean, std=std,
                          n_classes=3, lambdas=lambdas, alpha=alpha, grad0=grad0, random_state=0)
    fast = fista_path(problem, device=cpu, tol=1e-9)
    saga = glm_saga_path(problem, device=cpu, tol=1e-7, max_epochs=3000, batch_size=100)
    assert all(fast.converged)
    Xs, yt = torch.from_numpy((X - mean) / std), torch.from_numpy(y)
    for k in range(1, 4):  # recompute both objectives from the returned weights
        f_fast, f_saga = (elastic_net_objective(Xs, yt, torch.from_numpy(r.weights[k]),
                                                torch.from_numpy(r.biases[k]), lambdas[k], alpha)
                          for r in (fast, saga))
        assert f_fast == pytest.approx(f_saga, rel=1e-3)
        assert f_fast <= f_saga * (1 + 1e-6)  # and never worse than SAGA
        assert fast.objective[k] == pytest.approx(f_fast, rel=1e-5)
        assert saga.objective[k] == pytest.approx(f_saga, rel=1e-4)


def _problem(X, y, Xv, yv, n_classes, *, rows=None, n_lambdas=12, ratio=0.05):
    cpu, alpha = torch.device("cpu"), 0.99
    mean, std, grad0 = feature_statistics(X, rows, y, n_classes, cpu)
    lambdas = np.abs(grad0).max() / alpha * 1.001 * np.geomspace(1.0, ratio, n_lambdas)
    return PathProblem(X=X, rows=rows, y=y, X_val=Xv, val_rows=None, y_val=yv, mean=mean, std=std,
                       n_classes=n_classes, lambdas=lambdas, alpha=alpha, grad0=grad0, random_state=0)


@pytest.fixture(scope="module")
def many_classes() -> tuple[np.ndarray, ...]:
    X, y = planted(1300, 48, 20, seed=3, k=2)
    return X[:1000], y[:1000], X[1000:], y[1000:]


def test_pair_working_set_solves_the_same_path_as_the_feature_working_set(many_classes):
    """Screening (class, feature) pairs with the numba kernels changes the cost, not the solutions."""
    X, y, Xv, yv = many_classes
    problem = _problem(X, y, Xv, yv, 20)
    cpu = torch.device("cpu")
    features = fista_path(problem, device=cpu, working_set="features", tol=1e-8)
    pairs = fista_path(problem, device=cpu, working_set="pairs", tol=1e-8)
    assert len(pairs.lambdas) == len(features.lambdas) == 12
    nnz = [int((w != 0).sum()) for w in pairs.weights]
    assert nnz[0] == 0 and nnz[-1] > 40  # the path does go from empty to many pairs
    np.testing.assert_allclose(pairs.objective, features.objective, rtol=2e-5)
    other = [int((w != 0).sum()) for w in features.weights]
    assert all(abs(a - b) <= max(2, 0.01 * b) for a, b in zip(nnz, other))  # a weight at the threshold may differ
    for a, b in zip(pairs.weights, features.weights):
        np.testing.assert_allclose(a, b, atol=2e-2)  # solved to tol: the same layers up to that
    np.testing.assert_allclose(pairs.val_accuracy, features.val_accuracy, atol=2 / len(yv))
    np.testing.assert_allclose(pairs.train_accuracy, features.train_accuracy, atol=2 / len(y))


def test_pair_working_set_hands_over_to_dense_products_and_reads_rows_in_place(many_classes, monkeypatch):
    """Past ``_PAIR_SHARE`` of all pairs the path goes on with the feature working set; training rows
    selected by ``rows`` (a holdout) are read from the caller's memory map without a copy."""
    from sparsecheck.sparse.solvers import fista as fista_module

    X, y, Xv, yv = many_classes
    rows = np.arange(0, 1000, 2)
    problem = _problem(X, y[rows], Xv, yv, 20, rows=rows)
    cpu = torch.device("cpu")
    reference = fista_path(problem, device=cpu, working_set="features", tol=1e-8)
    monkeypatch.setattr(fista_module, "_PAIR_SHARE", 0.02)  # 19 of 960 pairs
    handed: list[int] = []
    real = fista_module._feature_path
    monkeypatch.setattr(fista_module, "_feature_path", lambda run: (handed.append(run.k), real(run))[1])
    mixed = fista_path(problem, device=cpu, working_set="pairs", tol=1e-8)
    assert handed and 0 < handed[0] < len(mixed.lambdas)
    np.testing.assert_allclose(mixed.objective, reference.objective, rtol=2e-5)


def test_auto_screens_pairs_only_where_they_pay():
    from sparsecheck.sparse.solvers.fista import pairs_pay

    cpu = torch.device("cpu")
    assert not pairs_pay(20, 48, cpu, torch.float32)  # dense products are cheap
    assert pairs_pay(20, 3840, cpu, torch.float32) and pairs_pay(1000, 2048, cpu, torch.float32)
    assert not pairs_pay(10, 100_000, cpu, torch.float32)  # few classes: a per-feature working set is small
    assert not pairs_pay(1000, 2048, cpu, torch.bfloat16)
    assert not pairs_pay(1000, 2048, torch.device("meta"), torch.float32)


def test_auto_solver_counts_no_logit_buffers_when_it_screens_pairs(caplog):
    """At 1000 classes the pair kernels hold no C x n logits, so the in-memory solver's estimate
    does not grow with the classes and it stays the choice for a memory-mapped float32 matrix."""
    layer = SparseDecisionLayer(solver="auto", device="cpu")
    X = np.zeros((50_000, 128), dtype=np.float32)
    with caplog.at_level(logging.INFO, logger="sparsecheck.sparse.layer"):
        assert layer._choose_solver(X, None, 50_000, 128, 1000, 5_000, torch.device("cpu")) == "fista"
    need = float(caplog.text.split("needs ~")[1].split(" GiB")[0])
    assert need == pytest.approx(5_000 * 128 * 4 / 2 ** 30, abs=0.01)  # the validation features only


# --------------------------------------------------------------------------- prediction


def test_to_module_predicts_exactly_like_predict(layer, data):
    X, _ = data
    module = layer.to_module()
    with torch.inference_mode():
        logits = module(torch.from_numpy(X))
    scores = torch.from_numpy(layer.decision_function(X))
    assert torch.equal(logits, scores)
    assert torch.equal(logits.argmax(1), torch.from_numpy(np.searchsorted(layer.classes_, layer.predict(X))))
    reference = standardised(layer, X) @ torch.from_numpy(layer.weight_).double().T + torch.from_numpy(layer.bias_)
    assert torch.allclose(logits.double(), reference, atol=1e-4)
    assert np.allclose(layer.predict_proba(X).sum(1), 1, atol=1e-5)


def test_fit_accepts_tensors_memmaps_and_feature_sets(data, tmp_path):
    X, y = data
    params = dict(n_lambdas=8, device="cpu")
    ref = SparseDecisionLayer(**params).fit(X, y)
    from_tensors = SparseDecisionLayer(**params).fit(torch.from_numpy(X), torch.from_numpy(y))
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=X.shape)
    mm[:] = X
    mm.flush()
    del mm
    readonly = np.load(tmp_path / "x.npy", mmap_mode="r")

    @dataclass
    class FeatureSet:
        features: np.ndarray
        labels: np.ndarray

    from_set = SparseDecisionLayer(**params).fit(FeatureSet(readonly, y))
    for other in (from_tensors, from_set):
        assert np.array_equal(other.weight_, ref.weight_)
        pd.testing.assert_frame_equal(other.path_.drop(columns="seconds"), ref.path_.drop(columns="seconds"))
    assert np.array_equal(from_set.predict(FeatureSet(readonly, y)), ref.predict(X))
    assert not readonly.flags.writeable  # it was read, never copied into or written


def test_labels_are_mapped_and_validation_classes_may_be_a_subset(data):
    X, y = data
    names = np.array(["cat", "dog", "owl"])[y]
    val = np.arange(500, 600)
    keep = names[val] != "owl"
    layer = SparseDecisionLayer(n_lambdas=8, device="cpu").fit(X[:500], names[:500], X[val][keep], names[val][keep])
    assert list(layer.classes_) == ["cat", "dog", "owl"]
    assert set(layer.predict(X)) <= {"cat", "dog", "owl"}
    assert 0 <= layer.score(X[val], names[val]) <= 1


def test_validation_holdout_is_seeded(data):
    X, y = data
    a = SparseDecisionLayer(n_lambdas=6, device="cpu", random_state=3).fit(X, y)
    b = SparseDecisionLayer(n_lambdas=6, device="cpu", random_state=3).fit(X, y)
    c = SparseDecisionLayer(n_lambdas=6, device="cpu", random_state=4).fit(X, y)
    assert np.array_equal(a.weight_, b.weight_)
    assert not np.array_equal(a.mean_, c.mean_)  # other held-out rows, other training statistics


# --------------------------------------------------------------------------- parameters and inputs


@pytest.mark.parametrize("name, value, allowed", [
    ("alpha", 1.5, "a float in the range [0, 1]"),
    ("n_lambdas", 0, "an int in the range [1, inf)"),
    ("tolerance", -1, "a float in the range [0, 1]"),
    ("solver", "nope", "a str among {'auto', 'fista', 'glm_saga'}"),
    ("device", "tpu", "'cuda:<index>'"),
    ("lambda_min_ratio", 1.0, "(0, 1)"),
    ("features_per_class", 0, "None or an int in the range [1, inf)"),
    ("max_epochs", 2.5, "None or an int"),
    ("alpha", True, "a float in the range [0, 1]"),
    ("precision", "fp16", "a str among {'fp32', 'bf16'}"),
    ("early_stop", "yes", "a bool"),
])
def test_bad_parameters_raise_parameter_error(data, name, value, allowed):
    X, y = data
    layer = SparseDecisionLayer(**{name: value})  # __init__ only stores
    assert layer.get_params()[name] is value
    with pytest.raises(ParameterError) as info:
        layer.fit(X, y)
    assert info.value.parameter == name
    message = str(info.value)
    assert message.startswith(f"The '{name}' parameter of SparseDecisionLayer must be ")
    assert allowed in message and f"Got {value!r} instead." in message
    assert isinstance(info.value, ValueError)


def test_alpha_message_matches_scikit_learn_wording(data):
    with pytest.raises(ParameterError, match=r"^The 'alpha' parameter of SparseDecisionLayer must be a "
                                             r"float in the range \[0, 1\]\. Got 1\.5 instead\.$"):
        SparseDecisionLayer(alpha=1.5).fit(*data)


@pytest.mark.parametrize("X, y, fragment", [
    (np.zeros(10), np.zeros(10), "got shape (10,)"),
    (np.zeros((10, 3)), np.zeros(9), "to match X of shape (10, 3), got (9,)"),
    (np.zeros((10, 3)), np.zeros(10), "at least 2 classes"),
    (np.full((10, 3), np.nan), np.arange(10) % 2, "NaN"),
])
def test_bad_inputs_raise_data_error_naming_the_shape(X, y, fragment):
    with pytest.raises(DataError) as info:
        SparseDecisionLayer(n_lambdas=2, device="cpu").fit(X, y)
    assert fragment in str(info.value)


def test_validation_set_must_fit_the_training_set(data):
    X, y = data
    with pytest.raises(DataError, match="X_val has shape"):
        SparseDecisionLayer(device="cpu").fit(X, y, X[:, :5], y)
    with pytest.raises(DataError, match="labels not in y"):
        SparseDecisionLayer(device="cpu").fit(X, y, X, y + 7)


def test_predict_checks_the_feature_count(layer):
    with pytest.raises(DataError, match=r"shape \(4, 3\).*\(n_samples, 40\)"):
        layer.predict(np.zeros((4, 3)))


def test_clone_and_pickle(layer, data):
    X, _ = data
    twin = clone(layer)
    assert twin.get_params() == layer.get_params() and not hasattr(twin, "weight_")
    again = pickle.loads(pickle.dumps(layer))
    assert np.array_equal(again.predict(X), layer.predict(X))
    pd.testing.assert_frame_equal(again.path_, layer.path_)


# --------------------------------------------------------------------------- persistence and reports


def test_save_load_round_trip(layer, data, tmp_path):
    X, _ = data
    where = layer.save(tmp_path / "layer")
    meta = json.loads((where / "sparse_layer.json").read_text())
    assert meta["format_version"] == 1 and meta["params"]["alpha"] == layer.alpha
    again = SparseDecisionLayer.load(where)
    for name in ("weight_", "bias_", "mean_", "std_", "classes_"):
        assert np.array_equal(getattr(again, name), getattr(layer, name))
        assert getattr(again, name).dtype == getattr(layer, name).dtype
    pd.testing.assert_frame_equal(again.path_, layer.path_)
    assert np.array_equal(again.decision_function(X), layer.decision_function(X))
    assert again.get_params() == layer.get_params()
    assert (again.selected_index_, again.selected_lambda_) == (layer.selected_index_, layer.selected_lambda_)
    assert layer.save(where) == where  # the same layer again: nothing to do


def test_a_layer_saved_before_the_own_feature_column_loads(layer, data, tmp_path):
    """A layer saved by an earlier version has no ``min_own_features`` in its path: it loads, with
    the columns it has, and predicts the same."""
    X, _ = data
    where = layer.save(tmp_path / "layer")
    meta = json.loads((where / "sparse_layer.json").read_text())
    del meta["path"]["min_own_features"]
    (where / "sparse_layer.json").write_text(json.dumps(meta))
    again = SparseDecisionLayer.load(where)
    assert "min_own_features" not in again.path_.columns
    pd.testing.assert_frame_equal(again.path_, layer.path_.drop(columns="min_own_features"))
    assert np.array_equal(again.decision_function(X), layer.decision_function(X))


def test_save_writes_numpy_values_and_a_torch_device_as_json(layer, tmp_path):
    import copy

    on_device = copy.deepcopy(layer).set_params(device=torch.device("cpu"), alpha=np.float64(0.9))
    meta = json.loads((on_device.save(tmp_path / "layer") / "sparse_layer.json").read_text())
    assert meta["params"]["device"] == "cpu" and meta["params"]["alpha"] == 0.9
    assert SparseDecisionLayer.load(tmp_path / "layer").get_params()["device"] == "cpu"
    assert on_device.save(tmp_path / "layer") == tmp_path / "layer"  # the same layer: the same JSON


def test_save_refuses_to_replace_a_different_layer(layer, data, tmp_path):
    X, y = data
    layer.save(tmp_path / "layer")
    other = SparseDecisionLayer(n_lambdas=5, device="cpu").fit(X, y)
    before = (tmp_path / "layer" / "sparse_layer.npz").read_bytes()
    with pytest.raises(DataError, match="overwrite=True"):
        other.save(tmp_path / "layer")
    assert (tmp_path / "layer" / "sparse_layer.npz").read_bytes() == before
    other.save(tmp_path / "layer", overwrite=True)
    assert np.array_equal(SparseDecisionLayer.load(tmp_path / "layer").weight_, other.weight_)
    assert sorted(p.name for p in (tmp_path / "layer").iterdir()) == ["sparse_layer.json", "sparse_layer.npz"]


def test_load_rejects_incomplete_or_mismatched_saves(layer, tmp_path):
    where = layer.save(tmp_path / "layer")
    (where / "sparse_layer.json").unlink()  # as if interrupted before the JSON was renamed in
    with pytest.raises(DataError, match="missing"):
        SparseDecisionLayer.load(where)
    where = layer.save(tmp_path / "other")
    arrays = dict(np.load(where / "sparse_layer.npz"))
    arrays["weight"] = arrays["weight"] * 2
    np.savez(where / "sparse_layer.npz", **arrays)
    with pytest.raises(DataError, match="does not match"):
        SparseDecisionLayer.load(where)


def test_inspection_tables(layer):
    table = layer.feature_table()
    assert list(table.columns) == ["class", "feature", "weight", "rank"]
    assert len(table) == int((layer.weight_ != 0).sum())
    for c, part in table.groupby("class"):
        row = list(layer.classes_).index(c)
        top = part.loc[part["rank"] == 1, "feature"].item()
        assert abs(layer.weight_[row, top]) == np.abs(layer.weight_[row]).max()
        assert sorted(part["rank"]) == list(range(1, len(part) + 1))
    assert np.array_equal(layer.used_features(), np.unique(table["feature"]))
    summary = layer.to_dict(class_names=["a", "b", "c"])
    json.dumps(summary)
    assert set(summary["features_per_class"]) == {"a", "b", "c"}
    assert sum(len(v) for v in summary["features_per_class"].values()) == len(table)
    assert summary["sparsity"] == pytest.approx(100 * (layer.weight_ == 0).mean())
    assert len(summary["path"]) == len(layer.path_) and set(summary["path"][0]) == {"lambda", "nnz", "val_accuracy"}
    assert summary["mean_features_per_class"] == pytest.approx((layer.weight_ != 0).sum(1).mean())
    with pytest.raises(ParameterError):
        layer.to_dict(class_names=["only one"])


def test_plot_path_writes_a_png_and_leaves_the_backend(layer, tmp_path):
    backend = matplotlib.get_backend()
    out = layer.plot_path(tmp_path / "path.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.get_backend() == backend
    assert [p.name for p in tmp_path.iterdir()] == ["path.png"]


# --------------------------------------------------------------------------- solvers


def test_glm_saga_is_quiet_and_leaves_the_root_logger_alone(data, capsys, caplog):
    X, y = data
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    caplog.set_level(logging.DEBUG, logger="sparsecheck.sparse.solvers.saga")
    layer = SparseDecisionLayer(solver="glm_saga", n_lambdas=3, lambda_min_ratio=0.3, max_epochs=20,
                                device="cpu").fit(X, y)
    out = capsys.readouterr().out
    assert out == ""
    assert root.handlers == handlers and root.level == level
    assert any("glm_saga:" in r.getMessage() for r in caplog.records)  # its prints became log records
    assert layer.solver_ == "glm_saga" and len(layer.path_) == 3
    assert layer.path_["val_accuracy"].between(0, 1).all()
    assert layer.path_["nnz"].iloc[-1] > 0


def test_auto_picks_the_fast_solver_for_small_data_and_says_why(data, caplog):
    caplog.set_level(logging.INFO, logger="sparsecheck.sparse.layer")
    layer = SparseDecisionLayer(n_lambdas=3, device="cpu").fit(*data)
    assert layer.solver_ == "fista"
    assert any("solver='auto' chose 'fista'" in r.getMessage() for r in caplog.records)


def test_public_namespace():
    assert "SparseDecisionLayer" in sparse_pkg.__all__
    assert sparse_pkg.SparseDecisionLayer is SparseDecisionLayer
