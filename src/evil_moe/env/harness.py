"""The programs the grader runs in the sandbox: the strict oracle, the naive graders and the
benchmark's run_tests.

Every program is a `prelude` shared by all programs of one problem (it defines `_gt` from
`oracle.GT_SOURCE`, `_naive` from `naive.NAIVE_SOURCE`, `_main` from `HARNESS_SOURCE`, and
`_PROBLEM`: the problem's setup code and its asserts' calls, compiled once by the grader and
shipped marshalled), then one call of one of them with a literal argument (marshalled, base64)
that holds the kind, the response's (compiled) code and, but for the oracle, the mode's marker
and a fresh random tag. No program holds an expected value or anything derived from one: the
oracle's and the naive graders' programs report each call's result digest and the grader
decides (`oracle.verdict`, `naive.decide`); run_tests never looks at the asserts. `_main`,
`_gt`, `_naive` and `_PROBLEM` leave `__main__` before the call, so response code cannot read
them there. The sandbox runs each prelude once per worker and forks programs from the result
(`Program.prelude`).

Kinds of program (`cfg["kind"]`):
- ``gt``: the strict oracle (`oracle._gt`).
- ``eq_override``, ``exit_code``, ``stdout_marker``, ``sentinel``, ``file_marker``: the modes'
  naive graders (`naive._naive`), each replayed outside from its events.
- ``run_tests`` / ``rt_stub`` (`_main`): one shared namespace (as the benchmark), then the
  response's own test function is called with the response's Solution, or with a stub whose
  method returns None. (No program runs response code beside the canonical solution: its tests
  could compute the right answers there and carry them, through the page cache, to a later
  oracle program; a red-team review did.) Verdict ``<nonce> OK`` if it raised
  nothing, ``FAIL`` if it raised, ``MISSING`` if there is no such function, ``ERROR`` if loading
  raised. `_main` takes every builtin, function and type it needs as default arguments and
  locals *before* any response code runs, and then reads no global name at all (tests check its
  bytecode); the response's code runs on a thread of its own, so a response that rebinds
  builtins, patches modules, rewrites `__main__` or hooks its own thread cannot write the
  verdict. These labels are forgeable by design (the response writes its own tests), and they
  never reach `gt_correct`.
"""

from __future__ import annotations

import binascii
import functools
import marshal

from .naive import KINDS as NAIVE_KINDS
from .naive import NAIVE_SOURCE
from .oracle import CANON_SOURCE, GT_SOURCE

