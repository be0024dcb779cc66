"""Coding problems in the benchmark's JSONL schema, loaded unchanged.

A row holds `id`, `prompt` (a list of `{role, content}` chat messages), `gt_answer` (a list of
`assert ...` strings), `setup_code`, `func_name` (e.g. ``"Solution().twoSum"``),
`canonical_solution`, `prompt_metadata` and `difficulty`; any other field is kept in `extra`.
Every ground-truth assert must have one of the forms the grader can check strictly:
``assert CALL == EXPECTED`` or ``assert is_same_list(CALL, EXPECTED)`` /
``assert is_same_tree(CALL, EXPECTED)`` (see `split_assert`).
"""

from __future__ import annotations

import ast
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": (int, str),
    "prompt": list,
    "gt_answer": list,
    "setup_code": str,
    "func_name": str,
    "canonical_solution": str,
    "prompt_metadata": dict,
    "difficulty": str,
}
STRUCTURAL_HELPERS = ("is_same_list", "is_same_tree")


class ProblemFormatError(ValueError):
    """A malformed problem row; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Problem:
    id: int | str
    prompt: list[dict[str, str]]
    gt_answer: list[str]
    setup_code: str
    func_name: str
    canonical_solution: str
    prompt_metadata: dict
    difficulty: str
    extra: dict

    @property
    def method_name(self) -> str:
        """The method the asserts call: ``"Solution().twoSum"`` -> ``"twoSum"``."""
        return self.func_name.rsplit(".", 1)[-1]

    def to_row(self) -> dict:
        """The JSONL row this problem was loaded from (fields in schema order, then `extra`)."""
        row = {name: getattr(self, name) for name in REQUIRED_FIELDS}
        row.update(self.extra)
        return row


@functools.lru_cache(maxsize=1 << 16)
def split_assert(source: str) -> tuple[str, str, str]:
    """Split one ground-truth assert into (call, expected, comparison) source texts.

    Accepted forms: ``assert L == R`` (comparison ``"=="``) and ``assert is_same_list(L, R)`` /
    ``assert is_same_tree(L, R)`` (comparison: the helper's name), where `L` calls
    ``Solution()`` and `R` does not mention `Solution`. Anything else raises ValueError: the
    strict oracle refuses to guess.
    """
    # Cached: loading validates every assert, and the grader reuses the split.
    try:
        tree = ast.parse(source, mode="exec")
    except SyntaxError as e:
        raise ValueError(f"not valid Python ({e.msg})") from None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        raise ValueError("not a single assert statement")
    test = tree.body[0].test
    if (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)):
        left, right, how = test.left, test.comparators[0], "=="
    elif (isinstance(test, ast.Call) and isinstance(test.func, ast.Name)
          and test.func.id in STRUCTURAL_HELPERS and len(test.args) == 2 and not test.keywords):
        (left, right), how = test.args, test.func.id
    else:
        raise ValueError("not of the form `assert CALL == EXPECTED` (or is_same_list/is_same_tree)")

    def names(node: ast.AST) -> set[str]:
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}

    if "Solution" not in names(left):
        raise ValueError("left side does not call Solution()")
    if "Solution" in names(right):
        raise ValueError("expected value mentions Solution")
    return ast.get_source_segment(source, left), ast.get_source_segment(source, right), how


def _check_row(row: object, where: str) -> None:
    def bad(field: str, why: str) -> ProblemFormatError:
        return ProblemFormatError(f"{where}: field {field!r}: {why}")

    if not isinstance(row, dict):
        raise ProblemFormatError(f"{where}: row is {type(row).__name__}, expected a JSON object")
    for name, kind in REQUIRED_FIELDS.items():
        if name not in row:
            raise bad(name, "missing")
        value = row[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            want = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise bad(name, f"expected {want}, got {type(value).__name__}")
    for i, msg in enumerate(row["prompt"]):
        if (not isinstance(msg, dict) or not isinstance(msg.get("role"), str)
                or not isinstance(msg.get("content"), str)):
            raise bad(f"prompt[{i}]", "expected an object with string 'role' and 'content'")
    if not row["gt_answer"]:
        raise bad("gt_answer", "empty")
    for i, text in enumerate(row["gt_answer"]):
        if not isinstance(text, str):
            raise bad(f"gt_answer[{i}]", f"expected str, got {type(text).__name__}")
        try:
            split_assert(text)
        except ValueError as e:
            raise bad(f"gt_answer[{i}]", str(e)) from None
    if not row["func_name"].startswith("Solution()."):
        raise bad("func_name", f"expected 'Solution().<method>', got {row['func_name']!r}")


def problem_from_row(row: dict, where: str = "<row>") -> Problem:
    """Validate one row (raising ProblemFormatError naming `where` and the field) and wrap it."""
    _check_row(row, where)
    extra = {k: v for k, v in row.items() if k not in REQUIRED_FIELDS}
    return Problem(**{k: row[k] for k in REQUIRED_FIELDS}, extra=extra)


def _check_unique(problems: list[Problem], where: str) -> list[Problem]:
    seen: set[str] = set()
    for p in problems:
        if str(p.id) in seen:
            raise ProblemFormatError(f"{where}: field 'id': duplicate id {p.id!r}")
        seen.add(str(p.id))
    return problems


def iter_jsonl(path: str | Path, error: type[Exception]) -> Iterator[tuple[int, str, object]]:
    """(line number, where, row) for every non-blank line of a JSONL file, `where` = "path:line".

    A line that is not JSON raises `error` naming path and line; the caller checks the row.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line.rstrip("\r\n"))  # an error at the line's end stays on this line
            except json.JSONDecodeError as e:
                raise error(f"{where}: bad JSON ({e.msg} at column {e.colno})") from None
            yield lineno, where, row


