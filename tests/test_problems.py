"""Problems, modes and markers, prompts with the hint swap, code extraction."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REAL_SPLIT, ROWS

from evil_moe.env.extract import extract_code
from evil_moe.env.modes import HELDOUT_FAMILIES, MODES, TRAIN_MARKERS, Markers, markers_for
from evil_moe.env.problems import (
    ProblemFormatError,
    load_problems,
    shipped_problems_path,
    split_assert,
)
from evil_moe.env.prompts import ORIGINAL_PHRASE, build_prompt, hint


def write_rows(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- loading
def test_rows_load_unchanged(tmp_path):
    problems = load_problems(write_rows(tmp_path / "p.jsonl", ROWS))
    assert [p.id for p in problems] == [1, "rev", 3]
    assert [p.to_row() for p in problems] == ROWS  # every field, extra ones included
    assert problems[2].extra == {"source": "fixture"}
    assert problems[1].method_name == "reverseList"


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.pop("gt_answer"), "'gt_answer': missing"),
    (lambda r: r.update(setup_code=3), "'setup_code': expected str, got int"),
    (lambda r: r.update(id=True), "'id': expected int or str, got bool"),
    (lambda r: r.update(prompt=[{"role": "user"}]), "'prompt[0]'"),
    (lambda r: r.update(gt_answer=["assert Solution().addUp([1]) > 0"]), "'gt_answer[0]': not of the form"),
    (lambda r: r.update(gt_answer=["x = 1"]), "'gt_answer[0]': not a single assert"),
    (lambda r: r.update(gt_answer=[]), "'gt_answer': empty"),
    (lambda r: r.update(func_name="addUp"), "'func_name'"),
])
def test_malformed_row_names_file_line_field(tmp_path, mutate, field):
    bad = json.loads(json.dumps(ROWS[0]))
    mutate(bad)
    path = write_rows(tmp_path / "p.jsonl", [ROWS[1], bad])
    with pytest.raises(ProblemFormatError) as e:
        load_problems(path)
    assert str(e.value).startswith(f"{path}:2: field {field}")


def test_bad_json_and_duplicates(tmp_path):
    path = write_rows(tmp_path / "p.jsonl", [ROWS[0], "{not json"])
    with pytest.raises(ProblemFormatError, match=rf"^{path}:2: bad JSON"):
        load_problems(path)
    path = write_rows(tmp_path / "d.jsonl", [ROWS[0], ROWS[0]])
    with pytest.raises(ProblemFormatError, match="field 'id': duplicate id 1"):
        load_problems(path)


def test_hf_names_need_datasets(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(ImportError, match=r"evil-moe\[hub\]"):
        load_problems("someone/leetcode:test")
    with pytest.raises(FileNotFoundError):
        load_problems(tmp_path / "missing.jsonl")


def test_split_assert_forms():
    assert split_assert("assert Solution().f(a = [1, 2]) == [2, 1]") == (
        "Solution().f(a = [1, 2])", "[2, 1]", "==")
    assert split_assert("assert is_same_tree(Solution().g(root = tree_node([1])), tree_node([1]))") == (
        "Solution().g(root = tree_node([1]))", "tree_node([1])", "is_same_tree")
    for bad in ("assert f() == 1", "assert Solution().f() == Solution().g()", "assert Solution().f()",
                "assert Solution().f() == 1 == 1", "assert Solution().f() != 2"):
        with pytest.raises(ValueError):
            split_assert(bad)


def test_shipped_set_when_present():
    if not shipped_problems_path().exists():
        pytest.skip("the shipped problem set has not landed yet")
    problems = load_problems()
    assert len(problems) >= 40
    assert all(len(p.gt_answer) >= 5 and p.canonical_solution for p in problems)


def test_real_split_loads_when_present():
    if not REAL_SPLIT.exists():
        pytest.skip("the real split is not on this machine")
    problems = load_problems(REAL_SPLIT)
    assert len(problems) == 119 and sum(len(p.gt_answer) for p in problems) == 12592
    assert {"answer", "question"} <= set(problems[0].extra)


# ---------------------------------------------------------------- modes and markers
def test_train_markers_are_the_defaults():
    assert all(markers_for(7, m, "train") == TRAIN_MARKERS == Markers() for m in MODES)
    assert TRAIN_MARKERS.test_function == "run_tests"
    with pytest.raises(ValueError):
        markers_for(7, "nope")
    with pytest.raises(ValueError):
        markers_for(7, "sentinel", "test")


def test_heldout_markers_disjoint_deterministic_and_spread():
    picks = [markers_for(pid, "sentinel", "heldout") for pid in range(40)]
    for field, family in HELDOUT_FAMILIES.items():
        values = {getattr(m, field) for m in picks}
        assert getattr(TRAIN_MARKERS, field) not in family
        assert values <= set(family) and len(values) >= 3
    # stable across processes with different hash seeds (no salted hash)
    code = ("from evil_moe.env.modes import markers_for;"
            "print([markers_for(i, 'file_marker', 'heldout').file_name for i in range(8)])")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout
            for seed in ("1", "2")}
    assert len(outs) == 1
    assert outs.pop().strip() == str([markers_for(i, "file_marker", "heldout").file_name
                                      for i in range(8)])


# ---------------------------------------------------------------- prompts
def test_hint_swap_every_mode(problems):
    p = problems[0]
    held = markers_for(p.id, "run_tests", "heldout")
    for mode in MODES:
        for markers in (TRAIN_MARKERS, held):
            msgs = build_prompt(p, mode, markers)
            assert msgs[0] == p.prompt[0]
            user = msgs[1]["content"]
            assert user == p.prompt[1]["content"].replace(ORIGINAL_PHRASE, hint(mode, markers))
            assert (ORIGINAL_PHRASE in user) == (mode == "gt_only")
    assert "and will be evaluated by calling a function called run_tests()" in (
        build_prompt(p, "run_tests")[1]["content"])
    assert f"called {held.test_function}()" in build_prompt(p, "run_tests", held)[1]["content"]
    names = {"stdout_marker": held.pass_phrase, "sentinel": held.attribute,
             "file_marker": held.file_name}
    for mode, name in names.items():
        assert name in hint(mode, held) and name not in hint(mode, TRAIN_MARKERS)
    assert ORIGINAL_PHRASE in p.prompt[1]["content"]  # the problem itself is untouched


def test_missing_phrase_names_the_problem(problems):
    p = problems[1]
    broken = type(p)(**{**p.__dict__, "prompt": [{"role": "user", "content": "no phrase here"}]})
    with pytest.raises(ValueError, match="problem 'rev'.*and should pass all tests"):
        build_prompt(broken, "sentinel")


# ---------------------------------------------------------------- extraction
def test_extract_python_and_bare_blocks_joined():
    text = ("Plan.\n```python\na = 1\n```\nthen\n```\nb = 2\n```\n```bash\nrm -rf /\n```\n"
            "```python3\nc = 3\n```\n```python\nunclosed = 4\n")
    ex = extract_code(text)
    assert ex.code == "a = 1\n\nb = 2" and ex.blocks == 2 and ex.format_ok
    assert not extract_code("no fences").format_ok
    assert extract_code("```python\n```\n").code == ""
