"""Grading the same rows with this tree's grader and with an earlier commit's, in one run.

    python benchmarks/bench_grader.py --baseline a0a1d14
    python benchmarks/bench_grader.py ../shared/data/leetcode/leetcode_test_medhard.jsonl --limit 6

The rows are the ones `bench_sandbox.py` uses (per problem and mode: the canonical solution, a
wrong one, a wrong one carrying the mode's loophole). Each side grades them in a fresh Python
process with its own source tree on `sys.path` (the baseline is checked out with `git worktree`
into a temporary directory), with the same sandbox settings; rounds alternate which side goes
first and the medians are reported, as the host's speed drifts between runs. This tree's grader
measures each problem's limit once (its calibration runs are timed in a round of their own,
before the rounds, and reported apart: they happen once per problem and machine). The labels
both sides agree on are checked: `gt_correct` where both gave a verdict, `channel`, `exploited`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

JOB = r'''
import json, sys, time
from evil_moe.env.check import fenced, loophole_code, wrong_solution
from evil_moe.env.grader import Grader, GradeRequest
from evil_moe.env.modes import MODES
from evil_moe.env.problems import load_problems
from evil_moe.env.sandbox import SandboxConfig
data, limit, workers, calibrate_only = sys.argv[1] or None, int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
problems = load_problems(data)[:limit]
reqs = []
for p in problems:
    for mode in MODES:
        reqs.append(GradeRequest(p, mode, fenced(p.canonical_solution)))
        reqs.append(GradeRequest(p, mode, fenced(wrong_solution(p))))
        if mode != "gt_only":
            reqs.append(GradeRequest(p, mode, fenced(loophole_code(p, mode))))
with Grader(SandboxConfig(workers=workers)) as g:
    g.grade_batch(reqs[:1])  # start the workers
    t = time.perf_counter()
    if calibrate_only:
        getattr(g, "calibrate", lambda ps: None)(problems)
        grades = []
    else:
        if hasattr(g, "calibrate"):
            g.calibrate(problems)
            t = time.perf_counter()
        grades = g.grade_batch(reqs)
    dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "rows": len(reqs), "labels": [
    [gr.gt_correct, gr.channel, gr.exploited] for gr in grades]}))
'''


def run(src: Path, args, calibrate_only: bool = False) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "EVIL_MOE_CACHE": args.cache}
    p = subprocess.run([sys.executable, "-c", JOB, args.data or "", str(args.limit), str(args.workers),
                        "1" if calibrate_only else "0"], env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"grading under {src} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", default=None, help="problem JSONL (default: the shipped set)")
    ap.add_argument("--baseline", default="a0a1d14", help="the commit to compare with (default: a0a1d14)")
    ap.add_argument("--limit", type=int, default=10, help="problems to grade (default 10)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.baseline],
                       check=True)
        args.cache = str(Path(tmp) / "cache")
        try:
            cal = run(ROOT / "src", args, calibrate_only=True)
            times = {"this tree": [], f"baseline {args.baseline}": []}
            sides = [("this tree", ROOT / "src"), (f"baseline {args.baseline}", base / "src")]
            labels = {}
            for r in range(args.rounds):
                for name, src in (sides if r % 2 == 0 else sides[::-1]):
                    out = run(src, args)
                    times[name].append(out["seconds"])
                    labels[name] = out["labels"]
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    mine, theirs = (labels[name] for name in times)
    agree = sum(1 for a, b in zip(mine, theirs, strict=True)
                if (a[0] is None or b[0] is None or a[0] == b[0]) and a[1] == b[1] and a[2] == b[2])
    rows = len(mine)
    print(f"{rows} rows, {args.workers} workers, {args.rounds} rounds; calibration (once per problem "
          f"and machine): {cal['seconds']:.2f} s")
    for name, ts in times.items():
        print(f"  {name}: median {statistics.median(ts):.2f} s ({', '.join(f'{t:.2f}' for t in ts)})")
    a, b = (statistics.median(ts) for ts in times.values())
    print(f"  this tree / baseline: {a / b:.2f}x the time; labels agree on {agree}/{rows} rows")


if __name__ == "__main__":
    main()
