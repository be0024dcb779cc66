"""The strict oracle with its verdict outside: the program reports, the grader judges.

The process that runs a response's code holds nothing worth stealing: no expected value, no
digest of one, no nonce and no other row's code. Its program (`_gt`, defined in the harness's
prelude) loads the response, runs each of the problem's calls in order and writes, per call, one
line with the SHA-256 of the result's canonical bytes (`_canon`), computed by code captured
before the response ran. The grader compares those digests with the expected values' digests,
computed here (literal expected values) or by a program that runs the problem's setup code and
never any response (`expected_program`). So a forged PASS needs the right results, which is
solving the problem, and nothing the response prints can fail the batch or reach the verdict:
`verdict` reads at most `n` well-formed lines and ignores everything else.

Canonical bytes (`_canon`) equal exactly when the strict equality of the benchmark's asserts
holds for the value types the oracle accepts: numbers by value (bool, int and integral floats
are one kind: 1 == 1.0 == True), str, None, list and tuple (not interchangeable), maps (dict,
defaultdict, OrderedDict, Counter: interchangeable, order-free), sets (set, frozenset:
interchangeable, order-free), and plain `ListNode` / `TreeNode` objects by their val, next, left
and right fields (a ListNode by val and next, a TreeNode by val, left and right: the fields
`is_same_list` and `is_same_tree` compare; a node reached twice is written twice, a cycle as a
reference back along the path). Anything else (a subclass, another class, NaN, a value over
16 MiB of bytes) has no canonical bytes and never equals anything.
"""

from __future__ import annotations

import functools
import hashlib
import marshal
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

CANON_SOURCE = r'''
def _canon(x, _type=type, _int=int, _float=float, _bool=bool, _str=str, _list=list,
           _tuple=tuple, _dict=dict, _set=set, _frozenset=frozenset, _object=object, _id=id,
           _len=len, _format=format, _frepr=float.__repr__, _isint=float.is_integer,
           _encode=str.encode, _items=dict.items, _reversed=reversed, _join=b"".join,
           _list_append=list.append, _list_pop=list.pop, _list_sort=list.sort,
           _oga=object.__getattribute__, _tname=type.__dict__["__name__"].__get__,
           _tmro=type.__dict__["__mro__"].__get__, _BaseException=BaseException,
           _maps=tuple(__import__("collections").__dict__[k] for k in
                       ("defaultdict", "OrderedDict", "Counter")) + (dict,),
           _limit=1 << 24, _steps=1 << 22):
    # The canonical bytes of `x` (see the oracle module), or None. Iterative, so depth costs
    # no recursion; every part is length-prefixed, so distinct values never share bytes. A
    # container inside itself, over _limit bytes or over _steps parts has none.
    out = [[]]  # the parts of each open container; out[0] collects the root
    todo = [(0, x)]  # (0, value) to visit; (1, (tag, sort, id)) to close; (2, None) to open
    path = []  # ids of the nodes being written, outermost first (a cycle refers back along it)
    inside = set()  # ids of the containers and nodes being written
    size = steps = 0
    while todo:
        steps += 1
        if steps > _steps:
            return None
        op, v = _list_pop(todo)
        if op == 2:
            _list_append(out, [])
            continue
        if op == 1:
            parts = _list_pop(out)
            inside.discard(v[2])
            if v[0][:1] == b"O":
                _list_pop(path)
            if v[1]:
                _list_sort(parts)
            b = v[0] + b"(" + _join([b"%d:" % _len(p) + p for p in parts]) + b")"
        else:
            t = _type(v)
            if v is None:
                b = b"n"
            elif t is _bool or t is _int:
                b = b"i" + _encode(_format(_int(v), "x"))
            elif t is _float:
                if v != v:
                    return None
                if v - v == 0 and _isint(v):
                    b = b"i" + _encode(_format(_int(v), "x"))
                else:
                    b = b"f" + _encode(_frepr(v))
            elif t is _str:
                b = b"s" + _encode(v, "utf-8", "surrogatepass")
            elif t is _list or t is _tuple or t is _set or t is _frozenset:
                if _id(v) in inside:
                    return None
                inside.add(_id(v))
                order = t is _set or t is _frozenset
                _list_append(out, [])
                _list_append(todo, (1, (b"L" if t is _list else b"T" if t is _tuple else b"S", order, _id(v))))
                for y in _reversed(_list(v)):
                    _list_append(todo, (0, y))
                continue
            elif t in _maps:
                if _id(v) in inside:
                    return None
                inside.add(_id(v))
                _list_append(out, [])
                _list_append(todo, (1, (b"M", True, _id(v))))
                for k, y in _list(_items(v)):
                    _list_append(todo, (1, (b"P", False, None)))
                    _list_append(todo, (0, y))
                    _list_append(todo, (0, k))
                    _list_append(todo, (2, None))
                continue
            elif _type(t) is _type and _tname(t) in ("ListNode", "TreeNode") and _len(_tmro(t)) == 2:
                if _id(v) in inside:  # a cycle: how many nodes up the path it refers back
                    b = b"r%d" % (_len(path) - path.index(_id(v)))
                else:  # a node reached twice without a cycle is written twice, as a tree
                    try:
                        d = _oga(v, "__dict__")
                    except _BaseException:
                        return None
                    if _type(d) is not _dict:
                        return None
                    inside.add(_id(v))
                    _list_append(path, _id(v))
                    _list_append(out, [])
                    _list_append(todo, (1, (b"O" + _encode(_tname(t)), False, _id(v))))
                    fields = ("next", "val") if _tname(t) == "ListNode" else ("right", "left", "val")
                    for f in fields:  # the fields is_same_list / is_same_tree compare
                        if f in d:
                            _list_append(todo, (1, (b"P", False, None)))
                            _list_append(todo, (0, d[f]))
                            _list_append(todo, (0, f))
                            _list_append(todo, (2, None))
                    continue
            else:
                return None
        _list_append(out[-1], b)
        size += _len(b)
        if size > _limit:
            return None
    return out[0][0]
'''

