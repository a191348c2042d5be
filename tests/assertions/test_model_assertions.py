"""Kang et al. model assertions: consistency, flicker, invariance (real exported models), custom
per-example severities; each on passing and failing inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from sparsecheck.assertions import Assertion, AssertionContext, run_assertions
from sparsecheck.data import ImageDataset, InputSpec
from sparsecheck.models import load_model


def run1(a, data, **kw):
    return run_assertions([a], data, **kw)[0]


# --------------------------------------------------------------------------- consistency
def test_consistency_flags_the_minority_of_a_group():
    t = pd.DataFrame({"id": [f"x{i}" for i in range(9)],
                      "prediction": [1, 1, 1, 2, 0, 0, 3, 3, 3],
                      "patient": ["p1", "p1", "p1", "p1", "p2", "p2", None, None, "p3"]})
    r = run1(Assertion.consistency(key="patient"), t)
    assert r.status == "fail" and r.n_failing == 4  # every member of p1 (the group disagrees)
    ex = r.failing_examples.set_index("id")
    assert ex.loc["x3", "severity"] == pytest.approx(0.75) and ex.loc["x0", "severity"] == pytest.approx(0.25)
    assert r.failing_examples["id"].iloc[0] == "x3"  # the odd one out ranks first
    assert r.details["n_inconsistent_groups"] == 1 and r.details["n_groups"] == 3
    assert run1(Assertion.consistency(key="patient", severity_threshold=0.5), t).n_failing == 1
    assert run1(Assertion.consistency(key="patient", max_failing_rate=0.5), t).status == "pass"
    t.loc[3, "prediction"] = 1
    assert run1(Assertion.consistency(key="patient"), t).status == "pass"
    assert run1(Assertion.consistency(key="scanner"), t).status == "error"


# --------------------------------------------------------------------------- flicker
def test_flicker_within_a_window_and_not_across_sequences():
    t = pd.DataFrame({
        "id": [f"f{i}" for i in range(12)],
        "track": ["a"] * 6 + ["b"] * 6,
        "frame": [0, 1, 2, 3, 4, 5, 0, 1, 2, 10, 11, 12],
        "prediction": [4, 4, 7, 7, 4, 4,  # a: 7 7 flickers inside 4s (frames 1 -> 4)
                       2, 2, 5, 5, 2, 2],  # b: 5 5 spans frames 1 -> 11: too long to be a flicker
    }).sample(frac=1.0, random_state=0)  # order must not matter
    r = run1(Assertion.flicker(sequence="track", time="frame", window=3), t)
    assert r.status == "fail" and sorted(r.failing_examples["id"]) == ["f2", "f3"]
    assert set(r.failing_examples["around"]) == {4}
    assert run1(Assertion.flicker(sequence="track", time="frame", window=2), t).status == "pass"
    wide = run1(Assertion.flicker(sequence="track", time="frame", window=10), t)
    assert sorted(wide.failing_examples["id"]) == ["f2", "f3", "f8", "f9"]
    # a change that stays is not a flicker; neither is a flip at the end of a track
    steady = pd.DataFrame({"id": list("abcde"), "track": ["t"] * 5, "frame": range(5), "prediction": [1, 1, 2, 2, 2]})
    assert run1(Assertion.flicker(sequence="track", time="frame", window=5), steady).status == "pass"


def test_flicker_with_datetimes_and_probabilities():
    t = pd.DataFrame({"id": list("abcd"), "cam": ["c"] * 4,
                      "ts": pd.to_datetime(["2024-01-01 00:00:00", "2024-01-01 00:00:01",
                                            "2024-01-01 00:00:02", "2024-01-01 00:00:03"]),
                      "prediction": [0, 1, 0, 0], "prob_0": [0.9, 0.3, 0.8, 0.9], "prob_1": [0.1, 0.7, 0.2, 0.1]})
    r = run1(Assertion.flicker(sequence="cam", time="ts", window="3s"), t)
    assert r.failing_examples["id"].tolist() == ["b"]
    assert r.failing_examples["severity"].iloc[0] == pytest.approx(0.7)  # 1 - p(surrounding class)
    assert run1(Assertion.flicker(sequence="cam", time="ts", window="1s"), t).status == "pass"
    assert run1(Assertion.flicker(sequence="cam", time="id", window=3), t).status == "error"


# --------------------------------------------------------------------------- invariance
class RowMeans(nn.Module):
    """Sees only the mean of each row: exactly invariant to horizontal flips."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(1, 3)))


