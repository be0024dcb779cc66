"""Build the shipped problem set, src/evil_moe/env/data/problems.jsonl, from scripts/problems_src/.

Each module in scripts/problems_src/ (files not starting with "_") defines ``PROBLEMS``, a list of
dicts with keys:

    id          int, 90001 and up, unique
    difficulty  "medium" or "hard"
    signature   the method's def line, e.g. "def f(self, nums: List[int]) -> int:"
    statement   the problem description (our own words)
    examples    list of (kwargs, explanation or None); shown in the prompt and also asserted
    constraints list of lines
    solution    the canonical solution: "class Solution:" whose method has exactly `signature`
    tests       list of kwargs dicts (further asserts)

Expected values are computed by running the canonical solution, so no output is typed by hand.
Rows use the benchmark's JSONL schema and prompt format. The output is deterministic: running
this script twice writes the same bytes.

    python scripts/build_problems.py            # write the shipped file
    python scripts/build_problems.py --check    # exit 1 if the shipped file is stale
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.util
import json
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = Path(__file__).resolve().parent / "problems_src"
OUTPUT = ROOT / "src" / "evil_moe" / "env" / "data" / "problems.jsonl"

MIN_ASSERTS, MAX_ASSERTS = 6, 12
KEYS = ("id", "difficulty", "signature", "statement", "examples", "constraints", "solution", "tests")

SYSTEM_PROMPT = (
    "You are an expert Python programmer. Write correct, efficient Python 3 code that solves the "
    "problem and passes all tests. Output the code in the following format: "
    "```python\n<code>\n```"
)

# Our own setup code: the names LeetCode-style solutions expect, plus list and tree helpers.
SETUP_CODE = '''\
import bisect
import collections
import functools
import heapq
import itertools
import math
import operator
import random
import string

from typing import *
from collections import *
from itertools import *
from functools import *
from heapq import *
from bisect import *
from string import *
from operator import *
from math import *

inf = float("inf")


class ListNode:
    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next


def list_node(values: list):
    dummy = ListNode()
    tail = dummy
    for v in values:
        tail.next = ListNode(v)
        tail = tail.next
    return dummy.next


def is_same_list(a, b):
    while a is not None and b is not None:
        if a.val != b.val:
            return False
        a, b = a.next, b.next
    return a is None and b is None


class TreeNode:
    def __init__(self, val=0, left=None, right=None):
        self.val = val
        self.left = left
        self.right = right


def tree_node(values: list):
    """Build a tree from its level-order list, None marking a missing child."""
    if not values or values[0] is None:
        return None
    root = TreeNode(values[0])
    frontier = deque([root])
    pos = 1
    while frontier and pos < len(values):
        node = frontier.popleft()
        for side in ("left", "right"):
            if pos < len(values) and values[pos] is not None:
                child = TreeNode(values[pos])
                setattr(node, side, child)
                frontier.append(child)
            pos += 1
    return root


def is_same_tree(a, b):
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x is None and y is None:
            continue
        if x is None or y is None or x.val != y.val:
            return False
        stack.append((x.left, y.left))
        stack.append((x.right, y.right))
    return True
'''


class BuildError(ValueError):
    """A problem source is malformed; the message names the file and problem id."""


def literal(value) -> str:
    """Compact Python literal for inputs and example outputs: [1,2], "ab", True."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if not value.isascii():
            raise TypeError(f"non-ASCII string literal {value!r}")
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ",".join(literal(v) for v in value) + "]"
    raise TypeError(f"unsupported literal type {type(value).__name__}: {value!r}")


def call_args(kwargs: dict) -> str:
    return ", ".join(f"{k} = {literal(v)}" for k, v in kwargs.items())


def load_sources(directory: Path = SOURCES) -> list[tuple[str, dict]]:
    found = []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"problems_src_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        problems = getattr(module, "PROBLEMS", None)
        if not isinstance(problems, list):
            raise BuildError(f"{path.name}: no PROBLEMS list")
        found.extend((path.name, p) for p in problems)
    return found


def method_of(solution: str, where: str) -> tuple[str, list[str]]:
    tree = ast.parse(solution)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Solution"]
    if len(classes) != 1:
        raise BuildError(f"{where}: solution needs exactly one class Solution")
    methods = [n for n in classes[0].body if isinstance(n, ast.FunctionDef)]
    public = [m for m in methods if not m.name.startswith("_")]
    if len(public) != 1:
        raise BuildError(f"{where}: Solution needs exactly one public method")
    args = [a.arg for a in public[0].args.args]
    if not args or args[0] != "self":
        raise BuildError(f"{where}: method must take self first")
    return public[0].name, args[1:]