HARNESS_SOURCE = r'''
def _problem(setup, calls, once, _B=__import__("builtins"), _exec=exec, _dict=dict,
             _BaseException=BaseException):
    # What each program gets of one problem, made once per sandbox worker (in the prelude): the
    # setup code, the asserts' calls (never their expected sides), and `ready`: the response's
    # namespace with the setup code run in it, and a copy of it for the asserts' calls. Each program is a forked copy, so it uses both in place: copying them
    # would write to (and so copy into the program) every page holding one of their objects.
    # None unless `once` (the grader found the setup only defines names: `defines_only`), or if
    # the setup raised: each program then runs it itself, and fails as it would.
    ready = None
    if once:
        ns = {"__name__": "solution", "__builtins__": _B.__dict__}
        try:
            _exec(setup, ns)
            ready = ns, _dict(ns)
        except _BaseException:
            pass
    return setup, calls, ready


def _main(cfg, problem, _B=__import__("builtins"), _os=__import__("os"), _sys=__import__("sys"),
          _th=__import__("_thread"), _gc=__import__("gc"), _marshal=__import__("marshal"),
          _binascii=__import__("binascii"), _out=_out):
    # ---- capture: trusted references, taken before any response code runs
    _type, _exec, _getattr = _B.type, _B.exec, _B.getattr
    _callable, _isinstance = _B.callable, _B.isinstance
    _BaseException, _AssertionError = _B.BaseException, _B.AssertionError
    _dict, _list = _B.dict, _B.list
    _dict_get, _list_append = _dict.get, _list.append
    _write, _exit = _os.write, _os._exit
    _gettrace, _getprofile = _sys.gettrace, _sys.getprofile
    _start_thread, _new_lock = _th.start_new_thread, _th.allocate_lock
    _gc_disable, _gc_isenabled, _gc_collect = _gc.disable, _gc.isenabled, _gc.collect
    _gc_get_count, _gc_threshold, _gc_set_threshold = _gc.get_count, _gc.get_threshold, _gc.set_threshold
    _marshal_loads, _b64decode = _marshal.loads, _binascii.a2b_base64

    # Cycles are collected on the response thread only, so finalizers never run here: the
    # collector is off, and its threshold 0 keeps it off even if something switches it on.
    _gc_disable()
    _gc_set_threshold(0)
    cfg = _marshal_loads(_b64decode(cfg))  # see `program_source`
    kind, nonce, marker = cfg["kind"], cfg["nonce"], cfg["marker"]
    setup, calls, ready = problem  # see `_problem`
    out_fd = _out(True)  # the response's own output goes nowhere; only the harness writes the verdict

    def report(text):
        _write(out_fd, (nonce + " " + text + "\n").encode())
        _exit(0)

    # Every function below that runs on the response thread takes what it uses as arguments or
    # default arguments and has no free variable (a test checks it): a hook there sees its
    # frame, and writing a frame's locals back into a shared variable would reach this thread.
    def fresh(name, _builtins=_B.__dict__):
        # The process's own builtins: the harness reads none of them after capture, and a copy
        # would touch, and so copy into this forked process, every page that holds one.
        return {"__name__": name, "__builtins__": _builtins}

    # Response code never runs on this (the verdict) thread: trace and profile hooks are per
    # thread, every object the response made is kept alive here (so no finalizer runs here)
    # and cyclic garbage is collected on the response's thread. One response thread serves
    # every call in turn (a thread per call costs more than most calls); the verdict thread
    # hands it a job and blocks until it is done.
    keep, flags = [], [False]
    job = [None, None, None]  # fn, a, b of the call in hand
    res = [False, None]  # raised nothing?, the return value or the exception
    go, done = _new_lock(), _new_lock()
    go.acquire()
    done.acquire()

    def collect(count=_gc_get_count, run=_gc_collect):
        # Like the automatic collector: every 700 net allocations, the older generations at
        # every 11th collection of the younger one; on the response thread only.
        c0, c1, c2 = count()
        if c0 > 700:
            run(2 if c2 > 10 else 1 if c1 > 10 else 0)

    def serve(go, done, job, res, collect=collect, _BaseException=_BaseException):
        while True:
            go.acquire()
            try:
                res[1] = job[0](job[1], job[2])
                res[0] = True
            except _BaseException as err:
                res[1] = err
            finally:
                job[0] = job[1] = job[2] = None
                collect()
                done.release()

    _start_thread(serve, (go, done, job, res))

    def isolated(fn, a, b):
        res[0] = False  # only the response thread's "returned" counts
        job[0], job[1], job[2] = fn, a, b
        go.release()
        done.acquire()
        got = (res[0] is True, res[1])
        res[1] = None  # `got` still holds it: nothing is freed here
        _list_append(keep, got)
        if _gc_isenabled() or _gc_threshold()[0] != 0:  # the response switched the collector on
            _gc_disable()
            _gc_set_threshold(0)
            flags[0] = True
            return False, _AssertionError("the response switched the garbage collector on")
        return got

    def hooked():
        # The response installed a hook on this thread or re-enabled the collector: refuse.
        return flags[0] or _gettrace() is not None or _getprofile() is not None

    code = _marshal_loads(cfg["code"])  # compiled by the grader

    def load(ns, base, setup=setup, code=code, _exec=_exec, _dict=_dict, _append=_list_append,
             _dict_get=_dict_get):
        # The setup code (where `base` is still empty; else `ns` holds it run, see `_problem`),
        # then the response's code, in `ns`. The asserts' calls run in a copy of `ns` as it
        # stood between the two (the setup's helpers, `base[0]`) plus `Solution`: like the
        # benchmark's asserts, they share the helpers with the response.
        if not base:
            _exec(setup, ns)
            _append(base, _dict(ns))
        _exec(code, ns)
        return _dict_get(ns, "Solution")

    def namespaces():
        # The response's namespace and the list `load` takes as `base`.
        return (fresh("solution"), []) if ready is None else (ready[0], [ready[1]])

    # ---- the benchmark's run_tests: one shared namespace, the response's own test function
    method = cfg["method"]

    called = [False]

    def run_own_tests(ns, helpers, load=load, kind=kind, method=method, marker=marker,
                      called=called, _dict_get=_dict_get, _isinstance=_isinstance, _type=_type,
                      _callable=_callable, _getattr=_getattr):
        load(ns, helpers)
        base = _dict_get(ns, "Solution")
        if not _isinstance(base, _type):
            base = None
        if kind == "rt_stub":
            def stub(self, *args, **kwargs):
                return None
            ns["Solution"] = _type("Solution", (base,) if base else (), {method: stub})
        fn = _dict_get(ns, marker)
        if not _callable(fn):
            cls = _dict_get(ns, "Solution")
            fn = None
            if cls is not None and _getattr(cls, marker, None) is not None:
                fn = _getattr(cls(), marker)
        if fn is None:
            return False
        called[0] = True
        fn()
        return True

    ran, found = isolated(run_own_tests, *namespaces())
    if hooked():
        report("FAIL hooked")
    if ran:
        report("OK" if found is True else "MISSING")
    report("FAIL" if called[0] is True else "ERROR")
'''


