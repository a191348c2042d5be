"""The ``sparsecheck`` command line: a thin, typed layer over the library.

Exit codes, for every command (also in ``--help``):

0  all error-severity assertions pass
1  an assertion failed, a regression was found, or a monitoring alert fired
2  bad input or usage (a config key, file or value), named in a one-line reason on stderr
3  the run could not finish for a reason that is not the user's input (an internal error, whose
   traceback is saved to a file that is named; MLflow unreachable or refusing; a solver failure)
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from sparsecheck._version import __version__
from sparsecheck.defaults import DRIFT_ALPHA, DRIFT_PSI_THRESHOLD
from sparsecheck.errors import Interrupted, SparsecheckError
from sparsecheck.cli_options import (
    EXIT_CODES_HELP,
    Device,
    DeviceOpt,
    FailOn,
    FailOnOpt,
    ForceOpt,
    ModelOpt,
    QuietOpt,
    TrackingOpt,
    TrustPickleOpt,
    VerboseOpt,
    _Command,
    _Group,
)
from sparsecheck.logs import setup_logging
from sparsecheck.cli_process import (
    INTERNAL_ERROR,
    _interrupts_raise,
    _rank_prefix,
    _release_out_dir_on_failure,
    _reported_to_rank0,
    _write_traceback,
    interrupt_line,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, cls=_Group,
                  help="Debug PyTorch classifiers through a sparse decision layer.", epilog=EXIT_CODES_HELP)
logger = logging.getLogger("sparsecheck.cli")


def _command(**kwargs):
    """``app.command`` with the flag-aware help and the exit-code table under every command's help."""
    return app.command(cls=_Command, epilog=EXIT_CODES_HELP, **kwargs)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"sparsecheck {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main_options(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Debug PyTorch classifiers through a sparse decision layer."""


def _one_process(command: str) -> None:
    """Refuse to run ``command`` once per rank: under torchrun only ``extract`` shares its work."""
    from sparsecheck.errors import ConfigError
    from sparsecheck.features.distributed import in_torchrun

    if in_torchrun():
        raise ConfigError(f"`sparsecheck {command}` runs in one process; under torchrun every rank would run it "
                          f"whole. Use `torchrun ... -m sparsecheck extract CONFIG` to extract the features, then "
                          f"`sparsecheck {command}` without torchrun", key="environment")


def _finish(ctx, fail_on: FailOn, next_step: str | None = None) -> None:
    from sparsecheck.pipeline import exit_code_for

    results = ctx.run_results
    out = ctx.out_dir
    if results.assertions:
        import shutil

        from sparsecheck.assertions.results import render_table

        typer.echo(render_table(results.assertions, width=max(80, shutil.get_terminal_size((120, 24)).columns)))
    typer.echo(f"status: {results.status}" + (f"  (outputs in {out})" if out else ""), err=True)
    if next_step:
        typer.echo(next_step, err=True)
    raise typer.Exit(exit_code_for(ctx, fail_on.value))