GT_SOURCE = r'''
def _out(silent, _os=__import__("os")):
    # A descriptor on the program's stdout for its own lines; with `silent`, the response's
    # output (fds 1 and 2) goes to /dev/null.
    out = _os.dup(1)
    if silent:
        null = _os.open(_os.devnull, _os.O_WRONLY)
        _os.dup2(null, 1)
        _os.dup2(null, 2)
        _os.close(null)
    return out


def _load(problem, code, _B=__import__("builtins"), _exec=exec, _dict=dict):
    # The response's namespace and the calls' globals (the setup's helpers, as they stood before
    # the response ran, plus its Solution), with the setup run where `_problem` did not (see
    # it) and the response's compiled `code` run; raises whatever loading raised.
    setup, calls, ready = problem
    ns, ev = ({"__name__": "solution", "__builtins__": _B.__dict__}, None) if ready is None else ready
    if ev is None:
        _exec(setup, ns)
        ev = _dict(ns)
    _exec(code, ns)
    ev["Solution"] = ns.get("Solution")
    return ns, ev


def _gt(cfg, problem, _os=__import__("os"), _marshal=__import__("marshal"),
        _binascii=__import__("binascii"), _sha=__import__("hashlib").sha256, _canon=_canon,
        _out=_out, _load=_load, _eval=eval, _enumerate=enumerate, _BaseException=BaseException):
    # The strict oracle's program: per call, "R <i> <sha256 of the result's canonical bytes>"
    # (X: none), "E <i>" if the call raised, "L" if loading the response raised, "D" at the end.
    # It holds nothing the response could use to forge a line but the problem's calls.
    write, end = _os.write, _os._exit
    cfg = _marshal.loads(_binascii.a2b_base64(cfg))
    calls = problem[1]  # see `_problem`
    out = _out(True)
    try:
        ns, ev = _load(problem, _marshal.loads(cfg["code"]))
    except _BaseException:
        write(out, b"L\n")
        end(0)
    for i, call in _enumerate(calls):
        try:
            c = _canon(_eval(call, ev))
        except _BaseException:
            write(out, b"E %d\n" % i)
            end(0)
        write(out, b"R %d %s\n" % (i, b"X" if c is None else _sha(c).hexdigest().encode()))
    write(out, b"D\n")
    end(0)
'''


@functools.cache
def _canon_fn():
    ns: dict = {}
    exec(compile(CANON_SOURCE, "<canon>", "exec", dont_inherit=True), ns)
    return ns["_canon"]


def digest(value) -> str | None:
    """The hex SHA-256 of `value`'s canonical bytes, or None where it has none (it then never
    equals anything). Used here on expected values only, which no response has touched."""
    c = _canon_fn()(value)
    return None if c is None else hashlib.sha256(c).hexdigest()


@dataclass(frozen=True)
class Verdict:
    correct: bool | None  # None: the program reached no verdict (see `verdict`)
    reason: str  # "pass", "wrong result i", "call i raised", "load raised", "ended early", or
    # the sandbox's error for a missing verdict


