"""Benchmark: what gating a registered model adds to ``sparsecheck run``.

The demo's data and model (``sparsecheck demo``'s ``model.pt2``, smaller splits by default) are
checked against a local ``mlflow server`` two ways, each run in a *fresh* Python process as the
CLI would be (``run_pipeline`` on the config, analysis turned down to the sparse layer, slices and
assertions, so the fixed costs are not lost in noise):

* ``plain``     the config's ``model.path: model.pt2``, logged to the server (no assertions, so
                the gate passes);
* ``registry``  ``--model models:/bench-demo@candidate --promote-alias validated``: the same model
                registered with ``mlflow.pytorch.log_model`` (MLflow's ``pt2`` format), resolved,
                downloaded and loaded with ``mlflow.pytorch.load_model``, then the verdict tagged
                on the version and its logged model and the alias moved.

Repeats alternate the two. "Added" is the median registry total minus the median plain total,
with its parts: the load stage (resolve + download + ``mlflow.pytorch.load_model``, and MLflow's
import, which a plain run does in the background) and the verdict (tags + alias). The parts are
also timed one by one in fresh processes (``components``): loading ``model.pt2`` directly,
importing MLflow and ``mlflow.pytorch``, resolving the alias, downloading, loading, and writing
the verdict tags and alias.

Examples::

    python bench/registry.py                       # 5 repeats each, demo sizes 1000/300/600
    python bench/registry.py --repeats 3 --work /tmp/bench-registry
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlflow_logging import start_server, stop_server  # noqa: E402  (the same local server)

MODEL = "bench-demo"


def child(config: Path, scenario: str, uri: str, out: Path) -> None:
    """One timed run in this fresh process; print one JSON line."""
    import logging

    logging.disable(logging.WARNING)
    start = time.perf_counter()
    from sparsecheck.config import load_config
    from sparsecheck.pipeline import run_pipeline

    cfg = load_config(config)
    if scenario == "registry":
        cfg.use_model_uri(f"models:/{MODEL}@candidate")
        cfg.mlflow.promote_alias = "validated"
    ctx = run_pipeline(cfg, out, device="cpu", tracking_uri=uri, force=True)
    total = time.perf_counter() - start
    verdict = ctx.verdict
    print(json.dumps({"scenario": scenario, "total": total, "load": ctx.results["timings"]["load"],
                      "verdict": 0.0 if verdict is None else verdict.seconds,
                      "promoted": bool(verdict and verdict.promoted), "status": ctx.results["status"]}))


def components(config: Path, uri: str, out: Path) -> None:
    """The registry's parts, timed one by one in this fresh process; print one JSON line."""
    import logging

    logging.disable(logging.WARNING)
    times: dict[str, float] = {}

    def timed(name: str, fn, *a, **k):
        start = time.perf_counter()
        value = fn(*a, **k)
        times[name] = time.perf_counter() - start
        return value

    from sparsecheck.models import load_model

    timed("plain_load", load_model, path=config.with_name("model.pt2"))
    timed("import_mlflow", __import__, "mlflow")
    from sparsecheck.models import _import_mlflow_pytorch
    from sparsecheck.tracking.registry import download_model, record_verdict, resolve_model_uri

    timed("import_mlflow_pytorch", _import_mlflow_pytorch)
    origin = timed("resolve", resolve_model_uri, f"models:/{MODEL}@candidate", uri)
    local = timed("download", download_model, origin, tempfile.mkdtemp(dir=out))
    timed("mlflow_pytorch_load", _import_mlflow_pytorch().load_model, str(local))
    timed("registry_load_total", load_model, uri=f"models:/{MODEL}@candidate", tracking_uri=uri)
    verdict = timed("verdict_alias", record_verdict, origin, status="pass", run_id="bench", failed_assertions=0,
                    spurious_findings=0, promote_alias="bench-validated")
    times["promoted"] = float(verdict.promoted)
    print(json.dumps(times))