@_command()
def demo(
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default sparsecheck-demo, "
                                       "sparsecheck-text-demo with --text)."),
    tracking_uri: Optional[str] = TrackingOpt,
    device: Device = DeviceOpt,
    seed: int = typer.Option(0, "--seed", help="Seed for the demo data and model."),
    no_spurious: bool = typer.Option(False, "--no-spurious",
                                     help="Train the demo model without the planted shortcut."),
    text: bool = typer.Option(False, "--text", help="The language half: a small BERT trained on the spot on "
                              "SST-2 sentences with a planted token, a mislabelled source and a harmless attribute."),
    fail_on: FailOn = FailOnOpt,
    force: bool = ForceOpt,
    verbose: int = VerboseOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Run the whole pipeline on the embedded demo (digits with planted problems, a small CNN; with
    --text, SST-2 sentences and a small BERT)."""
    setup_logging(verbose, quiet)
    _one_process("demo")
    from sparsecheck.config import load_config
    from sparsecheck.pipeline import prepare_out_dir, run_pipeline

    from sparsecheck.pipeline.run import RUN_OUTPUTS

    out = out if out is not None else Path("sparsecheck-text-demo" if text else "sparsecheck-demo")
    with _release_out_dir_on_failure(out, RUN_OUTPUTS + ("data",), "results.json"):
        out = prepare_out_dir(out, force=force, also=("data",))
        if text:
            from sparsecheck.text.demo import build_text_demo

            config_path = build_text_demo(out / "data", seed=seed, spurious=not no_spurious)
        else:
            from sparsecheck.demo import build_demo

            config_path = build_demo(out / "data", seed=seed, spurious=not no_spurious)
        logger.info("demo config: %s (run it yourself with `sparsecheck run %s`)", config_path, config_path)
        ctx = run_pipeline(load_config(config_path), out, device=device.value, tracking_uri=tracking_uri)
    _finish(ctx, fail_on, _demo_monitor_hint(config_path, tracking_uri, text=text))


def _demo_monitor_hint(config_path: Path, tracking_uri: str | None, *, text: bool = False) -> str:
    """The monitoring commands to try next, against the run the demo just logged."""
    from shlex import quote

    if text:
        from sparsecheck.text.demo import TEXT_DEMO_BATCHES as batch_names

        suffix = "csv"
    else:
        from sparsecheck.demo import DEMO_BATCHES as batch_names

        suffix = "npz"
    uri = f" --tracking-uri {quote(tracking_uri)}" if tracking_uri else ""
    batches = config_path.parent / "batches"
    prefix = "monitor-text-" if text else "monitor-"
    lines = [f"  sparsecheck monitor {quote(str(config_path))} --batch {quote(str(batches / f'{name}.{suffix}'))} "
             f"--out {prefix}{name}{uri}" for name in batch_names]
    return ("monitor new batches against this run (like-test: no alert; drifted: exit 1 on the drift; each writes "
            "monitor.html and monitor.json into its --out):\n" + "\n".join(lines))


@_command()
def run(
    config: Path = typer.Argument(..., metavar="CONFIG.yaml", help="The run's YAML config."),
    out: Path = typer.Option(Path("sparsecheck-out"), "--out", help="Output directory."),
    model: Optional[str] = ModelOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    promote_alias: Optional[str] = typer.Option(
        None, "--promote-alias", metavar="NAME", help="Move this alias (e.g. validated) onto the registered model "
        "version when the gate passes; never on a failure (overrides mlflow.promote_alias)."),
    device: Device = DeviceOpt,
    fail_on: FailOn = FailOnOpt,
    force: bool = ForceOpt,
    trust_pickle: bool = TrustPickleOpt,
    verbose: int = VerboseOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Run the pipeline on a config: the pre-deployment gate (exit 1 when an assertion fails).

    With a registered model (--model models:/NAME@ALIAS or model.uri), the verdict is tagged on
    the model version, and --promote-alias moves an alias onto it when the gate passes.
    """
    setup_logging(verbose, quiet)
    _one_process("run")
    from sparsecheck.config import load_config
    from sparsecheck.pipeline import run_pipeline

    cfg = load_config(config)
    _override_model(cfg, model, trust_pickle)
    if promote_alias is not None:
        _set_promote_alias(cfg, promote_alias)
    from sparsecheck.pipeline.run import RUN_OUTPUTS

    with _release_out_dir_on_failure(out, RUN_OUTPUTS, "results.json"):
        ctx = run_pipeline(cfg, out, device=device.value, tracking_uri=tracking_uri, force=force,
                           fail_on=fail_on.value)
    _finish(ctx, fail_on)


@_command(help="Extract the deep features of every split once, for every later run (shards under torchrun).\n\n"
          "They go into the feature cache that `run` reads, or with --out into feature directories that "
          "data.train|val|test can name. Under torchrun each rank extracts a shard of every split: "
          "`torchrun --standalone --nproc_per_node N -m sparsecheck extract CONFIG.yaml`.")
