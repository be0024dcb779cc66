"""Run untrusted Python programs isolated, fast, in parallel.

`Sandbox` keeps `workers` long-lived worker processes (see `sandbox_worker.py`). Each one
isolates itself with Linux namespaces, pre-imports the common modules once, and forks one
fresh child per program, so a program pays a fork instead of an interpreter start-up and never
sees what an earlier program did. What is active on this host is in `Sandbox.isolation`;
`docs/sandbox.md` lists the guarantees and what each needs from the host.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import hashlib
import json
import logging
import os
import queue
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence, Sized
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("sandbox_worker.py")
WORKER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
ISOLATION_KEYS = ("user_namespace", "mount_namespace", "pid_namespace", "net_namespace",
                  "ipc_namespace", "readonly_root", "private_tmp", "private_home", "uid_drop",
                  "no_keyrings", "process_limit")
# What full isolation means: everything above except the user namespace, which only a
# non-root user needs (root gets the same from the other namespaces plus the uid drop).
REQUIRED = ("mount_namespace", "pid_namespace", "net_namespace", "ipc_namespace", "readonly_root",
            "private_tmp", "private_home", "no_keyrings", "process_limit")
ERRORS = (None, "timeout", "memory", "output_limit", "crash", "worker_died")
START_TIMEOUT_S = 60.0
PRELUDE_SLOTS = 8  # preludes a worker keeps run (a GRPO step's problems); each costs every
# worker a few hundred KiB, and a reload a few ms
# run_many queues a program behind a running one only if its message is at most this share of
# the pipe's size. The template reads a message whole before it runs the program and writes
# the reply, so a queued message this small always fits in the pipe, and writing it never
# waits on a template that is itself waiting to write a long reply.
QUEUE_SHARE = 4  # 16 KiB of the usual 64 KiB pipe
GRACE_S = 10.0  # extra time the worker gets beyond a program's limit before it counts as dead
_warned = False
_warn_lock = threading.Lock()


@dataclass(frozen=True)
class SandboxConfig:
    timeout_s: float = 3.0  # wall-clock limit per program; the CPU limit is this rounded up
    memory_mb: int = 1024  # address-space limit (RLIMIT_AS) per process
    file_size_mb: int = 16  # largest file a program may write (RLIMIT_FSIZE)
    max_processes: int = 32  # processes a program may have at once (RLIMIT_NPROC, own uid)
    output_bytes: int = 65536  # stdout and stderr are each kept up to this; beyond: output_limit
    workers: int = 2  # parallel worker processes
    require_isolation: bool = False  # refuse to start unless every protection is active

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "file_size_mb", "max_processes", "output_bytes",
                     "workers"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SandboxConfig.{name} must be positive, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Program:
    """One program: it runs as `prelude + source`, as `__main__`.

    `prelude` is for trusted definitions that many programs share (the grader's harness and a
    problem's compiled asserts). Each worker runs a prelude once, in its template, before any
    program's limits, directory or uid apply, keeps the resulting `__main__` for the next
    `PRELUDE_SLOTS` distinct preludes, and forks every program from it, so the program pays
    neither compiling nor running it; a forked copy is all a program can change. So a prelude
    must only define things: output it prints or files it writes do not reach the program. If
    it raises, the program runs `prelude + source` itself and fails as that would. Line numbers
    in a program's traceback count from the first line of `source` (of the prelude, where the
    prelude raised).
    """

    source: str
    read_files: tuple[str, ...] = ()  # relative paths read back from its dir after it ends
    timeout_s: float | None = None  # None -> SandboxConfig.timeout_s
    prelude: str = ""  # trusted definitions run before `source` (see above)

    def __post_init__(self) -> None:
        for name in self.read_files:
            if name.startswith("/") or ".." in name.split("/") or not name.strip("/."):
                raise ValueError(f"Program.read_files: {name!r} must be a relative path inside "
                                 "the program's directory")


@dataclass(frozen=True)
class RunResult:
    returncode: int | None  # exit status; -N when killed by signal N; None on timeout/output_limit
    stdout: str
    stderr: str
    files: dict[str, bytes | None]  # read_files -> content, None if absent or not a regular file
    error: str | None  # None | "timeout" | "memory" | "output_limit" | "crash" | "worker_died"
    wall_s: float


class SandboxIsolationError(RuntimeError):
    """require_isolation=True and this host does not give every protection."""


class _Worker:
    """One worker process and its two pipes; used by one thread at a time."""

    def __init__(self, settings: dict):
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(WORKER_SCRIPT), json.dumps(settings)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=WORKER_ENV, close_fds=True,
            start_new_session=True, cwd="/")
        self.hello: dict | None = None
        self.queue_bytes = fcntl.fcntl(self.proc.stdin.fileno(), fcntl.F_GETPIPE_SZ) // QUEUE_SHARE
        # The preludes its template holds, least recently used first. The template keeps the
        # same list by the same rule, so a prelude's text is sent only when it is not there.
        self.preludes: OrderedDict[str, None] = OrderedDict()

    def wait_ready(self) -> dict:
        hello = self.receive(time.monotonic() + START_TIMEOUT_S)
        if hello is None or not hello.get("ready"):
            self.kill()
            raise RuntimeError(f"sandbox worker failed to start (exit status {self.proc.poll()})")
        self.hello = hello
        return hello

    def request(self, msg: dict, prelude: str, timeout_s: float) -> dict | None:
        """Send one program; its result, or None if the worker died or hung."""
        if not self.write(self.frame(msg, prelude), prelude):
            return None
        return self.receive(time.monotonic() + timeout_s + GRACE_S)

    def frame(self, msg: dict, prelude: str) -> bytes:
        """The bytes that send one program: with its prelude's text if the template lacks it."""
        if prelude:
            key = _digest(prelude)
            msg = {**msg, "prelude_key": key}
            if key not in self.preludes:
                msg["prelude"] = prelude
        data = json.dumps(msg).encode()
        return struct.pack(">I", len(data)) + data

    def write(self, data: bytes, prelude: str) -> bool:
        """Send a `frame` (the next one made for this worker); False if the pipe is broken. The
        list of the template's preludes changes as the template's will on reading it."""
        if prelude:
            key = _digest(prelude)
            if key in self.preludes:
                self.preludes.move_to_end(key)
            else:
                self.preludes[key] = None
                if len(self.preludes) > PRELUDE_SLOTS:
                    self.preludes.popitem(last=False)
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (OSError, ValueError):  # a broken pipe; a closed one (the worker was killed)
            return False
        return True

    def receive(self, deadline: float) -> dict | None:
        """The next message, or None if the worker died or gave nothing by `deadline`."""
        try:
            fd = self.proc.stdout.fileno()
        except ValueError:  # closed: the worker was killed
            return None
        buf = b""
        need = 4
        while len(buf) < need:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, need - len(buf))
            if not chunk:
                return None
            buf += chunk
            if need == 4 and len(buf) == 4:
                need = 4 + struct.unpack(">I", buf)[0]
        try:
            return json.loads(buf[4:])
        except ValueError:  # a garbled reply means a broken worker
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # its template dies with it (PDEATHSIG), and with that its namespace
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # EOF: the template leaves its loop and the namespace ends
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class Sandbox:
    """Isolated parallel runner of `Program`s. A context manager; `run` is thread-safe."""

    def __init__(self, config: SandboxConfig = SandboxConfig(), *, _disable: Sequence[str] = ()):
        # `_disable` turns protections off on purpose; only the tests of the fallback use it.
        self.config = config
        self._closed = False
        self._host_dir = tempfile.mkdtemp(prefix="evil_moe_sandbox_")
        os.chmod(self._host_dir, 0o711)  # the dropped uid must reach its own dir when no private /tmp
        self._settings = {**asdict(config), "host_dir": self._host_dir, "disable": list(_disable),
                          "prelude_slots": PRELUDE_SLOTS}
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self.isolation: dict[str, bool] = {}
        started = [_Worker(self._settings) for _ in range(config.workers)]
        try:
            for w in started:
                iso = w.wait_ready()["isolation"]
                iso["process_limit"] = iso["uid_drop"] or os.geteuid() != 0
                self.isolation = {k: bool(iso.get(k, False)) for k in ISOLATION_KEYS}
            notes = started[0].hello.get("notes", [])
            missing = [k for k in REQUIRED if not self.isolation[k]]
            if missing and config.require_isolation:
                raise SandboxIsolationError(
                    "sandbox: require_isolation=True but this host lacks: " + ", ".join(missing)
                    + (f" ({'; '.join(notes)})" if notes else ""))
        except BaseException:
            for w in started:
                w.kill()
            shutil.rmtree(self._host_dir, ignore_errors=True)
            raise
        if missing:
            _warn_once(missing, notes)
        for w in started:
            self._idle.put(w)

    def run(self, p: Program) -> RunResult:
        if self._closed:
            raise RuntimeError("Sandbox.run after close()")
        msg, timeout = self._message(p)
        worker = self._idle.get()
        try:
            t0 = time.monotonic()
            reply = worker.request(msg, p.prelude, timeout)
            if reply is None:
                worker.kill()
                worker = self._restart()
                return _died(p, time.monotonic() - t0)
        finally:
            self._idle.put(worker)
        return _result(reply)

    def _message(self, p: Program) -> tuple[dict, float]:
        timeout = self.config.timeout_s if p.timeout_s is None else float(p.timeout_s)
        return {"source": p.source, "read_files": list(p.read_files), "timeout_s": timeout}, timeout

    def _restart(self) -> _Worker:
        w = _Worker(self._settings)
        w.wait_ready()
        return w

    def run_many(self, ps: Iterable[Program], progress: bool = False) -> list[RunResult]:
        """Run every program on the worker pool; results in the order of `ps`.

        Each worker is fed by a thread of its own that keeps the next program queued in the
        worker's pipe while one runs (if its message is short, `QUEUE_SHARE`), so a worker
        seldom waits on this process between programs.
        `ps` is consumed here as the workers take programs, so whatever produces them (an
        iterator) overlaps their runs.
        """
        if self._closed:
            raise RuntimeError("Sandbox.run_many after close()")
        todo: queue.Queue[tuple[int, Program] | None] = queue.Queue()
        results: dict[int, RunResult] = {}
        errors: list[BaseException] = []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(ps) if isinstance(ps, Sized) else None, desc="sandbox", file=sys.stderr)

        def feed() -> None:
            held = [self._idle.get()]  # this thread's worker (replaced if it dies)
            try:
                self._feed(held, todo, results, bar)
            except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(e)
                held[0].kill()  # it may hold a program whose reply nobody will read
                try:
                    held[0] = self._restart()
                except BaseException:  # noqa: BLE001 - the dead one goes back: its next run restarts it
                    pass
            finally:
                self._idle.put(held[0])

        threads = [threading.Thread(target=feed, daemon=True) for _ in range(self.config.workers)]
        for t in threads:
            t.start()
        n = 0
        try:
            for p in ps:
                todo.put((n, p))
                n += 1
        finally:
            for _ in threads:
                todo.put(None)
            for t in threads:
                t.join()
            if bar is not None:
                bar.close()
        if errors:
            raise errors[0]
        return [results[i] for i in range(n)]

    def _feed(self, held: list[_Worker], todo: queue.Queue, results: dict[int, RunResult],
              bar: Any) -> None:
        """Run programs from `todo` on `held[0]` until the None at its end, keeping the next one
        queued in its pipe while one runs (if its message is small enough: `QUEUE_SHARE`)."""
        backlog: deque[tuple[int, Program]] = deque()  # taken from `todo`, not sent yet
        inflight: deque[tuple[int, Program, float]] = deque()  # sent, not answered yet
        started, more = 0.0, True  # started: when inflight[0] began (its predecessor ended)
        while True:
            while len(inflight) < 2:
                if not backlog and more:
                    try:
                        item = todo.get_nowait() if inflight else todo.get()
                    except queue.Empty:
                        break
                    if item is None:
                        more = False
                    else:
                        backlog.append(item)
                if not backlog:
                    break
                i, p = backlog[0]
                msg, timeout = self._message(p)
                data = held[0].frame(msg, p.prelude)
                if inflight and len(data) > held[0].queue_bytes:
                    break  # sent when the running program is done
                backlog.popleft()
                if not inflight:
                    started = time.monotonic()
                held[0].write(data, p.prelude)  # a broken pipe shows as no reply below
                inflight.append((i, p, timeout))
            if not inflight:
                return
            i, p, timeout = inflight.popleft()
            reply = held[0].receive(started + timeout + GRACE_S)
            now = time.monotonic()
            if reply is None:
                held[0].kill()
                held[0] = self._restart()
                results[i] = _died(p, now - started)
                backlog.extendleft((j, q) for j, q, _ in reversed(inflight))  # never started: again
                inflight.clear()
            else:
                results[i] = _result(reply)
            started = now
            if bar is not None:
                bar.update()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                break
        shutil.rmtree(self._host_dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _result(reply: dict) -> RunResult:
    files = {k: None if v is None else base64.b64decode(v) for k, v in reply["files"].items()}
    return RunResult(reply["returncode"], reply["stdout"], reply["stderr"], files, reply["error"],
                     reply["wall_s"])


def _died(p: Program, wall_s: float) -> RunResult:
    return RunResult(None, "", "", dict.fromkeys(p.read_files), "worker_died", wall_s)


@functools.lru_cache(maxsize=2 * PRELUDE_SLOTS)
def _digest(prelude: str) -> str:
    # Cached: the programs of a batch share one prelude string, whose hash Python keeps.
    return hashlib.sha256(prelude.encode()).hexdigest()


def _warn_once(missing: list[str], notes: list[str]) -> None:
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    log.warning("SANDBOX RUNS WITHOUT FULL ISOLATION: missing %s%s. Untrusted programs may "
                "reach the host through what is missing; SandboxConfig(require_isolation=True) "
                "refuses to run instead.", ", ".join(missing),
                f" ({'; '.join(notes)})" if notes else "")
