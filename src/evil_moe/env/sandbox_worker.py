"""One sandbox worker: isolates itself, keeps a pre-imported template, forks one child per program.

Started by `evil_moe.env.sandbox.Sandbox` as ``python -I -S sandbox_worker.py '<json settings>'``
with a fixed minimal environment, so it never holds the grader's memory or variables. It uses
the standard library (and `sandbox_isolation.py` beside it) only, and never imports `evil_moe`.

Layout (when the host allows namespaces):

    grader --pipes-- worker (unshares mount, pid, net, ipc [+ user]) --fork--> template = pid 1
                                                                                 |-- fork --> program

The template is init of a fresh pid namespace: programs cannot see or signal host processes,
signals they send to it are dropped by the kernel, and after every program it SIGKILLs every
other process in the namespace (setsid'd and daemonised ones included, as orphans reparent
to it). The IPC namespace allows no IPC object at all, and the template carries no_new_privs
and the keyring seccomp filter, which every program inherits. Messages are 4-byte big-endian
lengths followed by JSON; the template never unpickles.
"""

from __future__ import annotations

import base64
import builtins
import errno
import gc
import json
import os
import resource
import select
import shutil
import signal
import stat
import struct
import sys
import time
import types
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script under -I
from sandbox_isolation import (  # noqa: E402
    CLONE_NEWIPC,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    SCRATCH,
    drop_capabilities,
    isolate,
    prctl,
    unshare,
)

del sys.path[0]

UID_BASE = 1_900_000_000  # program uid = UID_BASE + the worker's host pid: unique among live workers
PRELOAD = ("typing", "collections", "itertools", "heapq", "bisect", "math", "functools", "string",
           "operator", "random", "datetime", "re", "copy", "types", "traceback", "threading", "atexit")
# A program's environment: these, and HOME and TMPDIR, both its own directory.
PROGRAM_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
MEMORY_TAG = b"M"


