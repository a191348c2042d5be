"""The planted-bug suite over many seeds: slice precision@5, spurious-finding hit rate, harmless findings.

Each seed draws a synthetic task with a rare, a correlated (shortcut) and a noisy-label slice and
two harmless attributes, trains a small model on the spot and runs the slices and spurious stages
(see ``tests/analysis/test_planted_bugs.py`` for the task and the exact definitions).

    python bench/planted_bugs.py              # seeds 0..19
    python bench/planted_bugs.py --seeds 50   # more
    python bench/planted_bugs.py --json out.json

Done when: precision@5 >= 0.8 and spurious hit rate >= 0.8 on average, harmless findings <= 0.1
per run. Run from the repository root (it imports the suite from ``tests``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsecheck.outputs import write_json_atomic  # noqa: E402
from tests.analysis.test_planted_bugs import run_planted, summarise  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="number of seeds, starting at --first")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (small models: 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write per-seed results and the summary here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results = []
    print(f"{'seed':>4} {'P@5':>5} {'strict':>6} {'R@5':>5} {'hit':>4} {'harm':>4} {'found':>5} "
          f"{'acc':>5} {'cue gap':>7} {'s':>5}  top slices")
    for seed in range(args.first, args.first + args.seeds):
        r, _, _ = run_planted(seed)
        results.append(r)
        tops = "; ".join(" & ".join(f"{k}={v}" for k, v in p.items()) for p in r.top_slices[:3])
        print(f"{seed:>4} {r.precision_at_5:5.2f} {r.strict_precision_at_5:6.2f} {r.recall_at_5:5.2f} "
              f"{int(r.spurious_hit):>4} {r.harmless_findings:>4} {r.n_findings:>5} {r.dense_accuracy:5.2f} "
              f"{r.cue_recall_gap:7.2f} {r.seconds:5.1f}  {tops}", flush=True)
    summary = summarise(results)
    print()
    print(f"seeds {summary['seeds']}: precision@5 {summary['precision_at_5']:.3f} "
          f"(strict, over 5: {summary['strict_precision_at_5']:.3f}; recall@5 {summary['recall_at_5']:.3f}), "
          f"spurious hit rate {summary['spurious_hit_rate']:.3f}, harmless findings per run "
          f"{summary['harmless_findings_per_run']:.3f}, shortcut learned in "
          f"{summary['shortcut_learned_rate']:.0%} of runs; {summary['seconds_per_run']:.1f} s per run, "
          f"{time.perf_counter() - start:.0f} s in all")
    ok = (summary["precision_at_5"] >= 0.8 and summary["spurious_hit_rate"] >= 0.8
          and summary["harmless_findings_per_run"] <= 0.1)
    print("done-when:", "met" if ok else "NOT met")
    if args.json is not None:
        write_json_atomic(args.json, {"summary": summary, "runs": [r.to_dict() for r in results]})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