def prepare(work: Path, uri: str, sizes: tuple[int, int, int], epochs: int) -> Path:
    """The demo data and model, a config with the analysis turned down, the model registered."""
    import mlflow
    import numpy as np
    import torch
    import yaml

    from sparsecheck.demo import IMAGE_SIZE, build_demo

    config_path = build_demo(work / "data", sizes=sizes, epochs=epochs)
    raw = yaml.safe_load(config_path.read_text())
    raw["analysis"] = {"explain": False, "sanity_check": False, "interventions": False, "auto_attributes": False}
    raw["sparse"] = {**raw.get("sparse", {}), "n_lambdas": 20}
    raw["assertions"] = []  # a passing gate: the alias is moved, as a promotion does
    raw["data"].pop("spurious_attributes", None)  # (it implies an assertion the demo model fails)
    raw["mlflow"] = {"experiment": "bench-registry"}
    bench_config = config_path.with_name("bench.yaml")
    bench_config.write_text(yaml.safe_dump(raw, sort_keys=False))
    net = torch.export.load(str(config_path.with_name("model.pt2"))).module()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("bench-training")
    with mlflow.start_run(experiment_id=experiment.experiment_id if experiment else
                          client.create_experiment("bench-training")):
        info = mlflow.pytorch.log_model(net, name="model", registered_model_name=MODEL, pip_requirements=["torch"],
                                        input_example=np.zeros((1, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32))
    client.set_registered_model_alias(MODEL, "candidate", str(info.registered_model_version))
    return bench_config


def run_child(config: Path, scenario: str, uri: str, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, __file__, "--child", scenario, "--config", str(config), "--uri", uri,
                           "--out", str(out)], capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{scenario} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="working directory (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs=3, default=(1000, 300, 600), metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--child", choices=("plain", "registry", "components"), help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "components":
        args.out.mkdir(parents=True, exist_ok=True)
        components(args.config, args.uri, args.out)
        return
    if args.child:
        child(args.config, args.child, args.uri, args.out)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="sparsecheck-bench-registry-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "server").mkdir(exist_ok=True)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; work dir {work}", flush=True)
    proc, uri = start_server(work / "server")
    try:
        config = prepare(work, uri, tuple(args.sizes), args.epochs)
        run_child(config, "plain", uri, work / "warm-up")  # the feature cache and the store warm up once
        rows: dict[str, list[dict]] = {"plain": [], "registry": []}
        for i in range(args.repeats):
            for scenario in ("plain", "registry") if i % 2 == 0 else ("registry", "plain"):
                row = run_child(config, scenario, uri, work / f"{scenario}-{i}")
                rows[scenario].append(row)
                print(f"  {scenario:8s} total {row['total']:6.2f} s  load {row['load']:5.2f} s  "
                      f"verdict {row['verdict']:4.2f} s  ({row['status']}, promoted: {row['promoted']})", flush=True)
        from mlflow import MlflowClient

        validated = MlflowClient(uri).get_model_version_by_alias(MODEL, "validated")
        tags = MlflowClient(uri).get_model_version(MODEL, validated.version).tags
        print(f"\nMlflowClient().get_model_version({MODEL!r}, {validated.version!r}).tags after the last run "
              f"(@validated):\n{json.dumps(tags, indent=2, sort_keys=True)}", flush=True)
        # (these write a verdict of their own on the version, after the tags above were read)
        parts = [run_child(config, "components", uri, work / f"components-{i}") for i in range(args.repeats)]
    finally:
        stop_server(proc)
    med = {s: {k: statistics.median(r[k] for r in rs) for k in ("total", "load", "verdict")} for s, rs in rows.items()}
    print(f"\nmedians over {args.repeats} runs each (local mlflow server, fresh process per run):")
    for s in ("plain", "registry"):
        print(f"  {s:8s} total {med[s]['total']:6.2f} s  load stage {med[s]['load']:5.2f} s  "
              f"verdict + alias {med[s]['verdict']:4.2f} s")
    part = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    print(f"  parts (fresh process, medians): model.pt2 loaded directly {part['plain_load']:.2f} s; "
          f"import mlflow {part['import_mlflow']:.2f} s (a plain run does it in the background), "
          f"mlflow.pytorch {part['import_mlflow_pytorch']:.2f} s; resolve {part['resolve']:.2f} s, download "
          f"{part['download']:.2f} s, mlflow.pytorch.load_model {part['mlflow_pytorch_load']:.2f} s; the whole "
          f"registry load once imported {part['registry_load_total']:.2f} s; verdict tags + alias "
          f"{part['verdict_alias']:.2f} s")
    added = med["registry"]["total"] - med["plain"]["total"]
    print(f"registry adds {added:+.2f} s per run: load stage {med['registry']['load'] - med['plain']['load']:+.2f} s "
          f"(resolve, download, mlflow.pytorch.load_model, MLflow imported up front), "
          f"verdict tags + alias {med['registry']['verdict']:.2f} s")


if __name__ == "__main__":
    main()