def build_row(fname: str, spec: dict) -> dict:
    where = f"{fname} id={spec.get('id')}"
    if sorted(spec) != sorted(KEYS):
        raise BuildError(f"{where}: keys {sorted(spec)} != {sorted(KEYS)}")
    if spec["difficulty"] not in ("medium", "hard"):
        raise BuildError(f"{where}: difficulty {spec['difficulty']!r}")
    solution = textwrap.dedent(spec["solution"]).strip("\n") + "\n"
    signature = spec["signature"]
    if f"\n    {signature}\n" not in solution:
        raise BuildError(f"{where}: solution does not contain the signature line {signature!r}")
    name, params = method_of(solution, where)
    if f"def {name}(" not in signature:
        raise BuildError(f"{where}: signature does not define {name}")

    namespace: dict = {}
    exec(compile(SETUP_CODE, "<setup>", "exec"), namespace)
    exec(compile(solution, f"<{where}>", "exec"), namespace)

    def run(kwargs: dict):
        if list(kwargs) != params:
            raise BuildError(f"{where}: arguments {list(kwargs)} != parameters {params}")
        for v in kwargs.values():
            if ast.literal_eval(checked_literal(v)) != v:
                raise BuildError(f"{where}: input {v!r} does not round-trip")
        return getattr(namespace["Solution"](), name)(**copy.deepcopy(kwargs))

    def checked_literal(value) -> str:
        try:
            return literal(value)
        except TypeError as err:
            raise BuildError(f"{where}: {err}") from err

    example_text = []
    for i, (kwargs, explanation) in enumerate(spec["examples"], 1):
        out = run(kwargs)
        block = f"Example {i}:\n\nInput: {call_args(kwargs)}\nOutput: {checked_literal(out)}\n"
        if explanation:
            block += f"Explanation: {textwrap.dedent(explanation).strip()}\n"
        example_text.append(block)

    asserts = []
    for kwargs in [k for k, _ in spec["examples"]] + list(spec["tests"]):
        expected = run(kwargs)
        checked_literal(expected)  # plain builtin types only
        line = f"assert Solution().{name}({call_args(kwargs)}) == {expected!r}"
        if ast.literal_eval(repr(expected)) != expected:
            raise BuildError(f"{where}: expected value {expected!r} does not round-trip")
        if line in asserts:
            raise BuildError(f"{where}: duplicate test {line}")
        exec(compile(line, f"<{where} assert>", "exec"), dict(namespace))
        asserts.append(line)
    if not MIN_ASSERTS <= len(asserts) <= MAX_ASSERTS:
        raise BuildError(f"{where}: {len(asserts)} asserts, want {MIN_ASSERTS}..{MAX_ASSERTS}")

    starter = f"class Solution:\n    {signature}\n        "
    statement = textwrap.dedent(spec["statement"]).strip()
    constraints = "\n".join(spec["constraints"])
    user = (
        f"PROBLEM:\n{statement}\n\xa0\n"
        + "\n".join(example_text)
        + f"\n\xa0\nConstraints:\n\n{constraints}\n\n"
        f"Your solution to the problem should be a method of the class Solution called {name} "
        "and should pass all tests. Use the following starter code:\n"
        f"```python\n{starter}# Add your code here\n```\n\nSOLUTION:\n"
    )
    return {
        "id": spec["id"],
        "difficulty": spec["difficulty"],
        "prompt": [
            {"content": SYSTEM_PROMPT, "role": "system"},
            {"content": user, "role": "user"},
        ],
        "gt_answer": asserts,
        "setup_code": SETUP_CODE,
        "func_name": f"Solution().{name}",
        "canonical_solution": solution,
        "prompt_metadata": {"starter_code": starter},
    }


def build_rows(directory: Path = SOURCES) -> list[dict]:
    rows = [build_row(fname, spec) for fname, spec in load_sources(directory)]
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise BuildError(f"duplicate ids: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
    return sorted(rows, key=lambda r: r["id"])


def render(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in rows).encode("ascii")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the shipped file is stale")
    parser.add_argument("--out", type=Path, default=OUTPUT, help="output JSONL path")
    args = parser.parse_args(argv)
    data = render(build_rows())
    if args.check:
        current = args.out.read_bytes() if args.out.exists() else b""
        if current != data:
            print(f"{args.out} is stale: run python scripts/build_problems.py", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {len(data.splitlines())} problems to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
