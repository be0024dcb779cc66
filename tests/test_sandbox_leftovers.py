"""What the template is left holding after a program, and what a program can read of the
template without /proc (issue 14, red-team round 9): each test shows the channel contained, and
its breach where the protection is absent (`supervise=False`, or the second filter disabled).

The older attack classes are in test_sandbox_attacks.py.
"""

from __future__ import annotations

import os
import struct
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from evil_moe.env.sandbox import Program, Sandbox, SandboxConfig

# A file's access and modification times, set to values no clock gives: CPython's float of each
# is what the template made when it read the file back (`safe_read`'s fstat).
STAMP = (2.0 ** 45 + 0.5, 2.0 ** 44 + 0.75)
SENDER = Program(textwrap.dedent(f"""
    import os, struct
    with open('m', 'w') as f:
        f.write('x')
    os.utime('m', {STAMP!r})
    st = os.stat('m')
    print(struct.pack('<dd', st.st_atime, st.st_mtime).hex())
"""), read_files=("m",))
# Walks CPython 3.11's float free list (a freed float's type slot links the next one; its value
# stays) and prints every value on it as hex bytes. No float is made before or during the walk:
# making one takes the list's head.
FREE_FLOATS = Program(textwrap.dedent("""
    import ctypes, sys
    x = float(sys.argv[0] + '1')  # the list's head, taken and given back
    head = id(x)
    del x
    seen, at = [], head
    while at and len(seen) < 200:
        seen.append(ctypes.string_at(at + 16, 8).hex())
        at = ctypes.c_void_p.from_address(at + 8).value
    print(' '.join(seen))
"""))


@pytest.mark.skipif(os.uname().machine != "x86_64" or sys.version_info[:2] != (3, 11),
                    reason="the walk reads CPython 3.11's float layout on x86_64")
@pytest.mark.parametrize("supervise", [True, False])
def test_no_float_a_program_chose_reaches_a_later_program(supervise):
    """A red-team review (round 9) set its marker file's times with `os.utime` (102 bits it
    chose), and the template, reading the file back, made floats of them (`os.fstat`) and freed
    them onto CPython's float free list, which every later program of the worker inherits: a
    wrong response read a correct one's answers there and got `gt_correct` (12 of 12 on one
    worker). Its CPU time went the same way (`wait4`'s rusage). Under a supervisor (the default)
    all of a program's handling happens in a process forked for it alone, which exits: the
    template never holds those floats. The control, `supervise=False`: the next program reads
    both times exactly."""
    with Sandbox(SandboxConfig(workers=1, supervise=supervise)) as one:
        sent, walked = one.run_many([SENDER, FREE_FLOATS])
    assert sent.error is None and walked.error is None, (sent, walked)
    stamps = {sent.stdout.strip()[:16], sent.stdout.strip()[16:]}
    assert stamps == {struct.pack("<d", t).hex() for t in STAMP}
    found = stamps & set(walked.stdout.split())
    assert walked.stdout.split(), walked  # the walk saw a list
    assert found == (set() if supervise else stamps), (found, walked.stdout[:200])


