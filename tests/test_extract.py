"""Extract once, run many: ``sparsecheck extract`` fills the feature cache (or writes feature
directories), a run starts from it without calling the model, precomputed features stand in for
images, and ``torchrun`` shards the extraction across ranks.

The README's extract recipe (its ```bash lines that start with ``sparsecheck extract``,
``sparsecheck run config.yaml`` or ``torchrun``) is run here verbatim, in a small project.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from sparsecheck.cli import main
from sparsecheck.config import load_config
from sparsecheck.data.precomputed import META_FILE, is_features, load_features, write_features
from sparsecheck.errors import DataError
from sparsecheck.pipeline.stages import load_inputs
from sparsecheck.features.extraction import cache_path, extract_features
from tests.conftest import require
from tests.helpers import FORWARD_CALLS, make_counting_net, make_learned_net, write_metadata, write_npz

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def readme_extract_commands() -> list[str]:
    """The README's extract recipe: its ```bash lines for ``extract``, the ``run`` after it and ``torchrun``."""
    from tests.test_readme import README_SERVER, doc_text  # the registry workflow's lines: test_registry_workflow

    blocks = re.findall(r"```bash\n(.*?)```", doc_text(), flags=re.S)
    lines = [ln.strip() for b in blocks for ln in b.splitlines()]

    return [ln for ln in lines if ln.startswith(("sparsecheck extract ", "sparsecheck run config.yaml", "torchrun "))
            and README_SERVER not in ln]


#: the README lines this module runs, verbatim (tests/test_readme.py checks they are all there are)
RUNS_README_LINES = ("sparsecheck extract config.yaml", "sparsecheck extract config.yaml --out features",
                     "sparsecheck run config.yaml --out sparsecheck-out",
                     "torchrun --standalone --nproc_per_node 2 -m sparsecheck extract config.yaml")


def _readme(prefix: str) -> list[str]:
    found = [ln for ln in readme_extract_commands() if ln.startswith(prefix)]
    assert found, f"the README has no ```bash line starting with {prefix!r}"
    return found


def _cli(*argv: str) -> tuple[int, str]:
    """Run the CLI in this process; return its exit code and what it logged (stderr is captured by pytest)."""
    root = logging.getLogger("sparsecheck")
    saved = (root.handlers[:], root.level, root.propagate)
    try:
        with pytest.raises(SystemExit) as exc:
            main(list(argv))
    finally:  # the CLI binds a handler to this test's captured stderr: do not leak it
        root.handlers[:], root.level, root.propagate = saved
    return int(exc.value.code or 0)


