"""Better than chance, and the class-order diagnosis: the binomial test against the majority-class
rate, and the best one-to-one renaming of the outputs (exact on small cases, capped for many classes)."""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from sparsecheck.analysis.chance import chance_test, diagnose_class_order


def test_the_test_is_scipys_exact_binomial_against_the_majority_rate():
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=200, p=[0.5, 0.3, 0.2])
    for accuracy in (0.45, 0.55, 0.6, 0.7):
        right = rng.random(200) < accuracy
        pred = np.where(right, labels, (labels + 1) % 3)
        t = chance_test(labels, pred)
        k, rate = int(right.sum()), np.bincount(labels).max() / 200
        assert t.n_correct == k and t.chance_rate == rate and t.majority_class == 0
        assert np.isclose(t.p_value, binomtest(k, 200, rate, alternative="greater").pvalue)
        assert t.passed == (t.p_value < 0.01)
        # min_accuracy is the boundary: one right answer fewer would not pass
        need = round(t.min_accuracy * 200)
        assert binomtest(need, 200, rate, alternative="greater").pvalue < 0.01
        assert binomtest(need - 1, 200, rate, alternative="greater").pvalue >= 0.01


def test_nothing_can_beat_chance_with_one_class_or_too_few_examples():
    one = chance_test(np.zeros(50, int), np.zeros(50, int))
    assert one.accuracy == 1.0 and one.chance_rate == 1.0 and not one.passed and one.min_accuracy is None
    few = chance_test(np.array([0, 1, 0, 1]), np.array([0, 1, 0, 1]))  # p = 0.5^4 = 0.0625
    assert not few.passed and few.min_accuracy is None
    assert not chance_test(np.array([], int), np.array([], int)).passed


def test_a_permuted_head_is_diagnosed_with_the_order_that_matches():
    names = ["cat", "dog", "wolf", "fox"]
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 400)
    perm = np.array([2, 0, 3, 1])  # label k comes out as output perm[k]
    pred = np.where(rng.random(400) < 0.8, perm[labels], rng.integers(0, 4, 400))
    d = diagnose_class_order(labels, pred, names)
    assert d is not None and d.accuracy < 0.2 and d.matched_accuracy > 0.75
    assert [d.order[perm[k]] for k in range(4)] == names  # output perm[k] is named names[k]
    assert d.moved == 4 and "a matching order would be [dog, fox, cat, wolf]" in d.sentence()
    relabelled = np.array([d.order.index(names[y]) for y in labels])  # the labels under the suggested names
    assert np.mean(relabelled == pred) == d.matched_accuracy


def test_no_diagnosis_for_a_weak_model_or_one_already_in_order():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5, 500)
    names = list("abcde")
    assert diagnose_class_order(labels, rng.integers(0, 5, 500), names) is None  # at chance, no order explains it
    assert diagnose_class_order(labels, labels, names) is None  # already right
    weak = np.where(rng.random(500) < 0.45, labels, rng.integers(0, 5, 500))  # bad but above chance, in order
    assert diagnose_class_order(labels, weak, names) is None


def test_two_swapped_classes_move_only_those_two_and_many_classes_are_capped():
    labels = np.repeat(np.arange(3), 50)
    pred = np.array([1, 0, 2])[labels]  # cat and dog swapped, wolf right: accuracy 1/3
    d = diagnose_class_order(labels, pred, ["cat", "dog", "wolf"])
    assert d.order == ["dog", "cat", "wolf"] and d.moved == 2 and d.matched_accuracy == 1.0
    # 50 classes shifted by one: the sentence lists 20 names and counts the rest; the dict has them all
    names = [f"class{k:02d}" for k in range(50)]
    labels = np.repeat(np.arange(50), 4)
    d = diagnose_class_order(labels, (labels + 1) % 50, names, names_set=False)
    assert d.order == names[-1:] + names[:-1] and len(d.to_dict()["order"]) == 50
    assert "class49, class00, class01" in d.sentence() and "... (30 more)]" in d.sentence()
    assert "data.class_names (it is not set, so the classes are numbered in the sorted order" in d.sentence()


def test_outputs_beyond_the_classes_count_as_wrong():
    labels = np.repeat(np.arange(3), 40)
    pred = np.array([1, 2, 0])[labels]
    pred[:30] = 7  # a head with more outputs than classes
    d = diagnose_class_order(labels, pred, ["a", "b", "c"])
    assert d is not None and d.matched_accuracy == 90 / 120 and d.order == ["c", "a", "b"]
