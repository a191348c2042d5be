"""Benchmark: false alarms and detection of the monitoring job on the demo.

1. Runs the pipeline (load, extract, dense, sparse) on the demo and logs it to MLflow: the
   reference run (the demo's test split, corner-mark cue on 30% of images).
2. Finds the *cue feature*: the used sparse feature most associated with ``corner_mark`` on the
   test split (AUC furthest from 0.5).
3. Scores ``--seeds`` undrifted batches (``make_demo_batch(cue_rate=0.3)``: the test distribution,
   fresh renderings) and ``--drifted`` drifted ones (``cue_rate=0.8``) with the real job,
   :func:`sparsecheck.monitor.monitor_batch` — feature extraction, drift tests, one MLflow run per
   batch — re-using one loaded reference and model.

Prints the false-alarm rate (with a Wilson interval), the share of drifted batches that alarm and
that flag the cue feature, why each alarm fired, and seconds per batch.

Usage::

    python bench/monitor_false_alarms.py                          # builds the demo (a few minutes)
    python bench/monitor_false_alarms.py --demo /tmp/demo-ref     # re-use a built demo's inputs
    python bench/monitor_false_alarms.py --seeds 20 --drifted 5 --n 1000
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, help="directory with a built demo's config.yaml (copied)")
    parser.add_argument("--workdir", type=Path, help="where the demo, outputs and MLflow store go "
                        "(default: a temporary directory, removed at the end)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: SQLite in the workdir)")
    parser.add_argument("--seeds", type=int, default=20, help="undrifted batches")
    parser.add_argument("--drifted", type=int, default=5, help="drifted batches")
    parser.add_argument("--n", type=int, default=1000, help="images per batch")
    parser.add_argument("--cue-rate", type=float, default=0.3, help="cue rate of undrifted batches (test: 0.3)")
    parser.add_argument("--drift-rate", type=float, default=0.8, help="cue rate of drifted batches")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--psi-threshold", type=float, default=0.1)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")

    from sparsecheck.analysis.stats import auc_effect, wilson_interval
    from sparsecheck.config import load_config
    from sparsecheck.data import ImageDataset
    from sparsecheck.demo import build_demo, make_demo_batch
    from sparsecheck.monitor import load_reference, monitor_batch
    from sparsecheck.pipeline import run_pipeline
    from sparsecheck.pipeline.stages import dense_stage, extract_stage, load_stage, sparse_stage

    temporary = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="sparsecheck-monitor-bench-")) if temporary else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    try:
        data_dir = work / "demo"
        if args.demo is not None:
            if not (data_dir / "config.yaml").is_file():
                shutil.copytree(args.demo, data_dir, dirs_exist_ok=True)
            config_path = data_dir / "config.yaml"
        else:
            config_path = build_demo(data_dir)
        uri = args.tracking_uri or f"sqlite:///{(work / 'mlflow.db').resolve()}"
        cfg = load_config(config_path)
        cfg.mlflow.experiment = "monitor-bench"

        start = time.perf_counter()
        ctx = run_pipeline(cfg, work / "reference", device="cpu", tracking_uri=uri, force=True,
                           stages=[load_stage, extract_stage, dense_stage, sparse_stage])
        reference_id = ctx.results["mlflow"]["run_id"]
        test = ctx.splits["test"]
        used = ctx.sparse_layer.used_features()
        mark = test.metadata["corner_mark"].to_numpy() == "yes"
        aucs = {int(f): auc_effect(np.asarray(test.features)[:, f], mark)[0] for f in used}
        cue = max(aucs, key=lambda f: abs(aucs[f] - 0.5))
        print(f"reference run {reference_id}: {len(used)} used features, {len(test)} test images, "
              f"{time.perf_counter() - start:.1f} s")
        print(f"cue feature {cue} (AUC {aucs[cue]:.3f} for corner_mark=yes on the test split)")

        reference = load_reference(reference_id, uri)
        model = cfg.model.load()

        def score(seed: int, rate: float) -> tuple[bool, list[str], bool, float, float]:
            b = make_demo_batch(seed=seed, n=args.n, cue_rate=rate)
            ds = ImageDataset.from_arrays(b.x, b.y, b.ids, name=f"batch{seed}")
            t0 = time.perf_counter()
            run = monitor_batch(cfg, ds, reference=reference, model=model, tracking_uri=uri, force=True,
                                alpha=args.alpha, psi_threshold=args.psi_threshold, device="cpu")
            seconds = time.perf_counter() - t0
            report = run.report
            assert report is not None
            reasons = [a.split(":")[0] for a in report.alerts]
            max_psi = float(report.feature_drift.table["psi"].max())
            return run.alert, reasons, cue in report.feature_drift.drifted_features, max_psi, seconds

        print(f"\nundrifted batches (cue rate {args.cue_rate}, n={args.n}):")
        quiet = []
        for seed in range(1, args.seeds + 1):
            alert, reasons, _, max_psi, sec = score(seed, args.cue_rate)
            quiet.append((alert, sec))
            print(f"  seed {seed:3d}: {'ALARM ' + ', '.join(reasons) if alert else 'quiet'}  "
                  f"(max feature PSI {max_psi:.3f}, {sec:.1f} s)")
        print(f"\ndrifted batches (cue rate {args.drift_rate}, n={args.n}):")
        drifted = []
        for seed in range(1001, 1001 + args.drifted):
            alert, reasons, cue_hit, max_psi, sec = score(seed, args.drift_rate)
            drifted.append((alert, cue_hit, sec))
            print(f"  seed {seed}: {'ALARM' if alert else 'quiet'}; cue feature flagged: {cue_hit}; "
                  f"{len(reasons)} reasons; max feature PSI {max_psi:.3f} ({sec:.1f} s)")

        k = sum(a for a, _ in quiet)
        lo, hi = wilson_interval(np.array([k]), np.array([len(quiet)]))
        det = sum(a for a, _, _ in drifted)
        hit = sum(c for _, c, _ in drifted)
        secs = [s for _, s in quiet] + [s for *_, s in drifted]
        print("\nsummary")
        print(f"  false alarms:      {k}/{len(quiet)} = {k / max(len(quiet), 1):.1%} "
              f"(95% CI {lo[0]:.1%}-{hi[0]:.1%}); target <= 5%")
        print(f"  drifted detected:  {det}/{len(drifted)}; cue feature {cue} flagged in {hit}/{len(drifted)}")
        print(f"  seconds per batch: median {np.median(secs):.2f} (extraction, drift tests, MLflow run; n={args.n})")
        return 0 if k / max(len(quiet), 1) <= 0.05 and hit == len(drifted) else 1
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