def write_extract_project(root: Path, *, n: int = 30) -> Path:
    """config.yaml for the README's recipe: a counting TinyNet factory with weights that learned the
    splits' labels (brightness levels: the implied better-than-chance passes), three .npz splits, metadata."""
    root.mkdir(parents=True, exist_ok=True)
    ids = []
    for i, split in enumerate(["train", "val", "test"]):
        ids.extend(write_npz(root / f"{split}.npz", n, seed=i, prefix=f"{split}-", learnable=True))
    write_metadata(root / "metadata.csv", ids)
    torch.save(make_learned_net().state_dict(), root / "weights.pt")
    cfg = {"model": {"factory": "tests.helpers:make_counting_net", "weights": "weights.pt", "input": {"scale": 255.0}},
           "data": {"train": "train.npz", "val": "val.npz", "test": "test.npz", "metadata": "metadata.csv"},
           "features": {"batch_size": 8, "cache_dir": "cache"},
           "sparse": {"n_lambdas": 15, "features_per_class": 4},
           "analysis": {"explain": False},
           "mlflow": {"enabled": False}}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    return root / "config.yaml"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The README's recipe in a fresh project: extract into the cache, run, extract --out, run on the features."""
    root = tmp_path_factory.mktemp("extract-recipe")
    write_extract_project(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        calls: dict[str, int] = {}
        codes: dict[str, int] = {}
        for line in _readme("sparsecheck extract config.yaml") + _readme("sparsecheck run config.yaml"):
            before = FORWARD_CALLS["examples"]
            codes[line] = _cli(*shlex.split(line)[1:], "--device", "cpu")
            calls[line] = FORWARD_CALLS["examples"] - before
        # the same config with every split replaced by the feature directories, and no model
        raw = yaml.safe_load((root / "config.yaml").read_text())
        out = next(Path(shlex.split(ln)[-1]) for ln in codes if "--out" in ln and ln.startswith("sparsecheck extract"))
        raw.pop("model")
        raw["data"].update({s: str(out / s) for s in ("train", "val", "test")})
        (root / "features.yaml").write_text(yaml.safe_dump(raw))
        codes["features run"] = _cli("run", "features.yaml", "--out", "from-features", "--device", "cpu")
    finally:
        os.chdir(cwd)
    return {"root": root, "codes": codes, "calls": calls,
            "images": json.loads((root / "sparsecheck-out" / "results.json").read_text()),
            "features": json.loads((root / "from-features" / "results.json").read_text())}


def test_readme_extract_then_run_starts_from_the_cache_without_calling_the_model(recipe):
    root = recipe["root"]
    (extract,) = [ln for ln in recipe["codes"] if ln == "sparsecheck extract config.yaml"]
    (run,) = [ln for ln in recipe["codes"] if ln.startswith("sparsecheck run config.yaml")]
    assert recipe["codes"][extract] == 0 and recipe["codes"][run] == 0
    assert recipe["calls"][extract] == 90  # every example of the three splits, once
    assert recipe["calls"][run] == 0  # the run did not call the model at all
    features = recipe["images"]["features"]
    assert {s: f["from_cache"] for s, f in features.items()} == {"train": True, "val": True, "test": True}
    entries = sorted(p for p in (root / "cache").iterdir())
    assert len(entries) == 3 and all((p / META_FILE).is_file() for p in entries)
    assert not [p for p in (root / "cache").iterdir() if p.name.startswith(".")]  # no leftovers


def test_feature_directories_run_without_a_model_and_find_the_same_layer(recipe):
    assert recipe["codes"]["features run"] == 0
    images, feats = recipe["images"], recipe["features"]
    # the same features, so the same sparse layer and the same dense baseline (the stored logits)
    assert feats["sparse_layer"]["features_per_class"] == images["sparse_layer"]["features_per_class"]
    assert feats["dense"] == images["dense"]
    assert feats["model"]["kind"] == "precomputed features"
    assert feats["model"]["fingerprint"] == images["model"]["fingerprint"]  # from meta.json
    assert feats["model"]["feature_layer"] == images["model"]["feature_layer"] == "head:input"
    assert all(f["precomputed"] for f in feats["features"].values())
    assert feats["accuracy_by_attribute"] == images["accuracy_by_attribute"]  # data.metadata still joins on id
    skipped = {s["what"]: s["reason"] for s in feats["skipped"]}
    for step in ("automatic image attributes", "top-example thumbnails", "interventions"):
        assert "precomputed features" in skipped[step] and "no images" in skipped[step]
    assert not any("precomputed" in s["reason"] for s in images.get("skipped", []))
    report = (recipe["root"] / "from-features" / "report.html").read_text()
    assert "precomputed features" in report and "head:input" in report


def test_a_model_that_did_not_compute_the_features_is_refused(recipe, tmp_path, capsys):
    root = recipe["root"]
    raw = yaml.safe_load((root / "features.yaml").read_text())
    torch.save(make_counting_net(seed=1).state_dict(), tmp_path / "other.pt")
    raw["model"] = {"factory": "tests.helpers:make_counting_net", "weights": str(tmp_path / "other.pt")}
    raw["data"].update({s: str(root / raw["data"][s]) for s in ("train", "val", "test")})
    raw["data"]["metadata"] = str(root / "metadata.csv")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    code = _cli("run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out"), "--device", "cpu")
    err = capsys.readouterr().err
    assert code == 2
    line = next(ln for ln in err.splitlines() if ln.startswith("sparsecheck: error:"))
    assert "model: the model's fingerprint" in line and "meta.json" in line
    # the model that did compute them is accepted (its fingerprint matches)
    raw["model"]["weights"] = str(root / "weights.pt")
    raw["analysis"] = {"explain": False, "auto_attributes": False, "interventions": False}
    cfg = load_config(_dump(tmp_path / "d.yaml", raw))
    assert load_inputs(cfg).model is not None


