"""Benchmark: how long logging a demo run to MLflow adds to ``sparsecheck run``.

The demo pipeline runs once (data and model from ``sparsecheck demo``, re-used when present); its
context is pickled. Each scenario then runs ``write_outputs`` on that context in a *fresh*
Python process, as the CLI would (torch and the pipeline imported, MLflow not yet), and times it:

* ``disabled``        mlflow.enabled: false (report.html, activations.npz, results.json only)
* ``sqlite-new``      the embedded default, ``sqlite:///mlflow.db`` in an empty working directory
                      (MLflow creates its schema: a one-time cost per directory)
* ``sqlite-existing`` the same store again (every later run in that directory)
* ``server``          a local ``mlflow server`` (SQLite behind it, proxied artifacts)

"Added" is a scenario's median minus the ``disabled`` median. Target: under 5 s for the SQLite
default and for a local server. Every scenario runs twice: *cold* (MLflow first imported inside
``write_outputs``) and *with prefetch* (:func:`sparsecheck.tracking.prefetch` called
first, then the real load/extract/dense stages run before ``write_outputs``, as ``run_pipeline``
does when it calls the prefetch hook at its start). Feature-card images (one PNG of the 8 top-activating test images
per used feature) are written so the artifacts are as many and as large as a real run's.

Examples::

    python bench/mlflow_logging.py                   # demo in a temp dir, 3 repeats
    python bench/mlflow_logging.py --work /tmp/bench-mlflow --repeats 5
    python bench/mlflow_logging.py --no-server       # SQLite only
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SCENARIOS = ("disabled", "sqlite-new", "sqlite-existing", "server")


# --------------------------------------------------------------------------- child: one timing


def child(ctx_path: Path, scenario: str, workdir: Path, uri: str | None, in_run: bool) -> None:
    """Time ``write_outputs`` once, in this fresh process; print one JSON line.

    ``in_run``: first call :func:`~sparsecheck.tracking.prefetch` and run the stages that
    precede the sparse fit in a real run (load, extract with a warm feature cache, dense), as
    ``run_pipeline`` would with the prefetch hook, so MLflow's imports overlap real work.
    """
    import logging

    from sparsecheck.pipeline.context import RunContext
    from sparsecheck.pipeline import prepare_out_dir, write_outputs
    from sparsecheck.pipeline.stages import dense_stage, extract_stage, load_stage
    from sparsecheck.tracking.store import prefetch

    logging.disable(logging.INFO)
    with open(ctx_path, "rb") as fh:
        ctx = pickle.load(fh)
    os.chdir(workdir)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    stages_s = 0.0
    if in_run:
        start = time.perf_counter()
        if scenario != "disabled":
            prefetch(uri)
        early = RunContext(config=ctx.config.model_copy(deep=True), class_names=[], splits={}, device="cpu")
        for stage in (load_stage, extract_stage, dense_stage):
            stage(early)
        stages_s = time.perf_counter() - start
    src = Path(ctx.out_dir)
    out = prepare_out_dir(workdir / "out", force=True)
    for name in ("features", "sparse_layer"):  # what the earlier stages wrote
        shutil.copytree(src / name, out / name, dirs_exist_ok=True)
    for name in list(ctx.artifacts):
        ctx.artifacts[name] = str(out / Path(ctx.artifacts[name]).relative_to(src))
    shutil.copy2(src / "sparse_path.png", out / "sparse_path.png")
    ctx.out_dir = out
    ctx.config.mlflow.enabled = scenario != "disabled"
    ctx.config.mlflow.tracking_uri = uri
    start = time.perf_counter()
    write_outputs(ctx)
    seconds = time.perf_counter() - start
    print(json.dumps({"scenario": scenario, "seconds": seconds, "stages_seconds": stages_s,
                      "mlflow": ctx.results["mlflow"]}))


# --------------------------------------------------------------------------- parent


def build_context(work: Path, n_lambdas: int) -> Path:
    """Run the demo pipeline once (no MLflow) and pickle its context."""
    import numpy as np
    from PIL import Image

    from sparsecheck.config import load_config
    from sparsecheck.demo import build_demo
    from sparsecheck.pipeline import STAGES, run_pipeline
    from sparsecheck.results import FeatureCardRecord

    config_path = build_demo(work / "data")
    cfg = load_config(config_path)
    cfg.mlflow.enabled = False
    cfg.sparse.n_lambdas = n_lambdas
    t0 = time.perf_counter()
    ctx = run_pipeline(cfg, work / "pipeline-out", force=True, stages=STAGES)
    print(f"pipeline ({', '.join(s.__name__ for s in STAGES)}): {time.perf_counter() - t0:.1f} s", flush=True)
    test, layer = ctx.splits["test"], ctx.sparse_layer
    images = ctx.datasets["test"]
    cards = []
    out = Path(ctx.out_dir)
    for j in layer.used_features():
        top = np.argsort(-np.asarray(test.features[:, j]))[:8]
        strip = np.concatenate([np.asarray(images.image(int(i))) for i in top], axis=1)
        path = out / "features" / f"feature_{j}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(strip.astype(np.uint8)).resize((strip.shape[1] * 3, strip.shape[0] * 3), Image.NEAREST).save(path)
        w = layer.weight_[:, j]
        cards.append({"feature": int(j), "image": f"features/feature_{j}.png",
                      "classes": [{"class": ctx.class_names[int(c)], "weight": float(w[k])}
                                  for k, c in enumerate(layer.classes_) if w[k] != 0],
                      "top_examples": [str(test.ids[i]) for i in top], "bottom_examples": [],
                      "associations": [], "lime": None, "sanity": None})
    ctx.run_results.feature_cards = [FeatureCardRecord.model_validate(c) for c in cards]
    ctx.model, ctx.datasets = None, {}
    ctx_path = work / "ctx.pkl"
    with open(ctx_path, "wb") as fh:
        pickle.dump(ctx, fh)
    print(f"used features: {len(cards)}; artifacts: {sum(1 for _ in (out / 'features').iterdir())} feature PNGs, "
          f"sparse_layer/, report.html, results.json, activations.npz", flush=True)
    return ctx_path


def run_child(ctx_path: Path, scenario: str, workdir: Path, uri: str | None, in_run: bool = False) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--child", scenario, "--ctx", str(ctx_path), "--workdir", str(workdir)]
    if uri:
        cmd += ["--uri", uri]
    if in_run:
        cmd += ["--in-run"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{scenario} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{root / 'srv.db'}",
                             "--artifacts-destination", str(root / "art"), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mlflow server exited; see {root / 'server.log'}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return proc, uri
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise SystemExit("mlflow server did not come up in 240 s")


def stop_server(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            time.sleep(1)
        except subprocess.TimeoutExpired:
            continue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="working directory (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-lambdas", type=int, default=30, help="path length of the demo's sparse layer")
    parser.add_argument("--no-server", action="store_true", help="skip the mlflow server scenario")
    parser.add_argument("--rebuild", action="store_true", help="re-run the demo pipeline even if --work has it")
    parser.add_argument("--child", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--ctx", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--uri", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--in-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.ctx, args.child, args.workdir, args.uri, args.in_run)
        return

    work = args.work or Path(tempfile.mkdtemp(prefix="sparsecheck-bench-mlflow-"))
    work.mkdir(parents=True, exist_ok=True)
    import mlflow
    import torch

    print(f"python {platform.python_version()}, torch {torch.__version__}, mlflow {mlflow.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    ctx_path = work / "ctx.pkl"
    if args.rebuild or not ctx_path.is_file():
        ctx_path = build_context(work, args.n_lambdas)
    else:
        print(f"re-using the demo run pickled in {ctx_path} (--rebuild to redo it)", flush=True)
    server, server_uri = None, None
    if not args.no_server:
        server, server_uri = start_server(Path(tempfile.mkdtemp(prefix="bench-mlflow-server-", dir=work)))
    tables = {}
    try:
        for in_run in (False, True):
            times: dict[str, list[float]] = {s: [] for s in SCENARIOS}
            mode = "with prefetch during load/extract/dense" if in_run else "cold: nothing imported before"
            for r in range(args.repeats):
                runs = work / f"{'in-run' if in_run else 'cold'}-{r}"
                shutil.rmtree(runs, ignore_errors=True)
                one = {"disabled": run_child(ctx_path, "disabled", runs / "disabled", None, in_run)}
                shared = runs / "sqlite"  # a new directory: MLflow creates its schema, then re-uses it
                one["sqlite-new"] = run_child(ctx_path, "sqlite-new", shared, None, in_run)
                one["sqlite-existing"] = run_child(ctx_path, "sqlite-existing", shared, None, in_run)
                if server_uri:
                    one["server"] = run_child(ctx_path, "server", runs / "server", server_uri, in_run)
                for name, result in one.items():
                    times[name].append(result["seconds"])
                stages = f" (stages before: {one['disabled']['stages_seconds']:.1f} s)" if in_run else ""
                print(f"{mode}, repeat {r + 1}/{args.repeats}: "
                      + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items() if v) + stages, flush=True)
            tables[mode] = times
    finally:
        if server is not None:
            stop_server(server)
    for mode, times in tables.items():
        base = statistics.median(times["disabled"])
        print(f"\nwrite_outputs, {mode} ({args.repeats} repeats, fresh process each)")
        print(f"{'scenario':<17}{'median s':>10}{'min s':>9}{'added s (median)':>19}   target")
        for name, values in times.items():
            if not values:
                continue
            median = statistics.median(values)
            added = median - base
            target = "" if name == "disabled" else ("< 5 s: ok" if added < 5 else "< 5 s: MISSED")
            print(f"{name:<17}{median:>10.2f}{min(values):>9.2f}{added:>19.2f}   {target}")
    print(f"\nwork dir {work}")


if __name__ == "__main__":
    main()
