"""The shipped problem set: schema, prompt format, assert form, canonical solutions, rebuild."""

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
from collections import Counter, deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "evil_moe" / "env" / "data" / "problems.jsonl"
BUILDER = ROOT / "scripts" / "build_problems.py"
REAL_SPLIT = ROOT.parent / "shared" / "data" / "leetcode" / "leetcode_test_medhard.jsonl"
HINT = "and should pass all tests"
FIELDS = {
    "id": int,
    "prompt": list,
    "gt_answer": list,
    "setup_code": str,
    "func_name": str,
    "canonical_solution": str,
    "prompt_metadata": dict,
    "difficulty": str,
}


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_problems", BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROWS = [json.loads(line) for line in SHIPPED.read_text().splitlines()]
BY_ID = {r["id"]: r for r in ROWS}


def parse_assert(line: str, method: str) -> tuple[dict, object]:
    """Return (kwargs, expected) of `assert Solution().method(k = v, ...) == literal`, else raise."""
    tree = ast.parse(line)
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert), line
    test = tree.body[0].test
    assert isinstance(test, ast.Compare) and len(test.ops) == 1, line
    assert isinstance(test.ops[0], ast.Eq), line
    call = test.left
    assert isinstance(call, ast.Call) and not call.args and call.keywords, line
    assert isinstance(call.func, ast.Attribute) and call.func.attr == method, line
    inner = call.func.value
    assert isinstance(inner, ast.Call) and not inner.args and not inner.keywords, line
    assert isinstance(inner.func, ast.Name) and inner.func.id == "Solution", line
    kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    assert None not in kwargs, line
    return kwargs, ast.literal_eval(test.comparators[0])


def test_count_ids_and_difficulty():
    assert len(ROWS) >= 40
    ids = [r["id"] for r in ROWS]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids) and min(ids) >= 90001
    difficulties = Counter(r["difficulty"] for r in ROWS)
    assert set(difficulties) <= {"medium", "hard"}
    assert difficulties["medium"] > difficulties["hard"] > 0


@pytest.mark.parametrize("row", ROWS, ids=lambda r: str(r["id"]))
def test_row_schema_and_prompt(row):
    for field, kind in FIELDS.items():
        assert isinstance(row[field], kind), field
    method = row["func_name"].removeprefix("Solution().")
    assert row["func_name"] == f"Solution().{method}" and method.isidentifier()
    system, user = row["prompt"]
    assert system["role"] == "system" and user["role"] == "user"
    assert set(system) == set(user) == {"role", "content"}
    assert user["content"].startswith("PROBLEM:\n")
    assert user["content"].count(HINT) == 1
    starter = row["prompt_metadata"]["starter_code"]
    assert starter.startswith(f"class Solution:\n    def {method}(self")
    assert starter.endswith(":\n        ")
    tail = (
        f"Your solution to the problem should be a method of the class Solution called {method} "
        f"{HINT}. Use the following starter code:\n```python\n{starter}# Add your code here\n```"
        "\n\nSOLUTION:\n"
    )
    assert user["content"].endswith(tail)
    # the starter's def line is the canonical solution's def line
    assert starter.splitlines()[1] in row["canonical_solution"].splitlines()


@pytest.mark.parametrize("row", ROWS, ids=lambda r: str(r["id"]))
def test_asserts_have_exact_form(row):
    method = row["func_name"].removeprefix("Solution().")
    assert 5 <= len(row["gt_answer"]) <= 12
    assert len(set(row["gt_answer"])) == len(row["gt_answer"])
    tree = ast.parse(row["canonical_solution"])
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    (fn,) = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == method]
    params = [a.arg for a in fn.args.args][1:]
    for line in row["gt_answer"]:
        assert line.startswith(f"assert Solution().{method}(")
        kwargs, _ = parse_assert(line, method)
        assert list(kwargs) == params, line


def test_canonical_solutions_pass_their_asserts():
    for row in ROWS:
        namespace: dict = {}
        exec(compile(row["setup_code"], "<setup>", "exec"), namespace)
        exec(compile(row["canonical_solution"], f"<{row['id']}>", "exec"), namespace)
        for line in row["gt_answer"]:
            exec(compile(line, f"<{row['id']} assert>", "exec"), dict(namespace))


def test_expected_values_are_not_constant():
    # A solution returning one fixed value fails at least one assert of every problem.
    for row in ROWS:
        method = row["func_name"].removeprefix("Solution().")
        expected = [parse_assert(line, method)[1] for line in row["gt_answer"]]
        assert len({json.dumps(e) for e in expected}) >= 2, row["id"]


