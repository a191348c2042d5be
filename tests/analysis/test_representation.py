"""Linear CKA: the properties that make it a representation similarity, its numerics at scale, and
the pairing of two runs' examples by id."""

from __future__ import annotations

import numpy as np
import pytest

from sparsecheck.analysis.matching import RunActivations
from sparsecheck.analysis.representation import FeatureSample, compare_representations, linear_cka
from sparsecheck.errors import DataError


def _reference_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """The textbook formula on centred Gram matrices, in float64, for small inputs."""
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    K, L = X @ X.T, Y @ Y.T
    return float(np.sum(K * L) / (np.linalg.norm(K) * np.linalg.norm(L)))


@pytest.mark.parametrize("n", [30, 400])  # Gram form (n < widths) and feature form (n > widths)
def test_identity_rotation_scaling_and_the_textbook_formula(n: int) -> None:
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 40)) @ rng.normal(size=(40, 40))  # correlated columns
    Q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    assert linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(X, 7.5 * X @ Q + 3.0) == pytest.approx(1.0, abs=1e-10)  # rotation, scale, shift
    Y = np.tanh(X[:, :25] + rng.normal(size=(n, 25)))
    assert linear_cka(X, Y) == pytest.approx(_reference_cka(X, Y), rel=1e-9)
    assert linear_cka(X, Y) == pytest.approx(linear_cka(Y, X), rel=1e-12)


def test_independent_random_representations_score_low() -> None:
    rng = np.random.default_rng(1)
    n, p, q = 2000, 64, 32
    value = linear_cka(rng.normal(size=(n, p)), rng.normal(size=(n, q)))
    assert value < 0.05 and value == pytest.approx(np.sqrt(p * q) / n, rel=0.3)


def test_large_offsets_and_float16_chunks_stay_accurate() -> None:
    """Features far from zero (a ReLU layer's means dominate) and float16 storage, read in chunks."""
    rng = np.random.default_rng(2)
    base = rng.normal(size=(5000, 48))
    X = base + 1e4  # float32 accumulation without centring first would lose everything
    Y = (base @ rng.normal(size=(48, 24)) + 50.0).astype(np.float16)
    exact = linear_cka(base, Y.astype(np.float64) - 50.0)
    assert linear_cka(X, Y, chunk_rows=333) == pytest.approx(exact, abs=1e-6)
    assert linear_cka(X, X.astype(np.float32), chunk_rows=700) == pytest.approx(1.0, abs=1e-6)


def test_degenerate_inputs() -> None:
    X = np.random.default_rng(3).normal(size=(50, 4))
    assert np.isnan(linear_cka(X, np.ones((50, 3))))
    with pytest.raises(DataError, match="same rows"):
        linear_cka(X, X[:40])
    with pytest.raises(DataError, match="at least 2"):
        linear_cka(X[:1], X[:1])


def test_runs_are_paired_by_id_whatever_their_order() -> None:
    rng = np.random.default_rng(4)
    ids = np.array([f"ex{i}" for i in range(300)])
    X = rng.normal(size=(300, 16))
    order = rng.permutation(300)[:250]  # B has 250 of A's examples, shuffled, and 5 of its own
    b_ids = np.concatenate([ids[order], [f"other{i}" for i in range(5)]])
    b_feats = np.concatenate([X[order] @ np.linalg.qr(rng.normal(size=(16, 16)))[0], rng.normal(size=(5, 16))])
    used_a = RunActivations(ids, [1, 2], X[:, [1, 2]])
    used_b = RunActivations(b_ids, [9], b_feats[:, [0]])
    notes: list[str] = []
    sim = compare_representations(FeatureSample(ids, X), FeatureSample(b_ids, b_feats), used_a, used_b, notes=notes)
    assert sim.cka_full == pytest.approx(1.0, abs=1e-9) and sim.n_full == 250 and (sim.dim_a, sim.dim_b) == (16, 16)
    assert 0 <= sim.cka_used < 1 and sim.n_used == 250 and (sim.used_a, sim.used_b) == (2, 1)
    assert notes == []
    few = compare_representations(FeatureSample(ids[:5], X[:5]), FeatureSample(ids[:5], X[:5]), notes=notes)
    assert few is None and "share 5 test examples" in notes[0]