# ----------------------------------------------------------------------------- messages
def send(fd: int, obj: dict) -> None:
    data = json.dumps(obj).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def recv(fd: int) -> dict | None:
    def exact(n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    head = exact(4)
    if head is None:
        return None
    body = exact(struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


# ----------------------------------------------------------------------------- the template
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


def _new_main() -> types.ModuleType:
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    return main


def _run_source(source: str, main: types.ModuleType | None) -> None:
    """Run `source` as __main__ (in `main`, where its prelude ran, else a fresh module) in this
    (forked) process and exit like the interpreter would."""
    import atexit
    import threading
    import traceback

    main = main or _new_main()
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


def _safe_read(root: str, name: str, limit: int) -> bytes | None:
    """Read `root/name` without following symlinks at any level; None unless a regular file."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or name.startswith("/"):
        return None
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for part in parts[:-1]:
            fds.append(os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fds[-1])
        fds.append(fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, size = [], 0
        while size < limit and (chunk := os.read(fd, min(1 << 20, limit - size))):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        for fd in fds:
            os.close(fd)


class Template:
    def __init__(self, settings: dict, iso: dict[str, bool], host_pid: int):
        self.s = settings
        self.iso = iso
        self.uid = UID_BASE + host_pid if iso["uid_drop"] else None
        os.environ.clear()  # the worker's was WORKER_ENV; programs fork with this one
        os.environ.update(PROGRAM_ENV)
        if iso["private_tmp"]:
            self.base = "/tmp"
        else:
            self.base = os.path.join(settings["host_dir"], f"w{host_pid}")
            os.makedirs(self.base, mode=0o711, exist_ok=True)
        self.count = 0
        # our tmpfs mounts (made by `isolate`) and their device ids: one stat tells, before a
        # wipe, that a path is still ours
        self.scratch = {p: os.stat(p).st_dev for p in SCRATCH
                        if iso["private_tmp"] and os.path.ismount(p)}
        # prelude key -> (the __main__ it made, "") or (None, its text) if it raised; least
        # recently used first, evicted by the same rule as the parent's `_Worker.preludes`
        self.preludes: OrderedDict[str, tuple[types.ModuleType | None, str]] = OrderedDict()
        self.evicted = 0  # preludes evicted since the last full collection

    def _main_for(self, req: dict) -> tuple[types.ModuleType | None, str]:
        """The __main__ a program starts in (None: a fresh one) and the source it runs there."""
        key = req.get("prelude_key")
        if key is None:
            return None, req["source"]
        if "prelude" in req:
            self.preludes[key] = self._run_prelude(req["prelude"])
            while len(self.preludes) > self.s["prelude_slots"]:
                old, _ = self.preludes.popitem(last=False)[1]
                if old is not None:
                    old.__dict__.clear()  # most of what it made goes now (reference counts)
                self.evicted += 1
            # What is left is cycles (classes, functions and their globals), and frozen objects
            # are never collected: a full collection (a few ms) frees them, once per so many
            # evictions, so a batch that cycles through problems does not pay it for each.
            if self.evicted >= self.s["prelude_slots"]:
                self.evicted = 0
                gc.unfreeze()
                gc.collect()
            gc.freeze()  # programs' collections never walk (and so never copy) these objects
        else:
            self.preludes.move_to_end(key)  # a KeyError here is a bug: the parent mirrors this
        main, failed = self.preludes[key]
        return main, failed + req["source"]

    @staticmethod
    def _run_prelude(text: str) -> tuple[types.ModuleType | None, str]:
        main = _new_main()
        try:
            exec(compile(text, "<prelude>", "exec", dont_inherit=True), main.__dict__)
        except BaseException:  # noqa: BLE001 - the program reruns it and fails as python would
            return None, text
        return main, ""

    # -- one program
    def run(self, req: dict) -> dict:
        self.count += 1
        wdir = os.path.join(self.base, f"run{self.count}")
        os.mkdir(wdir, 0o700)
        if self.uid is not None:
            os.chown(wdir, self.uid, self.uid)
        timeout = float(req["timeout_s"])
        cap = int(self.s["output_bytes"])
        main, source = self._main_for(req)
        pipes = [os.pipe() for _ in range(3)]  # stdout, stderr, status
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:
            self._child(source, main, wdir, timeout, [w for _, w in pipes])
        for _, w in pipes:
            os.close(w)
        reads = [r for r, _ in pipes]
        bufs = {r: bytearray() for r in reads}
        error, exited = None, False
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        for fd in [*reads, pidfd]:
            poller.register(fd, select.POLLIN)
        deadline = t0 + timeout
        while not exited:
            left = deadline - time.monotonic()
            if left <= 0:
                error = "timeout"
                break
            for fd, _ in poller.poll(left * 1000):
                if fd == pidfd:
                    exited = True
                elif not self._pump(fd, bufs[fd]):
                    poller.unregister(fd)
            if any(len(bufs[r]) > cap for r in reads[:2]):
                error = "output_limit"
                break
        if not exited:
            os.kill(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
        wall = time.monotonic() - t0
        os.close(pidfd)
        self._kill_all(pid)
        for r in reads:
            os.set_blocking(r, False)
            while self._pump(r, bufs[r], drain=len(bufs[r]) <= cap):
                pass
            os.close(r)
        returncode = os.waitstatus_to_exitcode(status)
        if error is None:
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                cpu = usage.ru_utime + usage.ru_stime
                if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= self._cpu_limit(timeout)):
                    error = "timeout"
                else:
                    error = "crash"
            elif MEMORY_TAG in bufs[reads[2]]:
                error = "memory"
        if error in ("timeout", "output_limit"):
            returncode = None
        files = {}
        for name in req.get("read_files", ()):
            data = _safe_read(wdir, name, self.s["file_size_mb"] << 20)
            files[name] = None if data is None else base64.b64encode(data).decode()
        self._wipe(wdir)
        return {"returncode": returncode, "error": error, "wall_s": wall, "files": files,
                "stdout": bytes(bufs[reads[0]][:cap]).decode("utf-8", "replace"),
                "stderr": bytes(bufs[reads[1]][:cap]).decode("utf-8", "replace")}

    @staticmethod
    def _pump(fd: int, buf: bytearray, drain: bool = True) -> bool:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return False
        if chunk and drain:
            buf += chunk
        return bool(chunk)

    @staticmethod
    def _cpu_limit(timeout: float) -> int:
        return max(1, int(timeout + 0.999))

    def _child(self, source: str, main: types.ModuleType | None, wdir: str, timeout: float,
               writers: list[int]) -> None:
        try:
            os.setsid()
            out_w, err_w, status_w = writers
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.dup2(status_w, 3)
            os.closerange(4, 1 << 20)
            os.chdir(wdir)
            cpu = self._cpu_limit(timeout)
            limits = [(resource.RLIMIT_CPU, cpu, cpu + 1),
                      (resource.RLIMIT_FSIZE, self.s["file_size_mb"] << 20, self.s["file_size_mb"] << 20),
                      (resource.RLIMIT_NPROC, self.s["max_processes"], self.s["max_processes"]),
                      (resource.RLIMIT_CORE, 0, 0), (resource.RLIMIT_NOFILE, 256, 256),
                      (resource.RLIMIT_AS, self.s["memory_mb"] << 20, self.s["memory_mb"] << 20)]
            for which, soft, hard in limits:
                resource.setrlimit(which, (soft, hard))
            if self.uid is not None:
                os.setgroups([])
                os.setgid(self.uid)
                os.setuid(self.uid)
            elif self.iso["user_namespace"]:  # root of its user namespace: no capability left
                # (it could remount /tmp, mount, change the network). It may still write its IPC
                # namespace's limits (the kernel checks the uid there, not a capability), so it
                # gets an IPC namespace of its own, which ends with it.
                if self.iso["ipc_namespace"]:
                    unshare(CLONE_NEWIPC)
                drop_capabilities()
            prctl(PR_SET_DUMPABLE, 1)  # its own /proc/self stays readable to it
            environ = os.environ  # the rest of it is PROGRAM_ENV, set by the template
            environ["HOME"] = environ["TMPDIR"] = wdir
        except BaseException as e:  # noqa: BLE001
            os.write(2, f"sandbox: program setup failed: {e!r}\n".encode())
            os._exit(127)
        _run_source(source, main)

    # -- cleanup
    def _kill_all(self, main_pid: int) -> None:
        """SIGKILL and reap every process the program left, however detached."""
        while True:
            if self.iso["pid_namespace"]:
                _kill(-1)  # as namespace init: every other process of the namespace
            else:
                _kill(-main_pid)  # its session/process group (it called setsid)
                for pid in _children_of(os.getpid()):  # orphans reparent to us (subreaper)
                    _kill(pid)
                if self.uid is not None:
                    self._kill_uid()
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                return

    def _kill_uid(self) -> None:
        """Without a pid namespace: kill(-1) as the program uid reaches exactly its processes."""
        pid = os.fork()
        if pid == 0:
            try:
                os.setgid(self.uid)
                os.setuid(self.uid)
                _kill(-1)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)

    def _wipe(self, wdir: str) -> None:
        try:
            os.rmdir(wdir)  # most programs leave their directory empty
        except OSError:
            shutil.rmtree(wdir, ignore_errors=True)
        for scratch, dev in self.scratch.items():  # anything a program left there is removed
            try:
                if os.stat(scratch, follow_symlinks=False).st_dev != dev:  # not our mount now
                    continue
            except OSError:
                continue
            for entry in os.scandir(scratch):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError as e:
        if e.errno not in (errno.ESRCH, errno.EPERM):
            raise


def _children_of(parent: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(name))
    return found


def _skip_threading_repair_in_programs() -> None:
    """`threading` repairs its state in every forked child: new locks, its table of threads
    rebuilt (os.register_at_fork). That is Python code touching about 125 pages, 0.6 ms a
    program here. The template has a single thread, so it holds no lock another thread could
    have taken, and the repair changes nothing: its programs skip it. The first thing one does
    puts the repair back, for any fork of its own (where its threads matter).

    The hook os.register_at_fork holds is `threading._after_fork`, the function object; its
    code is swapped for code that restores the original (both have no free variables)."""
    import threading

    hook = threading._after_fork
    threading._sandbox_after_fork = hook, hook.__code__  # read by the code below, as a global
    ns: dict = {}
    exec("def restore():\n    _sandbox_after_fork[0].__code__ = _sandbox_after_fork[1]\n", ns)
    hook.__code__ = ns["restore"].__code__


def main() -> None:
    settings = json.loads(sys.argv[1])
    req_fd, resp_fd = os.dup(0), os.dup(1)  # the pipes move off 0/1: programs never inherit them
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    host_pid = os.getpid()
    notes: list[str] = []
    iso = isolate(settings, notes)
    prctl(PR_SET_DUMPABLE, 0)  # programs running as our uid cannot ptrace or read our memory
    if not iso["pid_namespace"]:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    # Started with -S, so no .pth file of the host ran here: those can import dozens of modules
    # and register exit handlers, which every program would then carry and run. Programs still
    # import from site-packages and have the builtins `site` adds (`exit`, `quit`, `help`, ...).
    import site

    sys.path.extend(p for p in site.getsitepackages() if p not in sys.path)
    site.setquit()
    site.setcopyright()
    site.sethelper()
    for module in PRELOAD:
        __import__(module)
    _skip_threading_repair_in_programs()
    compile("pass", "<warm-up>", "exec")  # a process's first compile sets up the parser (~2 ms)
    template = Template(settings, iso, host_pid)
    gc.collect()
    gc.freeze()
    send(resp_fd, {"ready": True, "isolation": iso, "notes": notes})
    while (req := recv(req_fd)) is not None:
        send(resp_fd, template.run(req))


if __name__ == "__main__":
    main()
