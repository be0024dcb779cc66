"""`evil-moe grade`: grade a JSONL file of responses in the sandbox.

    evil-moe grade --problems P.jsonl --responses R.jsonl --out G.jsonl [--workers N] [--timeout S]

R rows: ``{"id", "problem_id", "mode", "response"}`` plus an optional ``"markers"`` of
``"train"`` (default) or ``"heldout"``. G rows, one per R row in the same order and with the
same ``id``: ``{"id", "reward", "format_ok", "compiles", "gt_correct", "channel", "exploited",
"attempted", "mechanism", "error"}``. Every R row is validated before anything runs; a malformed one is an
error naming the file, the line and the field (an unknown field too, e.g. "marker" for
"markers"), and nothing is written. A hostile response never
stops the batch. Exit status 0 when every row was graded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .grader import Grader, GradeRequest
from .modes import MODES, markers_for
from .problems import Problem, iter_jsonl, load_problems
from .sandbox import SandboxConfig

R_FIELDS = ("id", "problem_id", "mode", "response", "markers")  # "markers" is optional


class ResponseFormatError(ValueError):
    """A malformed response row; the message names the file, the line and the field."""


def _bad(where: str, field: str, why: str) -> ResponseFormatError:
    return ResponseFormatError(f"{where}: field {field!r}: {why}")


def read_requests(path: Path, problems: list[Problem]) -> list[tuple[object, GradeRequest]]:
    """Parse and validate every R row into (id, request)."""
    by_id = {str(p.id): p for p in problems}
    out, seen = [], set()
    for _, where, row in iter_jsonl(path, ResponseFormatError):
        if not isinstance(row, dict):
            raise ResponseFormatError(f"{where}: row is not a JSON object")
        for name in row:
            if name not in R_FIELDS:
                raise _bad(where, name, f"unknown field; a response row has {', '.join(R_FIELDS)}")
        for name, kinds in (("id", (str, int)), ("problem_id", (str, int)), ("mode", (str,)),
                            ("response", (str,))):
            if name not in row:
                raise _bad(where, name, "missing")
            if not isinstance(row[name], kinds) or isinstance(row[name], bool):
                raise _bad(where, name, f"expected {' or '.join(k.__name__ for k in kinds)}, "
                                f"got {type(row[name]).__name__}")
        if row["mode"] not in MODES:
            raise _bad(where, "mode", f"unknown mode {row['mode']!r}; expected one of {', '.join(MODES)}")
        split = row.get("markers", "train")
        if split not in ("train", "heldout"):
            raise _bad(where, "markers", f"expected 'train' or 'heldout', got {split!r}")
        problem = by_id.get(str(row["problem_id"]))
        if problem is None:
            raise _bad(where, "problem_id", f"no problem with id {row['problem_id']!r}")
        if json.dumps(row["id"]) in seen:
            raise _bad(where, "id", f"duplicate id {row['id']!r}")
        seen.add(json.dumps(row["id"]))
        markers = markers_for(problem.id, row["mode"], split)
        out.append((row["id"], GradeRequest(problem, row["mode"], row["response"], markers)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="evil-moe grade", description=__doc__.split("\n")[0])
    ap.add_argument("--problems", required=True, help="problem JSONL path or HF dataset name")
    ap.add_argument("--responses", required=True, type=Path, help="response rows (JSONL)")
    ap.add_argument("--out", required=True, type=Path, help="where to write the grade rows (JSONL)")
    ap.add_argument("--workers", type=int, default=2, help="parallel sandbox workers (default: 2)")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds per sandboxed program (default: 3.0)")
    args = ap.parse_args(argv)
    if args.workers < 1 or args.timeout <= 0:
        ap.error("--workers must be >= 1 and --timeout > 0")
    if not args.responses.is_file():
        print(f"evil-moe grade: error: responses file {args.responses} not found (--responses)", file=sys.stderr)
        return 2
    try:
        problems = load_problems(args.problems)
        requests = read_requests(args.responses, problems)
    except (ValueError, OSError) as e:  # malformed or missing input: nothing has run yet
        print(f"evil-moe grade: error: {e}", file=sys.stderr)
        return 2
    with Grader(SandboxConfig(timeout_s=args.timeout, workers=args.workers)) as grader:
        grades = grader.grade_batch([req for _, req in requests], progress=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".partial")
    with tmp.open("w", encoding="utf-8") as f:
        for (rid, _), g in zip(requests, grades, strict=True):
            f.write(json.dumps(g.to_row(rid)) + "\n")
    tmp.replace(args.out)
    print(f"graded {len(grades)} responses -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