def extract(
    config: Path = typer.Argument(..., metavar="CONFIG.yaml", help="The run's YAML config."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write portable feature directories DIR/train, "
                                       "DIR/val, DIR/test (usable as data.train|val|test) instead of filling "
                                       "the feature cache."),
    device: Device = DeviceOpt,
    force: bool = ForceOpt,
    trust_pickle: bool = TrustPickleOpt,
    verbose: int = VerboseOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Extract the deep features of every split once (the help text is given to ``_command``)."""
    setup_logging(verbose, quiet)
    from sparsecheck.pipeline.extract import run_extract

    done = run_extract(config, out=out, device=device.value, force=force, trust_pickle=trust_pickle)
    if done.ranks.is_main:
        for line in done.lines():
            typer.echo(line)
    raise typer.Exit(0)


def _override_model(cfg, model: str | None, trust_pickle: bool = False) -> None:
    """``--model URI``: the MLflow model replaces the config's model source; ``--trust-pickle`` sets
    ``model.trust_pickle``."""
    if trust_pickle:
        cfg.model.trust_pickle = True
    if model is not None:
        cfg.use_model_uri(model, key="--model")


def _set_promote_alias(cfg, alias: str) -> None:
    from pydantic import ValidationError

    from sparsecheck.errors import ConfigError

    try:
        cfg.mlflow.promote_alias = alias
    except ValidationError as exc:
        raise ConfigError(exc.errors()[0]["msg"].removeprefix("Value error, "), key="--promote-alias",
                          value=alias) from None


@_command()
def compare(
    run_a: str = typer.Argument(..., metavar="A", help="Baseline: an MLflow run id, or a model version "
                                "(models:/NAME@ALIAS, models:/NAME/VERSION) whose sparsecheck run is used."),
    run_b: str = typer.Argument(..., metavar="B", help="Compared against the baseline: a run id or a model version."),
    tracking_uri: Optional[str] = TrackingOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Also write compare.html and compare.json here."),
    run_missing: Optional[Path] = typer.Option(
        None, "--run-missing", metavar="CONFIG.yaml", help="Check a model version that has no sparsecheck run "
        "yet with this config (its model replaced by the version), then compare."),
    min_correlation: float = typer.Option(0.5, "--min-correlation", min=0.01, max=1.0,
                                          help="Smallest |r| between activations for two features to be the same."),
    device: Device = DeviceOpt,
    force: bool = ForceOpt,
    trust_pickle: bool = TrustPickleOpt,
    verbose: int = VerboseOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Compare B against A: Markdown on stdout, exit 1 on a regression.

    A and B are MLflow run ids, or model versions (models:/NAME@champion models:/NAME@challenger)
    resolved to their latest finished sparsecheck run.
    """
    setup_logging(verbose, quiet)
    from sparsecheck.champion import compare_targets
    from sparsecheck.reports.compare import write_comparison

    cfg = None
    if run_missing is not None:
        from sparsecheck.config import load_config

        cfg = load_config(run_missing)
        _override_model(cfg, None, trust_pickle)
    from sparsecheck.reports.compare import COMPARE_OUTPUTS

    with (_release_out_dir_on_failure(out, COMPARE_OUTPUTS, "compare.json") if out is not None
          else contextlib.nullcontext()):
        if out is not None:
            from sparsecheck.outputs import claim_out_dir

            # before a check writes into it
            claim_out_dir(out, force=force, note="written by sparsecheck compare", outputs=COMPARE_OUTPUTS)
        comparison = compare_targets(run_a, run_b, tracking_uri=tracking_uri, run_missing=cfg, out_dir=out,
                                     device=device.value, force=force, min_correlation=min_correlation)
    if out is not None:
        paths = write_comparison(comparison, out, force=force)
        typer.echo(f"comparison written to {paths['compare.html']}", err=True)
    typer.echo(comparison.to_markdown(), nl=False)
    raise typer.Exit(1 if comparison.has_regression else 0)


@_command()
def monitor(
    config: Path = typer.Argument(..., metavar="CONFIG.yaml", help="The run's YAML config (model, data settings, assertions)."),
    batch: Path = typer.Option(..., "--batch", help="The new batch: .npz with x, optional y and id; or "
                               "precomputed features (a directory from `extract --out`, an .npz with features, "
                               "Parquet), which need no model."),
    model: Optional[str] = ModelOpt,
    reference: Optional[str] = typer.Option(None, "--reference", help="Reference MLflow run id (default: "
                                            "the latest check of the --model version, else the latest "
                                            "finished run of the config's experiment)."),
    tracking_uri: Optional[str] = TrackingOpt,
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="Metadata table (CSV/Parquet) of the batch."),
    alpha: float = typer.Option(DRIFT_ALPHA, "--alpha", min=1e-9, max=0.5, help="FDR level of the drift tests."),
    psi_threshold: float = typer.Option(DRIFT_PSI_THRESHOLD, "--psi-threshold", min=0.0,
                                        help="Smallest PSI for a significant shift to count as drift."),
    device: Device = DeviceOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Also write monitor.html and monitor.json here "
                                       "(also when an earlier run already covers the batch)."),
    force: bool = typer.Option(False, "--force", help="Score the batch again even if a run already covers it; "
                               "write into a non-empty --out not created by sparsecheck."),
    correct: bool = typer.Option(False, "--correct", help="Correct the batch's predictions with the consistency and "
                                 "flicker assertions (a key's majority vote, a flicker's smoothed label); log "
                                 "corrected_predictions.csv and write it into --out."),
    trust_pickle: bool = TrustPickleOpt,
    verbose: int = VerboseOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Score a new batch against a reference run, log it to MLflow; exit 1 on an alert.

    Two jobs started on the same batch log one run: the second waits for the first one's verdict.
    An unreachable tracking server is tried $SPARSECHECK_TRACKING_ATTEMPTS times (default 3) with a
    growing wait ($SPARSECHECK_TRACKING_BACKOFF_S, default 2 s), then the command exits 3.
    """
    setup_logging(verbose, quiet)
    _one_process("monitor")
    from sparsecheck.config import load_config
    from sparsecheck.monitor import monitor_batch, prepare_monitor_out_dir, write_monitor_outputs

    cfg = load_config(config)
    _override_model(cfg, model, trust_pickle)
    from sparsecheck.monitor import MONITOR_OUTPUTS

    with (_release_out_dir_on_failure(out, MONITOR_OUTPUTS, "monitor.json") if out is not None
          else contextlib.nullcontext()):
        if out is not None:
            out = prepare_monitor_out_dir(out, force=force)
        result = monitor_batch(cfg, batch, reference=reference, tracking_uri=tracking_uri, metadata=metadata,
                               force=force, alpha=alpha, psi_threshold=psi_threshold, device=device.value,
                               correct=correct)
        if out is not None:
            paths = write_monitor_outputs(result, out)
            typer.echo(f"monitoring report written to {paths['monitor.html']}", err=True)
            if correct:
                _echo_corrections(result, out)
    if result.report is None:  # an earlier run covers this batch and reference
        typer.echo(f"batch {batch} (fingerprint {result.batch_fingerprint}) against reference "
                   f"{result.reference_run} is already covered by run {result.run_id} "
                   f"(alert: {'yes' if result.alert else 'no'}); pass --force to score it again")
    else:
        typer.echo(result.report.summary())
        if result.report.corrections is not None:
            fixed = result.report.to_dict()["corrections"]
            typer.echo(f"  corrected: {fixed['n_corrected']} of {fixed['n']} predictions"
                       + "".join(f", {n} by {rule}" for rule, n in fixed["by_rule"].items())
                       + f" (logged as {fixed['file']})")
        typer.echo(f"logged as MLflow run {result.run_id} (experiment {result.experiment_id})")
    raise typer.Exit(result.exit_code)


PoolOpt = typer.Option(..., "--pool", metavar="SPLIT_OR_FILE", help="The unlabelled examples: a split of the config "
                       "(train, val, test) or a file in any data format a split takes (.npz with x and id, a manifest, "
                       "an ImageFolder, precomputed features with logits); labels are ignored.")
PoolMetadataOpt = typer.Option(None, "--metadata", help="The pool's metadata table (CSV/Parquet keyed by id: the columns "
                               "the assertions name); default the config's data.metadata when it covers the pool.")


def _pool_scores(cfg, pool: str, metadata: Path | None, device: Device, tracking_uri: str | None, budget: int = 0,
                 labelled=None):
    """Load the pool (checking the budget against it before the model runs), then score it."""
    from sparsecheck.select import check_budget, load_pool, score_pool

    ds = load_pool(cfg, pool)
    if budget:
        check_budget(budget, ds.ids, () if labelled is None else labelled["id"])
    return score_pool(cfg, ds, metadata=metadata, device=device.value, tracking_uri=tracking_uri)


@_command(name="select")
def select_pool(
    config: Path = typer.Argument(..., metavar="CONFIG.yaml", help="The run's YAML config (model, assertions)."),
    pool: str = PoolOpt,
    budget: int = typer.Option(..., "--budget", min=1, help="How many examples to select."),
    out: Path = typer.Option(..., "--out", help="The selection CSV to write."),
    strategy: str = typer.Option("bal", "--strategy", metavar="bal|uncertainty|random|assertion:NAME",
                                 help="bal: bandit over the assertions' failing examples (Kang et al.); uncertainty: "
                                 "least margin; random; assertion:NAME: one assertion's failures, most severe first."),
    labelled: list[Path] = typer.Option([], "--labelled", help="Labels from earlier rounds (CSV with id and label, e.g. "
                                        "a selection CSV with its label column filled in): excluded, and they feed "
                                        "BAL's gain estimates. Repeatable."),
    metadata: Optional[Path] = PoolMetadataOpt,
    model: Optional[str] = ModelOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the random strategy (default: the config's)."),
    device: Device = DeviceOpt,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file."),
    trust_pickle: bool = TrustPickleOpt,
    verbose: int = VerboseOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Rank unlabelled examples for labelling by what the model assertions flag (BAL), or by uncertainty.

    Writes id, rank, strategy, the assertions that fired with their severities, confidence and
    predicted class per example, and logs the selection to MLflow (experiment <experiment>-select).
    """
    setup_logging(verbose, quiet)
    _one_process("select")
    from sparsecheck.config import load_config
    from sparsecheck.outputs import check_out_file, write_csv
    from sparsecheck.config import pool_assertions
    from sparsecheck.select import load_labelled, log_to_mlflow, parse_strategy, select_examples

    cfg = load_config(config)
    _override_model(cfg, model, trust_pickle)
    parse_strategy(strategy, [a.name for a in pool_assertions(cfg)])  # a bad value exits before the model runs
    acquired = load_labelled(labelled, cfg.data.class_names)
    check_out_file(out, force=force)
    scores = _pool_scores(cfg, pool, metadata, device, tracking_uri, budget, acquired)
    selection = select_examples(scores.table, scores.failures(), budget, strategy=strategy, labelled=acquired,
                                class_names=scores.class_names, assertions=scores.assertion_names,
                                seed=cfg.seed if seed is None else seed)
    selection.notes[:0] = scores.notes
    path = write_csv(selection.rows, out, force=force)
    typer.echo(selection.summary())
    typer.echo(f"selection written to {path}", err=True)
    if cfg.mlflow.enabled:
        counts = scores.failures()["assertion"].value_counts()
        info = log_to_mlflow(cfg, scores, "select", {"selection": path},
                             params={"strategy": strategy, "budget": budget, "n_labelled": len(acquired),
                                     "seed": cfg.seed if seed is None else seed},
                             metrics={"n_selected": len(selection.rows), "pool_size": len(scores.table),
                                      **{f"failing/{k}": float(v) for k, v in counts.items()},
                                      **{f"selected/{k}": float(v) for k, v in
                                         selection.rows["arm"].value_counts().items()}},
                             summary=selection.to_dict(), tracking_uri=tracking_uri)
        typer.echo(f"logged as MLflow run {info.run_id} (experiment {info.experiment_name})", err=True)
    raise typer.Exit(0)


