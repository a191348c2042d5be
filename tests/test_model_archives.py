"""Hostile model files: a crafted archive is refused before anything in it is unpickled.

Each crafted archive carries a real payload (``os.system("touch MARKER")``): the tests check that
the marker file does not exist after the refusal, and, with ``trust_pickle``, that it does (so the
archive really was hostile and the gate is what kept it out).
"""

from __future__ import annotations

import ast
import fractions
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

import sparsecheck
from sparsecheck.cli import main
from sparsecheck.errors import ModelError
from sparsecheck.model_archives import check_pt2_archive, check_torchscript_archive
from sparsecheck.models import load_model
from tests.helpers import make_tiny_net, write_project


class _Payload:
    """Unpickling it runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _torch_save(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _plain_pt2(path: Path) -> Path:
    ep = torch.export.export(make_tiny_net(), (torch.zeros(2, 1, 8, 8),))
    torch.export.save(ep, str(path))
    return path


def _rewrite(src: Path, dst: Path, change, add: dict[str, bytes] | None = None) -> Path:
    """Copy the zip ``src`` to ``dst``, passing each entry (name below the root folder, bytes) through ``change``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            inner = info.filename.split("/", 1)[1]
            zout.writestr(info, change(inner, zin.read(info)))
        for inner, data in (add or {}).items():
            zout.writestr(f"{root}/{inner}", data)
    return dst


def _pickled_weight(marker: Path):
    def change(name: str, data: bytes) -> bytes:
        if name == "data/weights/model_weights_config.json":
            cfg = json.loads(data)
            cfg["config"]["conv.bias"]["use_pickle"] = True
            return json.dumps(cfg).encode()
        if name == "data/weights/weight_1":  # conv.bias's record
            return _torch_save(_Payload(marker))
        return data
    return change


def _pickled_constant(marker: Path):
    def change(name: str, data: bytes) -> bytes:
        if name == "data/constants/model_constants_config.json":
            return json.dumps({"config": {"lut": {"path_name": "opaque_obj_0", "is_param": False,
                                                  "use_pickle": True, "tensor_meta": None}}}).encode()
        return data
    return change


def _pickled_sample_inputs(obj):
    def change(name: str, data: bytes) -> bytes:
        return _torch_save(obj) if name == "data/sample_inputs/model.pt" else data
    return change


@pytest.fixture
def plain(tmp_path) -> Path:
    return _plain_pt2(tmp_path / "plain.pt2")


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "PAYLOAD-RAN"


def _crafted(kind: str, plain: Path, marker: Path) -> tuple[Path, str]:
    """A hostile variant of ``plain`` and the archive entry its refusal must name."""
    dst = plain.with_name(f"{kind}.pt2")
    if kind == "weight":
        return _rewrite(plain, dst, _pickled_weight(marker)), "data/weights/weight_1"
    if kind == "constant":
        return (_rewrite(plain, dst, _pickled_constant(marker),
                         add={"data/constants/opaque_obj_0": pickle.dumps(_Payload(marker))}),
                "data/constants/opaque_obj_0")
    if kind == "sample_inputs":
        return _rewrite(plain, dst, _pickled_sample_inputs(((_Payload(marker),), {}))), "data/sample_inputs/model.pt"
    if kind == "aoti":
        return (_rewrite(plain, dst, lambda n, d: d, add={"data/aotinductor/model/model.so": b"\x7fELF" + b"\0" * 60}),
                "data/aotinductor/model/model.so")
    raise ValueError(kind)


def test_a_plain_pt2_loads_and_holds_no_pickle(plain, caplog):
    assert check_pt2_archive(plain) == []
    model = load_model(path=plain)
    assert model.kind == "export" and model.module(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    assert "unpickles" not in caplog.text


@pytest.mark.parametrize("kind", ["weight", "constant", "sample_inputs"])
def test_crafted_pt2_is_refused_before_its_payload_runs(kind, plain, marker):
    crafted, entry = _crafted(kind, plain, marker)
    with pytest.raises(ModelError) as err:
        load_model(path=crafted)
    assert f"archive entry {entry}:" in str(err.value) and "--trust-pickle" in str(err.value)
    assert str(crafted) in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["weight", "sample_inputs"])
def test_trust_pickle_loads_it_with_a_warning_and_the_payload_really_runs(kind, plain, marker, caplog):
    """The contrast that proves the crafted files are hostile: the gate is all that stops them."""
    crafted, entry = _crafted(kind, plain, marker)
    caplog.set_level("WARNING", logger="sparsecheck")
    try:
        load_model(path=crafted, trust_pickle=True)
    except ModelError:
        pass  # the payload replaced a weight with os.system's return value: torch may refuse the result
    assert marker.exists()
    assert f"loading it unpickles {entry}" in caplog.text and "arbitrary code" in caplog.text


def test_bundled_aotinductor_code_is_refused(plain, marker):
    crafted, entry = _crafted("aoti", plain, marker)
    with pytest.raises(ModelError, match=f"archive entry {entry}: AOTInductor-compiled code"):
        check_pt2_archive(crafted)


