"""The scaling benchmarks run: a tiny point of ``bench/scaling.py`` (every stage after extraction
on memory-mapped synthetic features) and ``bench/imagenet_path.py`` scaled down to the CPU.
The quick sweep that the README quotes runs under ``-m slow``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["dense", "sparse", "associations", "slices", "spurious", "assertions", "explain", "outputs"]


def bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_scaling_bench_runs_every_stage_on_planted_features(tmp_path):
    out = tmp_path / "records.json"
    proc = bench("bench/scaling.py", "--point", "6", "48", "10000", "--n-lambdas", "12", "--reference", "none",
                 "--threads", "1", "--json", str(out))
    (record,) = json.loads(out.read_text())
    assert list(record["stages"]) == STAGES
    assert all(s["seconds"] >= 0 and s["peak_rss_mb"] > 0 for s in record["stages"].values())
    assert record["stages"]["outputs"]["files_kb"] > 0 and 0 < record["results_mb"] < 1 and 0 < record["report_mb"] < 1
    assert 0 < record["feature_attributes_mb"] < 1 and "feature_attributes.parquet" in proc.stdout
    assert record["feature_matrix_mb"] == pytest.approx(10000 * 48 * 4 / 2 ** 20)
    # the planted structure is found: a few features per class; the noisy source, the dark images and
    # the weak class that leans on the shortcut are the top slices
    assert 3 <= record["sparse"]["features_per_class"] <= 10 and record["sparse"]["val_accuracy"] > 0.6
    top = {tuple(s.items()) for s in record["top_slices"][:3]}
    assert top == {(("source", "crowd"),), (("lighting", "dark"),), (("label", "class0000"),)}
    assert "total s" in proc.stdout and "peak MB" in proc.stdout  # the table


def test_imagenet_path_bench_runs_scaled_down_on_the_cpu():
    proc = bench("bench/imagenet_path.py", "--scale", "0.003", "--device", "cpu", "--threads", "1",
                 "--n-lambdas", "10")
    assert "fista path (fp32 features)" in proc.stdout and "glm_saga, one epoch" in proc.stdout
    assert "no verdict" in proc.stdout


@pytest.mark.slow
def test_the_quick_scaling_sweep_finishes():
    proc = bench("bench/scaling.py", "--quick", "--reference", "none", timeout=900)
    assert proc.stdout.count("\n") > 10 and "failed" not in proc.stdout


def test_pair_working_set_bench_compares_both_working_sets_on_the_same_path():
    proc = bench("bench/pair_working_set.py", "--point", "40", "1700", "2000", "--lambdas", "8", "--threads", "1")
    lines = proc.stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(("features", "(class"))}
    assert set(rows) == {"features", "(class,"}
    nnz = {k: int(v[-3]) for k, v in rows.items()}
    assert nnz["features"] > 0 and abs(nnz["features"] - nnz["(class,"]) <= 2  # the same layers
    gap = float(lines[-1].rsplit(" ", 1)[1])
    assert gap < 1e-4, lines[-1]


def test_sst2_bench_runs_on_a_slice_of_the_real_sst2(tmp_path):
    """``bench/sst2.py`` on 1,000 of SST-2's training phrases (read from ../shared/data, as the full run
    reads them): a model trained and saved, the pipeline run on it, the figures printed and written."""
    from tests.conftest import require

    data = ROOT.parent / "shared" / "data" / "text" / "sst2"
    require((data / "train.tsv").is_file(), f"SST-2 in {data}")
    out = tmp_path / "figures.json"
    proc = bench("bench/sst2.py", "--data", str(data), "--out", str(tmp_path / "run"), "--limit", "1000", "--epochs",
                 "2", "--lr", "3e-3", "--batch-size", "32", "--vocab", "800", "--hidden", "32", "--top", "2",
                 "--device", "cpu", "--json", str(out))
    record = json.loads(out.read_text())
    assert record["train"] == 1000 and record["dev"] == 6735 and record["test"] == 872 and record["deep_features"] == 32
    assert 0 < record["dense_accuracy"] <= 1 and 0 < record["sparse_accuracy"] <= 1
    assert set(record["features_per_class"]) == {"negative", "positive"}
    assert record["top_features"] and all(Path(t["card"]).stat().st_size > 10_000 for t in record["top_features"])
    assert "dense (all features)" in proc.stdout and "paper (Wong et al. 2021, SST)" in proc.stdout
    assert (tmp_path / "run" / "model" / "config.json").is_file()  # save_pretrained, read as model.huggingface


def test_sst2_bench_names_missing_data(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "bench/sst2.py", "--data", str(tmp_path), "--out", str(tmp_path / "o")],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and f"SST-2 not found: {tmp_path / 'train.tsv'}" in proc.stderr


def test_heldout_counts_the_forward_passes_of_the_extractor_the_stages_use():
    """``bench/heldout.py --count-forward`` patches the FeatureExtractor the interventions and LIME
    run through; a move of that class must not leave the counter counting nothing."""
    import importlib.util

    import torch

    from sparsecheck.features.taps import FeatureExtractor
    from tests.helpers import make_tiny_net

    spec = importlib.util.spec_from_file_location("heldout_bench", Path(__file__).resolve().parents[1] / "bench" / "heldout.py")
    heldout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(heldout)
    counter = heldout._Counter()
    try:
        counter.stage = "spurious"
        with FeatureExtractor(make_tiny_net(), device="cpu") as extractor:
            extractor(torch.zeros(5, 1, 8, 8))
        assert counter.counts == {"spurious": 5}
    finally:
        counter._cls.__call__ = counter._orig
