"""The command line as a user meets it: exit codes and one-line errors."""

import json

import numpy as np
import pytest
import yaml

from sparsecheck.cli import main
from tests.helpers import write_project


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def _error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("sparsecheck: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def project(tmp_path):
    cfg = write_project(tmp_path)
    return tmp_path, cfg


def _write(tmp_path, cfg):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_small_project_end_to_end(project, capsys):
    tmp, cfg = project
    code, _, err = run_cli(capsys, "run", str(_write(tmp, cfg)), "--out", str(tmp / "out"), "--device", "cpu")
    assert code == 0, err
    results = json.loads((tmp / "out" / "results.json").read_text())
    assert results["status"] == "pass"
    assert 0.0 <= results["dense"]["test_accuracy"] <= 1.0
    attrs = {(r["attribute"], r["value"]) for r in results["accuracy_by_attribute"]}
    assert ("colour", "red") in attrs and ("site", "c") in attrs
    assert results["model"]["feature_layer"] == "head:input"


@pytest.mark.parametrize("mutate, needle", [
    (lambda t, c: c["model"].update(path="missing.pt2"), "model.path: file not found"),
    (lambda t, c: c["sparse"].update(alpah=0.5) if "sparse" in c else c.update(sparse={"alpah": 0.5}),
     "sparse.alpah: unknown key"),
    (lambda t, c: c["features"].update(batch_size="many"), "features.batch_size"),
    (lambda t, c: c["model"].update(feature_layer="layer9"), "feature_layer 'layer9' does not exist"),
    (lambda t, c: np.savez(t / "test.npz", x=np.zeros((30, 8), np.uint8), y=np.zeros(30, int)),
     "'x' must be N×H×W or N×H×W×C"),
    (lambda t, c: (t / "metadata.csv").write_text("id,colour\nimg-0,red\n"),
     "example ids has a metadata row"),
    (lambda t, c: c["data"].update(spurious_attributes=["shoe_size"]), "data.spurious_attributes"),
    (lambda t, c: c.pop("model"), "model: required key is missing"),
])
def test_bad_input_exits_2_with_one_line(project, capsys, mutate, needle):
    tmp, cfg = project
    mutate(tmp, cfg)
    code, _, err = run_cli(capsys, "run", str(_write(tmp, cfg)), "--out", str(tmp / "out"), "--device", "cpu")
    assert code == 2
    assert needle in _error_line(err)
    assert not (tmp / "out" / "results.json").exists()


def test_invalid_yaml_and_missing_config(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("model: [unclosed\n")
    code, _, err = run_cli(capsys, "run", str(tmp_path / "c.yaml"))
    assert code == 2 and "invalid YAML at line" in _error_line(err)
    code, _, err = run_cli(capsys, "run", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml" in _error_line(err)


def test_refuses_to_write_into_a_users_directory(project, capsys):
    tmp, cfg = project
    out = tmp / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    code, _, err = run_cli(capsys, "run", str(_write(tmp, cfg)), "--out", str(out))
    assert code == 2 and "--out" in _error_line(err)
    assert (out / "thesis.tex").read_text() == "precious"
    code, _, err = run_cli(capsys, "run", str(_write(tmp, cfg)), "--out", str(out), "--force", "--device", "cpu")
    assert code == 0 and (out / "thesis.tex").read_text() == "precious"


def test_usage_errors_exit_2(capsys):
    code, _, _ = run_cli(capsys, "run")
    assert code == 2
    code, _, _ = run_cli(capsys, "frobnicate")
    assert code == 2


@pytest.mark.parametrize("kind", ["torchscript", "factory"])
def test_other_model_formats(tmp_path, capsys, kind):
    cfg = write_project(tmp_path, model=kind)
    code, _, err = run_cli(capsys, "run", str(_write(tmp_path, cfg)), "--out", str(tmp_path / "o"), "--device", "cpu")
    assert code == 0, err
    assert json.loads((tmp_path / "o" / "results.json").read_text())["model"]["kind"] == kind