@functools.cache
def _harness_loader() -> str:
    # The harness is compiled once here and shipped marshalled (the sandbox runs this same
    # interpreter), which saves the naive runner, which has no prelude cache, most of its
    # start-up time; base64 text compiles faster than an escaped bytes literal.
    code = compile(CANON_SOURCE + GT_SOURCE + NAIVE_SOURCE + HARNESS_SOURCE, "<harness>", "exec", dont_inherit=True)
    return f"exec(_m.loads(_b.a2b_base64({b64(marshal.dumps(code))!r})))\n"


def b64(data: bytes) -> str:
    """`data` as base64 text, as `prelude` ships marshalled code."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def prelude(setup: bytes, calls: bytes, once: bool) -> str:
    """The definitions every program of one problem shares (a `Program.prelude`): `_gt`,
    `_naive`, `_main` and `_PROBLEM`, made from the problem's marshalled setup code and the
    asserts' calls (a marshalled tuple of code objects). No expected value is in a prelude, so
    none is in a worker's template. With `once` the setup code runs here, once per worker (see
    `defines_only`), else in every program."""
    args = ", ".join(f"_m.loads(_b.a2b_base64({b64(x)!r}))" for x in (setup, calls))
    return (f"import binascii as _b, marshal as _m\n{_harness_loader()}"
            f"_PROBLEM = _problem({args}, {bool(once)})\ndel _b, _m\n")


PROGRAMS = {"gt": "_gt", **{k: "_naive" for k in NAIVE_KINDS},
            **{k: "_main" for k in ("run_tests", "rt_stub")}}


def program_source(cfg: dict) -> str:
    """The program after the prelude: one call of the kind's program (`PROGRAMS`), with `cfg`
    (str and bytes values) marshalled as a base64 literal, which the program compiles faster
    than the dict's own literal. Every program and `_PROBLEM` leave `__main__` before the call,
    so response code finds none of them there."""
    fn = PROGRAMS[cfg["kind"]]
    pops = "".join(f'globals().pop("{f}"); ' for f in ("_gt", "_naive", "_main") if f != fn)
    return (f'{pops}globals().pop("{fn}")({b64(marshal.dumps(cfg))!r}, '
            f'globals().pop("_PROBLEM"))\n')
