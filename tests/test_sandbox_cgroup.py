"""The cgroup helper on both hierarchies this host mounts: a slot counts the CPU time of the
processes that join it (v1 cpuacct, and v2 cpu.stat, which pure-v2 hosts use), and removal
leaves nothing behind."""

from __future__ import annotations

import os
import time

import pytest

from evil_moe.env.sandbox_cgroup import Cgroups, ProgramCgroup, _mounts, _own_paths


def _burn_in(cg: ProgramCgroup, seconds: float) -> float:
    """Fork a process that joins `cg` and burns `seconds` of CPU; its CPU time as the cgroup
    counted it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.read(r, 1)  # joins once the parent has its baselines, as a program does
            cg.join()
            t = time.process_time()
            while time.process_time() - t < seconds:
                pass
        finally:
            os._exit(0)
    bases = cg.start()
    os.write(w, b"1")
    os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    return cg.cpu_s(bases)


def _v2_slot() -> str:
    v1, v2 = _mounts()
    _, path = _own_paths()
    if v2 is None or path is None or os.geteuid() != 0:
        pytest.skip("needs root and a cgroup v2 hierarchy")
    return os.path.join(v2 + path.rstrip("/"), f"evil_moe_test_{os.getpid()}")


def test_a_v1_slot_counts_its_processes_cpu_time_and_resets():
    notes: list[str] = []
    cgs = Cgroups.create(f"evil_moe_sandbox_{os.getpid()}_test", 1, 256, 8, notes)
    if cgs is None or "cpu" not in cgs.parents or cgs.parents["cpu"][1] != 1:
        pytest.skip(f"no v1 cpuacct here ({notes})")
    try:
        cg = ProgramCgroup(cgs.dirs[0])
        assert 0.2 <= _burn_in(cg, 0.2) < 0.3
        assert 0.1 <= _burn_in(cg, 0.1) < 0.2  # start() zeroed it
        assert not cg.oom_killed(cg.start())
        for fd in cg.fds():
            os.close(fd)
    finally:
        cgs.remove()
    assert not any(os.path.exists(d) for d, _ in cgs.parents.values())


def test_a_v2_slot_counts_cpu_time_from_a_baseline():
    d = _v2_slot()
    os.mkdir(d)
    try:
        cg = ProgramCgroup({"cpu": [d, 2]})
        assert 0.2 <= _burn_in(cg, 0.2) < 0.3
        assert 0.1 <= _burn_in(cg, 0.1) < 0.2  # counted from start()'s baseline
        for fd in cg.fds():
            os.close(fd)
    finally:
        os.rmdir(d)
