"""What every command of the CLI (:mod:`sparsecheck.cli`) shares: the exit-code table under each
command's help, help that prints no value type for flags, and the options several commands take."""

from __future__ import annotations

from enum import Enum

import typer
from typer.core import TyperCommand, TyperGroup

__all__ = ["EXIT_CODES_HELP", "Device", "FailOn", "VerboseOpt", "QuietOpt", "DeviceOpt", "TrackingOpt", "FailOnOpt",
           "ForceOpt", "TrustPickleOpt", "ModelOpt"]

EXIT_CODES_HELP = """Exit codes:
0 all error-severity assertions pass;
1 an assertion failed, a regression was found or a monitoring alert fired;
2 bad input or usage (the offending key, file or value is named on stderr);
3 the run could not finish for a reason that is not the user's input (an internal error, whose traceback file is named; an unreachable or refusing tracking server)."""


class _FlagHelp:
    """Rich help without a value type for flags and counters.

    Typer 0.29's Rich help panel prints every option's type, so ``--force``, ``-v`` and ``--help``
    read ``--force <bool>`` and ``-v <int>`` though they take no value (its plain help leaves the
    type out). An empty metavar is what that panel prints instead; parsing never uses it.
    """

    def format_help(self, ctx, formatter) -> None:
        for param in self.get_params(ctx):  # type: ignore[attr-defined]
            if (getattr(param, "is_flag", False) or getattr(param, "count", False)) and param.metavar is None:
                param.metavar = ""
        super().format_help(ctx, formatter)  # type: ignore[misc]


class _Command(_FlagHelp, TyperCommand):
    pass


class _Group(_FlagHelp, TyperGroup):
    pass


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class FailOn(str, Enum):
    error = "error"
    warning = "warning"


VerboseOpt = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-v: debug).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Only warnings and errors on stderr.")
DeviceOpt = typer.Option(Device.auto, "--device", help="Where to run the model and solvers.")
TrackingOpt = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: "
                           "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory).")
FailOnOpt = typer.Option(FailOn.error, "--fail-on", help="Lowest assertion severity that fails the run.")
ForceOpt = typer.Option(False, "--force", help="Write into a non-empty --out not created by sparsecheck.")
TrustPickleOpt = typer.Option(False, "--trust-pickle", help="Load a .pt2 or TorchScript model file (or an MLflow pt2 "
                              "model) whose archive holds pickles, which loading runs as code; refused without it. "
                              "Same as model.trust_pickle: true. Only for files you trust.")
ModelOpt = typer.Option(None, "--model", metavar="URI", help="An MLflow model instead of the config's model source: "
                        "models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH or models:/m-ID (mlflow.pytorch "
                        "flavour, loaded from the tracking server: only load models from your own server).")