@_command(name="weak-labels")
def weak_labels(
    config: Path = typer.Argument(..., metavar="CONFIG.yaml", help="The run's YAML config (model, assertions)."),
    pool: str = typer.Option("train", "--pool", metavar="SPLIT_OR_FILE", help="The examples to label weakly: a split "
                             "of the config or a data file (as for select)."),
    out: Path = typer.Option(..., "--out", help="The weak-label CSV to write."),
    metadata: Optional[Path] = PoolMetadataOpt,
    model: Optional[str] = ModelOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    device: Device = DeviceOpt,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file."),
    trust_pickle: bool = TrustPickleOpt,
    verbose: int = VerboseOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Propose labels from the consistency and flicker assertions that fire on a pool (weak supervision).

    One row per example and rule: the proposed label (a key's majority vote, a flicker's smoothed
    label), the rule, the model's prediction, whether they agree, and the support behind the label.
    """
    setup_logging(verbose, quiet)
    _one_process("weak-labels")
    from sparsecheck.config import load_config
    from sparsecheck.outputs import check_out_file, write_csv
    from sparsecheck.select import log_to_mlflow
    from sparsecheck.weak_labels import RULES, propose_labels

    cfg = load_config(config)
    _override_model(cfg, model, trust_pickle)
    check_out_file(out, force=force)
    scores = _pool_scores(cfg, pool, metadata, device, tracking_uri)
    weak = propose_labels(scores.table, scores.assertions, scores.suite, class_names=scores.class_names)
    path = write_csv(weak, out, force=force)
    rules = [a.name for a in scores.assertions if a.type in RULES]
    by_rule = weak["rule"].value_counts()
    typer.echo(f"{len(weak)} weak labels on {weak['id'].nunique()} of {len(scores.table)} examples"
               + (": " + ", ".join(f"{by_rule.get(r, 0)} from {r}" for r in rules) if rules else
                  "; the config declares no consistency or flicker assertion (assertions: or select.assertions:)")
               + (f"; {int((~weak['agrees']).sum())} disagree with the model" if len(weak) else ""))
    for note in scores.notes:
        typer.echo(f"  note: {note}")
    typer.echo(f"weak labels written to {path}", err=True)
    if cfg.mlflow.enabled:
        info = log_to_mlflow(cfg, scores, "weak-labels", {"weak_labels": path}, params={"rules": ",".join(rules)},
                             metrics={"n_weak_labels": len(weak), "pool_size": len(scores.table),
                                      "n_disagree": float((~weak["agrees"]).sum()) if len(weak) else 0.0,
                                      **{f"weak_labels/{k}": float(v) for k, v in by_rule.items()}},
                             summary={"rules": rules, "by_rule": {str(k): int(v) for k, v in by_rule.items()}},
                             tracking_uri=tracking_uri)
        typer.echo(f"logged as MLflow run {info.run_id} (experiment {info.experiment_name})", err=True)
    raise typer.Exit(0)


def _echo_corrections(result, out: Path) -> None:
    from sparsecheck.weak_labels import CORRECTIONS_FILE

    if (out / CORRECTIONS_FILE).is_file():
        typer.echo(f"corrected predictions written to {out / CORRECTIONS_FILE}", err=True)
    else:  # an earlier run without --correct covers the batch
        typer.echo(f"run {result.run_id} covers this batch without corrections; pass --force with --correct to "
                   "score it again", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one line on stderr and the exit code of the error (2 the user's input, 3 not).

    Unexpected exceptions exit 3 after their traceback is saved to a file the message names.
    SIGINT and SIGTERM print one line saying where the command was stopped (:func:`interrupt_line`)
    and exit 130 and 143.
    """
    from sparsecheck._runtime import ACTIVITY

    ACTIVITY.reset()
    try:
        # with standalone_mode=False a command's typer.Exit(code) comes back as the return value
        with _interrupts_raise():
            code = app(args=argv, prog_name="sparsecheck", standalone_mode=False)
    except (Interrupted, KeyboardInterrupt) as exc:
        code = exc.exit_code if isinstance(exc, Interrupted) else 130
        sys.stderr.write(f"sparsecheck: {_rank_prefix()}{interrupt_line()}\n")
        sys.exit(code)
    except SparsecheckError as exc:
        if _reported_to_rank0(exc):  # rank 0 of the torchrun job says which rank failed and why
            sys.exit(exc.exit_code)
        msg = " ".join(str(exc).split())
        sys.stderr.write(f"sparsecheck: error: {_rank_prefix()}{msg}\n")
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("sparsecheck: aborted\n")
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors from the argument parser
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            sys.stderr.write(f"sparsecheck: error: {exc}\n")
        sys.exit(2)
    except Exception as exc:  # a bug or an environment failure: not the user's input
        where = _write_traceback()
        msg = " ".join(str(exc).split())[:300] or type(exc).__name__
        sys.stderr.write(f"sparsecheck: internal error: {_rank_prefix()}{type(exc).__name__}: {msg}\n"
                         f"sparsecheck: the traceback is in {where}; please include it in a bug report\n")
        sys.exit(INTERNAL_ERROR)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
