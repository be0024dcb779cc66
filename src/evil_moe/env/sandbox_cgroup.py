"""Per-program limits through cgroups: CPU time, memory and processes summed over all of a
program's processes.

The grader's `Sandbox` makes one cgroup per worker slot (`Cgroups.create`), with the memory and
process limits written once; each worker opens its slot's files before it isolates itself
(`ProgramCgroup`), and every program it forks joins them first thing, before any of its own
code runs. One program runs at a time per worker, so the slot is reused: the CPU counter is
reset (cgroup v1) or read as a baseline (v2) at each program's start, and the process count
and memory are back to the template's leftovers once the previous program's processes are
killed and reaped.

This host mounts cgroup v1 `cpuacct`, `cpu`, `memory` and `pids` (and a v2 hierarchy with no
controllers); a pure v2 host works the same way where the sandbox's own cgroup may enable
`memory`, `pids` and `cpu` for its children. The `cpu` controller gives each slot an equal
share of the CPUs (a group's default weight; no limit is written). What is missing is reported, never silently skipped.
Standard library only: the worker loads this file by path.
"""

from __future__ import annotations

import os
import time

RESOURCES = ("cpu", "memory", "pids", "share")
# cgroup v1 controller that serves each resource: "cpu" is CPU time (accounting), "share" the
# scheduler's fair share: each slot is one group of equal weight, so a program that starts many
# processes (each in a session of its own, which would otherwise get an autogroup each) takes no
# more of the CPUs than one neighbour with one process
V1_CONTROLLER = {"cpu": "cpuacct", "memory": "memory", "pids": "pids", "share": "cpu"}
V2_CONTROLLER = {"memory": "memory", "pids": "pids", "share": "cpu"}  # "cpu": none needed


def _mounts() -> tuple[dict[str, str], str | None]:
    """v1 controller -> its mount point; and the v2 mount point, if any."""
    v1: dict[str, str] = {}
    v2 = None
    with open("/proc/self/mounts") as f:
        for line in f:
            _, target, fstype, opts = line.split()[:4]
            if fstype == "cgroup":
                for opt in opts.split(","):
                    if opt in V1_CONTROLLER.values():
                        v1.setdefault(opt, target)
            elif fstype == "cgroup2" and v2 is None:
                v2 = target
    return v1, v2


def _own_paths() -> tuple[dict[str, str], str | None]:
    """This process's cgroup per v1 controller, and its v2 cgroup (from /proc/self/cgroup)."""
    v1: dict[str, str] = {}
    v2 = None
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if ctrls == "":
                v2 = path
            for c in ctrls.split(","):
                v1[c] = path
    return v1, v2


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class Cgroups:
    """The grader's side: one cgroup per worker slot for each resource, limits set, removed on
    `remove`. `dirs[slot]` maps each resource to (cgroup directory, cgroup version)."""

    def __init__(self, parents: dict[str, tuple[str, int]], workers: int):
        self.parents = parents  # resource -> (this sandbox's cgroup directory, version)
        self.dirs: list[dict[str, tuple[str, int]]] = []
        for slot in range(workers):
            self.dirs.append({r: (os.path.join(d, f"slot{slot}"), v) for r, (d, v) in parents.items()})

    @classmethod
    def create(cls, tag: str, workers: int, memory_mb: int, max_processes: int,
               notes: list[str], resources: tuple[str, ...] = RESOURCES) -> Cgroups | None:
        """Make this sandbox's cgroups under the grader's own (so any limit on the grader holds
        too) for `resources`; None, with a note per resource, where none can be made."""
        v1_mounts, v2_mount = _mounts()
        v1_paths, v2_path = _own_paths()
        parents: dict[str, tuple[str, int]] = {}
        for r in resources:
            ctrl = V1_CONTROLLER[r]
            if ctrl in v1_mounts and ctrl in v1_paths:
                base, version = v1_mounts[ctrl] + v1_paths[ctrl], 1
            elif v2_mount is not None and v2_path is not None and _v2_has(v2_mount + v2_path, r):
                base, version = v2_mount + v2_path, 2
            else:
                notes.append(f"no cgroup for per-program {r} limits (no v1 {ctrl} controller, "
                             "none in the v2 hierarchy)")
                continue
            d = os.path.join(base.rstrip("/") or "/", tag)
            try:
                _sweep_stale(base)
                os.makedirs(d, exist_ok=True)
                if version == 2 and r != "cpu":
                    _write(os.path.join(d, "cgroup.subtree_control"), f"+{V2_CONTROLLER[r]}")
                parents[r] = (d, version)
            except OSError as e:
                notes.append(f"no cgroup for per-program {r} limits ({e})")
        if not parents:
            return None
        self = cls(parents, workers)
        try:
            for slot in self.dirs:
                for r, (d, v) in slot.items():
                    os.makedirs(d, exist_ok=True)
                    self._limit(r, d, v, memory_mb, max_processes)
        except OSError as e:
            notes.append(f"cgroup limits could not be set ({e})")
            self.remove()
            return None
        return self

    @staticmethod
    def _limit(r: str, d: str, v: int, memory_mb: int, max_processes: int) -> None:
        if r == "memory":
            limit = str(memory_mb << 20)
            if v == 1:
                _write(os.path.join(d, "memory.limit_in_bytes"), limit)
                swap = os.path.join(d, "memory.memsw.limit_in_bytes")
                if os.path.exists(swap):  # memory plus swap: no swapping past the limit
                    _write(swap, limit)
            else:
                _write(os.path.join(d, "memory.max"), limit)
                if os.path.exists(os.path.join(d, "memory.swap.max")):
                    _write(os.path.join(d, "memory.swap.max"), "0")
        elif r == "pids":  # its processes and threads, itself included, as RLIMIT_NPROC counts
            _write(os.path.join(d, "pids.max"), str(max_processes))

    def remove(self, wait_s: float = 2.0) -> None:
        """Remove every cgroup this made (their processes are gone or going: retried a while)."""
        dirs = [d for slot in self.dirs for d, _ in slot.values()] + [d for d, _ in self.parents.values()]
        deadline = time.monotonic() + wait_s
        for d in dirs:
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY: a killed worker's processes are still being reaped
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)