TEMPLATE_READS = Program(textwrap.dedent("""
    import ctypes, os, time
    libc = ctypes.CDLL(None, use_errno=True)
    def sysc(nr, *args):
        if libc.syscall(nr, *args) != 0:
            raise OSError(ctypes.get_errno(), str(nr))
    def ustat_tmp():
        dev = os.stat('/tmp').st_dev  # a tmpfs: an anonymous device 0:N, in the kernel's encoding
        maj, mnr = os.major(dev), os.minor(dev)
        sysc(136, (mnr & 0xff) | (maj << 8) | ((mnr & ~0xff) << 12), ctypes.create_string_buffer(64))
    zero = ctypes.create_string_buffer(16)  # a timespec of 0: absolute, so it never waits
    out = []
    for name, call in (('cpuclock_pid1', lambda: time.clock_gettime(-14)),  # pid 1's CPU clock
                       ('cpuclock_res', lambda: time.clock_getres(-14)),
                       ('cpuclock_sleep', lambda: sysc(230, -14, 1, zero, None)),  # TIMER_ABSTIME
                       ('cpuclock_timer', lambda: sysc(222, -14, None, ctypes.create_string_buffer(8))),
                       ('own_thread_clock', lambda: time.clock_gettime(time.pthread_getcpuclockid(
                           __import__('threading').get_ident()))),
                       ('statvfs', lambda: os.statvfs('/')),
                       ('ustat', ustat_tmp),  # by device number: any file system, any namespace
                       ('fstatvfs', lambda: os.fstatvfs(1)),
                       ('process_time', time.process_time), ('thread_time', time.thread_time),
                       ('monotonic', time.monotonic)):
        try:
            call()
            out.append(name + '=ok')
        except PermissionError:
            out.append(name + '=EPERM')
    print(' '.join(out))
"""))


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the filter's numbers are checked on x86_64")
def test_no_other_processs_cpu_clock_and_no_file_system_counts():
    """`clock_gettime` on a negative clock id reads another process's CPU clock, with no
    permission check inside one pid namespace and no /proc: a red-team review (round 9) read the
    template's (pid 1), which the previous program's teardown moves, even under a supervisor, and
    forged 2 bits a program (31 of 40 receivers, 10 of 64 by chance). `statvfs` showed the free
    blocks and inodes of the host's disk and /dev/shm, which the host's writes move, and `ustat`
    finds any file system by its device number, a concurrent program's fresh /tmp among them,
    whose free counts that program sets (round 10: 23 of 25 wrong receivers forged, 0 of 15
    without the sender). The second filter refuses them all (clock_gettime, clock_getres,
    clock_nanosleep and timer_create on a negative id; statfs, fstatfs, ustat); a program's own
    clocks still work. The control, without the second filter: every call works."""
    with Sandbox(SandboxConfig(workers=1)) as one:
        if not one.isolation["no_keyrings"]:
            pytest.skip("this host has no seccomp filter")
        got = one.run(TEMPLATE_READS)
    assert got.stdout.split() == ["cpuclock_pid1=EPERM", "cpuclock_res=EPERM", "cpuclock_sleep=EPERM",
                                  "cpuclock_timer=EPERM", "own_thread_clock=EPERM", "statvfs=EPERM",
                                  "ustat=EPERM", "fstatvfs=EPERM", "process_time=ok", "thread_time=ok",
                                  "monotonic=ok"], got
    with Sandbox(SandboxConfig(workers=1), _disable=("child_filter",)) as loose:
        got = loose.run(TEMPLATE_READS)
    assert all(w.endswith("=ok") for w in got.stdout.split()) and len(got.stdout.split()) == 11, got