def stopped_by_limit(error: str | None, returncode: int | None) -> bool:
    """Whether the sandbox stopped the program for a limit or lost its worker: what the timeout
    rule retries, judged from the sandbox's report alone, never from what the program wrote (a
    retry that depended on whether its lines matched the expected digests would tell a later
    program whether its guess was right: a red-team review used that to forge `gt_correct`)."""
    return error in ("timeout", "wall_timeout", "worker_died") or (error == "memory" and returncode == -9)


_LINE = re.compile(r"R (\d{1,9}) ([0-9a-f]{64}|X)|E (\d{1,9})")


def verdict(stdout: str, error: str | None, expected: Sequence[str | None],
            returncode: int | None = None) -> Verdict:
    """Judge one oracle program's output against the expected digests.

    False as soon as any line shows a wrong result, a raising call or a failed load (whatever
    happened later). True when every call's result matched. Otherwise the program ended without
    all results: False if it ended by itself (as a script that exits before its asserts), by a
    signal the sandbox did not send (`crash`: it killed itself, or crashed), by a MemoryError of
    its own (`memory` without the kernel's kill, `returncode` not -9: a claim the program can
    make), or wrote more than the output cap (the oracle's own lines are a few KiB). None (no
    verdict) only where a limit stopped it (`timeout`, `wall_timeout`, `memory` by the kernel's
    OOM killer) or its worker died (`worker_died`). Reads each line at most once; malformed lines
    are ignored, so output cannot hurt the grader.
    """
    n = len(expected)
    right = bytearray(n)
    found = 0
    for line in stdout.splitlines():
        if line == "L":
            return Verdict(False, "load raised")
        m = _LINE.fullmatch(line)
        if m is None:
            continue
        i = int(m.group(1) or m.group(3))
        if i >= n:
            continue
        if m.group(3) is not None:
            return Verdict(False, f"call {i} raised")
        if expected[i] is None or m.group(2) != expected[i]:
            return Verdict(False, f"wrong result {i}")
        if not right[i]:
            right[i] = 1
            found += 1
    if found == n:
        return Verdict(True, "pass")
    if error is None:
        return Verdict(False, "ended early")
    if error == "output_limit":  # the oracle's own lines are far below the cap: the response wrote it
        return Verdict(False, "output over the limit")
    if stopped_by_limit(error, returncode):
        return Verdict(None, error)
    if error == "crash":  # a program cannot make itself a missing verdict
        return Verdict(False, "crashed")
    return Verdict(False, "raised MemoryError" if error == "memory" else f"ended: {error}")


_EXPECT_SCRIPT = r'''
import hashlib, marshal, sys
ns = {"__name__": "__expected__"}
exec(CANON, ns)
setup, codes = marshal.loads(sys.stdin.buffer.read())
exec(setup, ns)
for i, code in enumerate(codes):
    try:
        c = ns["_canon"](eval(code, ns))
    except BaseException as e:
        print("E", i, repr(e)[:200].replace("\n", " "), flush=True)
        sys.exit(0)
    print("R", i, "X" if c is None else hashlib.sha256(c).hexdigest(), flush=True)
'''


class ExpectedError(RuntimeError):
    """A problem's expected values cannot be computed (its setup or an expected side raised)."""


def expected_program_digests(setup: str, expected_sources: Sequence[str],
                             timeout_s: float = 60.0) -> list[str | None]:
    """The digests of expected sides that are not plain literals, evaluated with the problem's
    setup code in a fresh interpreter that runs no response (the benchmark's own code only)."""
    codes = tuple(compile(s, "<expected>", "eval", dont_inherit=True) for s in expected_sources)
    payload = marshal.dumps((compile(setup, "<setup>", "exec", dont_inherit=True), codes))
    script = f"CANON = {CANON_SOURCE!r}\n{_EXPECT_SCRIPT}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    try:
        p = subprocess.run([sys.executable, "-I", "-c", script], input=payload, capture_output=True,
                           timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise ExpectedError(f"evaluating the expected values took over {timeout_s:g} s") from None
    out: list[str | None] = []
    for line in p.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split(" ", 2)
        if parts[0] == "E":
            raise ExpectedError(f"gt_answer[{parts[1]}]: its expected side raised {parts[2]}")
        out.append(None if parts[2] == "X" else parts[2])
    if len(out) != len(codes):
        raise ExpectedError(f"the expected values' program failed: {p.stderr.decode()[-400:]}")
    return out