def test_a_broken_model_whose_loading_logs_a_malformed_torch_warning_exits_2(plain):
    """torch logs "... of type %s after initial failure: %s" with one argument when sample inputs need
    the full unpickler; that record must not turn the user's broken file into an internal error."""
    crafted = _rewrite(plain, plain.with_name("fraction.pt2"), _pickled_sample_inputs(fractions.Fraction(1, 2)))
    with pytest.raises(ModelError, match="not a torch.export program"):
        load_model(path=crafted, trust_pickle=True)  # unpickled in full: a Fraction, not the inputs tuple


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return exit_.value.code, capsys.readouterr().err


def test_the_cli_exits_2_naming_the_entry_and_runs_with_trust_pickle(tmp_path, capsys, marker):
    raw = write_project(tmp_path)
    _rewrite(tmp_path / "model.pt2", tmp_path / "hostile.pt2", _pickled_sample_inputs(((_Payload(marker),), {})))
    raw["model"]["path"] = "hostile.pt2"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    code, err = _cli(capsys, "run", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "out"), "--device", "cpu")
    assert code == 2, err
    assert "archive entry data/sample_inputs/model.pt" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "out").exists()
    code, err = _cli(capsys, "extract", str(tmp_path / "config.yaml"), "--device", "cpu")
    assert code == 2 and "archive entry data/sample_inputs/model.pt" in err and not marker.exists()


def _torchscript(path: Path, extra: dict[str, bytes]) -> Path:
    torch.jit.script(make_tiny_net()).save(str(path), _extra_files=extra)
    return path


def test_torchscript_with_a_pickled_extra_file_is_refused(tmp_path, marker):
    plain = _torchscript(tmp_path / "plain.pt", {"meta.json": b'{"classes": 3}'})
    assert check_torchscript_archive(plain) == []
    assert load_model(path=plain).kind == "torchscript"
    hostile = _torchscript(tmp_path / "hostile.pt", {"meta.pkl": pickle.dumps(_Payload(marker))})
    with pytest.raises(ModelError, match="archive entry extra/meta.pkl: an extra file that is a pickle"):
        load_model(path=hostile)
    saved = _torchscript(tmp_path / "saved.pt", {"state.pt": _torch_save({"x": torch.zeros(1)})})
    with pytest.raises(ModelError, match="archive entry extra/state.pt"):
        load_model(path=saved)
    assert load_model(path=hostile, trust_pickle=True).kind == "torchscript"
    assert not marker.exists()  # TorchScript never reads the extra files itself


# --------------------------------------------------------------------------- no unpickling call in the package
#: call name -> (keyword, value) that makes it safe
_SAFE_KEYWORD = {"torch.load": ("weights_only", True), "np.load": ("allow_pickle", False),
                 "numpy.load": ("allow_pickle", False)}
#: calls that unpickle whatever they are given
_ALWAYS_UNSAFE = {"pickle.load", "pickle.loads", "cPickle.load", "cPickle.loads", "joblib.load", "cloudpickle.load",
                  "cloudpickle.loads", "pd.read_pickle", "pandas.read_pickle", "dill.load", "dill.loads",
                  "torch.jit.load", "torch.export.load", "shelve.open", "marshal.loads", "_pickle.loads",
                  "torch._C._pickle_load_obj", "pickle.Unpickler"}
#: where a torch.export / TorchScript load is allowed: after sparsecheck.model_archives checked the file
_CHECKED_LOADS = {("models.py", "torch.export.load"), ("models.py", "torch.jit.load")}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _unsafe_calls(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in _SAFE_KEYWORD:
            key, safe = _SAFE_KEYWORD[name]
            if not any(k.arg == key and isinstance(k.value, ast.Constant) and k.value.value is safe
                       for k in node.keywords):
                found.append(f"{filename}:{node.lineno}: {name} without {key}={safe}")
        elif name in _ALWAYS_UNSAFE and (Path(filename).name, name) not in _CHECKED_LOADS:
            found.append(f"{filename}:{node.lineno}: {name}")
        elif name.endswith("read_pickle") or name.split(".")[-1] == "Unpickler":
            found.append(f"{filename}:{node.lineno}: {name}")
    return found


def test_the_scan_finds_what_it_looks_for():
    source = ("import torch, numpy as np, pickle, joblib, pandas as pd\n"
              "torch.load(f)\ntorch.load(f, weights_only=False)\nnp.load(f)\npickle.loads(b)\n"
              "joblib.load(f)\npd.read_pickle(f)\ntorch.load(f, weights_only=True)\nnp.load(f, allow_pickle=False)\n")
    found = _unsafe_calls(source, "x.py")
    assert [f.split(":")[1] for f in found] == ["2", "3", "4", "5", "6", "7"], found


def test_the_package_has_no_unpickling_call():
    root = Path(sparsecheck.__file__).parent
    found = [hit for path in sorted(root.rglob("*.py")) for hit in _unsafe_calls(path.read_text(encoding="utf-8"),
                                                                                  str(path.relative_to(root)))]
    assert not found, "unpickling calls in the package:\n" + "\n".join(found)
