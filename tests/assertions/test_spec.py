"""Declaring assertions: YAML parsing, errors that name the assertion and key, the implied
better-than-chance and no-spurious-reliance, constructors, the registry and custom functions."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import sparsecheck.assertions as A
from sparsecheck.assertions import (
    DEFAULT_AUTOMATIC, DEFAULT_CHANCE,
    DEFAULT_RELIANCE,
    Assertion,
    parse_assertion,
    parse_assertions,
    register_assertion,
    registered_types,
    run_assertions,
)
from sparsecheck.config import parse_config
from sparsecheck.errors import AssertionSpecError, ConfigError, ParameterError


def spec_error(raw, **kw) -> AssertionSpecError:
    with pytest.raises(AssertionSpecError) as info:
        if isinstance(raw, list):
            parse_assertions(raw, **kw)
        else:
            parse_assertion(raw, **kw)
    return info.value


@pytest.mark.parametrize("raw, key, needle", [
    ({"name": "acc", "type": "accuracy", "min": "not-a-number"}, "min", "valid number"),
    ({"name": "acc", "type": "accuracy", "min": 1.5}, "min", "less than or equal to 1"),
    ({"name": "acc", "type": "acuracy", "min": 0.5}, "type", "did you mean 'accuracy'"),
    ({"name": "acc", "type": "accuracy", "min": 0.5, "minimum": 0.2}, "minimum", "unknown key"),
    ({"name": "acc", "type": "accuracy", "min": 0.5, "severity": "fatal"}, "severity", "'error' or 'warning'"),
    ({"name": "acc", "type": "accuracy", "min": 0.5, "enabled": "yes"}, "enabled", "true or false"),
    ({"name": "acc", "type": "accuracy", "by": ["site"], "max_drop": "lots"}, "max_drop", "valid number"),
    ({"name": "rec", "type": "recall", "class": "wolf", "min": 0.5}, "class", "unknown class 'wolf'"),
    ({"name": "f1", "type": "macro_f1", "min": 0.5, "confidence": 0.95}, None, "no binomial interval"),
    ({"name": "acc", "type": "accuracy"}, None, "give a threshold"),
    ({"name": "acc", "type": "accuracy", "max_drop": 0.1}, None, "give 'by' too"),
    ({"name": "x", "custom": "no_such_pkg_zz.mod:fn"}, "custom", "cannot import"),
    ({"name": "x", "custom": "json:no_such_function"}, "custom", "has no attribute"),
    ({"name": "x", "custom": "not a reference"}, "custom", "package.module:function"),
    ({"name": "x", "type": "accuracy", "custom": "json:dumps"}, "type", "exactly one"),
    ({"name": "sch", "type": "prediction_schema", "checks": [{"column": "confidence", "check": "bigger", "value": 1}]},
     "checks[0].check", "Input should be"),
    ({"name": "sch", "type": "prediction_schema", "checks": [{"column": "confidence", "check": "in_range",
                                                              "value": 3}]}, "checks[0]", "[min, max]"),
    ({"name": "inv", "type": "invariance", "transform": "fgsm"}, None, "magnitude > 0"),
    ({"name": "inv", "type": "invariance", "transform": "rotate", "magnitude": 0.1}, "transform", "Input should be"),
])
def test_malformed_specs_name_the_assertion_and_the_key(raw, key, needle):
    err = spec_error(raw, class_names=["cat", "dog"])
    assert err.assertion == raw["name"]
    assert err.key == key
    assert needle in str(err), str(err)
    assert str(err).startswith(f"assertion {raw['name']!r}")
    assert isinstance(err, ConfigError) and err.exit_code == 2


def test_unnamed_and_duplicate_and_non_mapping_entries():
    assert spec_error([{"type": "accuracy", "min": "x"}]).assertion == "accuracy"
    err = spec_error([{"name": "a", "type": "accuracy", "min": 0.1}, {"name": "a", "type": "ece", "max": 0.1}])
    assert err.key == "name" and "duplicate" in str(err)
    assert spec_error([["accuracy"]]).assertion == "assertions[0]"


def test_a_valid_spec_and_its_round_trip():
    raw = {"name": "slices", "type": "accuracy", "by": ["background", ["site", "scanner"]], "max_drop": 0.1,
           "confidence": 0.95, "severity": "warning", "description": "no slice far below the rest"}
    a = parse_assertion(raw)
    assert (a.name, a.type, a.severity, a.family, a.needs_labels) == ("slices", "accuracy", "warning", "metric", True)
    assert a.scope == "slices by background, site×scanner" and a.threshold == 0.1
    again = parse_assertion(a.to_spec())
    assert again == a and again.to_spec() == a.to_spec()


def test_constructors_are_the_same_as_yaml():
    assert Assertion.accuracy(min=0.8, by=["site"], name="acc") == parse_assertion(
        {"name": "acc", "type": "accuracy", "min": 0.8, "by": ["site"]})
    assert A.recall(class_="dog", min=0.9) == Assertion.of("recall", **{"class": "dog"}, min=0.9)
    assert Assertion.invariance(transform="hflip").needs_labels is False
    assert Assertion.no_reliance(attribute="site").requires == ("sparse_layer", "feature_attributes")
    assert Assertion.sparse_agreement(min=0.9).requires == ("sparse_predictions",)
    assert Assertion.accuracy(min=0.5, head="sparse").requires == ("sparse_predictions",)
    with pytest.raises(AssertionSpecError, match="key 'min'"):
        Assertion.accuracy(min=2.0)


def test_every_builtin_is_registered_with_a_constructor():
    kinds = registered_types()
    for name in ("accuracy", "recall", "precision", "macro_f1", "ece", "better_than_chance", "max_features_per_class",
                 "sparse_accuracy_gap", "sparse_agreement", "no_reliance", "spurious_weight_share",
                 "no_spurious_findings", "prediction_schema", "consistency", "flicker", "invariance"):
        assert name in kinds and callable(getattr(Assertion, name)) and name in A.__all__
    assert {kinds[n].family for n in kinds if not n.startswith("custom")} >= {"metric", "sparse", "table", "model"}


def test_all_is_complete_and_importable():
    for name in A.__all__:
        assert hasattr(A, name), name
    public = {n for n in dir(A) if not n.startswith("_") and n not in ("annotations",)}
    modules = {"spec", "registry", "pool", "results", "context", "builtins", "model_assertions", "tables", "engine"}
    assert public - modules - set(A.__all__) == set()


def test_implied_no_spurious_reliance_can_be_tuned_or_switched_off():
    (a,) = parse_assertions([], spurious_attributes=["background", "site"])
    # the same rule, and so the same count, as the run's spurious findings
    assert (a.name, a.type, a.severity) == (DEFAULT_RELIANCE, "no_spurious_findings", "error")
    assert a.param_dict["attribute"] == ["background", "site"] and a.param_dict["class"] == "*"
    down = parse_assertions([{"name": DEFAULT_RELIANCE, "severity": "warning"}], spurious_attributes=["background"])
    assert [(x.name, x.severity, x.param_dict["attribute"]) for x in down] == [(DEFAULT_RELIANCE, "warning",
                                                                              ["background"])]
    off = parse_assertions([{"name": DEFAULT_RELIANCE, "enabled": False}], spurious_attributes=["background"])
    assert [x.enabled for x in off] == [False]
    assert run_assertions(off, pd.DataFrame({"id": ["a"], "prediction": [0]})).results == []
    assert parse_assertions([], spurious_attributes=[]) == []
    assert parse_assertions([{"name": DEFAULT_RELIANCE, "enabled": False}], spurious_attributes=[]) == []
    err = spec_error([{"name": DEFAULT_RELIANCE, "severity": "warning"}], spurious_attributes=[])
    assert err.key == "attribute"
    bad = spec_error([{"name": DEFAULT_RELIANCE, "fdr": 2}], spurious_attributes=["site"])
    assert (bad.assertion, bad.key) == (DEFAULT_RELIANCE, "fdr")
    # a user's own assertion with that name replaces the default
    own = parse_assertions([{"name": DEFAULT_RELIANCE, "type": "accuracy", "min": 0.5}], spurious_attributes=["site"])
    assert [x.type for x in own] == ["accuracy"]


def test_every_config_implies_better_than_chance_first_and_it_can_be_adjusted():
    own = [{"name": "acc", "type": "accuracy", "min": 0.5}]
    assert [a.name for a in parse_assertions(own)] == ["acc"]  # a bare list: nothing implied
    (guard, acc) = parse_assertions(own, chance_guard=True)
    assert (guard.name, guard.type, guard.severity, guard.enabled, guard.implied) == (
        DEFAULT_CHANCE, "better_than_chance", "error", True, True)
    assert guard.needs_labels and guard.param_dict == {"max_p_value": 0.01, "head": "dense"}
    both = parse_assertions(own, spurious_attributes=["site"], chance_guard=True)
    assert [a.name for a in both] == [DEFAULT_CHANCE, DEFAULT_RELIANCE, "acc"]
    # an entry without a type adjusts it where it stands; with a type it replaces it
    tuned = parse_assertions(own + [{"name": DEFAULT_CHANCE, "severity": "warning", "max_p_value": 0.001}],
                             spurious_attributes=["site"], chance_guard=True)
    assert [(a.name, a.severity, a.implied) for a in tuned] == [
        (DEFAULT_RELIANCE, "error", True), ("acc", "error", False), (DEFAULT_CHANCE, "warning", True)]
    assert tuned[2].param_dict["max_p_value"] == 0.001
    mine = parse_assertions([{"name": DEFAULT_CHANCE, "type": "accuracy", "min": 0.9}], chance_guard=True)
    assert [(a.type, a.implied) for a in mine] == [("accuracy", False)]
    assert spec_error([{"name": DEFAULT_CHANCE, "max_p_value": 2}], chance_guard=True).key == "max_p_value"
    assert spec_error([{"name": DEFAULT_CHANCE}, {"name": DEFAULT_CHANCE, "enabled": False}],
                      chance_guard=True).assertion == DEFAULT_CHANCE
    # a config implies it; switched off, the engine skips it
    raw = {"model": {"path": "m.pt2"}, "data": {"train": "a.npz", "test": "b.npz"},
           "assertions": [{"name": DEFAULT_CHANCE, "enabled": False}]}
    off, automatic = parse_config(raw, base_dir=Path("."), check_files=False).parsed_assertions
    assert off.name == DEFAULT_CHANCE and not off.enabled
    # a config also implies the check of shortcuts found from the pixels, as a warning
    assert (automatic.name, automatic.severity, automatic.implied) == (DEFAULT_AUTOMATIC, "warning", True)
    raw["analysis"] = {"auto_attributes": False}
    assert [a.name for a in parse_config(raw, base_dir=Path("."), check_files=False).parsed_assertions] == \
        [DEFAULT_CHANCE]
    table = pd.DataFrame({"id": ["a", "b"], "label": [0, 1], "prediction": [1, 0]})
    assert run_assertions([off], table).results == []


def test_the_readme_turns_implied_assertions_down_as_it_says():
    from tests.test_readme import doc_text  # the README and the documentation site (docs/config.md)

    readme = doc_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "name: better-than-chance" in b]
    parsed = parse_assertions(yaml.safe_load(block)["assertions"], spurious_attributes=["site"], chance_guard=True)
    assert [(a.name, a.enabled, a.severity) for a in parsed] == [(DEFAULT_CHANCE, False, "error"),
                                                                (DEFAULT_RELIANCE, True, "warning")]


def test_config_rejects_malformed_assertions_at_load(tmp_path):
    raw = {"model": {"path": "m.pt2"}, "data": {"train": "a.npz", "test": "b.npz", "class_names": ["cat", "dog"]},
           "assertions": [{"name": "recall-cat", "type": "recall", "class": "cat", "min": 0.5},
                          {"name": "bad-one", "type": "accuracy", "min": "not-a-number"}]}
    with pytest.raises(AssertionSpecError) as info:
        parse_config(raw, base_dir=tmp_path, check_files=False)  # before any file is looked at
    assert info.value.assertion == "bad-one" and info.value.key == "min"
    raw["assertions"] = raw["assertions"][:1]
    assert parse_config(raw, base_dir=tmp_path, check_files=False).assertions[0]["name"] == "recall-cat"


def test_register_a_type_and_use_it_from_python_and_yaml():
    @register_assertion("test-max-confidence", needs_labels=False, replace=True)
    def max_confidence(data, limit: float = 0.99):
        """Flags over-confident predictions."""
        return np.clip(data.table["confidence"].to_numpy() - limit, 0, None)

    table = pd.DataFrame({"id": ["a", "b", "c"], "prediction": [0, 1, 0], "confidence": [0.995, 0.5, 0.999]})
    r = run_assertions([{"name": "overconfident", "type": "test-max-confidence", "limit": 0.99,
                         "max_failing": 1}], table)[0]
    assert r.status == "fail" and r.failing_examples["id"].tolist() == ["c", "a"] and r.n_failing == 2
    assert r.family == "custom" and not r.needs_labels
    with pytest.raises(ParameterError, match="already registered"):
        register_assertion("test-max-confidence")(lambda data: True)
    with pytest.raises(AssertionSpecError, match="key 'limt'"):
        parse_assertion({"name": "x", "type": "test-max-confidence", "limt": 0.9})


def test_custom_function_from_a_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_checks.py").write_text(textwrap.dedent('''
        import numpy as np

        def uses_two_classes(data):
            return data.table["prediction"].nunique() >= 2

        def low_confidence(data, *, floor):
            return np.clip(floor - data.table["confidence"].to_numpy(), 0, None)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_checks", raising=False)
    specs = [{"name": "two-classes", "custom": "my_checks:uses_two_classes"},
             {"name": "confident", "custom": "my_checks:low_confidence", "floor": 0.6, "severity": "warning",
              "max_failing_rate": 0.3}]
    parsed = parse_assertions(specs)
    assert parsed[0].to_spec()["custom"] == "my_checks:uses_two_classes"
    table = pd.DataFrame({"id": list("abcd"), "prediction": [0, 0, 0, 0], "confidence": [0.9, 0.5, 0.55, 0.95]})
    suite = run_assertions(parsed, table)
    assert [(r.name, r.status) for r in suite] == [("two-classes", "fail"), ("confident", "fail")]
    assert suite["confident"].observed == 0.5 and suite["confident"].failing_examples["id"].tolist() == ["b", "c"]
    with pytest.raises(AssertionSpecError, match="key 'floor'"):
        parse_assertion({"name": "c", "custom": "my_checks:low_confidence"})
    with pytest.raises(AssertionSpecError, match="key 'ceiling'"):
        parse_assertion({"name": "c", "custom": "my_checks:low_confidence", "floor": 1, "ceiling": 2})
    with pytest.raises(AssertionSpecError, match="key 'max_failing_rate'"):
        parse_assertion({"name": "c", "custom": "my_checks:low_confidence", "floor": 1, "max_failing_rate": 3})
