import pytest

from sparsecheck.config import Config, load_config, parse_config
from sparsecheck.errors import ConfigError

BASE = {"model": {"path": "m.pt2"}, "data": {"train": "a.npz", "test": "b.npz"}}


def test_defaults_and_relative_paths(tmp_path):
    cfg = parse_config(BASE, base_dir=tmp_path, check_files=False)
    assert cfg.model.path == tmp_path / "m.pt2" and cfg.sparse.tolerance == 0.05
    assert cfg.features.cache_dir == tmp_path / ".sparsecheck-cache"


@pytest.mark.parametrize("patch, message", [
    ({"model": {"path": "m.pt2", "colour": 1}}, "model.colour: unknown key"),
    ({"sparse": {"alpha": 1.5}}, "sparse.alpha: Input should be less than or equal to 1 (got 1.5)"),
    ({"model": {"path": "m.onnx"}}, "model.path must be a .pt2"),
    ({"model": {"path": "m.pt2", "factory": "a:b"}}, "exactly one of"),
    ({"model": {"path": "m.pt2", "input": {"std": [0.0]}}}, "every std must be > 0"),
    ({"data": {"train": "a.npz"}}, "data.test: required key is missing"),
])
def test_errors_name_key_and_value(tmp_path, patch, message):
    raw = {**BASE, **patch}
    with pytest.raises(ConfigError) as err:
        parse_config(raw, base_dir=tmp_path, check_files=False)
    assert message in str(err.value)


@pytest.mark.parametrize("raw, message", [
    # a misspelt section is the unknown key, not the "required key is missing" it causes
    ({"modle": {"path": "m.pt2"}, "data": BASE["data"]}, "modle: unknown key; did you mean 'model'?"),
    ({**BASE, "sparse": {"aplha": 0.5}}, "sparse.aplha: unknown key; did you mean 'alpha'?"),
    ({**BASE, "model": {"path": "m.pt2", "input": {"sclae": 1}}}, "model.input.sclae: unknown key; did you mean 'scale'?"),
    ({**BASE, "analysis": {"lime_sample": 10}}, "analysis.lime_sample: unknown key; did you mean 'lime_samples'?"),
    ({**BASE, "sedd": 1}, "sedd: unknown key; did you mean 'seed'?"),
    ({**BASE, "colour": 1}, "colour: unknown key"),
])
def test_unknown_keys_suggest_the_closest_known_key(tmp_path, raw, message):
    with pytest.raises(ConfigError) as err:
        parse_config(raw, base_dir=tmp_path, check_files=False)
    assert str(err.value) == message or (message.endswith("unknown key") and str(err.value).startswith(message)), err.value
    assert "base_dir" not in str(err.value)


def test_missing_files_are_named_with_the_path_tried(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_config(BASE, base_dir=tmp_path)
    assert str(err.value) == f"model.path: file not found: {tmp_path / 'm.pt2'}"
    assert err.value.key == "model.path" and err.value.value == str(tmp_path / "m.pt2")
    (tmp_path / "m.pt2").write_bytes(b"")
    with pytest.raises(ConfigError, match="data.train: file not found: .*a.npz"):
        parse_config(BASE, base_dir=tmp_path)


def test_flat_params():
    flat = Config.model_validate(BASE).to_flat_dict()
    assert flat["sparse.alpha"] == "0.99" and flat["model.input.scale"] == "255.0"


def test_load_config_file(tmp_path):
    (tmp_path / "c.yaml").write_text("model: {path: m.pt2}\ndata: {train: a.npz, test: b.npz}\n")
    assert load_config(tmp_path / "c.yaml", check_files=False).data.test == tmp_path / "b.npz"


def _config_keys():
    from sparsecheck.analysis.spurious import PARAMETER_CONSTRAINTS as SPURIOUS
    from sparsecheck.sparse.constraints import PARAMETER_CONSTRAINTS as LAYER

    yield from ((LAYER, name, "sparse", name) for name in LAYER)
    yield from ((SPURIOUS, name, "analysis", name if name == "fdr" else f"spurious_{name}") for name in SPURIOUS)


def test_config_limits_are_the_owners_declared_constraints(tmp_path):
    """``sparse.*`` and ``analysis.spurious_*`` in the config read the one declaration their owners
    (SparseDecisionLayer, find_spurious_features) check with: a value the owner refuses at a bound is
    refused by the config too, naming the key, and one it accepts passes."""
    import numbers

    from sparsecheck.config import AnalysisConfig, SparseConfig
    from sparsecheck.constraints import Interval, is_valid

    models = {"sparse": SparseConfig, "analysis": AnalysisConfig}
    checked = 0
    for rules, name, section, key in _config_keys():
        bounds = [c for c in rules[name] if isinstance(c, Interval)]
        if key not in models[section].model_fields or not bounds:
            continue
        b = bounds[0]
        for edge in (b.low, b.high):
            if edge is None:
                continue
            step = 1 if b.kind is numbers.Integral else 0.01
            for value in (edge, edge - step if edge == b.low else edge + step):
                raw = {**BASE, section: {key: value}}
                if is_valid(rules, name, value):
                    parse_config(raw, base_dir=tmp_path, check_files=False)
                else:
                    with pytest.raises(ConfigError, match=f"{section}.{key}"):
                        parse_config(raw, base_dir=tmp_path, check_files=False)
                checked += 1
    assert checked >= 20
