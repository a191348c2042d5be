"""Bounded inputs: a hostile or odd config gets exit 2 promptly, and nothing unbounded reaches MLflow."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sparsecheck.cli import main
from sparsecheck.config import Config, load_config
from sparsecheck.yaml_input import MAX_CONFIG_BYTES
from sparsecheck.errors import ConfigError, brief
from sparsecheck.tracking.run_logging import MAX_PARAMS, _tags, params_from_config
from tests.helpers import write_project


def _bomb(levels: int = 9) -> str:
    """A YAML flow list whose aliases expand to 9**levels strings: about 1 KB of text."""
    parts = ['&a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    parts += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


def _cli(capsys, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return exit_.value.code, capsys.readouterr().err


@pytest.fixture
def project(tmp_path) -> tuple[Path, dict]:
    return tmp_path, write_project(tmp_path)


@pytest.mark.parametrize("where", ["class_names", "factory_kwargs", "assertion"])
def test_a_1kb_alias_bomb_is_refused_promptly_with_exit_2(project, capsys, where):
    tmp, raw = project
    text = yaml.safe_dump(raw)
    bomb = _bomb()
    if where == "class_names":
        text = text.replace("data:\n", f"data:\n  class_names: {bomb}\n", 1)
    elif where == "factory_kwargs":
        text = text.replace("model:\n", f"model:\n  factory_kwargs: {{n: {bomb}}}\n", 1)
        text = text.replace("enabled: false", "enabled: true")  # MLflow on: the params would be logged
    else:
        text += f"assertions:\n- {{type: accuracy, min: {bomb}}}\n"
    (tmp / "config.yaml").write_text(text)
    assert len(_bomb().encode()) < 1100
    start = time.monotonic()
    code, err = _cli(capsys, "run", str(tmp / "config.yaml"), "--out", str(tmp / "out"), "--device", "cpu")
    assert code == 2, err
    assert time.monotonic() - start < 10
    assert "config.yaml: refused: its anchors and aliases expand to more than 200,000 values" in err
    assert len(err) < 600 and not (tmp / "out").exists()


def test_a_recursive_alias_and_a_deep_nesting_are_refused(tmp_path):
    (tmp_path / "loop.yaml").write_text("data: &d {train: a.npz, test: b.npz, again: *d}\n")
    with pytest.raises(ConfigError, match="refers to the anchor that holds it"):
        load_config(tmp_path / "loop.yaml", check_files=False)
    (tmp_path / "deep.yaml").write_text("seed: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match="deep.yaml: invalid YAML"):
        load_config(tmp_path / "deep.yaml", check_files=False)


def test_an_ordinary_use_of_anchors_still_loads(tmp_path):
    (tmp_path / "c.yaml").write_text("model: {path: m.pt2, input: &in {scale: 255.0}}\n"
                                     "data: {train: a.npz, test: b.npz, class_names: &names [cat, dog]}\n"
                                     "mlflow: {tags: {team: vision}}\n")
    cfg = load_config(tmp_path / "c.yaml", check_files=False)
    assert cfg.data.class_names == ["cat", "dog"] and cfg.model.input.scale == 255.0


def test_an_oversized_config_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "w") as fh:
        fh.write("seed: 0\n")
        fh.write("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match=r"big.yaml: config file is 4.0 MiB, more than the 4 MiB"):
        load_config(path, check_files=False)


def test_a_latin1_config_exits_2_naming_the_file_and_its_encoding(project, capsys):
    tmp, raw = project
    raw["data"]["class_names"] = ["chat", "chien", "éléphant"]
    (tmp / "config.yaml").write_bytes(yaml.safe_dump(raw, allow_unicode=True).encode("latin-1"))
    code, err = _cli(capsys, "run", str(tmp / "config.yaml"), "--out", str(tmp / "out"))
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert "config.yaml: not UTF-8 text (byte 0xe9 on line" in line and "Latin-1" in line and "save the config as UTF-8" in line


def test_values_in_error_messages_are_cut_short(project, capsys):
    tmp, raw = project
    raw["data"]["class_names"] = ["c" * 100_000, "d", "e"]
    raw["assertions"] = [{"type": "recall", "class": "x" * 100_000, "min": 0.5}]
    (tmp / "config.yaml").write_text(yaml.safe_dump(raw))
    code, err = _cli(capsys, "run", str(tmp / "config.yaml"), "--out", str(tmp / "out"))
    assert code == 2 and "unknown class 'xxxx" in err and len(err) < 1000, err[:2000]
    from sparsecheck.config import parse_config

    with pytest.raises(ConfigError) as exc:
        parse_config({"model": {"path": "m.pt2"}, "data": {"train": "a", "test": "b"},
                      "seed": ["s" * 100_000] * 1000}, check_files=False)
    assert len(str(exc.value)) < 400
    assert len(brief({"k" * 10_000: list(range(10**6))})) <= 160


def test_mlflow_params_and_tags_are_capped_in_count_and_length():
    cfg = Config.model_validate({"model": {"factory": "pkg.mod:make", "factory_kwargs": {
        **{f"k{i}": i for i in range(5000)}, "long": "v" * 100_000}},
        "data": {"train": "a.npz", "test": "b.npz"},
        "mlflow": {"tags": {**{f"t{i}": "x" for i in range(500)}, "big": "y" * 100_000}}})
    params = params_from_config(cfg)
    assert len(params) == MAX_PARAMS and int(params["sparsecheck.params_dropped"]) == len(cfg.to_flat_dict()) - MAX_PARAMS + 1
    assert max(len(v) for v in params.values()) <= 6000 and max(len(k) for k in params) <= 250
    assert params["sparse.alpha"] == "0.99"  # the config's own sections come first and are kept
    tags = _tags({}, "run", cfg.mlflow.tags)
    assert len(tags) <= 2 + 100 and max(len(v) for v in tags.values()) <= 5000


def test_a_huge_factory_kwargs_is_logged_to_a_real_store_in_bounded_form(tmp_path):
    """The params go through MLflow's own client into a SQLite store, in a subprocess that must end."""
    script = f"""
import mlflow
from sparsecheck.config import Config
from sparsecheck.tracking.run_logging import params_from_config
cfg = Config.model_validate({{"model": {{"factory": "p.m:f", "factory_kwargs": {{"x": ["lol" * 50] * 200000}}}},
                             "data": {{"train": "a.npz", "test": "b.npz"}}}})
client = mlflow.MlflowClient("sqlite:///{tmp_path / 'm.db'}")
run = client.create_run(client.create_experiment("e"))
from mlflow.entities import Param
items = [Param(k, v) for k, v in params_from_config(cfg).items()]
for i in range(0, len(items), 100):
    client.log_batch(run.info.run_id, params=items[i:i + 100])
print(len(client.get_run(run.info.run_id).data.params["model.factory_kwargs.x"]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) <= 6000