FILLER = Program(textwrap.dedent("""
    import os, time
    for i in range(777):  # this program's /tmp now has 777 fewer free inodes than a fresh one
        open(f'/tmp/f{i}', 'w').close()
    time.sleep(8)
"""), timeout_s=20.0)
SCANNER = Program(textwrap.dedent("""
    import ctypes, os, time
    libc = ctypes.CDLL(None, use_errno=True)
    def free_inodes(dev):  # struct ustat: f_tfree (int), f_tinode (unsigned long, offset 8), names
        buf = ctypes.create_string_buffer(64)
        return None if libc.syscall(136, dev, buf) != 0 else ctypes.c_ulong.from_buffer(buf, 8).value
    def code(maj, mnr):  # the kernel's device encoding (new_encode_dev)
        return (mnr & 0xff) | (maj << 8) | ((mnr & ~0xff) << 12)
    st = os.stat('/tmp').st_dev
    own = code(os.major(st), os.minor(st))
    mine = free_inodes(own)
    if mine is None:
        print('refused', ctypes.get_errno())
        raise SystemExit
    others = [code(0, m) for m in range(1, 4096)]  # anonymous devices 0:N (tmpfs among them)
    found, end = False, time.monotonic() + 6
    while not found and time.monotonic() < end:  # until the filler has made its files
        found = any(free_inodes(d) == mine - 777 for d in others if d != own)
        time.sleep(0.2)
    print('found' if found else 'none')
"""), timeout_s=20.0)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="ustat exists on x86_64 only")
def test_no_program_reads_a_concurrent_programs_tmp():
    """Two programs at once, on two workers: one makes 777 files in its fresh /tmp, the other
    scans the host's file systems by device number with `ustat` for a /tmp with 777 fewer free
    inodes than its own, which is how a red-team review (round 10) passed a correct sibling's
    answers to wrong ones. The second filter refuses `ustat`; the control, without it: the
    scanner finds the filler's /tmp."""
    def at_once(sb: Sandbox):  # one thread each: each takes a worker of its own
        with ThreadPoolExecutor(2) as pool:
            filler = pool.submit(sb.run, FILLER)
            scan = pool.submit(sb.run, SCANNER).result()
            assert filler.result().error is None
        return scan

    with Sandbox(SandboxConfig(workers=2)) as two:
        if not two.isolation["no_keyrings"]:
            pytest.skip("this host has no seccomp filter")
        scan = at_once(two)
    assert scan.stdout == "refused 1\n", scan
    with Sandbox(SandboxConfig(workers=2), _disable=("child_filter",)) as loose:
        scan = at_once(loose)
    assert scan.stdout == "found\n", scan


LEFT_BEHIND = Program(textwrap.dedent("""
    import os, time
    if os.fork() == 0:  # a child that burns 0.5 s of CPU, then outlives its parent
        t = time.process_time()
        while time.process_time() - t < 0.5:
            pass
        time.sleep(30)
    time.sleep(0.8)
    os._exit(0)
"""), timeout_s=5.0)


@pytest.mark.parametrize("supervise", [True, False])
@pytest.mark.parametrize("cgroups", [True, False])
def test_the_cpu_time_of_a_process_left_behind_is_counted(supervise, cgroups):
    """A program's CPU time counts all its processes, also one it leaves behind (killed at the
    end), with the slot's cgroup counter or, without one, by reaping: under a supervisor the
    program's orphans come back to the supervisor (a child subreaper), which reaps them. Argued,
    not shown: before, they went to the template, which ignores SIGCHLD, and without cgroups the
    program's `cpu_s` was 0.004 s instead of 0.5 (`timeout` against `wall_timeout` and the
    grader's limit calibration read it)."""
    with Sandbox(SandboxConfig(workers=1, supervise=supervise), _disable=() if cgroups else ("cgroups",)) as one:
        if cgroups and not one.isolation["cpu_limit"]:
            pytest.skip("this host has no cgroup CPU counter")
        r = one.run(LEFT_BEHIND)
    assert r.error is None and 0.45 <= r.cpu_s < 1.5, r


