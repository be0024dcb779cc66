"""One sandbox worker: isolates itself, keeps a pre-imported template, forks one child per program.

Started by `evil_moe.env.sandbox.Sandbox` as ``python -I -S sandbox_worker.py '<json settings>'``
with a fixed minimal environment, so it never holds the grader's memory or variables. It uses
the standard library (and `sandbox_isolation.py`, `sandbox_seccomp.py`, `sandbox_program.py` beside
it) only, and never imports `evil_moe`.

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

import errno
import gc
import json
import os
import resource
import select
import signal
import struct
import sys
import time
import types
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script under -I
import sandbox_isolation  # noqa: E402
from sandbox_cgroup import ProgramCgroup  # noqa: E402
from sandbox_files import empty_dir, safe_read  # noqa: E402
from sandbox_isolation import (  # noqa: E402
    CLONE_NEWIPC,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    SCRATCH,
    drop_capabilities,
    fresh_scratch,
    isolate,
    prctl,
    scratch_dirs,
    unshare,
)
from sandbox_program import MEMORY_TAG, new_main, run_source  # noqa: E402
from sandbox_seccomp import child_filter, install_filter, program_allowlist  # noqa: E402

del sys.path[0]

UID_BASE = 1_900_000_000  # program uid = UID_BASE + the worker's host pid: unique among live workers
PRELOAD = ("typing", "collections", "itertools", "heapq", "bisect", "math", "functools", "string",
           "operator", "random", "datetime", "re", "copy", "types", "traceback", "threading", "atexit")
# A program's environment: these, and HOME and TMPDIR, both its own directory.
PROGRAM_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
READ_TAG = b"R"  # a program's process has read its whole request (its first write on fd 3)
STATUS_BYTES = 64  # the status pipe holds a few tags; a program that floods it gets output_limit


# ----------------------------------------------------------------------------- messages
def send(fd: int, obj: dict, payload: list | tuple = ()) -> None:
    """A message: the JSON header, then `payload` (buffers whose sizes the header names)."""
    data = json.dumps(obj).encode()
    views = [memoryview(struct.pack(">I", len(data)) + data), *map(memoryview, payload)]
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views:
            views[0] = views[0][n:]


def read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if not k:
            return None
        got += k
    return bytes(buf)


def recv(fd: int) -> dict | None:
    """A request's header (trusted: the grader's). The program's source follows it in the pipe
    and is read by the program's own process, never by the template."""
    head = read_exact(fd, 4)
    if head is None:
        return None
    body = read_exact(fd, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


# ----------------------------------------------------------------------------- the template
class Template:
    def __init__(self, settings: dict, iso: dict[str, bool], host_pid: int, req_fd: int,
                 resp_fd: int, cg: ProgramCgroup | None):
        self.s = settings
        self.iso = iso
        self.req_fd, self.resp_fd = req_fd, resp_fd
        self.cg = cg
        self.ncpu = len(os.sched_getaffinity(0))
        # Fixed buffers for what a program sends back, allocated once and zeroed after each
        # program: the template never holds a program's output in memory it frees, so no later
        # program, forked from it, can find that output (or the source it printed) in its heap.
        cap = int(settings["output_bytes"])
        self.bufs = [bytearray(cap + 1), bytearray(cap + 1), bytearray(STATUS_BYTES)]
        self.zeros = bytes(cap + 1)
        self.used = [0, 0, 0]  # how much of each buffer the last program filled
        self.uid = UID_BASE + host_pid if iso["uid_drop"] else None
        self.child_filter = child_filter() if iso["no_keyrings"] and "child_filter" not in settings["disable"] else None
        self.allowlist = program_allowlist() if self.child_filter is not None and "allowlist" not in settings["disable"] else None
        # With `supervise` (and a pid namespace) each program runs under a supervisor of its
        # own (`serve`), and this process reaps nothing itself: the kernel does (no exit status
        # reaches it).
        self.supervised = iso["pid_namespace"] and bool(settings.get("supervise"))
        if self.supervised:
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)
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
        self.fresh_tmp = "fresh_scratch" not in settings["disable"] and "/tmp" in self.scratch
        # prelude key -> (the __main__ it made, "") or (None, its text) if it raised; least
        # recently used first, evicted by the same rule as the parent's `_Worker.preludes`
        self.preludes: OrderedDict[str, tuple[types.ModuleType | None, str]] = OrderedDict()
        self.evicted = 0  # preludes evicted since the last full collection

    def _main_for(self, req: dict) -> tuple[types.ModuleType | None, str]:
        """The __main__ a program starts in (None: a fresh one) and the text it runs there before
        its source (its prelude's, if that raised)."""
        key = req.get("prelude_key")
        if key is None:
            return None, ""
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
        return self.preludes[key]

    @staticmethod
    def _run_prelude(text: str) -> tuple[types.ModuleType | None, str]:
        main = new_main()
        try:
            exec(compile(text, "<prelude>", "exec", dont_inherit=True), main.__dict__)
        except BaseException:  # noqa: BLE001 - the program reruns it and fails as python would
            return None, text
        return main, ""

    # -- one program
    def serve(self, req: dict) -> None:
        """Run one program and send its reply, on fresh scratch mounts (so this process never
        lists, and never holds the names of, a program's files), dropping the reply before the
        next program (a red-team review read the previous reply from this process's frames,
        and file names from its freed memory, and passed results between rows so).

        With `supervise` (and a pid namespace) all of it happens in a supervisor forked for
        this program alone, which replies and exits: nothing a program did or made (its
        output's sizes, exit code, times) ever reaches this process, from which every later
        program is forked. This process then only runs the grader's preludes, mounts, resets
        the pid counter, and waits for every process of the program to be gone (the kernel
        reaps them: SIGCHLD ignored)."""
        main, failed = self._main_for(req)
        if "fresh_scratch" not in self.s["disable"]:
            # Fresh scratch mounts: nothing of the last program there, and no inode counter it
            # moved (a tmpfs numbers new inodes from a counter of its own; a red-team review
            # passed results through it). No name of a program's file is ever read here.
            for scratch in self.scratch:
                fresh_scratch(scratch, self.s["file_size_mb"])
                scratch_dirs(scratch)
                self.scratch[scratch] = os.stat(scratch).st_dev
        if not self.supervised:
            header, payload = self.run(req, main, failed)
            send(self.resp_fd, header, payload[:-1])
            self.done(payload)  # zeroes the buffers; and nothing of this reply stays in reach
            del header, payload  # of the next program (a red-team review read it off the frames)
            return
        r, w = os.pipe()
        if sandbox_isolation.pid_counter_fd is not None:
            os.pwrite(sandbox_isolation.pid_counter_fd, b"1", 0)  # the supervisor is pid 2
        if os.fork() == 0:  # the supervisor
            _skip_threading_repair_in_programs()  # its fork put the repair back; the program skips it
            os.close(r)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # the program's orphans come back to the supervisor, not to this process (which
            # ignores SIGCHLD: the kernel would reap them, their CPU time counted nowhere), so
            # the supervisor reaps them and, without a cgroup CPU counter, counts their CPU time
            prctl(PR_SET_CHILD_SUBREAPER, 1)
            try:
                header, payload = self.run(req, main, failed)
                send(self.resp_fd, header, payload[:-1])
                os.write(w, b"0")
            except BaseException:  # noqa: BLE001 - the worker ends; the grader starts another
                import traceback

                traceback.print_exc()
            os._exit(0)
        os.close(w)
        ok = os.read(r, 1) == b"0"
        os.close(r)
        try:
            os.waitpid(-1, 0)  # SIGCHLD ignored: returns once every child is gone, with no status
        except ChildProcessError:
            pass
        if not ok:  # the supervisor failed or found the request pipe out of step
            os._exit(70)

    def run(self, req: dict, main: types.ModuleType | None, failed: str) -> tuple[dict, list]:
        """Run one program; its reply header and payload (stdout, stderr, then each file)."""
        self.count += 1
        # In a fresh /tmp its name is the same for every program (a count would tell a program
        # how many ran before it on this worker); else a new one for each (under a supervisor
        # the count moves in the supervisor only: "run1" every time, wiped after each program)
        wdir = os.path.join(self.base, "run" if self.fresh_tmp else f"run{self.count}")
        os.mkdir(wdir, 0o700)
        if self.uid is not None:
            os.chown(wdir, self.uid, self.uid)
        timeout, wall_limit = float(req["timeout_s"]), float(req["wall_s"])
        cpu_checked = self.s["limit"] == "cpu" and self.cg is not None and self.cg.cpu_fd is not None
        pipes = self._pipes()  # stdout, stderr, status
        gate = os.pipe() if self.cg is not None else None  # the child joins its cgroup once we write
        if sandbox_isolation.pid_counter_fd is not None:  # every program has the same pid
            # (2, or 3 under its supervisor): no counter between programs
            os.pwrite(sandbox_isolation.pid_counter_fd, b"1", 0)  # at 0: a sysctl ignores later offsets
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:
            self._child(int(req["source_len"]), failed, main, wdir, timeout, [w for _, w in pipes], gate)
        # Read only now, after the fork: whatever this process reads before a fork is in the
        # child's memory too, and these counts (processes reaped, OOM kills, the slot's CPU
        # time) are moved by earlier programs (a red-team review set them from one program and
        # read them in the next, through its own stack)
        reaped_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        bases = None
        if gate is not None:
            bases = self.cg.start()
            os.close(gate[0])
            os.write(gate[1], b"1")
            os.close(gate[1])
        for _, w in pipes:
            os.close(w)
        reads = [r for r, _ in pipes]
        views = {r: memoryview(b) for r, b in zip(reads, self.bufs, strict=True)}
        got = dict.fromkeys(reads, 0)
        error, exited = None, False
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        for fd in [*reads, pidfd]:
            poller.register(fd, select.POLLIN)
        deadline = t0 + wall_limit
        while not exited and error is None:
            left = deadline - time.monotonic()
            if left <= 0:
                error = "wall"
                break
            if cpu_checked:
                used = self.cg.cpu_s(bases)
                if used >= timeout:
                    error = "timeout"
                    break
                # the soonest its processes (at most one per CPU) can reach the limit
                left = min(left, max((timeout - used) / self.ncpu, 0.002))
            for fd, _ in poller.poll(left * 1000):
                if fd == pidfd:
                    exited = True
                elif (n := self._pump(fd, views[fd], got)) == 0:
                    poller.unregister(fd)
                elif n < 0:
                    error = "output_limit"
        if not exited:
            os.kill(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
        wall = time.monotonic() - t0
        os.close(pidfd)
        self._kill_all(pid)
        for r in reads:
            os.set_blocking(r, False)
            settle = time.monotonic() + 2.0
            while (n := self._pump(r, views[r], got)) > 0 or (n == -2 and self.supervised and time.monotonic() < settle):
                if n == -2:  # under a supervisor: the killed processes are the template's to
                    select.select([r], [], [], 0.05)  # reap; their pipe ends close as they go
            if n < 0 and error is None:
                error = "output_limit"
            os.close(r)
        self.used = [got[r] for r in reads]  # zeroed by `done`
        status_bytes = views[reads[2]][:got[reads[2]]]
        if status_bytes[:1] != READ_TAG:
            # Its process died before it had read its request whole: the pipe is out of step.
            # The worker ends; the grader gives this program worker_died and starts another.
            os._exit(70)
        if self.cg is not None and self.cg.cpu_fd is not None:
            cpu = self.cg.cpu_s(bases)
        else:  # every process of the program was reaped by now, by us or by its own parents
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (reaped_before.ru_utime + reaped_before.ru_stime)
        if error == "wall":
            error = "timeout" if self.s["limit"] == "wall" or cpu >= timeout else "wall_timeout"
        returncode = os.waitstatus_to_exitcode(status)
        if error is None:
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                own_cpu = usage.ru_utime + usage.ru_stime
                if sig == signal.SIGXCPU or (sig == signal.SIGKILL and own_cpu >= self._cpu_limit(timeout)):
                    error = "timeout"
                elif sig == signal.SIGKILL and self.cg is not None and self.cg.oom_killed(bases):
                    error = "memory"  # the kernel's OOM killer, at the program's memory limit
                else:
                    error = "crash"
            elif self.bufs[2].find(MEMORY_TAG, 1, got[reads[2]]) >= 0:  # in place: a copy of
                error = "memory"  # the program's bytes would outlive it in this heap
        if error in ("timeout", "wall_timeout", "output_limit"):
            returncode = None
        names = req.get("read_files", ())
        limit = int(self.s["read_bytes"])
        filebuf = bytearray(limit * len(names))
        cap = int(self.s["output_bytes"])  # the buffers hold one byte more: to tell "too much"
        sizes = [min(got[reads[0]], cap), min(got[reads[1]], cap)]
        payload = [views[reads[0]][:sizes[0]], views[reads[1]][:sizes[1]]]
        for k, name in enumerate(names):
            view = memoryview(filebuf)[k * limit:(k + 1) * limit]
            n = safe_read(wdir, name, view)
            sizes.append(-1 if n is None else n)
            payload.append(view[:max(n or 0, 0)])
        if "fresh_scratch" in self.s["disable"] or not self.scratch:  # else: fresh mounts next time
            self._wipe(wdir)
        header = {"returncode": returncode, "error": error, "wall_s": wall, "cpu_s": cpu, "sizes": sizes}
        return header, payload + [filebuf]  # filebuf: last, size 0 in the header, zeroed by `done`

    def _pipes(self) -> list[tuple[int, int]]:
        """A program's stdout, stderr and status channels, (read end, write end) each: FIFOs
        made in its fresh /tmp, numbered from that mount's own inode counter, so their numbers
        are the same for every program. (A pipe's inode number comes from a counter the whole
        host shares: a red-team review moved it from one program and read it off the next
        program's own fd 3.) Plain pipes without fresh scratch mounts."""
        if not self.fresh_tmp:
            return [os.pipe() for _ in range(3)]
        ends = []
        for name in ("/tmp/.out", "/tmp/.err", "/tmp/.status"):
            os.mkfifo(name, 0o600)
            r = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # no writer yet: do not wait
            ends.append((r, os.open(name, os.O_WRONLY | os.O_CLOEXEC)))
            os.unlink(name)
            os.set_blocking(r, True)
        return ends

    def done(self, payload: list) -> None:
        """After the reply is sent: zero every buffer that held the program's bytes."""
        for buf, n in zip(self.bufs, self.used, strict=True):
            memoryview(buf)[:n] = self.zeros[:n]
        self.used = [0, 0, 0]
        filebuf = payload[-1]
        filebuf[:] = bytes(len(filebuf))

    @staticmethod
    def _pump(fd: int, view: memoryview, got: dict) -> int:
        """Read what `fd` has into `view`; the bytes read, 0 at EOF, -1 once `view` is full
        (one byte past the cap: the program sent too much), -2 if nothing is there now."""
        if got[fd] >= len(view):
            return -1
        try:
            n = os.readv(fd, [view[got[fd]:]])
        except BlockingIOError:
            return -2  # nothing now (draining without blocking)
        got[fd] += n
        return -1 if got[fd] >= len(view) else n

    @staticmethod
    def _cpu_limit(timeout: float) -> int:
        return max(1, int(timeout + 0.999))

    def _child(self, source_len: int, failed: str, main: types.ModuleType | None, wdir: str,
               timeout: float, writers: list[int], gate: tuple[int, int] | None) -> None:
        try:
            # The program's source goes from the pipe to this process only: the template, from
            # which every later program is forked, never reads it.
            data = read_exact(self.req_fd, source_len)
            if data is None:
                os._exit(127)
            source = failed + data.decode("utf-8", "surrogatepass")
            del data
            out_w, err_w, status_w = writers
            os.write(status_w, READ_TAG)
            if gate is not None:
                os.close(gate[1])
                if os.read(gate[0], 1) != b"1":  # the template has read the slot's baselines
                    os._exit(127)
                self.cg.join()  # its memory, processes and CPU time count in its cgroup from here
            os.setsid()
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.dup2(status_w, 3)
            os.closerange(4, 1 << 20)
            os.chdir(wdir)
            # Per process: the limit itself where nothing sums a program's processes; a second
            # more where its cgroup does (the template stops it at the limit; the kernel's
            # per-process count runs a little ahead of the cgroup's).
            cpu = self._cpu_limit(timeout) + (self.cg is not None and self.cg.cpu_fd is not None)
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
            if self.child_filter is not None:
                install_filter(self.child_filter)  # no pidfds (see `child_filter`)
            if self.allowlist is not None:
                install_filter(self.allowlist)  # and no call outside the list (`program_allowlist`)
            environ = os.environ  # the rest of it is PROGRAM_ENV, set by the template
            environ["HOME"] = environ["TMPDIR"] = wdir
        except BaseException as e:  # noqa: BLE001
            os.write(2, f"sandbox: program setup failed: {e!r}\n".encode())
            os._exit(127)
        run_source(source, main)

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
        """Remove the program's directory and whatever it left in the scratch mounts, without
        recursion (a program may leave thousands of nested directories)."""
        try:
            os.rmdir(wdir)  # most programs leave their directory empty
        except OSError:
            empty_dir(wdir)
            try:
                os.rmdir(wdir)
            except OSError:
                pass
        for scratch, dev in self.scratch.items():  # anything a program left there is removed
            try:
                if os.stat(scratch, follow_symlinks=False).st_dev != dev:  # not our mount now
                    continue
            except OSError:
                continue
            empty_dir(scratch)
            if os.listdir(scratch):  # something resisted the wipe: a fresh mount instead
                fresh_scratch(scratch, self.s["file_size_mb"])
                self.scratch[scratch] = os.stat(scratch).st_dev
            scratch_dirs(scratch)


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


def _stdio_on_null() -> None:
    """Point fds 0 and 1 at /dev/null, as this process's root shows it now."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


def main() -> None:
    settings = json.loads(sys.argv[1])
    req_fd, resp_fd = os.dup(0), os.dup(1)  # the pipes move off 0/1: programs never inherit them
    _stdio_on_null()  # the host's, until the view is this process's root (below)
    host_pid = os.getpid()
    notes: list[str] = []
    # The cgroup files are opened here, on the host's mounts, before this process's mounts go
    # read-only: the handles stay writable.
    cg = None
    if settings.get("cgroup"):
        try:
            cg = ProgramCgroup(settings["cgroup"])
            cg.enter_share()
        except OSError as e:
            notes.append(f"cgroup files unavailable ({e})")
    iso = isolate(settings, notes)
    # stdin (and this process's fd 1) again, from the view: the host's /dev/null, opened above, is
    # on a writable mount, and any process may set the times of a 0666 device node it holds
    # (`os.utime(0)`): a red-team sweep passed data between programs, and graders, through the
    # host's /dev/null that way. The view's is on a read-only mount (EROFS).
    _stdio_on_null()
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
    template = Template(settings, iso, host_pid, req_fd, resp_fd, cg)
    gc.collect()
    gc.freeze()
    iso["cpu_limit"] = cg is not None and cg.cpu_fd is not None
    iso["memory_limit"] = cg is not None and "memory" in cg.has
    iso["pids_limit"] = cg is not None and "pids" in cg.has
    iso["cpu_share"] = cg is not None and "share" in cg.has
    iso["pid_counter_reset"] = sandbox_isolation.pid_counter_fd is not None
    send(resp_fd, {"ready": True, "isolation": iso, "notes": notes})
    while (req := recv(req_fd)) is not None:
        template.serve(req)


if __name__ == "__main__":
    main()