def test_setup_code_helpers():
    namespace: dict = {}
    exec(compile(ROWS[0]["setup_code"], "<setup>", "exec"), namespace)
    for name in ("List", "Optional", "Counter", "deque", "heappush", "bisect_left", "accumulate",
                 "lru_cache", "cache", "gcd", "ascii_lowercase", "inf", "defaultdict"):
        assert name in namespace, name
    assert len({r["setup_code"] for r in ROWS}) == 1
    list_node, is_same_list = namespace["list_node"], namespace["is_same_list"]
    assert list_node([]) is None
    assert is_same_list(list_node([1, 2, 3]), list_node([1, 2, 3]))
    assert not is_same_list(list_node([1, 2]), list_node([1, 2, 3]))
    assert not is_same_list(list_node([1, 3]), list_node([1, 2]))
    tree_node, is_same_tree = namespace["tree_node"], namespace["is_same_tree"]
    root = tree_node([1, None, 2, 3])
    assert root.left is None and root.right.val == 2 and root.right.left.val == 3
    assert tree_node([]) is None
    assert is_same_tree(tree_node([1, 2, 3, None, 4]), tree_node([1, 2, 3, None, 4]))
    assert not is_same_tree(tree_node([1, 2]), tree_node([1, None, 2]))


def test_shipped_file_equals_fresh_rebuild():
    builder = _load_builder()
    first = builder.render(builder.build_rows())
    assert first == builder.render(builder.build_rows())
    assert first == SHIPPED.read_bytes(), "stale: run python scripts/build_problems.py"


def _write_source(tmp_path: Path, **changes) -> Path:
    spec = dict(
        id=1,
        difficulty="medium",
        signature="def double(self, x: int) -> int:",
        statement="Return twice x.",
        examples=[(dict(x=1), None)],
        constraints=["0 <= x <= 10"],
        solution="class Solution:\n    def double(self, x: int) -> int:\n        return 2 * x\n",
        tests=[dict(x=v) for v in range(2, 7)],
    )
    spec.update(changes)
    (tmp_path / "bad.py").write_text(f"PROBLEMS = [{spec!r}]\n")
    return tmp_path


def test_builder_accepts_good_source_and_refuses_bad_ones(tmp_path):
    builder = _load_builder()
    (row,) = builder.build_rows(_write_source(tmp_path))
    assert row["gt_answer"][0] == "assert Solution().double(x = 1) == 2"
    bad = [
        (dict(signature="def triple(self, x: int) -> int:"), "signature line"),
        (dict(tests=[dict(x=2)]), "2 asserts, want 6..12"),
        (dict(tests=[dict(y=v) for v in range(2, 7)]), "arguments \\['y'\\] != parameters"),
        (dict(tests=[dict(x=2)] * 6), "duplicate test"),
        (dict(difficulty="easy"), "difficulty"),
        (dict(solution="class Solution:\n    def double(self, x: int) -> int:\n"
                       "        return 2.0 * x\n"), "unsupported literal type float"),
    ]
    for change, message in bad:
        with pytest.raises(builder.BuildError, match=rf"^bad\.py id=1: .*{message}"):
            builder.build_rows(_write_source(tmp_path, **change))


@pytest.mark.skipif(not REAL_SPLIT.exists(), reason="real split not available")
def test_prompt_format_matches_real_split():
    real = json.loads(REAL_SPLIT.read_text().splitlines()[0])
    ours = ROWS[0]
    assert ours["prompt"][0] == real["prompt"][0]
    marker = "Your solution to the problem should be a method of the class Solution called"
    real_tail = real["prompt"][1]["content"].split(marker)[1].split(" ", 2)[2]
    our_tail = ours["prompt"][1]["content"].split(marker)[1].split(" ", 2)[2]
    skeleton = lambda t: t.split("```python\n")[0] + t.split("```\n")[-1]  # noqa: E731
    assert skeleton(real_tail) == skeleton(our_tail)
    assert set(FIELDS) <= set(real)


# ---- independent brute-force references: every assert's expected value is re-derived ----

def _subarrays(a):
    return (a[i:j] for i in range(len(a)) for j in range(i + 1, len(a) + 1))


def _is_subsequence(t, s):
    it = iter(s)
    return all(ch in it for ch in t)


def _components(n, links):
    adj = [set() for _ in range(n)]
    for u, v in links:
        adj[u].add(v)
        adj[v].add(u)
    seen, count = set(), 0
    for s in range(n):
        if s not in seen:
            count += 1
            queue = deque([s])
            seen.add(s)
            while queue:
                for v in adj[queue.popleft()] - seen:
                    seen.add(v)
                    queue.append(v)
    return count


def _fewest_hops(reach):
    dist = {0: 0}
    queue = deque([0])
    while queue:
        i = queue.popleft()
        for j in range(i + 1, min(len(reach), i + reach[i] + 1)):
            if j not in dist:
                dist[j] = dist[i] + 1
                queue.append(j)
    return dist.get(len(reach) - 1, -1)