def _dump(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


# --------------------------------------------------------------------------- bad feature files
def _features_project(root: Path, n: int = 24, d: int = 5) -> dict:
    rng = np.random.default_rng(0)
    for i, split in enumerate(("train", "test")):
        write_features(root / split, rng.normal(size=(n, d)), rng.integers(0, 3, n),
                       ids=[f"{split}{j}" for j in range(n)], logits=rng.normal(size=(n, 3)), meta={"layer": "fc:input"})
    return {"data": {"train": "train", "test": "test"}, "mlflow": {"enabled": False}}


@pytest.mark.parametrize("mutate, needle", [
    (lambda r: np.savez(r / "t.npz", features=np.zeros((24, 7), np.float32), y=np.zeros(24, int)),
     "feature widths differ between splits: data.train"),
    (lambda r: np.savez(r / "t.npz", features=np.zeros((24, 5), np.float32), y=np.zeros(24, int),
                        id=np.array(["a", "b", "a", *map(str, range(21))])), "t.npz: 1 duplicated ids"),
    (lambda r: np.savez(r / "t.npz", features=np.zeros((24, 5), np.float32), y=np.full(24, 7),
                        logits=np.zeros((24, 3), np.float32)), "label 7 is out of range for 'logits' (24, 3)"),
    (lambda r: np.savez(r / "t.npz", features=np.zeros((24, 5), np.float32), y=np.zeros(23, int)),
     "'y' has shape (23,) but 'features' has shape (24, 5)"),
    (lambda r: np.savez(r / "t.npz", features=np.zeros((24, 5), np.float32), y=np.zeros(24, int),
                        logits=np.zeros((24, 4), np.float32)), "logits widths differ between splits"),
    (lambda r: np.savez(r / "t.npz", features=np.zeros((24, 5), np.float32), x=np.zeros((24, 8, 8), np.uint8)),
     "has both 'x' (images) and 'features'"),
    (lambda r: (r / "test" / META_FILE).rename(r / "t.npz"), "test: features directory without meta.json"),
])
def test_bad_feature_files_exit_2_naming_file_and_shape(tmp_path, capsys, mutate, needle):
    raw = _features_project(tmp_path)
    mutate(tmp_path)
    if (tmp_path / "test" / META_FILE).exists():
        raw["data"]["test"] = "t.npz"
    code = _cli("run", str(_dump(tmp_path / "c.yaml", raw)), "--out", str(tmp_path / "out"), "--device", "cpu")
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("sparsecheck: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0]
    assert not (tmp_path / "out" / "results.json").exists()


def test_labels_beyond_the_class_names_and_images_without_a_model(tmp_path, capsys):
    raw = _features_project(tmp_path)
    raw["data"]["class_names"] = ["a", "b"]
    code = _cli("run", str(_dump(tmp_path / "c.yaml", raw)), "--device", "cpu")
    assert code == 2 and "data.class_names: 2 names but labels go up to 2 (in " in capsys.readouterr().err
    write_npz(tmp_path / "images.npz", 10)
    raw["data"].update(test="images.npz", class_names=None)
    code = _cli("run", str(_dump(tmp_path / "c.yaml", raw)), "--device", "cpu")
    err = capsys.readouterr().err
    assert code == 2 and "model: required key is missing: data.test (images.npz) holds images" in err


def test_npz_and_parquet_features_without_logits(tmp_path):
    """Logits are optional: the dense baseline is then a linear head refitted on train; a Parquet
    file's extra columns are metadata, as in an image manifest."""
    from sparsecheck.pipeline import run_pipeline

    rng = np.random.default_rng(1)
    n, d = 120, 6
    y = rng.integers(0, 3, n)
    centres = rng.normal(size=(3, d)) * 3
    feats = (centres[y] + rng.normal(size=(n, d))).astype(np.float32)
    np.savez(tmp_path / "train.npz", features=feats, y=y)
    (tmp_path / "train.meta.json").write_text(json.dumps({"layer": "penultimate", "class_names": ["x", "y", "z"]}))
    yt = rng.integers(0, 3, n)
    table = pd.DataFrame({"id": [f"t{i}" for i in range(n)], "y": yt,
                          "features": list((centres[yt] + rng.normal(size=(n, d))).astype(np.float32)),
                          "site": rng.choice(["north", "south"], n)})
    table.to_parquet(tmp_path / "test.parquet")
    assert is_features(tmp_path / "train.npz") and is_features(tmp_path / "test.parquet")
    cfg = load_config(_dump(tmp_path / "c.yaml", {"data": {"train": "train.npz", "test": "test.parquet"},
                                                 "sparse": {"n_lambdas": 10}, "mlflow": {"enabled": False}}))
    ctx = run_pipeline(cfg, tmp_path / "out", device="cpu")
    r = ctx.results
    assert r["dense_head"]["kind"] == "refit" and set(r["dense_head"]["splits"]) == {"train", "test"}
    assert r["dense"]["test_accuracy"] > 0.8  # well-separated classes: the refitted head finds them
    assert ctx.class_names == ["x", "y", "z"] and r["model"]["feature_layer"] == "penultimate"
    assert {row["attribute"] for row in r["accuracy_by_attribute"]} == {"site"}
    assert (tmp_path / "out" / "report.html").is_file() and r["status"] == "pass"


def test_extract_refuses_a_config_without_a_cache_or_out(tmp_path, capsys):
    config = write_extract_project(tmp_path, n=8)
    raw = yaml.safe_load(config.read_text())
    raw["features"]["cache_dir"] = None
    code = _cli("extract", str(_dump(config, raw)), "--device", "cpu")
    err = capsys.readouterr().err
    assert code == 2 and "features.cache_dir: is null, and extract fills the feature cache" in err


def test_only_extract_runs_under_torchrun(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    code = _cli("run", str(write_extract_project(tmp_path, n=8)), "--device", "cpu")
    err = capsys.readouterr().err
    assert code == 2 and "[rank 0/2] environment: `sparsecheck run` runs in one process" in err


# --------------------------------------------------------------------------- torchrun
def _torchrun_env() -> tuple[dict[str, str], str | None]:
    # on CPU (gloo), as one process extracts here, even on a machine with a GPU
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env, shutil.which("torchrun", path=env["PATH"])


def test_readme_torchrun_extraction_equals_one_process(tmp_path):
    """The README's single-node command: two ranks on CPU (gloo) shard every split; the cache entries
    they write hold what one process extracts, ids and labels in the dataset's order."""
    env, torchrun = _torchrun_env()
    require(torchrun is not None, "torchrun (installed with torch)")
    config = write_extract_project(tmp_path)
    (line,) = _readme("torchrun ")
    done = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "shared across 2 ranks" in done.stdout
    assert re.search(r"\[rank 0/2\] extracted head:input features of train", done.stderr), done.stderr[-2000:]
    cfg = load_config(config)
    inputs = load_inputs(cfg)
    for split, ds in inputs.datasets.items():
        one = extract_features(inputs.model, ds, inputs.input_spec, batch_size=8, device="cpu")
        entry = cache_path(cfg.features.cache_dir, inputs.model, ds, inputs.input_spec)
        stored = load_features(entry)
        assert stored.meta["world_size"] == 2 and stored.meta["layer"] == "head:input"
        np.testing.assert_allclose(stored.features, one.features, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stored.logits, one.logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(stored.ids, ds.ids)
        np.testing.assert_array_equal(stored.labels, ds.labels)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


@pytest.mark.slow  # a second torchrun job (about 20 s on 2 shared cores)
def test_a_failing_rank_fails_the_job_with_its_reason(tmp_path):
    """A file only rank 1 reads cannot be decoded: the job exits non-zero, rank 0 prints one line naming
    rank 1 and the file, and nothing in the cache looks complete."""
    from PIL import Image

    env, torchrun = _torchrun_env()
    require(torchrun is not None, "torchrun (installed with torch)")
    config = write_extract_project(tmp_path, n=8)
    rng = np.random.default_rng(0)
    for i in range(16):
        folder = tmp_path / "imgs" / f"c{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    last = sorted((tmp_path / "imgs" / "c1").iterdir())[-1]  # the last row: rank 1's shard
    data = last.read_bytes()
    last.write_bytes(data[:data.index(b"IDAT") + 8])  # the header survives, the pixels do not
    raw = yaml.safe_load(config.read_text())
    raw["data"]["train"] = "imgs"
    _dump(config, raw)
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "sparsecheck", "extract",
                           "config.yaml", "--device", "cpu"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("sparsecheck: error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    assert "[rank 0/2] rank 1 failed while extracting" in errors[0] and last.name in errors[0]
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.rglob(META_FILE)) and not any(cache.iterdir())


def test_precomputed_features_round_trip_and_refuse_an_interrupted_directory(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    write_features(tmp_path / "f", x, np.arange(5) % 2, ids=list("abcde"), logits=rng.normal(size=(5, 2)),
                   meta={"layer": "fc:input", "model_fingerprint": "abc"})
    f = load_features(tmp_path / "f")
    assert isinstance(f.features, np.memmap) and np.array_equal(np.asarray(f.features), x)
    assert f.ids.tolist() == list("abcde") and f.model_fingerprint == "abc" and f.logits.shape == (5, 2)
    with pytest.raises(DataError, match="exists; pass overwrite=True"):
        write_features(tmp_path / "f", x, None)
    (tmp_path / "f" / META_FILE).unlink()  # what an interrupted write leaves
    assert is_features(tmp_path / "f")
    with pytest.raises(DataError, match="without meta.json: an interrupted write"):
        load_features(tmp_path / "f")
