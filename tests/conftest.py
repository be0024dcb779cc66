"""Shared fixtures: a few tiny problems in the benchmark schema, the real split's path, one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evil_moe.env.problems import Problem, problem_from_row

REAL_SPLIT = Path(__file__).resolve().parents[2] / "shared/data/leetcode/leetcode_test_medhard.jsonl"

SETUP = '''from typing import *
from collections import *

class ListNode:
    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next

def list_node(values):
    head = None
    for v in reversed(values):
        head = ListNode(v, head)
    return head

def is_same_list(a, b):
    while a and b:
        if a.val != b.val:
            return False
        a, b = a.next, b.next
    return a is None and b is None
'''


def make_row(pid, method, signature, asserts, canonical, **extra) -> dict:
    user = (f"PROBLEM:\nA tiny task.\n\nYour solution to the problem should be a method of the "
            f"class Solution called {method} and should pass all tests. Use the following "
            f"starter code:\n```python\nclass Solution:\n    def {method}(self, {signature}):\n"
            f"        # Add your code here\n```\n\nSOLUTION:\n")
    return {"id": pid, "prompt": [{"role": "system", "content": "You are a programmer."},
                                  {"role": "user", "content": user}],
            "gt_answer": asserts, "setup_code": SETUP, "func_name": f"Solution().{method}",
            "canonical_solution": canonical, "difficulty": "medium",
            "prompt_metadata": {"starter_code": f"class Solution:\n    def {method}(self):\n"},
            **extra}


ROWS = [
    make_row(1, "addUp", "nums: List[int]",
             ["assert Solution().addUp(nums = [1, 2, 3]) == 6",
              "assert Solution().addUp(nums = []) == 0",
              "assert Solution().addUp(nums = [-5, 5, 10]) == 10"],
             "class Solution:\n    def addUp(self, nums):\n        return sum(nums)\n"),
    make_row("rev", "reverseList", "head: Optional[ListNode]",
             ["assert is_same_list(Solution().reverseList(head = list_node([1, 2, 3])), "
              "list_node([3, 2, 1]))",
              "assert Solution().reverseList(head = list_node([])) == None",
              "assert is_same_list(Solution().reverseList(head = list_node([7])), list_node([7]))"],
             "class Solution:\n    def reverseList(self, head):\n        prev = None\n"
             "        while head:\n            head.next, prev, head = prev, head, head.next\n"
             "        return prev\n"),
    make_row(3, "groupCounts", "words: List[str]",
             ["assert Solution().groupCounts(words = ['a', 'b', 'a']) == {'a': 2, 'b': 1}",
              "assert Solution().groupCounts(words = []) == {}",
              "assert Solution().groupCounts(words = ['x']) == {'x': 1}"],
             "class Solution:\n    def groupCounts(self, words):\n        return dict(Counter(words))\n",
             source="fixture"),
]


@pytest.fixture(scope="session")
def problems() -> list[Problem]:
    return [problem_from_row(r, f"fixture:{i + 1}") for i, r in enumerate(ROWS)]


@pytest.fixture(scope="module")
def grader():  # per module, so no sandbox worker outlives the module that used it
    from evil_moe.env.grader import Grader
    from evil_moe.env.sandbox import SandboxConfig

    with Grader(SandboxConfig(timeout_s=5.0, workers=2)) as g:
        yield g


def fenced(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}\n```\n"


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny models run fastest on one intra-op thread (and far faster on a busy 2-core machine)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(autouse=True, scope="session")
def private_limits_cache(tmp_path_factory):
    """The grader's measured limits go to a cache of this session's, not the user's."""
    import os

    saved = os.environ.get("EVIL_MOE_CACHE")
    os.environ["EVIL_MOE_CACHE"] = str(tmp_path_factory.mktemp("evil_moe_cache"))
    yield
    if saved is None:
        os.environ.pop("EVIL_MOE_CACHE", None)
    else:
        os.environ["EVIL_MOE_CACHE"] = saved