def _readings(digits, limit):
    if not digits:
        return 1
    return sum(_readings(digits[j:], limit) for j in range(1, len(digits) + 1)
               if digits[0] != "0" and int(digits[:j]) <= limit)


def _min_heaviest(pages, readers):
    n = len(pages)
    return min(max(sum(pages[a:b]) for a, b in itertools.pairwise((0, *cuts, n)))
               for cuts in itertools.combinations(range(1, n), readers - 1))


def _space_apart(s, k):
    return any(all(p[i] != p[j] for i in range(len(p)) for j in range(i + 1, min(len(p), i + k)))
               for p in set(itertools.permutations(s)))


BRUTE = {
    90001: (None, lambda nums, pivot: max(
        [len(s) for s in _subarrays(nums)
         if sum(x > pivot for x in s) == sum(x < pivot for x in s)], default=0)),
    90002: (None, lambda nums: sum(set(str(a)) == set(str(b))
                                   for a, b in itertools.combinations(nums, 2))),
    90004: (None, lambda nums, k, r: sum(sum(s) % k == r for s in _subarrays(nums))),
    90007: (None, lambda s: max(len(t) for t in _subarrays(s) if t == t[::-1])),
    90008: (None, lambda source, target: next(
        (c for c in range(1, len(target) + 1) if _is_subsequence(target, source * c)), -1)),
    90009: (lambda s, k: len(s) <= 8, _space_apart),
    90011: (None, lambda items, k: max(len(s) for s in _subarrays(items) if len(set(s)) <= k)),
    90012: (None, lambda costs, budget: sum(sum(s) <= budget for s in _subarrays(costs))),
    90013: (None, lambda readings, spread: max(
        len(s) for s in _subarrays(readings) if max(s) - min(s) <= spread)),
    90014: (None, lambda nums, lower, upper: sum(
        lower <= a + b <= upper for a, b in itertools.combinations(nums, 2))),
    90015: (None, lambda nums, target: sum(
        sum(t) < target for t in itertools.combinations(nums, 3))),
    90017: (lambda pages, readers: len(pages) <= 14, _min_heaviest),
    90018: (lambda rows, cols, k: rows * cols <= 10**5, lambda rows, cols, k: sorted(
        i * j for i in range(1, rows + 1) for j in range(1, cols + 1))[k - 1]),
    90019: (None, lambda nums, target: target in nums),
    90021: (None, lambda nums: sum(max(s) - min(s) for s in _subarrays(nums))),
    90022: (None, lambda expression: eval(expression)),  # trusted literal test input
    90023: (lambda num, k: len(num) <= 12, lambda num, k: max(
        "".join(c) for c in itertools.combinations(num, len(num) - k))),
    90026: (lambda segments: max(e for _, e in segments) - min(s for s, _ in segments) < 10**4,
            lambda segments: len({x for s, e in segments for x in range(s, e + 1)})),
    90029: (None, _fewest_hops),
    90031: (lambda digits, limit: len(digits) <= 12, _readings),
    90034: (lambda weights, target: len(weights) <= 12, lambda weights, target: min(
        (r for r in range(len(weights) + 1) for c in itertools.combinations(weights, r)
         if sum(c) == target), default=-1)),
    90036: (lambda values: len(values) <= 12, lambda values: max(
        sum(v for v, on in zip(values, mask, strict=True) if on)
        for mask in itertools.product((0, 1), repeat=len(values))
        if "111" not in "".join(map(str, mask)))),
    90043: (lambda n, edges: n <= 10, lambda n, edges: any(
        all(c[u] != c[v] for u, v in edges) for c in itertools.product((0, 1), repeat=n))),
    90044: (None, lambda n, links: [_components(n, links[: i + 1]) for i in range(len(links))]),
    90048: (None, lambda words: sum(a.startswith(b) or b.startswith(a)
                                    for a, b in itertools.combinations(words, 2))),
    90049: (None, lambda nums: max(a ^ b for a in nums for b in nums)),
    90053: (lambda n: n <= 10**5, lambda n: sum(bin(i).count("1") for i in range(1, n + 1))),
    90054: (None, lambda nums: next(v for v, c in Counter(nums).items() if c == 1)),
}


@pytest.mark.parametrize("pid", sorted(BRUTE))
def test_expected_values_match_brute_force(pid):
    row = BY_ID[pid]
    method = row["func_name"].removeprefix("Solution().")
    feasible, reference = BRUTE[pid]
    checked = 0
    for line in row["gt_answer"]:
        kwargs, expected = parse_assert(line, method)
        if feasible is None or feasible(**kwargs):
            assert reference(**kwargs) == expected, line
            checked += 1
    assert checked >= 4, f"{pid}: only {checked} asserts cross-checked"
