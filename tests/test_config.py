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


def test_the_sparse_sections_limits_are_the_layers_declared_constraints(tmp_path):
    """``sparse.*`` in the config and SparseDecisionLayer's checks read one declaration: a value the
    layer refuses at a bound is refused by the config too, naming the key, and one it accepts passes."""
    import numbers

    from sparsecheck.config import SparseConfig
    from sparsecheck.sparse.constraints import PARAMETER_CONSTRAINTS, Interval, is_valid

    checked = 0
    for name, constraints in PARAMETER_CONSTRAINTS.items():
        bounds = [c for c in constraints if isinstance(c, Interval)]
        if name not in SparseConfig.model_fields or not bounds:
            continue
        b = bounds[0]
        for edge in (b.low, b.high):
            if edge is None:
                continue
            for value in (edge, edge - 1 if edge == b.low else edge + 1, edge - 0.5 if edge == b.low else edge + 0.5):
                if b.kind is numbers.Integral and value != int(value):
                    continue
                raw = {**BASE, "sparse": {name: value}}
                if is_valid(name, value):
                    parse_config(raw, base_dir=tmp_path, check_files=False)
                else:
                    with pytest.raises(ConfigError, match=f"sparse.{name}"):
                        parse_config(raw, base_dir=tmp_path, check_files=False)
                checked += 1
    assert checked >= 14
