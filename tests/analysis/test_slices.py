"""Tests of slice discovery: exactness against brute force, planted slices, statistics, grouping."""

from __future__ import annotations

import itertools
import json
import logging
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as sst
from sklearn.base import clone

from sparsecheck.analysis.slices import encoding, lattice
from sparsecheck.analysis.slices import finder as finder_mod
from sparsecheck.analysis.slices import Slice, SliceFinder, find_slices
from sparsecheck.analysis.stats import wilson_interval
from sparsecheck.errors import DataError, ParameterError

# ----------------------------------------------------------------------------- helpers


def make_table(seed: int, n: int, domains: dict[str, int], planted: dict[str, int] | None = None,
               base: float = 0.08, planted_error: float = 0.5) -> pd.DataFrame:
    """Uniform categorical attributes; ``correct`` is False with probability ``planted_error``
    inside the planted slice and ``base`` elsewhere."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({a: rng.integers(0, k, n) for a, k in domains.items()})
    inside = np.ones(n, dtype=bool) if planted else np.zeros(n, dtype=bool)
    for a, v in (planted or {}).items():
        inside &= table[a].to_numpy() == v
    table["correct"] = ~(rng.random(n) < np.where(inside, planted_error, base))
    return table


def as_predicates(planted: dict[str, int]) -> dict[str, str]:
    return {a: str(v) for a, v in planted.items()}


def slice_mask(table: pd.DataFrame, predicates: dict[str, str]) -> np.ndarray:
    mask = np.ones(len(table), dtype=bool)
    for a, v in predicates.items():
        mask &= table[a].astype(str).to_numpy() == v
    return mask


def brute_force(table: pd.DataFrame, columns: list[str], errors: np.ndarray, max_predicates: int,
                min_support: int, alpha: float) -> list[tuple[float, int, dict[str, str]]]:
    """Every slice of the lattice with a positive score, best first: (score, size, predicates)."""
    n = len(table)
    mean_error = errors.mean()
    values = {c: table[c].astype(str).to_numpy() for c in columns}
    out = []
    for level in range(1, max_predicates + 1):
        for attrs in itertools.combinations(columns, level):
            for combo in itertools.product(*[np.unique(values[a]) for a in attrs]):
                mask = np.ones(n, dtype=bool)
                for a, v in zip(attrs, combo):
                    mask &= values[a] == v
                size = int(mask.sum())
                if size < min_support:
                    continue
                score = alpha * (errors[mask].sum() / (size * mean_error) - 1) - (1 - alpha) * (n / size - 1)
                if score > 1e-9:
                    out.append((float(score), size, dict(zip(attrs, combo))))
    out.sort(key=lambda t: (-t[0], -t[1]))
    return out


def greedy_groups(table: pd.DataFrame, ranked: list[tuple[float, int, dict[str, str]]], k: int,
                  threshold: float) -> list[tuple[float, int, dict[str, str]]]:
    """Reference grouping: best first, skip a slice contained by more than `threshold` in a kept one."""
    kept: list[tuple[float, int, dict[str, str]]] = []
    masks: list[np.ndarray] = []
    for item in ranked:
        m = slice_mask(table, item[2])
        if any((m & o).sum() / min(m.sum(), o.sum()) > threshold for o in masks):
            continue
        kept.append(item)
        masks.append(m)
        if len(kept) == k:
            break
    return kept


def fit(table: pd.DataFrame, **params) -> SliceFinder:
    params.setdefault("progress", False)
    return SliceFinder(**params).fit(table)


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("seed", range(6))
def test_top_k_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    domains = {f"a{j}": int(rng.integers(2, 4)) for j in range(4)}
    table = make_table(seed, int(rng.integers(150, 400)), domains, {"a0": 1, "a1": 0})
    errors = ~table["correct"].to_numpy()
    alpha, min_support, top_k = [0.6, 0.8, 0.95, 1.0][seed % 4], 5 + seed, 1 + seed % 4
    expected = brute_force(table, list(domains), errors, 3, min_support, alpha)
    finder = fit(table, max_predicates=3, min_support=min_support, alpha=alpha, top_k=top_k,
                 group_overlap=1.0, nested=False,
                 significant_only=False)  # the search's exactness: ranking by score alone
    got = finder.slices_
    assert len(got) == min(top_k, len(expected))
    np.testing.assert_allclose([s.score for s in got], [e[0] for e in expected[:top_k]], rtol=1e-9)
    if len(expected) > 1 and expected[0][0] - expected[1][0] > 1e-9:
        assert got[0].predicates == expected[0][2]
    # with a top-k larger than the lattice, every positive slice comes back, in the same order
    everything = fit(table, max_predicates=3, min_support=min_support, alpha=alpha, top_k=10_000,
                     group_overlap=1.0, nested=False, significant_only=False)
    np.testing.assert_allclose([s.score for s in everything.slices_], [e[0] for e in expected], rtol=1e-9)
    assert {str(sorted(s.predicates.items())) for s in everything.slices_} == \
        {str(sorted(e[2].items())) for e in expected}


@pytest.mark.parametrize("seed", range(3))
def test_grouped_top_k_equals_brute_force(seed: int, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    # A tiny pruning pool makes grouping outrun the pruning threshold, forcing a second search
    monkeypatch.setattr(finder_mod, "_POOL_FACTOR", 1)
    rng = np.random.default_rng(seed)
    n = 600
    table = pd.DataFrame({"A": rng.integers(0, 3, n), "C": rng.integers(0, 3, n), "D": rng.integers(0, 3, n)})
    a1 = table.A.to_numpy() == 1
    for j in range(4):  # attributes nearly constant inside A=1: variants of one finding
        table[f"B{j}"] = np.where(a1 & (rng.random(n) < 0.97), 0, rng.integers(1, 3, n))
    cd = (table.C.to_numpy() == 2) & (table.D.to_numpy() == 0)
    table["correct"] = ~(rng.random(n) < np.where(a1, 0.45, np.where(cd, 0.35, 0.06)))
    errors = ~table["correct"].to_numpy()
    cols = [c for c in table.columns if c != "correct"]
    ranked = brute_force(table, cols, errors, 2, 10, 0.95)
    expected = greedy_groups(table, ranked, 3, 0.5)
    with caplog.at_level(logging.DEBUG, logger="sparsecheck.analysis.slices"):
        finder = fit(table, max_predicates=2, min_support=10, top_k=3, group_overlap=0.5,
                     overlap="containment", nested=False, significant_only=False)
    np.testing.assert_allclose([s.score for s in finder.slices_], [e[0] for e in expected], rtol=1e-9)
    assert finder.slices_[0].predicates == expected[0][2]
    assert any("searching again" in r.getMessage() for r in caplog.records)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(20, 200), d=st.integers(1, 4),
       max_predicates=st.integers(1, 3), min_support=st.integers(1, 15),
       alpha=st.sampled_from([0.3, 0.7, 0.95, 1.0]), top_k=st.integers(1, 6))
def test_property_scores_equal_brute_force(seed, n, d, max_predicates, min_support, alpha, top_k) -> None:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({f"c{j}": rng.integers(0, 3, n) for j in range(d)})
    table["correct"] = rng.random(n) > rng.uniform(0.05, 0.6)
    errors = ~table["correct"].to_numpy()
    finder = fit(table, max_predicates=max_predicates, min_support=min_support, alpha=alpha,
                 top_k=top_k, group_overlap=1.0, nested=False, significant_only=False)
    if not errors.any():
        assert finder.slices_ == []
        return
    expected = brute_force(table, [f"c{j}" for j in range(d)], errors, max_predicates, min_support, alpha)
    np.testing.assert_allclose([s.score for s in finder.slices_], [e[0] for e in expected[:top_k]], rtol=1e-9)


# ----------------------------------------------------------------------------- planted slices


def test_planted_two_predicate_slice_is_top_on_every_seed() -> None:
    domains = {"A": 3, "B": 3, "C": 4, "D": 2, "E": 5}
    for seed in range(5):
        table = make_table(seed, 4000, domains, {"A": 1, "B": 2})
        top = fit(table).slices_[0]
        assert top.predicates == {"A": "1", "B": "2"}, seed
        assert top.significant and top.q_value < 1e-6


def test_planted_three_predicate_slice_recall() -> None:
    domains = {"A": 3, "B": 3, "C": 3, "D": 3, "E": 3}
    planted = {"A": 0, "B": 1, "C": 2}
    ranks = []
    for seed in range(5):
        table = make_table(seed, 6000, domains, planted, base=0.05, planted_error=0.6)
        found = [s.predicates for s in fit(table, top_k=5).slices_]
        ranks.append(found.index(as_predicates(planted)) + 1 if as_predicates(planted) in found else None)
    assert ranks == [1] * 5


def test_float_column_is_binned_and_nan_is_a_value() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    x = rng.normal(size=n)
    site = rng.choice(np.array(["a", "b", None], dtype=object), n)
    table = pd.DataFrame({"x": x, "site": site})
    high = x >= np.quantile(x, 0.75)
    table["correct"] = ~(rng.random(n) < np.where(high & (site == None), 0.7, 0.05))  # noqa: E711
    finder = fit(table, n_bins=4)
    top = finder.slices_[0]
    assert top.predicates["site"] == "nan"
    label = top.predicates["x"]
    assert label.startswith("[") and label.endswith("]")  # the last (closed) quantile bin
    lo = float(label[1:-1].split(",")[0])
    np.testing.assert_allclose(lo, np.quantile(x, 0.75), rtol=1e-3)
    member = finder.transform(table)[:, 0]
    np.testing.assert_array_equal(member, (x >= np.quantile(x, 0.75)) & (site == None))  # noqa: E711
    assert member.sum() == top.size


# ----------------------------------------------------------------------------- constraints and statistics


def test_min_support_is_respected() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    table = pd.DataFrame({"A": rng.integers(0, 3, n), "B": rng.integers(0, 3, n),
                          "rare": np.where(np.arange(n) < 20, "yes", "no")})
    table["correct"] = ~np.where(table.rare == "yes", True, rng.random(n) < 0.1)  # 20 rows, all wrong
    for min_support in (50, 0.02):
        finder = fit(table, min_support=min_support, top_k=50)
        assert finder.min_support_ == (50 if min_support == 50 else 60)
        assert all(s.size >= finder.min_support_ for s in finder.slices_)
        assert (finder.candidates_["size"] >= finder.min_support_).all()
        assert {"rare": "yes"} not in [s.predicates for s in finder.slices_]
    # the same slice is the top one once the support allows it: the filter above did the work
    assert fit(table, min_support=10).slices_[0].predicates == {"rare": "yes"}
    assert SliceFinder(progress=False).fit(table).min_support_ == 30  # default: 1%, at least 30


def test_counts_p_values_and_intervals_are_right() -> None:
    table = make_table(1, 3000, {"A": 3, "B": 3, "C": 2}, {"A": 1, "B": 2})
    finder = fit(table, top_k=6, group_overlap=1.0)
    errors = ~table["correct"].to_numpy()
    members = finder.transform(table)
    assert members.shape == (len(table), len(finder.slices_))
    for j, s in enumerate(finder.slices_):
        mask = slice_mask(table, s.predicates)
        np.testing.assert_array_equal(members[:, j], mask)
        assert s.size == mask.sum() and s.errors == errors[mask].sum()
        assert s.error_rate == pytest.approx(errors[mask].mean())
        table_2x2 = [[s.errors, s.size - s.errors],
                     [errors[~mask].sum(), (~mask).sum() - errors[~mask].sum()]]
        assert s.p_value == pytest.approx(sst.fisher_exact(table_2x2, alternative="greater").pvalue, rel=1e-6)
        low, high = wilson_interval(np.array([s.errors]), np.array([s.size]))
        assert (s.ci_low, s.ci_high) == pytest.approx((low[0], high[0]))
        assert s.ci_low <= s.error_rate <= s.ci_high
    # pandas groupby agrees with the level-1 and level-2 candidate counts
    cand = finder.candidates_.set_index("slice")
    for (a, b), group in table.groupby(["A", "B"]):
        key = f"A={a} AND B={b}"
        if key in cand.index:
            assert cand.loc[key, "size"] == len(group)
            assert cand.loc[key, "errors"] == (~group["correct"]).sum()


def test_q_values_are_benjamini_hochberg_over_the_whole_family() -> None:
    table = make_table(2, 3000, {"A": 3, "B": 3, "C": 4, "D": 2}, {"A": 1, "B": 2})
    finder = fit(table, top_k=5)
    cand = finder.candidates_
    assert len(cand) > len(finder.slices_)
    p, q = cand["p_value"].to_numpy(), cand["q_value"].to_numpy()
    assert (q >= p - 1e-15).all()
    order = np.argsort(p, kind="stable")
    assert (np.diff(q[order]) >= -1e-15).all()  # q is a non-decreasing function of p
    # independent BH over a family of n_tests_ hypotheses, the unevaluated ones at p = 1
    m = finder.n_tests_
    assert m >= len(cand)
    ranked = np.sort(p) * m / np.arange(1, p.size + 1)
    expected = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    np.testing.assert_allclose(np.sort(q), expected, rtol=1e-12)
    for s in finder.slices_:
        row = cand[cand["slice"] == str(s)].iloc[0]
        assert s.q_value == row["q_value"] and s.p_value == row["p_value"]
        assert s.significant == (s.q_value <= finder.fdr)


def test_family_size_bounds_the_number_of_supported_slices() -> None:
    table = make_table(4, 500, {"A": 3, "B": 4, "C": 2, "D": 3})
    finder = fit(table, min_support=20)
    cols = ["A", "B", "C", "D"]
    supported = 0
    for level in (1, 2, 3):
        for attrs in itertools.combinations(cols, level):
            supported += int((table.groupby(list(attrs)).size() >= 20).sum())
    assert supported <= finder.n_tests_ <= 3 * supported


def test_grouping_keeps_one_of_near_duplicates() -> None:
    rng = np.random.default_rng(5)
    n = 4000
    table = pd.DataFrame({"A": rng.integers(0, 3, n), "C": rng.integers(0, 4, n)})
    a1 = table.A.to_numpy() == 1
    # B is nearly constant ("x"), so "A=1" and "A=1 AND B=x" are the same finding
    table["B"] = np.where(rng.random(n) < 0.97, "x", rng.choice(["y", "z"], n))
    table["correct"] = ~(rng.random(n) < np.where(a1, 0.4, 0.05))
    pair = [{"A": "1"}, {"A": "1", "B": "x"}]
    for overlap in ("jaccard", "containment"):
        finder = fit(table, group_overlap=0.5, overlap=overlap)
        reported = [s.predicates for s in finder.slices_]
        assert sum(p in reported for p in pair) == 1, overlap
        rep = finder.slices_[[p in pair for p in reported].index(True)]
        assert [p for p in pair if p != rep.predicates][0] in rep.related
    ungrouped = [s.predicates for s in fit(table, group_overlap=1.0, nested=False).slices_]
    assert all(p in ungrouped for p in pair)
    # without grouping, the nested test alone keeps the simpler one: "B=x" adds nothing to "A=1"
    nested = [s.predicates for s in fit(table, group_overlap=1.0).slices_]
    assert pair[0] in nested and pair[1] not in nested


def test_families_are_never_mixed_and_the_search_stays_exact() -> None:
    """A recorded attribute that shifts a pixel measurement (a frame raising sharpness) makes a
    mixed slice that only describes the artefact; with families it is never formed, and what is
    searched is still searched exactly (brute force over the compatible slices)."""
    rng = np.random.default_rng(11)
    n = 3000
    cause = rng.random(n) < 0.2                      # the real cause, recorded as metadata
    frame = rng.random(n) < 0.5                      # harmless, recorded
    # an automatic measurement that the cause lowers and the frame raises
    sharp = np.where(cause, 0, 2) + frame + (rng.random(n) < 0.3)
    table = pd.DataFrame({"cause": np.where(cause, "yes", "no"), "frame": np.where(frame, "yes", "no"),
                          "auto:sharp": sharp.astype(str), "label": rng.integers(0, 3, n).astype(str)})
    table["correct"] = ~(rng.random(n) < np.where(cause, 0.6, 0.08))
    families = {"cause": "metadata", "frame": "metadata", "auto:sharp": "automatic"}
    cols = ["cause", "frame", "auto:sharp", "label"]
    finder = SliceFinder(min_support=30, top_k=10, group_overlap=1.0, nested=False, progress=False)
    finder.fit(table, cols, families=families)
    mixed = lambda p: len({families[a] for a in p if a in families}) > 1  # noqa: E731
    assert finder.slices_ and not any(mixed(s.predicates) for s in finder.slices_)
    assert not any(" AND " in d and "auto:" in d and ("cause=" in d or "frame=" in d)
                   for d in finder.candidates_["slice"])
    errors = ~table["correct"].to_numpy()
    expected = [t for t in brute_force(table, cols, errors, 3, 30, 0.95) if not mixed(t[2])][:10]
    assert [s.predicates for s in finder.slices_] == [p for _, _, p in expected]
    assert any("AND label=" in d for d in finder.candidates_["slice"])  # label combines with both
    # without families the mixed slices are searched (so the constraint is what keeps them out)
    free = SliceFinder(min_support=30, top_k=10, group_overlap=1.0, nested=False, progress=False).fit(table, cols)
    assert any(" AND " in d and "auto:" in d and "frame=" in d for d in free.candidates_["slice"])
    with pytest.raises(ParameterError, match="families"):
        SliceFinder(progress=False).fit(table, cols, families={"nope": "metadata"})


def test_no_errors_all_errors_and_empty_tables_give_no_slices() -> None:
    table = make_table(0, 500, {"A": 3, "B": 2})
    table["correct"] = True
    finder = fit(table)
    assert finder.slices_ == [] and finder.candidates_.empty and finder.n_errors_ == 0
    assert find_slices(table, progress=False) == []
    table["correct"] = False
    assert fit(table).slices_ == []  # every slice is as bad as the whole: no positive score
    assert fit(table.iloc[:0]).slices_ == []


def test_harmless_random_attributes_are_not_significant() -> None:
    any_null = 0
    discoveries = false = found = 0
    for seed in range(8):
        null = make_table(seed, 3000, {f"r{j}": 4 for j in range(5)}, base=0.2)
        any_null += bool((fit(null, min_support=30).candidates_["q_value"] <= 0.05).any())
        planted = make_table(50 + seed, 3000, {"A": 3, "r0": 4, "r1": 4, "r2": 4}, {"A": 1},
                             base=0.15, planted_error=0.3)
        cand = fit(planted, min_support=30).candidates_
        significant = cand[cand["q_value"] <= 0.05]
        discoveries += len(significant)
        found += int((significant["slice"] == "A=1").any())
        # the nested test: "A=1 AND r0=2" is no discovery, random predicates add nothing to A=1
        false += int((significant["slice"] != "A=1").sum())
    assert any_null <= 1  # under the global null FDR = FWER = 5%
    assert found == 8 and false <= 1, (found, false, discoveries)


# ----------------------------------------------------------------------------- API


def test_to_dict_is_json_and_has_the_contract_keys() -> None:
    s = fit(make_table(0, 2000, {"A": 3, "B": 3}, {"A": 1, "B": 2})).slices_[0]
    d = s.to_dict()
    assert list(d)[:7] == ["predicates", "size", "error_rate", "ci_low", "ci_high", "p_value", "q_value"]
    assert json.loads(json.dumps(d)) == d
    assert str(s) == "A=1 AND B=2" and s.level == 2 and isinstance(s, Slice)


def test_default_columns_skip_bookkeeping_columns() -> None:
    table = make_table(0, 300, {"label": 2, "prediction": 2, "site": 3})
    table["id"] = [f"x{i}" for i in range(len(table))]
    table["confidence"] = 0.9
    table["prob_0"] = 0.1
    table["sparse_correct"] = True
    assert fit(table).columns_ == ["label", "prediction", "site"]
    errors = ~table["correct"].to_numpy()
    by_array = SliceFinder(progress=False).fit(table.drop(columns="correct"), ["site"], errors=errors)
    table["wrong"] = errors
    by_name = SliceFinder(progress=False).fit(table, ["site"], errors="wrong")
    assert [s.to_dict() for s in by_array.slices_] == [s.to_dict() for s in by_name.slices_]


@pytest.mark.parametrize("params, name", [
    ({"alpha": 1.5}, "alpha"), ({"alpha": 0}, "alpha"), ({"min_support": 0}, "min_support"),
    ({"min_support": 1.5}, "min_support"), ({"max_predicates": 0}, "max_predicates"),
    ({"top_k": 0}, "top_k"), ({"fdr": 1.0}, "fdr"), ({"group_overlap": 2}, "group_overlap"),
    ({"overlap": "dice"}, "overlap"), ({"n_bins": 1}, "n_bins"),
])
def test_bad_parameters_are_named(params: dict, name: str) -> None:
    table = make_table(0, 100, {"A": 2})
    with pytest.raises(ParameterError, match=f"'{name}' parameter of SliceFinder") as info:
        SliceFinder(**params).fit(table)
    assert info.value.parameter == name and isinstance(info.value, ValueError)


def test_bad_tables_are_named() -> None:
    table = make_table(0, 100, {"A": 2})
    with pytest.raises(DataError, match="'nope'"):
        SliceFinder().fit(table, ["nope"])
    with pytest.raises(DataError, match="'correct'"):
        SliceFinder().fit(table.drop(columns="correct"), ["A"])
    with pytest.raises(DataError, match="row 0 holds 2"):
        SliceFinder().fit(table, ["A"], errors=np.full(100, 2))
    with pytest.raises(DataError, match="100 rows"):
        SliceFinder().fit(table, ["A"], errors=np.zeros(5, dtype=bool))
    with pytest.raises(ParameterError, match="error column 'correct'"):
        SliceFinder().fit(table, ["A", "correct"])


def test_clone_and_determinism() -> None:
    table = make_table(7, 2000, {"A": 3, "B": 3, "C": 3}, {"A": 0, "C": 1})
    finder = SliceFinder(top_k=4, alpha=0.9, progress=False)
    twin = clone(finder)
    assert twin.get_params() == finder.get_params()
    a, b = finder.fit(table), twin.fit(table)
    assert [s.to_dict() for s in a.slices_] == [s.to_dict() for s in b.slices_]
    pd.testing.assert_frame_equal(a.candidates_, b.candidates_)
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.transform(table), a.transform(table))


# ----------------------------------------------------------------------------- internals with fallbacks


def test_row_index_hash_fallback_agrees_with_packed_keys() -> None:
    rng = np.random.default_rng(0)
    ref = np.unique(rng.integers(0, 50, (300, 3)), axis=0)
    query = np.vstack([ref[::3], rng.integers(0, 50, (200, 3))])
    packed = lattice._RowIndex(ref, 50)
    hashed = lattice._RowIndex(ref, 2 ** 40)
    assert packed.packed and not hashed.packed
    np.testing.assert_array_equal(packed.lookup(query), hashed.lookup(query))
    hit = packed.lookup(query)
    assert (ref[hit[hit >= 0]] == query[hit >= 0]).all()
    assert (hit[: len(ref[::3])] >= 0).all()


def test_wide_attribute_sets_fallback_agrees_with_contingency_tables() -> None:
    table = make_table(3, 800, {"A": 3, "B": 4, "C": 3})
    enc = encoding._encode_table(table, ["A", "B", "C"], n_bins=4)
    errors = ~table["correct"].to_numpy()
    search = lattice._LatticeSearch(enc, encoding._one_hot(enc).tocsc(), errors, alpha=0.95,
                                       min_support=1, max_predicates=3, pool=10, progress=False)
    search.run()
    cand = np.array([[enc.offsets[0] + 1, enc.offsets[1] + 2, enc.offsets[2] + 0],
                     [enc.offsets[0] + 2, enc.offsets[1] + 0, enc.offsets[2] + 2]])
    keep = search.compact_of_value[cand].min(axis=1) >= 0
    cand = cand[keep]
    size, err = search._evaluate(cand, 3)
    wide = search._evaluate_wide((0, 1, 2), search.compact_of_value[cand])
    np.testing.assert_array_equal(size, wide[0])
    np.testing.assert_array_equal(err, wide[1])
    for row, s in zip(cand, size):
        mask = np.ones(len(table), dtype=bool)
        for v, col in zip(row, ["A", "B", "C"]):
            a = ["A", "B", "C"].index(col)
            mask &= table[col].astype(str).to_numpy() == enc.labels[a][v - enc.offsets[a]]
        assert mask.sum() == s


@pytest.mark.parametrize("seed", range(5))
def test_harmless_predicates_riding_on_the_cause_give_way_to_the_cause(seed: int) -> None:
    """Issue 13: ``inverted=yes AND scanner=s1`` must not outrank ``inverted=yes`` itself."""
    rng = np.random.default_rng(seed)
    n = 4000
    inverted = rng.random(n) < 0.15
    table = pd.DataFrame({"inverted": np.where(inverted, "yes", "no"),
                          "scanner": rng.choice(["s1", "s2"], n), "frame": rng.choice(["thin", "none"], n)})
    wrong = np.where(inverted, rng.random(n) < 0.7, rng.random(n) < 0.15)
    table["correct"] = ~wrong
    reported = [s.predicates for s in fit(table, max_predicates=2, min_support=20, top_k=5).slices_]
    assert reported[0] == {"inverted": "yes"}, reported
    harmless = [p for p in reported if "scanner" in p or "frame" in p]
    assert harmless == [], reported
    # the refinements are still there, shown under their parent
    top = fit(table, max_predicates=2, min_support=20, top_k=5).slices_[0]
    assert {"inverted": "yes", "scanner": "s1"} in top.related or {"inverted": "yes", "scanner": "s2"} in top.related


def test_a_refinement_that_is_worse_than_its_parent_is_kept() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    table = pd.DataFrame({"source": rng.choice(["A", "B", "C", "D"], n), "light": rng.choice(["low", "high"], n)})
    both = (table["source"] == "D") & (table["light"] == "low")
    wrong = np.where(both, rng.random(n) < 0.8, np.where(table["source"] == "D", rng.random(n) < 0.3,
                                                         rng.random(n) < 0.1))
    table["correct"] = ~wrong
    reported = [s.predicates for s in fit(table, max_predicates=2, min_support=20, top_k=5).slices_]
    assert {"source": "D", "light": "low"} in reported[:2], reported


def test_feature_slices_search_the_features_the_errors_differ_on():
    """With many used features the feature slice search looks at the few whose activation differs
    most between the errors and the rest; the planted one is among them and leads."""
    from types import SimpleNamespace

    from sparsecheck.analysis.slices import analyse_errors

    rng = np.random.default_rng(0)
    n, d = 3000, 120
    X = rng.normal(size=(n, d))
    y = rng.integers(0, 3, n)
    wrong = rng.random(n) < np.where(X[:, 37] > 1.0, 0.6, 0.05)
    table = pd.DataFrame({"id": np.arange(n).astype(str), "label": y, "prediction": np.where(wrong, (y + 1) % 3, y),
                          "correct": ~wrong, "site": rng.choice(["a", "b"], n)})
    W = np.zeros((3, d))
    W[np.arange(d) % 3, np.arange(d)] = 1.0  # every feature used by one class
    layer = SimpleNamespace(weight_=W, classes_=np.arange(3), used_features=lambda: np.arange(d))
    found = analyse_errors(table, ["site"], features=X, layer=layer, class_names=["a", "b", "c"],
                           feature_slice_features=5)
    assert found.search["feature_slice_features"] == 5 and found.search["used_features"] == d
    assert "feat_37" in found.feature_slices[0].predicates
    assert {k for s in found.feature_slices for k in s.predicates if k.startswith("feat_")} <= {
        f"feat_{j}" for j in np.argsort(-np.abs(X[wrong].mean(0) - X[~wrong].mean(0)) / X.std(0))[:5]}


# ----------------------------------------------------------------------------- families, significance, who leads


def _families_table(seed: int = 0, n: int = 900, n_auto: int = 60) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """A metadata attribute with a moderate failing value (15% of rows, errors 24% vs 12%), a harmless
    one, and many random automatic attributes of several values each."""
    rng = np.random.default_rng(seed)
    lighting = rng.random(n) < 0.15
    table = pd.DataFrame({"lighting": np.where(lighting, "dark", "normal"),
                          "scanner": rng.choice(["s1", "s2", "s3"], n)})
    for j in range(n_auto):
        table[f"auto:p{j}"] = rng.choice(["low", "mid", "high"], n)
    table["correct"] = ~(rng.random(n) < np.where(lighting, 0.26, 0.12))
    cols = [c for c in table.columns if c != "correct"]
    return table, cols, {c: ("automatic" if c.startswith("auto:") else "metadata") for c in cols}


def test_each_family_is_its_own_multiple_testing_family() -> None:
    table, cols, families = _families_table()
    apart = SliceFinder(max_predicates=2, min_support=20, progress=False).fit(table, cols, families=families)
    mixed = SliceFinder(max_predicates=2, min_support=20, progress=False).fit(table, cols)
    dark_apart = apart.candidates_[apart.candidates_["slice"] == "lighting=dark"].iloc[0]
    dark_mixed = mixed.candidates_[mixed.candidates_["slice"] == "lighting=dark"].iloc[0]
    assert dark_apart.p_value == pytest.approx(dark_mixed.p_value)
    # thousands of automatic candidates no longer drown the user's attribute
    assert dark_apart.q_value <= 0.05 < dark_mixed.q_value and dark_apart.family == "metadata"
    assert [s.predicates for s in apart.slices_][:1] == [{"lighting": "dark"}]
    assert {s.family for s in apart.slices_} <= {"metadata", "automatic", "label"}


def test_only_significant_slices_are_reported_and_refinements_under_them() -> None:
    table, cols, families = _families_table(seed=1)
    finder = SliceFinder(max_predicates=2, min_support=20, progress=False).fit(table, cols, families=families)
    assert finder.slices_ and all(s.significant and s.q_value <= 0.05 for s in finder.slices_)
    everything = SliceFinder(max_predicates=2, min_support=20, progress=False,
                             significant_only=False).fit(table, cols, families=families)
    assert any(not s.significant for s in everything.slices_)


def test_a_declared_attribute_names_the_rows_an_automatic_one_also_describes() -> None:
    rng = np.random.default_rng(3)
    n = 1000
    dark = rng.random(n) < 0.2
    table = pd.DataFrame({"lighting": np.where(dark, "dark", "normal"),
                          # the automatic measure of the same images, a little sharper on the errors
                          "auto:brightness": np.where(dark & (rng.random(n) < 0.97), "low", "high")})
    table["correct"] = ~(rng.random(n) < np.where(dark, 0.5, 0.1))
    table.loc[dark & ~table["correct"].to_numpy(), "auto:brightness"] = "low"
    families = {"lighting": "metadata", "auto:brightness": "automatic"}
    lead = SliceFinder(max_predicates=1, min_support=20, progress=False).fit(
        table, ["lighting", "auto:brightness"], families=families, lead=["metadata"])
    top = lead.slices_[0]
    assert top.predicates == {"lighting": "dark"} and {"auto:brightness": "low"} in top.related
    plain = SliceFinder(max_predicates=1, min_support=20, progress=False).fit(
        table, ["lighting", "auto:brightness"], families=families)
    assert plain.slices_[0].predicates == {"auto:brightness": "low"}   # by score alone the automatic one leads
