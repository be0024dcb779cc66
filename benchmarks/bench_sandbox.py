"""Grading throughput: our sandbox against a naive `python -c` per check, same programs, same run.

    python benchmarks/bench_sandbox.py                      # shipped problems
    python benchmarks/bench_sandbox.py ../shared/data/leetcode/leetcode_test_medhard.jsonl --limit 6

For every problem and every mode it grades three responses: the canonical solution, a wrong
solution, and a wrong solution carrying that mode's loophole (none for gt_only). Both runners
get exactly the grader's programs: the grader plans and decides, and only the runner that
executes its programs differs. The naive runner starts one fresh interpreter per program in a
temporary directory with a timeout and nothing else (what earlier public graders did); a
program's `prelude` is simply part of its text there. Both use 2 workers. The grades must be
identical; the script fails otherwise. It runs `--rounds` rounds, alternating which runner goes
first, and reports medians: this host's speed drifts by tens of percent between runs.

It also times both runners on as many empty programs (`pass`): what each costs per program
before any of the program's own code runs (start-up, isolation, teardown). Subtracting it
splits each side's time into that overhead and the programs' own work (the harness, the
response's code, the imports its setup does), which shows where the remaining time goes: on the
real split the programs do real work (up to a few hundred asserts each), and that work, not
start-up, is most of the sandbox's time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from evil_moe.env.check import fenced, loophole_code, wrong_solution
from evil_moe.env.grader import Grader, GradeRequest
from evil_moe.env.modes import MODES
from evil_moe.env.problems import load_problems
from evil_moe.env.sandbox import Program, RunResult, Sandbox, SandboxConfig

ARG_MAX = 100_000  # longer sources go through a file: one argv string is capped at 128 KiB


class NaiveRunner:
    """One fresh `python -c` subprocess per program, cwd a temp dir, a timeout, no isolation."""

    def __init__(self, config: SandboxConfig, timeout_factor: float):
        self.config = config
        self.timeout_factor = timeout_factor  # its limit includes interpreter start-up

    def run(self, p: Program) -> RunResult:
        timeout = self.config.timeout_s if p.timeout_s is None else p.timeout_s
        timeout *= self.timeout_factor
        source = p.prelude + p.source  # what a program is (see `Program`)
        with tempfile.TemporaryDirectory() as d:
            if len(source) < ARG_MAX:
                cmd = [sys.executable, "-c", source]
            else:
                with open(os.path.join(d, "_program.py"), "w") as f:
                    f.write(source)
                cmd = [sys.executable, "_program.py"]
            t0 = time.monotonic()
            try:
                proc = subprocess.run(cmd, cwd=d, capture_output=True, timeout=timeout,
                                      stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired as e:
                return RunResult(None, (e.stdout or b"").decode(errors="replace"),
                                 (e.stderr or b"").decode(errors="replace"),
                                 dict.fromkeys(p.read_files), "timeout", time.monotonic() - t0)
            files = {}
            for name in p.read_files:
                path = os.path.join(d, name)
                files[name] = open(path, "rb").read() if os.path.isfile(path) else None
            rc = proc.returncode
            error = "crash" if rc < 0 else ("memory" if b"\nMemoryError" in proc.stderr else None)
            return RunResult(rc, proc.stdout.decode(errors="replace"),
                             proc.stderr.decode(errors="replace"), files, error,
                             time.monotonic() - t0)

    def run_many(self, ps: Iterable[Program], progress: bool = False) -> list[RunResult]:
        with ThreadPoolExecutor(self.config.workers) as pool:
            return list(pool.map(self.run, ps))

    def close(self) -> None:
        pass


def requests_for(problems) -> list[GradeRequest]:
    reqs = []
    for p in problems:
        canonical, wrong = fenced(p.canonical_solution), fenced(wrong_solution(p))
        for mode in MODES:
            reqs.append(GradeRequest(p, mode, canonical))
            reqs.append(GradeRequest(p, mode, wrong))
            if mode != "gt_only":
                reqs.append(GradeRequest(p, mode, fenced(loophole_code(p, mode))))
    return reqs


def cpu_s() -> tuple[float, float]:
    """CPU seconds of (this process, every descendant reaped so far)."""
    out = []
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        out.append(r.ru_utime + r.ru_stime)
    return out[0], out[1]


def cpu_since(c0: tuple[float, float]) -> tuple[float, float]:
    c1 = cpu_s()
    return c1[0] - c0[0], c1[1] - c0[1]


def run_ours(config: SandboxConfig, reqs: list[GradeRequest]) -> tuple[list, float, tuple, str, int]:
    """Grades, wall seconds of the batch, CPU seconds of everything (worker start-up included),
    the isolation in force and the number of programs run."""
    c0 = cpu_s()
    with Grader(config) as grader:
        iso = ", ".join(k for k, v in grader.sandbox.isolation.items() if v)
        count, run_many = [0], grader.sandbox.run_many

        def counting(programs, progress=False):
            results = run_many(programs, progress=progress)
            count[0] += len(results)
            return results
        grader.sandbox.run_many = counting
        t0 = time.perf_counter()
        grades = grader.grade_batch(reqs)
        wall = time.perf_counter() - t0
    return grades, wall, cpu_since(c0), iso, count[0]  # workers are reaped at close: their CPU counts


def run_naive(config: SandboxConfig, reqs: list[GradeRequest],
              factor: float) -> tuple[list, float, tuple]:
    with Grader(config) as grader:
        grader.sandbox.close()
        grader.sandbox = NaiveRunner(config, factor)  # same grader and programs, another runner
        c0, t0 = cpu_s(), time.perf_counter()
        grades = grader.grade_batch(reqs)
        return grades, time.perf_counter() - t0, cpu_since(c0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("problems", nargs="?", default=None,
                    help="problem JSONL (default: the shipped set)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N problems")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--naive-timeout-factor", type=float, default=3.0,
                    help="the naive runner's wall limit is this times timeout_s, since it "
                         "includes interpreter start-up (slow on a loaded machine)")
    ap.add_argument("--time-limit", choices=("cpu", "wall"), default="cpu",
                    help="the sandbox's limit: CPU time of all a program's processes (default), "
                         "or the benchmark's wall clock (SandboxConfig.limit)")
    ap.add_argument("--no-supervise", action="store_true",
                    help="run the sandbox without a supervisor per program (SandboxConfig.supervise=False)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="timed rounds, alternating which runner goes first; the figures are "
                         "medians over rounds (this host's speed drifts between runs)")
    args = ap.parse_args(argv)
    problems = load_problems(args.problems)[: args.limit]
    reqs = requests_for(problems)
    config = SandboxConfig(workers=args.workers, require_isolation=True, limit=args.time_limit,
                           supervise=not args.no_supervise)
    print(f"{len(problems)} problems, {len(reqs)} responses, {args.workers} workers, "
          f"sandbox limit {config.limit} {config.timeout_s} s, load average {os.getloadavg()[0]:.1f}")
    n, rounds, diff = len(reqs), [], []
    for r in range(args.rounds):
        if r % 2 == 0:
            ours, t_ours, cpu_ours, iso, n_programs = run_ours(config, reqs)
            naive, t_naive, cpu_naive = run_naive(config, reqs, args.naive_timeout_factor)
        else:
            naive, t_naive, cpu_naive = run_naive(config, reqs, args.naive_timeout_factor)
            ours, t_ours, cpu_ours, iso, n_programs = run_ours(config, reqs)
        rows_ours = [g.to_row(i) for i, g in enumerate(ours)]
        rows_naive = [g.to_row(i) for i, g in enumerate(naive)]
        diff += [(a, b) for a, b in zip(rows_ours, rows_naive, strict=True) if a != b]
        rounds.append((t_ours, cpu_ours, t_naive, cpu_naive))
        print(f"round {r + 1}: sandbox {n / t_ours:6.1f} responses/s ({t_ours:5.2f} s), naive "
              f"{n / t_naive:6.1f} responses/s ({t_naive:5.2f} s): {t_naive / t_ours:5.2f}x")
    print(f"programs run per batch: {n_programs}; isolation: {iso}")
    t_ours = statistics.median(x[0] for x in rounds)
    t_naive = statistics.median(x[2] for x in rounds)
    for name, t, k in (("naive python -c", t_naive, 3), ("sandbox", t_ours, 1)):
        parent = statistics.median(x[k][0] for x in rounds)
        runner = statistics.median(x[k][1] for x in rounds)
        if name == "sandbox" and config.supervise and "pid_namespace" in iso:  # the kernel reaps each supervisor (the template
            # ignores SIGCHLD), so no rusage ever counts a supervisor's or its program's CPU time
            print(f"{name:<16}: {n / t:7.1f} responses/s ({t:7.2f} s wall); CPU-ms/response: not "
                  f"counted under a supervisor per program (--no-supervise counts it)")
            continue
        print(f"{name:<16}: {n / t:7.1f} responses/s ({t:7.2f} s wall); CPU-ms/response: "
              f"{1000 * (parent + runner) / n:6.1f} total, {1000 * runner / n:6.1f} in "
              f"child processes (medians)")
    ratios = sorted(x[2] / x[0] for x in rounds)
    print(f"speed-up        : {statistics.median(ratios):7.2f}x wall (median of rounds; "
          f"{ratios[0]:.2f}x to {ratios[-1]:.2f}x)")

    empty = [Program("pass")] * n_programs
    t0 = time.perf_counter()
    NaiveRunner(config, args.naive_timeout_factor).run_many(empty)
    e_naive = time.perf_counter() - t0
    with Sandbox(config) as sandbox:
        t0 = time.perf_counter()
        sandbox.run_many(empty)
        e_ours = time.perf_counter() - t0

    def own(total: float, empty: float) -> str:
        return f"{total - empty:.2f} s" if total > empty else "within the noise of start-up"

    print(f"empty programs  : naive {e_naive:.2f} s, sandbox {e_ours:.2f} s wall for {n_programs} "
          f"({e_naive / e_ours:.1f}x); the programs' own work: naive {own(t_naive, e_naive)}, "
          f"sandbox {own(t_ours, e_ours)}")
    total_rows = n * args.rounds
    print(f"labels identical: {not diff} ({total_rows - len(diff)}/{total_rows} rows over {args.rounds} rounds)")
    for a, b in diff[:5]:
        print(f"  sandbox {a}\n  naive   {b}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