def _v2_has(d: str, r: str) -> bool:
    """Whether cgroup v2 directory `d` can give its children resource `r` (CPU time needs no
    controller: every v2 cgroup has cpu.stat)."""
    if r == "cpu":
        return os.path.exists(os.path.join(d, "cpu.stat"))
    try:
        with open(os.path.join(d, "cgroup.controllers")) as f:
            return V2_CONTROLLER[r] in f.read().split()
    except OSError:
        return False


def _sweep_stale(base: str) -> None:
    """Remove empty cgroups left by sandboxes whose grader died (named evil_moe_sandbox_<pid>_*)."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        parts = name.split("_")
        if not name.startswith("evil_moe_sandbox_") or len(parts) < 4 or not parts[3].isdigit():
            continue
        if os.path.exists(f"/proc/{parts[3]}"):
            continue
        d = os.path.join(base, name)
        for sub in os.listdir(d) if os.path.isdir(d) else ():
            try:
                os.rmdir(os.path.join(d, sub))
            except OSError:
                pass
        try:
            os.rmdir(d)
        except OSError:
            pass


class ProgramCgroup:
    """The worker's side: the files of its slot, opened before it isolates itself (they stay
    usable after its mounts go read-only), used by the template and by each program's process."""

    def __init__(self, slot: dict[str, list]):
        self.join_fds: list[int] = []
        self.cpu_fd = self.cpu_v = self.oom_fd = None
        self.oom_v = 0
        # The fair-share group is joined once, by the worker (`enter_share`): the template and
        # every program forked from it inherit it (nothing in it is reset per program). The
        # others are joined by each program first thing (`join`).
        others = {d for r, (d, v) in slot.items() if r != "share"}
        self.share_dir = slot["share"][0] if "share" in slot and slot["share"][0] not in others else None
        seen = set()
        for r, (d, v) in slot.items():
            if d == self.share_dir:
                continue
            if d not in seen:
                seen.add(d)
                self.join_fds.append(os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC))
            if r == "cpu":
                name = "cpuacct.usage" if v == 1 else "cpu.stat"
                self.cpu_fd = os.open(os.path.join(d, name), (os.O_RDWR if v == 1 else os.O_RDONLY) | os.O_CLOEXEC)
                self.cpu_v = v
            elif r == "memory":
                name = "memory.oom_control" if v == 1 else "memory.events"
                self.oom_fd = os.open(os.path.join(d, name), os.O_RDONLY | os.O_CLOEXEC)
                self.oom_v = v
        self.has = set(slot)

    def enter_share(self) -> None:
        """Move the calling process (the worker, before it forks its template) into the slot's
        fair-share group."""
        if self.share_dir is not None:
            _write(os.path.join(self.share_dir, "cgroup.procs"), "0")  # "0": the writing process

    def fds(self) -> list[int]:
        return [fd for fd in (*self.join_fds, self.cpu_fd, self.oom_fd) if fd is not None]

    # -- in the template, around each program
    def start(self) -> tuple[float, int]:
        """Called once a program is forked and before it joins the slot: zero (v1) or read
        (v2) the CPU counter, read the OOM-kill count; returns these baselines, for `cpu_s`
        and `oom_killed`. Nothing here is kept: a value read before a fork, or kept after a
        program, would be in the next program's memory (a red-team review read the OOM-kill
        count an earlier program set this way)."""
        cpu_base, oom_base = 0.0, 0
        if self.cpu_fd is not None:
            if self.cpu_v == 1:
                os.pwrite(self.cpu_fd, b"0", 0)
            else:
                cpu_base = self._read_cpu()
        if self.oom_fd is not None:
            oom_base = self._oom_kills()
        return cpu_base, oom_base

    def cpu_s(self, bases: tuple[float, int]) -> float | None:
        """CPU seconds used by the program's processes since `start` (None without a cgroup)."""
        if self.cpu_fd is None:
            return None
        return self._read_cpu() - bases[0]

    def oom_killed(self, bases: tuple[float, int]) -> bool:
        """Whether the kernel killed one of the program's processes for the memory limit."""
        return self.oom_fd is not None and self._oom_kills() > bases[1]

    def _read_cpu(self) -> float:
        data = os.pread(self.cpu_fd, 4096, 0)
        if self.cpu_v == 1:
            return int(data) / 1e9
        for line in data.split(b"\n"):
            if line.startswith(b"usage_usec "):
                return int(line.split()[1]) / 1e6
        raise OSError("cpu.stat has no usage_usec")

    def _oom_kills(self) -> int:
        for line in os.pread(self.oom_fd, 4096, 0).split(b"\n"):
            if line.startswith(b"oom_kill "):
                return int(line.split()[1])
        return 0

    # -- in the program's process, first thing
    def join(self) -> None:
        for fd in self.join_fds:
            os.write(fd, b"0")
