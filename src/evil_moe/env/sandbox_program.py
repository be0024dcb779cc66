"""What runs in a program's own process, once the template has forked it and set it up: its
source run as `__main__` (in the `__main__` its prelude made, else a fresh one), and its exit
as the interpreter's would be (`sys.exit` codes, an uncaught exception's traceback and status 1,
non-daemon threads joined, `atexit` handlers run, streams flushed).

Loaded by `sandbox_worker.py` from this directory, by path. Standard library only.
"""

from __future__ import annotations

import builtins
import os
import sys
import types

MEMORY_TAG = b"M"  # written on the status channel (fd 3) when the program dies of a MemoryError


def _exit_code(code: object) -> int:
    """`sys.exit(code)` as CPython maps it to an exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    try:
        sys.stderr.write(f"{code}\n")
    except Exception:
        pass
    return 1


def new_main() -> types.ModuleType:
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    return main


def run_source(source: str, main: types.ModuleType | None) -> None:
    """Run `source` as __main__ (in `main`, where its prelude ran, else a fresh module) in this
    (forked) process and exit like the interpreter would."""
    import atexit
    import threading
    import traceback

    main = main or new_main()
    sys.modules["__main__"] = main
    sys.argv = [""]
    rc = 0
    try:
        exec(compile(source, "<program>", "exec", dont_inherit=True), main.__dict__)
    except SystemExit as e:
        rc = _exit_code(e.code)
    except BaseException as e:  # noqa: BLE001 - uncaught program exception: report like python
        if isinstance(e, MemoryError):
            os.write(3, MEMORY_TAG)
        try:
            traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        except BaseException:  # noqa: BLE001
            pass
        rc = 1
    try:
        for t in threading.enumerate():
            if t is not threading.main_thread() and not t.daemon:
                t.join()
        atexit._run_exitfuncs()
    except SystemExit as e:
        rc = _exit_code(e.code)
    except BaseException:  # noqa: BLE001
        rc = rc or 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass
    os._exit(rc & 0xFF)