class LeftHalf(nn.Module):
    """Sees only the left half of the image: flips change its mind."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x[:, 0, :, :4].flatten(1))


def exported(net: nn.Module, tmp_path, name: str):
    torch.manual_seed(0)
    for p in net.parameters():
        nn.init.normal_(p, 0, 1.0)
    ep = torch.export.export(net.eval(), (torch.zeros(2, 1, 8, 8),),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.export.save(ep, str(tmp_path / f"{name}.pt2"))
    return load_model(path=tmp_path / f"{name}.pt2")  # the real loading path: a graph module


def context_for(model, n: int = 300, seed: int = 0) -> AssertionContext:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 8, 8), dtype=np.uint8)
    ds = ImageDataset.from_arrays(images, rng.integers(0, 3, n), name="t")
    spec = InputSpec(scale=255.0, mean=(0.5,), std=(0.5,))
    with torch.inference_mode():
        prob = torch.softmax(model.module(spec.transform(ds.images)), dim=1).numpy()
    table = pd.DataFrame({"id": ds.ids, "prediction": prob.argmax(1), "confidence": prob.max(1),
                          **{f"prob_{k}": prob[:, k] for k in range(3)}})
    return AssertionContext(table, model=model, dataset=ds, input_spec=spec, device="cpu")


def test_hflip_invariance_passes_for_an_invariant_model_and_fails_otherwise(tmp_path):
    inv = run1(Assertion.invariance(transform="hflip", batch_size=64), context_for(exported(RowMeans(), tmp_path, "rm")))
    assert inv.status == "pass" and inv.observed == 0 and inv.details["n_checked"] == 300
    left = context_for(exported(LeftHalf(), tmp_path, "lh"))
    r = run1(Assertion.invariance(transform="hflip", batch_size=64), left)
    assert r.status == "fail" and r.n_failing > 30
    ex = r.failing_examples
    assert (ex["before"] != ex["after"]).all() and ex["severity"].is_monotonic_decreasing
    assert (ex["before"] == left.table.set_index("id").loc[ex["id"], "prediction"].to_numpy()).all()
    assert run1(Assertion.invariance(transform="hflip", max_failing_rate=0.99), left).status == "pass"
    sample = run1(Assertion.invariance(transform="hflip", sample=50, random_state=3), left)
    assert sample.details["n_checked"] == 50 and set(sample.failing_examples["id"]) <= set(ex["id"]) | set(
        r.failing_examples["id"])


def test_noise_and_brightness_grow_with_magnitude(tmp_path):
    data = context_for(exported(LeftHalf(), tmp_path, "lh"))
    small = run1(Assertion.invariance(transform="noise", magnitude=0.001), data)
    big = run1(Assertion.invariance(transform="noise", magnitude=0.5), data)
    assert small.n_failing < big.n_failing and big.status == "fail"
    again = run1(Assertion.invariance(transform="noise", magnitude=0.5), data)
    assert again.failing_examples["id"].tolist() == big.failing_examples["id"].tolist()  # seeded
    assert run1(Assertion.invariance(transform="brightness", magnitude=0.5), data).n_failing > small.n_failing


def test_fgsm_runs_through_the_exported_graph_and_leaves_no_gradients(tmp_path):
    model = exported(LeftHalf(), tmp_path, "lh")
    data = context_for(model)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    weak = run1(Assertion.invariance(transform="fgsm", magnitude=0.002, max_failing_rate=1.0), data)
    strong = run1(Assertion.invariance(transform="fgsm", magnitude=0.2), data)
    assert weak.status == "pass" and strong.status == "fail"
    assert strong.n_failing > weak.n_failing and strong.observed == strong.n_failing
    assert strong.details["mean_probability_drop"] > weak.details["mean_probability_drop"] > 0
    assert all(p.grad is None for p in model.module.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())


def test_invariance_needs_the_model_and_images():
    t = pd.DataFrame({"id": ["a"], "prediction": [0]})
    r = run1(Assertion.invariance(transform="hflip"), t)
    assert r.status == "error" and "the model" in r.message


# --------------------------------------------------------------------------- custom per-example severities
def test_custom_severities_by_id_are_ranked_and_capped():
    t = pd.DataFrame({"id": [f"x{i}" for i in range(50)], "prediction": np.zeros(50, int)})

    def odd_ones(data):
        return pd.Series(np.arange(50) % 2 * np.arange(50), index=data.table["id"].to_numpy()[::-1])

    suite = run_assertions([Assertion.custom(odd_ones, max_failing=10)], t, max_examples=5)
    r = suite[0]
    assert r.status == "fail" and r.n_failing == 25 and len(r.failing_examples) == 5
    assert r.failing_examples["severity"].tolist() == [49, 47, 45, 43, 41]
    assert r.failing_examples["id"].tolist() == ["x0", "x2", "x4", "x6", "x8"]  # the Series was indexed reversed
    assert len(r.to_dict()["failing_examples"]) == 5

    def unknown_ids(data):
        return pd.Series([1.0], index=["nobody"])

    assert run_assertions([Assertion.custom(unknown_ids)], t)[0].status == "error"
