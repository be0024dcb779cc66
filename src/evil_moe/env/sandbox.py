"""Run untrusted Python programs isolated, fast, in parallel.

`Sandbox` keeps `workers` long-lived worker processes (see `sandbox_worker.py`). Each one
isolates itself with Linux namespaces and a minimal read-only view of the file system,
pre-imports the common modules once, and forks one fresh child per program, so a program pays
a fork instead of an interpreter start-up and never sees what an earlier program did. Each
worker slot has cgroups (`sandbox_cgroup.py`) that limit a program's CPU time, memory and
processes summed over all its processes. What is active on this host is in
`Sandbox.isolation`; `docs/sandbox.md` has the threat model, the guarantees with their tests,
and what each needs from the host.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import itertools
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

from .sandbox_cgroup import RESOURCES, Cgroups
from .sandbox_view import copy_trees, manifest

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("sandbox_worker.py")
WORKER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
ISOLATION_KEYS = ("user_namespace", "mount_namespace", "pid_namespace", "net_namespace",
                  "ipc_namespace", "minimal_fs", "readonly_root", "private_tmp", "private_home",
                  "uid_drop", "no_keyrings", "no_file_channels", "pid_counter_reset",
                  "process_limit", "resident_view", "view_copied", "no_proc", "cpu_limit", "memory_limit",
                  "pids_limit", "cpu_share")
# What full isolation means: everything above except the user namespace, which only a
# non-root user needs (root gets the same from the other namespaces plus the uid drop), and the
# per-program cgroup limits, which need root (or a delegated cgroup); those have their own
# warning and `SandboxConfig.require_limits`.
REQUIRED = ("mount_namespace", "pid_namespace", "net_namespace", "ipc_namespace", "minimal_fs",
            "readonly_root", "private_tmp", "private_home", "no_keyrings", "no_file_channels",
            "pid_counter_reset", "process_limit", "resident_view", "view_copied", "no_proc")
LIMITS = ("cpu_limit", "memory_limit", "pids_limit", "cpu_share")  # over all of a program's processes
ERRORS = (None, "timeout", "wall_timeout", "memory", "output_limit", "crash", "worker_died")
START_TIMEOUT_S = 60.0
PRELUDE_SLOTS = 8  # preludes a worker keeps run (a GRPO step's problems); each costs every
# worker a few hundred KiB, and a reload a few ms
# run_many queues a program behind a running one only if its message is at most this share of
# the pipe's size. The template reads a message whole before it runs the program and writes
# the reply, so a queued message this small always fits in the pipe, and writing it never
# waits on a template that is itself waiting to write a long reply.
QUEUE_SHARE = 4  # 16 KiB of the usual 64 KiB pipe
HEADER_BYTES = 1 << 20  # a reply's JSON header is numbers and labels: longer means a broken worker
GRACE_S = 10.0  # extra time the worker gets beyond a program's limit before it counts as dead
_warned: set[str] = set()  # the warnings given (once per process each)
_warn_lock = threading.Lock()
_serial = itertools.count()  # tells this process's sandboxes' cgroups apart


@dataclass(frozen=True)
class SandboxConfig:
    # limit="cpu": CPU seconds a program may use, summed over all its processes (its cgroup;
    # without one, per process through RLIMIT_CPU), with a wall-clock backstop of
    # max(3 x timeout_s, timeout_s + 10 s); limit="wall": wall-clock seconds (the benchmark's
    # fixed rule, for fidelity runs), so a busy machine can turn a slow program into a timeout
    timeout_s: float = 3.0
    limit: str = "cpu"  # "cpu" | "wall": what timeout_s limits (see above)
    wall_factor: float = 3.0  # limit="cpu": the wall backstop is max(wall_factor x timeout_s,
    wall_slack_s: float = 10.0  # timeout_s + wall_slack_s)
    memory_mb: int = 1024  # memory of all a program's processes together (cgroup), and of each (RLIMIT_AS)
    file_size_mb: int = 16  # largest file a program may write (RLIMIT_FSIZE)
    max_processes: int = 32  # processes (and threads) a program may have at once (cgroup pids, RLIMIT_NPROC)
    output_bytes: int = 65536  # stdout and stderr are each kept up to this; beyond: output_limit
    read_bytes: int = 4096  # each of a program's read_files is read back up to this many bytes
    workers: int = 2  # parallel worker processes
    require_isolation: bool = False  # refuse to start unless every protection is active
    require_limits: bool = False  # refuse to start unless the per-program cgroup limits are active
    # run each program under a supervisor forked for it alone (needs the pid namespace), so that
    # nothing a program did (its reply, its exit status, its CPU time, its files' times) stays in
    # the template's memory, from which later programs are forked: without it a red-team review
    # read a program's file times and CPU time off CPython's float free list in later programs
    # and forged gt_correct (docs/sandbox.md). About 2.5 ms more per program here; False only
    # where every program is trusted not to reach another.
    supervise: bool = True

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "file_size_mb", "max_processes", "output_bytes",
                     "read_bytes", "workers", "wall_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SandboxConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.wall_factor < 1 or self.wall_slack_s < 0:
            raise ValueError("SandboxConfig: wall_factor must be >= 1 and wall_slack_s >= 0 (the "
                             f"backstop is never below the CPU limit), got {self.wall_factor!r}, "
                             f"{self.wall_slack_s!r}")
        if self.limit not in ("cpu", "wall"):
            raise ValueError(f"SandboxConfig.limit must be 'cpu' or 'wall', got {self.limit!r}")

    def wall_limit_s(self, timeout_s: float) -> float:
        """The wall-clock limit of a program whose `timeout_s` is this."""
        if self.limit == "wall":
            return timeout_s
        return max(self.wall_factor * timeout_s, timeout_s + self.wall_slack_s)


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
    read_files: tuple[str, ...] = ()  # relative paths read back (up to read_bytes) after it ends
    timeout_s: float | None = None  # its limit (CPU or wall: SandboxConfig.limit); None -> the config's
    prelude: str = ""  # trusted definitions run before `source` (see above)

    def __post_init__(self) -> None:
        for name in self.read_files:
            if name.startswith("/") or ".." in name.split("/") or not name.strip("/."):
                raise ValueError(f"Program.read_files: {name!r} must be a relative path inside "
                                 "the program's directory")


@dataclass(frozen=True)
class RunResult:
    returncode: int | None  # exit status; -N when killed by signal N; None on a timeout/output_limit
    stdout: str
    stderr: str
    files: dict[str, bytes | None]  # read_files -> its first read_bytes, None if absent or not a regular file
    # None | "timeout" (its limit: CPU time, or wall time under limit="wall") | "wall_timeout"
    # (the wall backstop of a CPU limit, CPU time under the limit: it waited, slept or starved)
    # | "memory" | "output_limit" | "crash" | "worker_died"
    error: str | None
    wall_s: float
    cpu_s: float | None = None  # CPU seconds of all its processes (None: not measured)


class SandboxIsolationError(RuntimeError):
    """require_isolation=True and this host does not give every protection."""


class _Worker:
    """One worker process and its two pipes; used by one thread at a time."""

    def __init__(self, settings: dict, slot: int):
        self.slot = slot  # its cgroups' slot; a restarted worker takes its predecessor's
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(WORKER_SCRIPT), json.dumps(settings)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=WORKER_ENV, close_fds=True,
            start_new_session=True, cwd="/")
        self.hello: dict | None = None
        self.caps = (settings["output_bytes"], settings["read_bytes"])  # the most a reply may hold
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

    def request(self, msg: dict, source: bytes, prelude: str, wall_s: float) -> dict | None:
        """Send one program; its result, or None if the worker died or hung."""
        if not self.write(self.frame(msg, source, prelude), prelude):
            return None
        return self.receive(time.monotonic() + wall_s + GRACE_S)

    def frame(self, msg: dict, source: bytes, prelude: str) -> bytes:
        """The bytes that send one program: a header (with its prelude's text if the template
        lacks it), then its source, which only the program's own process reads."""
        if prelude:
            key = _digest(prelude)
            msg = {**msg, "prelude_key": key}
            if key not in self.preludes:
                msg["prelude"] = prelude
        data = json.dumps({**msg, "source_len": len(source)}).encode()
        return struct.pack(">I", len(data)) + data + source

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
        """The next message (its payload, if any, under "payload"), or None if the worker died,
        gave nothing by `deadline`, or sent more than the config allows."""
        try:
            fd = self.proc.stdout.fileno()
        except ValueError:  # closed: the worker was killed
            return None
        head = self._exact(fd, 4, deadline)
        if head is None:
            return None
        size = struct.unpack(">I", head)[0]
        body = self._exact(fd, size, deadline) if size <= HEADER_BYTES else None
        try:
            msg = json.loads(body)
        except (TypeError, ValueError):  # None, or a garbled reply: a broken worker
            return None
        sizes = msg.get("sizes")
        if sizes is not None:
            caps = [self.caps[0]] * 2 + [self.caps[1]] * (len(sizes) - 2)
            if len(sizes) < 2 or any(not isinstance(n, int) or n > cap for n, cap in zip(sizes, caps, strict=True)):
                return None
            payload = self._exact(fd, sum(max(n, 0) for n in sizes), deadline)
            if payload is None:
                return None
            msg["payload"] = payload
        return msg

    @staticmethod
    def _exact(fd: int, n: int, deadline: float) -> bytes | None:
        buf = bytearray(n)  # filled in place: linear in the message's size
        view, got = memoryview(buf), 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            k = os.readv(fd, [view[got:]])
            if not k:
                return None
            got += k
        return bytes(buf)

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
        cg_notes: list[str] = []
        try:
            view = manifest()
        except OSError as e:
            view = None
            cg_notes.append(f"no manifest of the programs' view ({e})")
        if view is not None and "view_copied" not in _disable:
            try:
                view = {**view, "copy": copy_trees(view)}
            except OSError as e:
                cg_notes.append(f"the view's directories are the host's, not a copy on a tmpfs ({e}): "
                                "a program can leave cached lookups of missing names there for a later one")
        self._settings = {**asdict(config), "host_dir": self._host_dir, "disable": list(_disable),
                          "prelude_slots": PRELUDE_SLOTS, "view": view}
        self._cgroups = None if "cgroups" in _disable else Cgroups.create(
            f"evil_moe_sandbox_{os.getpid()}_{next(_serial)}", config.workers, config.memory_mb,
            config.max_processes, cg_notes, tuple(r for r in RESOURCES if f"cgroup_{r}" not in _disable))
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self.isolation: dict[str, bool] = {}
        started: list[_Worker] = []
        try:
            started += [self._start(slot) for slot in range(config.workers)]
            for w in started:
                iso = w.wait_ready()["isolation"]
                iso["process_limit"] = iso["uid_drop"] or os.geteuid() != 0
                self.isolation = {k: bool(iso.get(k, False)) for k in ISOLATION_KEYS}
            notes = started[0].hello.get("notes", []) + cg_notes
            missing = [k for k in REQUIRED if not self.isolation[k]]
            unlimited = [k for k in LIMITS if not self.isolation[k]]
            refused = (missing if config.require_isolation else []) + (unlimited if config.require_limits else [])
            if refused:
                raise SandboxIsolationError(
                    "sandbox: require_isolation/require_limits but this host lacks: " + ", ".join(refused)
                    + (f" ({'; '.join(notes)})" if notes else ""))
        except BaseException:
            for w in started:
                w.kill()
            self._remove_dirs()
            raise
        if missing:
            _warn_once("isolation", "SANDBOX RUNS WITHOUT FULL ISOLATION: missing %s%s. Untrusted "
                       "programs may reach the host through what is missing; "
                       "SandboxConfig(require_isolation=True) refuses to run instead.", missing, notes)
        if unlimited:
            _warn_once("limits", "SANDBOX LIMITS ARE PER PROCESS, NOT PER PROGRAM: missing %s%s. "
                       "A program's processes together may use more CPU time, memory or processes "
                       "than its limit (rlimits still cap each process, the wall backstop each "
                       "program); SandboxConfig(require_limits=True) refuses to run instead.",
                       unlimited, notes)
        for w in started:
            self._idle.put(w)

    def _start(self, slot: int) -> _Worker:
        cg = None if self._cgroups is None else self._cgroups.dirs[slot]
        return _Worker({**self._settings, "cgroup": cg}, slot)

    def _remove_dirs(self) -> None:
        if self._cgroups is not None:
            self._cgroups.remove()
        shutil.rmtree(self._host_dir, ignore_errors=True)

    def run(self, p: Program) -> RunResult:
        if self._closed:
            raise RuntimeError("Sandbox.run after close()")
        msg, wall = self._message(p)
        worker = self._idle.get()
        try:
            t0 = time.monotonic()
            reply = worker.request(msg, p.source.encode("utf-8", "surrogatepass"), p.prelude, wall)
            if reply is None:
                worker.kill()
                worker = self._restart(worker.slot)
                return _died(p, time.monotonic() - t0)
        finally:
            self._idle.put(worker)
        return _result(reply, p)

    def _message(self, p: Program) -> tuple[dict, float]:
        """A program's header (its source follows it in the pipe) and its wall-clock limit."""
        timeout = self.config.timeout_s if p.timeout_s is None else float(p.timeout_s)
        if not timeout > 0:
            raise ValueError(f"Program.timeout_s must be positive, got {p.timeout_s!r}")
        wall = self.config.wall_limit_s(timeout)
        return {"read_files": list(p.read_files), "timeout_s": timeout, "wall_s": wall}, wall

    def _restart(self, slot: int) -> _Worker:
        w = self._start(slot)
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
                    held[0] = self._restart(held[0].slot)
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
                msg, wall = self._message(p)
                data = held[0].frame(msg, p.source.encode("utf-8", "surrogatepass"), p.prelude)
                if inflight and len(data) > held[0].queue_bytes:
                    break  # sent when the running program is done
                backlog.popleft()
                if not inflight:
                    started = time.monotonic()
                held[0].write(data, p.prelude)  # a broken pipe shows as no reply below
                inflight.append((i, p, wall))
            if not inflight:
                return
            i, p, wall = inflight.popleft()
            reply = held[0].receive(started + wall + GRACE_S)
            now = time.monotonic()
            if reply is None:
                held[0].kill()
                held[0] = self._restart(held[0].slot)
                results[i] = _died(p, now - started)
                backlog.extendleft((j, q) for j, q, _ in reversed(inflight))  # never started: again
                inflight.clear()
            else:
                results[i] = _result(reply, p)
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
        self._remove_dirs()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _result(reply: dict, p: Program) -> RunResult:
    sizes, payload = reply["sizes"], reply["payload"]
    at = sizes[0] + sizes[1]
    files: dict[str, bytes | None] = {}
    for name, n in zip(p.read_files, sizes[2:], strict=True):
        files[name] = None if n < 0 else payload[at:at + n]
        at += max(n, 0)
    return RunResult(reply["returncode"], payload[:sizes[0]].decode("utf-8", "replace"),
                     payload[sizes[0]:sizes[0] + sizes[1]].decode("utf-8", "replace"), files,
                     reply["error"], reply["wall_s"], reply["cpu_s"])


def _died(p: Program, wall_s: float) -> RunResult:
    return RunResult(None, "", "", dict.fromkeys(p.read_files), "worker_died", wall_s)


@functools.lru_cache(maxsize=2 * PRELUDE_SLOTS)
def _digest(prelude: str) -> str:
    # Cached: the programs of a batch share one prelude string, whose hash Python keeps.
    return hashlib.sha256(prelude.encode()).hexdigest()


def _warn_once(kind: str, message: str, missing: list[str], notes: list[str]) -> None:
    with _warn_lock:
        if kind in _warned:
            return
        _warned.add(kind)
    log.warning(message, ", ".join(missing), f" ({'; '.join(notes)})" if notes else "")
