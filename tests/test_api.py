import importlib

import sparsecheck
from sparsecheck import errors


def test_every_public_name_resolves():
    for name in sparsecheck.__all__:
        assert getattr(sparsecheck, name) is not None, name
    assert set(dir(sparsecheck)) == set(sparsecheck.__all__)


def test_subpackage_all_lists_are_importable():
    for mod in ("sparsecheck.assertions", "sparsecheck.analysis.slices", "sparsecheck.sparse",
                "sparsecheck.errors", "sparsecheck.reports.compare", "sparsecheck.monitor", "sparsecheck.select",
                "sparsecheck.weak_labels"):
        module = importlib.import_module(mod)
        for name in module.__all__:
            assert hasattr(module, name), f"{mod}.{name}"


def test_error_tree():
    for cls in (errors.ConfigError, errors.DataError, errors.ModelError, errors.ParameterError):
        assert issubclass(cls, errors.SparsecheckError) and cls.exit_code == 2  # the user's input
    for cls in (errors.SolverError, errors.TrackingError):
        assert issubclass(cls, errors.SparsecheckError) and cls.exit_code == 3  # could not finish
    assert errors.TrackingError("run not found", user_input=True).exit_code == 2
    assert issubclass(errors.AssertionSpecError, errors.ConfigError)
    assert issubclass(errors.ParameterError, ValueError)
