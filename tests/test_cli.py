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


def test_force_into_the_working_directory_leaves_the_users_features_alone(project, capsys, monkeypatch):
    """`run config.yaml --out . --force` beside a user's own features/ folder: refused naming it,
    and the folder, a file beside it and the config stay as they were."""
    tmp, cfg = project
    config = _write(tmp, cfg)
    (tmp / "features").mkdir()
    (tmp / "features" / "train.npy").write_bytes(b"my extracted features")
    monkeypatch.chdir(tmp)
    code, _, err = run_cli(capsys, "run", "config.yaml", "--out", ".", "--force", "--device", "cpu")
    assert code == 2 and "features in . is not sparsecheck's" in _error_line(err)
    assert (tmp / "features" / "train.npy").read_bytes() == b"my extracted features"
    assert config.is_file() and (tmp / "train.npz").is_file()
    # beside outputs that do not collide, --force writes, and a second run replaces only its own outputs
    (tmp / "features").rename(tmp / "my-features")
    for _ in range(2):
        code, _, err = run_cli(capsys, "run", "config.yaml", "--out", ".", "--force", "--device", "cpu")
        assert code == 0, err
    assert (tmp / "my-features" / "train.npy").read_bytes() == b"my extracted features"
    assert (tmp / "results.json").is_file() and (tmp / "metadata.csv").is_file()


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


# ---------------------------------------------------------------- issue 16: the first hour
def _help(*args: str) -> str:
    from typer.testing import CliRunner

    from sparsecheck.cli import app

    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "120"}, terminal_width=120)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", ["demo", "run", "compare", "monitor"])
def test_help_shows_flags_and_counters_without_a_value(command):
    text = _help(command)
    for line in text.splitlines():
        if any(opt in line for opt in ("--force", "--verbose", "--quiet", "--help", "--no-spurious")):
            assert "<bool>" not in line and "<int>" not in line, line
    assert "-v" in text and "--force" in text
    for code in ("0 all error-severity assertions pass", "1 an assertion failed", "2 bad input or usage",
                 "3 the run could not finish"):
        assert code in text, code


def test_top_level_help_has_version_and_exit_codes():
    text = _help()
    assert "--version" in text and "<bool>" not in text
    assert "3 the run could not finish for a reason that is not the user's input" in text


def test_version(capsys):
    from sparsecheck import __version__

    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"sparsecheck {__version__}"


def test_flags_take_no_value_and_counters_repeat(capsys):
    # help and parser agree: --force is a flag, -v a counter (-vv), neither takes a value
    code, _, err = run_cli(capsys, "run", "c.yaml", "--force", "yes")
    assert code == 2 and "unexpected extra argument" in err
    code, _, err = run_cli(capsys, "run", "nope.yaml", "-vv", "--force", "--out", "x")
    assert code == 2 and "nope.yaml" in _error_line(err)  # parsed: it got as far as the config


def test_misspelt_section_and_missing_file_are_named(project, capsys):
    tmp, cfg = project
    cfg["modle"] = cfg.pop("model")
    code, _, err = run_cli(capsys, "run", str(_write(tmp, cfg)), "--out", str(tmp / "out"))
    assert code == 2 and _error_line(err).endswith("modle: unknown key; did you mean 'model'?")
    cfg["model"] = cfg.pop("modle")
    cfg["data"]["test"] = "tset.npz"
    code, _, err = run_cli(capsys, "run", str(_write(tmp, cfg)), "--out", str(tmp / "out"))
    assert code == 2 and _error_line(err).endswith(f"data.test: file not found: {tmp / 'tset.npz'}")
    assert not (tmp / "out").exists()


def test_a_model_file_that_is_not_a_model_gives_one_line(project, capfd):
    tmp, cfg = project
    (tmp / "model.pt2").write_text("not a model")
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(_write(tmp, cfg)), "--out", str(tmp / "out"), "--device", "cpu"])
    out, err = capfd.readouterr()  # file-descriptor level: torch's own log handlers write there
    assert exit_.value.code == 2
    assert err.strip().splitlines() == [_error_line(err)], err
    assert "model.pt2: not a torch.export program" in err


@pytest.mark.parametrize("mutate", [
    lambda t, c: c["data"].update(class_names=["only-one"]),    # fails in the load stage
    lambda t, c: (t / "model.pt2").write_bytes(b"\x00" * 64),   # fails loading the model
])
def test_a_run_that_never_started_leaves_no_out_dir(project, capsys, mutate):
    tmp, cfg = project
    mutate(tmp, cfg)
    out = tmp / "new" / "out"
    code, _, err = run_cli(capsys, "run", str(_write(tmp, cfg)), "--out", str(out), "--device", "cpu")
    assert code == 2, err
    assert not (tmp / "new").exists()
    # a folder that was there before stays, with what it held
    mine = tmp / "mine"
    mine.mkdir()
    code, _, _ = run_cli(capsys, "run", str(_write(tmp, cfg)), "--out", str(mine), "--device", "cpu")
    assert code == 2 and mine.is_dir()
    (tmp / "prev").mkdir()
    (tmp / "prev" / "notes.txt").write_text("kept")
    code, _, _ = run_cli(capsys, "run", str(_write(tmp, cfg)), "--out", str(tmp / "prev"), "--force", "--device", "cpu")
    assert code == 2 and (tmp / "prev" / "notes.txt").read_text() == "kept"


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_are_readable_as_the_umask_says(project, capsys, umask):
    import os

    tmp, cfg = project
    before = os.umask(umask)
    try:
        code, _, err = run_cli(capsys, "run", str(_write(tmp, cfg)), "--out", str(tmp / "out"), "--device", "cpu")
    finally:
        os.umask(before)
    assert code == 0, err
    for name in ("results.json", "report.html", "junit.xml"):
        assert (tmp / "out" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