MORE_REFUSED = Program(textwrap.dedent("""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)
    out = []
    for name, nr, args in (('futimesat', 261, (0, None, None)), ('statmount', 457, (None, None, 0, 0)),
                           ('listmount', 458, (None, None, 0, 0)), ('sched_rr_get_interval', 148, (0, buf)),
                           ('prctl_memory_merge', 157, (67, 0, 0, 0, 0))):
        r = libc.syscall(nr, *args)
        out.append(f"{name}={'EPERM' if r != 0 and ctypes.get_errno() == 1 else 'not-EPERM'}")
    print(' '.join(out))
"""))
STDIN_TOUCH = Program(textwrap.dedent("""
    import os
    out = []
    for name, call in (('utime', lambda: os.utime(0)), ('chown', lambda: os.chown(0, -1, -1))):
        try:
            call()
            out.append(name + '=ok')
        except OSError as e:
            out.append(f'{name}={e.errno}')
    print(' '.join(out), os.read(0, 1))
"""))


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the probe uses x86_64 numbers")
def test_mount_ids_run_queues_and_stdins_times_are_out_of_reach():
    """A sweep of every syscall (round 10's follow-up) found one more store: a program's stdin
    was the host's /dev/null, opened on a writable mount before the view, and any process may
    set the times of a 0666 device node it holds (`os.utime(0)`, `os.chown(0, -1, -1)`): 8 of 8
    values passed to a later program, also across graders and between two programs at once.
    Stdin is now the view's /dev/null, on a read-only mount: EROFS, and reading it still gives
    EOF. (Argued, not shown: the code before kept the host's.) The second filter also refuses
    futimesat (whose NULL-path form does the same to any descriptor), statmount and listmount
    (host-wide mount ids), sched_rr_get_interval (another CPU's load) and prctl's
    PR_SET_MEMORY_MERGE (KSM, like MADV_MERGEABLE); the control, without it: none is EPERM."""
    with Sandbox(SandboxConfig(workers=1)) as one:
        if not one.isolation["no_keyrings"]:
            pytest.skip("this host has no seccomp filter")
        refused, touched = one.run_many([MORE_REFUSED, STDIN_TOUCH])
    assert refused.stdout.split() == ["futimesat=EPERM", "statmount=EPERM", "listmount=EPERM",
                                      "sched_rr_get_interval=EPERM", "prctl_memory_merge=EPERM"], refused
    assert touched.stdout == "utime=1 chown=1 b''\n", touched  # the allow-list: no fchown, no NULL-path utimensat
    if one.isolation["minimal_fs"]:
        with Sandbox(SandboxConfig(workers=1), _disable=("allowlist",)) as beneath:
            touched = beneath.run(STDIN_TOUCH)
        assert touched.stdout == "utime=30 chown=30 b''\n", touched  # and beneath it, EROFS
    with Sandbox(SandboxConfig(workers=1), _disable=("child_filter", "allowlist")) as loose:
        refused = loose.run(MORE_REFUSED)
    assert refused.stdout.split() == ["futimesat=not-EPERM", "statmount=not-EPERM", "listmount=not-EPERM",
                                      "sched_rr_get_interval=not-EPERM", "prctl_memory_merge=not-EPERM"], refused


OFF_THE_LIST = Program(textwrap.dedent("""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    out = []
    for name, nr, args in (('getpriority', 140, (0, 0)), ('getcpu', 309, (None, None, None)),
                           ('epoll_create1', 291, (0,)), ('eventfd2', 290, (0, 0)),
                           ('sched_getscheduler', 145, (0,)), ('membarrier', 324, (0, 0, 0)),
                           ('sync', 162, ()), ('utimensat_fd', 280, (0, None, None, 0)),
                           ('statx', 332, (-100, b'/tmp', 0, 0, ctypes.create_string_buffer(256)))):
        r = libc.syscall(nr, *args)
        out.append(f"{name}={'EPERM' if r < 0 and ctypes.get_errno() == 1 else 'not-EPERM'}")
    print(' '.join(out))
"""))


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the allow-list is x86_64's")
def test_calls_off_the_allow_list_are_refused():
    """Each red-team round found one more call the deny-lists let through; the programs' third
    filter is an allow-list (`program_allowlist`): a call it does not list is refused whether or
    not a channel through it is known. A few that neither deny-list names, and the NULL-path form
    of utimensat (which sets a descriptor's file's times), and statx (the kernel fills in the
    host-wide mount id whatever the mask, round 11): EPERM; the control, without the allow-list:
    none is EPERM (utimensat on the read-only stdin is EROFS)."""
    with Sandbox(SandboxConfig(workers=1)) as one:
        if not one.isolation["no_keyrings"]:
            pytest.skip("this host has no seccomp filter")
        got = one.run(OFF_THE_LIST)
    names = ["getpriority", "getcpu", "epoll_create1", "eventfd2", "sched_getscheduler", "membarrier", "sync",
             "utimensat_fd", "statx"]
    assert got.stdout.split() == [f"{n}=EPERM" for n in names], got
    with Sandbox(SandboxConfig(workers=1), _disable=("allowlist",)) as loose:
        got = loose.run(OFF_THE_LIST)
    assert got.stdout.split() == [f"{n}=not-EPERM" for n in names], got