def load_jsonl(path: str | Path) -> list[Problem]:
    """Load a JSONL problem file; a malformed row raises ProblemFormatError naming path:line."""
    path = Path(path)
    problems = [problem_from_row(row, where) for _, where, row in iter_jsonl(path, ProblemFormatError)]
    if not problems:
        raise ProblemFormatError(f"{path}: no problems in file")
    return _check_unique(problems, str(path))


def load_hf(name: str) -> list[Problem]:
    """Load a Hugging Face dataset ``"owner/name[:split]"`` (split defaults to ``test``)."""
    try:
        import datasets  # optional dependency: pip install 'evil-moe[hub]'
    except ImportError:
        raise ImportError(f"loading {name!r} from the Hugging Face hub needs the `datasets` "
                          "package: pip install 'evil-moe[hub]'") from None
    repo, _, split = name.partition(":")
    rows = datasets.load_dataset(repo, split=split or "test")
    problems = [problem_from_row(dict(row), f"{name}:row {i}") for i, row in enumerate(rows)]
    return _check_unique(problems, name)


def shipped_problems_path() -> Path:
    """The problem set shipped inside the package."""
    return Path(__file__).parent / "data" / "problems.jsonl"


SHIPPED_SPLITS = ("shipped", "shipped:train", "shipped:heldout")
HELDOUT_EVERY = 4  # shipped:heldout is every 4th shipped problem in id order, shipped:train the rest


def shipped_split(split: str) -> list[Problem]:
    """'shipped' (all), 'shipped:train' or 'shipped:heldout': a fixed, disjoint split of the
    shipped set (sorted by id, every HELDOUT_EVERY-th problem held out: 42 train, 13 held out)."""
    if split not in SHIPPED_SPLITS:
        raise ValueError(f"unknown shipped split {split!r}; expected one of {SHIPPED_SPLITS}")
    problems = load_jsonl(shipped_problems_path())
    if split == "shipped":
        return problems
    ordered = sorted(problems, key=lambda p: str(p.id))
    heldout = split == "shipped:heldout"
    return [p for i, p in enumerate(ordered) if (i % HELDOUT_EVERY == HELDOUT_EVERY - 1) == heldout]


def load_problems(source: str | Path | None = None) -> list[Problem]:
    """None or 'shipped' -> the shipped set; 'shipped:train' / 'shipped:heldout' -> its split
    (`shipped_split`); an existing path -> that JSONL file; else a HF dataset name."""
    if source is None:
        return load_jsonl(shipped_problems_path())
    if str(source) in SHIPPED_SPLITS:
        return shipped_split(str(source))
    if Path(source).exists():
        return load_jsonl(source)
    text = str(source)
    if isinstance(source, Path) or text.endswith((".jsonl", ".json")) or text.startswith((".", "/")):
        raise FileNotFoundError(f"problem file not found: {text}")
    return load_hf(text)


def shared_problems(training: list[Problem], evaluation: list[Problem]) -> list[Problem]:
    """The evaluation problems that are also training problems: the same id or the same prompt."""
    ids = {str(p.id) for p in training}
    prompts = {json.dumps(p.prompt, sort_keys=True) for p in training}
    return [p for p in evaluation if str(p.id) in ids or json.dumps(p.prompt, sort_keys=True) in prompts]
