"""The planted-bug image task: rates as documented, and the automatic attributes see every planted cue.

No model is trained here (``bench/planted_images.py`` does that); this checks the task itself and
that, with the metadata removed, the pixels alone carry each cue as its ground truth says.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsecheck.analysis.auto_attributes import AutoAttributes, image_properties
from sparsecheck.analysis.cues import parse_intervention
from tests.analysis.planted_images import CUE_RATES, make_planted_images


def close(share: float, rate: float, n: int) -> bool:
    """Within 4 binomial standard errors (and a point)."""
    return abs(share - rate) <= 4 * np.sqrt(rate * (1 - rate) / n) + 0.01


@pytest.fixture(scope="module")
def task():
    return make_planted_images(seed=0, n_train=1500, n_val=100, n_test=1500)


def test_rates_follow_the_plan(task):
    tr, te = task.train, task.test
    for name, (cls, in_tr, out_tr, in_te, out_te) in CUE_RATES.items():
        on_tr = tr.metadata[name].eq("yes").to_numpy()
        on_te = te.metadata[name].eq("yes").to_numpy()
        for mask, rate in ((on_tr[tr.true_y == cls], in_tr), (on_tr[tr.true_y != cls], out_tr),
                           (on_te[te.true_y == cls], in_te), (on_te[te.true_y != cls], out_te)):
            assert close(mask.mean(), rate, mask.size), (name, mask.mean(), rate)
    assert abs(tr.metadata.background.eq("light").mean() - 0.02) < 0.015
    assert abs(te.metadata.background.eq("light").mean() - 0.15) < 0.03
    c = te.metadata.source.eq("C").to_numpy()
    assert abs((te.y != te.true_y)[c].mean() - 0.4) < 0.1 and (te.y == te.true_y)[~c].all()
    rider = te.metadata.batch_id.eq("night").to_numpy() == te.metadata.background.eq("light").to_numpy()
    assert 0.85 < rider.mean() < 0.95                     # 80% copied + half of the random 20%
    assert set(task.truth["riders"]) == {"batch_id", "site"} and set(task.truth["harmless"]) == {"frame", "scanner"}


def test_same_seed_same_task():
    a = make_planted_images(seed=3, n_train=20, n_val=5, n_test=10)
    b = make_planted_images(seed=3, n_train=20, n_val=5, n_test=10)
    assert (a.test.x == b.test.x).all() and a.test.metadata.equals(b.test.metadata)


def test_without_metadata_the_pixels_carry_every_cue(task):
    """The automatic attribute named in the ground truth marks the cue's images (and few others)."""
    auto = AutoAttributes(random_state=0).fit(image_properties(task.train.x, task.train.original_sizes))
    table = auto.transform(image_properties(task.test.x, task.test.original_sizes))
    meta = task.test.metadata
    light = meta.background.eq("light").to_numpy()
    for name, cue in task.truth["cues"].items():
        column, value = cue["auto"]
        marked = table[column].eq(value).to_numpy()
        on = meta[name].eq("yes").to_numpy()
        visible = on & ~light if name == "corner" else on          # a white square on a white ground is invisible
        assert marked[visible].mean() > 0.95, (name, marked[visible].mean())
        assert marked[~on & ~light].mean() < 0.05, (name, marked[~on & ~light].mean())
    assert table["auto:inverted"].eq("yes").to_numpy()[light].mean() > 0.95
    assert table["auto:inverted"].eq("yes").to_numpy()[~light].mean() < 0.02


def test_intervention_specs_reproduce_the_planted_cues(task):
    """Putting the cue on with the ground truth's spec gives the pixels the planted images have."""
    meta = task.test.metadata
    for name, cue in task.truth["cues"].items():
        put, remove = parse_intervention(cue["intervention"])
        rows = np.flatnonzero(meta[name].eq("no") & meta.background.eq("dark") & meta.frame.eq("no")
                              & meta.tint.eq("no"))[:20]
        with_cue = put.apply(task.test.x[rows])
        assert (with_cue != task.test.x[rows]).any()
        if name != "tint":                          # a patch on a black corner: the counter-value removes it
            assert np.abs(remove.apply(with_cue).astype(int) - task.test.x[rows]).max() <= 60
