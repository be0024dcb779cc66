"""The attack campaign's classes against the sandbox (issues 13 and 14): each test shows the
attack contained, and, where it can be shown on this host, that it breaches the protection's
absence (the same sandbox with that protection disabled, or `limit="wall"`).

Labels and semantics are in test_sandbox.py, the older hostile programs in
test_sandbox_hostile.py.
"""

from __future__ import annotations

import os
import socket
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from evil_moe.env.sandbox import LIMITS, Program, Sandbox, SandboxConfig

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "leetcode" / "leetcode_test_medhard.jsonl"
CFG = SandboxConfig(timeout_s=2.0, memory_mb=256, workers=2)


@pytest.fixture(scope="module")
def sb():
    with Sandbox(CFG) as s:
        yield s


def need(sb: Sandbox, *keys: str) -> None:
    missing = [k for k in keys if not sb.isolation[k]]
    if missing:
        pytest.skip(f"this host lacks {', '.join(missing)}")


def prog(source: str, **kw) -> Program:
    return Program(textwrap.dedent(source), **kw)


# ----------------------------------------------------------------------------- time
HOSTILE_NEIGHBOUR = prog("""
    import os, time
    for _ in range(31):  # 31 busy processes, each in a session of its own
        if os.fork() == 0:
            os.setsid()
            while True: pass
    time.sleep(6)
""", timeout_s=60.0)
# a correct program: 0.3 s of CPU, after its neighbour's burners are running (alone it ends in
# about 2.3 s, under its 3 s limit whether that is CPU or wall time)
CORRECT = prog("""
    import time
    time.sleep(2.0)
    while time.process_time() < 0.3: pass
    print('done')
""", timeout_s=3.0)


def test_a_hostile_neighbour_cannot_make_a_correct_program_time_out(sb):
    """With the limit on its own CPU time, the correct program passes however much its
    neighbour burns."""
    need(sb, "cpu_limit")
    _, r = sb.run_many([HOSTILE_NEIGHBOUR, CORRECT])
    assert (r.error, r.returncode, r.stdout) == (None, 0, "done\n"), r
    assert 0.3 <= r.cpu_s < 1.0
    # The breach under the wall-clock rule is shown at the grader's level
    # (tests/test_oracle.py::test_a_hostile_neighbour_cannot_time_out_a_correct_solution): here it
    # did not show reliably (the pair's timing on a loaded machine decides it).


CPU_GROUP = prog("""
    import os
    def group():
        for line in open("/proc/self/cgroup"):
            num, ctrls, path = line.rstrip("\\n").split(":", 2)
            if "cpu" in ctrls.split(","):
                return path
    if os.fork() == 0:
        os.setsid()  # a session of its own: outside a cgroup, an autogroup of its own
        open("child", "w").write(group())
        os._exit(0)
    os.wait()
    print(group(), open("child").read())
""")


def test_every_process_of_a_program_shares_its_slots_cpu_group(sb):
    """The scheduler's fair share is per slot: a program and the children it puts in sessions
    of their own are in its slot's `cpu` cgroup (equal weight per slot), so a neighbour that
    starts 30 busy processes, each in a session (an autogroup each on this host), gets one slot's
    share, not 30 entities' worth. (Its effect on a neighbour's wall clock is timing, not tested
    here: docs/sandbox.md has the measurement.)"""
    need(sb, "cpu_share")
    with Sandbox(CFG, _disable=("no_proc",)) as seeing:  # a /proc to read its own groups in
        mine, child = seeing.run(CPU_GROUP).stdout.split()
    assert mine == child and mine.rsplit("/", 1)[-1].startswith("slot"), (mine, child)
    with Sandbox(CFG, _disable=("cgroup_share", "no_proc")) as loose:
        assert not loose.isolation["cpu_share"] and loose.isolation["cpu_limit"]
        mine, child = loose.run(CPU_GROUP).stdout.split()
    assert not mine.rsplit("/", 1)[-1].startswith("slot")


# ----------------------------------------------------------------------------- memory, processes
HOLD_100MB_IN_4_CHILDREN = prog("""
    import os, time
    kids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            x = b'x' * (100 << 20)  # written: every page is charged
            time.sleep(4.0)  # long enough that all four overlap on a loaded machine
            os._exit(0)
        kids.append(pid)
    print(sum(os.waitpid(pid, 0)[1] == 0 for pid in kids))
""", timeout_s=10.0)


def test_memory_is_limited_across_all_of_a_programs_processes(sb):
    """256 MiB per program: of four children that each hold 100 MiB for 4 s, all started at once,
    at most two live to the end (the kernel kills the others; a child killed after its allocation
    lets a later one allocate, so arrivals are not counted, survivors are: every survivor held its
    100 MiB at the moment the last one finished allocating). Per process (RLIMIT_AS, no cgroup) all
    four survive: 400 MiB."""
    need(sb, "memory_limit")
    r = sb.run(HOLD_100MB_IN_4_CHILDREN)
    assert r.error is None and int(r.stdout) <= 2, r
    with Sandbox(CFG, _disable=("cgroups",)) as loose:
        assert not any(loose.isolation[k] for k in LIMITS)
        r = loose.run(HOLD_100MB_IN_4_CHILDREN)
    assert (r.error, r.stdout) == (None, "4\n")


def test_the_kernel_killing_a_program_at_its_memory_limit_is_labelled_memory(sb):
    """Files in its private /tmp count too (they are memory): 60 MiB of files plus a 200 MiB
    object is past 256 MiB, though the object alone is under the per-process RLIMIT_AS."""
    need(sb, "memory_limit")
    r = sb.run(prog("""
        for i in range(4):
            open(f'/tmp/f{i}', 'wb').write(b'x' * (15 << 20))
        print('files', flush=True)
        x = b'y' * (200 << 20)
        print('held')
    """, timeout_s=5.0))
    assert (r.error, r.returncode, r.stdout) == ("memory", -9, "files\n"), r


def test_processes_are_limited_per_program(sb):
    need(sb, "pids_limit")
    r = sb.run(prog("""
        import os, time
        n = 0
        for _ in range(60):
            try:
                if os.fork() == 0:
                    time.sleep(2); os._exit(0)
                n += 1
            except OSError:
                pass
        print(n)
    """, timeout_s=5.0))
    assert r.error is None and int(r.stdout) == CFG.max_processes - 1  # itself and 31 children


def test_no_pid_counter_between_programs(sb):
    """Every program is pid 3 of its worker's namespace (2 without a supervisor), whatever
    earlier ones forked: a program cannot tell a later one a number through the pid counter.
    Without the reset, the forks of one program move the next one's pid."""
    need(sb, "pid_counter_reset")
    forker = prog("import os\nfor _ in range(20):\n    if os.fork() == 0: os._exit(0)\n    os.wait()\nprint(os.getpid())")
    pid = prog("import os; print(os.getpid())")
    with Sandbox(SandboxConfig(workers=1)) as one:
        assert [r.stdout for r in one.run_many([forker, pid, forker, pid])] == ["3\n"] * 4
    with Sandbox(SandboxConfig(workers=1, supervise=False)) as one:
        assert [r.stdout for r in one.run_many([forker, pid, forker, pid])] == ["2\n"] * 4
    with Sandbox(SandboxConfig(workers=1), _disable=("pid_counter_reset",)) as one:
        first, second = (int(r.stdout) for r in one.run_many([pid, forker, pid])[::2])
        assert second - first > 20


# ----------------------------------------------------------------------------- the file-system view
def _probe(paths: list[str]) -> Program:
    return prog(f"""
        import os
        for p in {paths!r}:
            try:
                open(p, 'rb').close(); print('OPEN', p)
            except OSError:
                print('-', p)
    """)


def test_no_host_data_is_reachable(sb):
    """The benchmark's data (world-readable on the host), the repository, homes and /etc are
    outside the program's view; the fallback view (the host's, read-only) shows them."""
    need(sb, "minimal_fs")
    if not DATA.exists():
        pytest.skip(f"no {DATA}")
    targets = [str(DATA), "../shared/data/leetcode/leetcode_test_medhard.jsonl",
               str(REPO / "pyproject.toml"), "/etc/passwd", "/etc/hostname", "/root/.bashrc",
               "/proc/1/root/etc/passwd"]
    r = sb.run(_probe(targets))
    assert r.stdout == "".join(f"- {t}\n" for t in targets), r
    r = sb.run(prog("import os; print(repr((os.listdir('/'), os.listdir('/etc'), os.listdir('/dev'))))"))
    top, etc, dev = eval(r.stdout)  # noqa: S307 - our own program's printed lists
    assert set(top) <= {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev",
                        "proc", "tmp", "var", "root", "home"}
    assert set(etc) <= {"ld.so.cache", "localtime"}
    assert sorted(dev) == ["fd", "null", "random", "shm", "stderr", "stdin", "stdout", "urandom", "zero"]
    real = DATA.resolve()  # the fallback keeps /tmp private: a checkout there links to its data
    with Sandbox(CFG, _disable=("minimal_fs",)) as old:
        assert old.run(_probe([str(real)])).stdout == f"OPEN {real}\n"


def test_proc_and_the_view_are_read_only_and_tmp_is_private(sb):
    """No sysctl of the namespaces programs share (network, IPC) can be written through /proc:
    as root of a user namespace a program passes the uid check some of them make. (The probe
    reads the mounts' flags with `statvfs`, which the second filter refuses programs: it runs
    without that filter, which changes no mount.)"""
    need(sb, "minimal_fs")
    with Sandbox(CFG, _disable=("child_filter",)) as probe:
        r = probe.run(prog("""
        import os
        print([bool(os.statvfs(p).f_flag & os.ST_RDONLY) for p in ('/', '/proc', '/usr', '/dev', '/tmp', '/dev/shm')])
        """))
    assert r.stdout == "[True, True, True, True, False, False]\n", r


def test_the_interpreter_and_common_modules_still_work(sb):
    r = sb.run(prog("""
        import ctypes, decimal, fractions, json, sqlite3, statistics, zoneinfo, datetime, tempfile, os
        from sortedcontainers import SortedList
        print(SortedList([3, 1, 2])[0], decimal.Decimal(1) / 3 > 0, zoneinfo.ZoneInfo('UTC').key)
        with open('/dev/null', 'w') as f: f.write('x')
        print(len(open('/dev/urandom', 'rb').read(8)), tempfile.gettempdir() == os.getcwd())
    """))
    if "No module named 'sortedcontainers'" in r.stderr:
        pytest.skip("sortedcontainers is not installed here")
    assert (r.error, r.returncode, r.stdout) == (None, 0, "1 True UTC\n8 True\n"), r.stderr


def test_no_pty_and_no_host_unix_socket(sb, tmp_path):
    """A host process's pathname unix socket (the empty network namespace does not cover them)
    and the host's pty devices are outside the view, and a program makes no socket at all
    (`child_filter`); the fallback view, with sockets allowed, reaches the socket (outside /tmp,
    which both views make private)."""
    need(sb, "minimal_fs")
    host_tmp = socket.socket(socket.AF_UNIX)
    host_tmp.bind(str(tmp_path / "tmp.sock"))
    host_tmp.listen(1)
    os.chmod(tmp_path, 0o755)
    r = sb.run(prog(f"""
        import socket
        try: socket.socket(socket.AF_UNIX).connect({str(tmp_path / "tmp.sock")!r}); print('CONNECTED')
        except OSError: print('refused')
    """))
    host_tmp.close()
    assert r.stdout == "refused\n"
    sock_dir = tempfile.mkdtemp(prefix="evil_moe_sock_", dir="/run" if os.access("/run", os.W_OK) else None)
    path = os.path.join(sock_dir, "host.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(4)
    os.chmod(sock_dir, 0o755)
    os.chmod(path, 0o777)
    try:
        connect = prog(f"""
            import socket
            try: socket.socket(socket.AF_UNIX).connect({path!r}); print('CONNECTED')
            except OSError: print('refused')
        """)
        assert sb.run(connect).stdout == "refused\n"
        r = sb.run(prog("""
            import os
            try: os.openpty(); print('PTY')
            except OSError: print('no pty')
            print(os.path.exists('/dev/ptmx'), os.path.exists('/dev/pts'))
        """))
        assert r.stdout == "no pty\nFalse False\n"
        if sock_dir.startswith("/run"):  # /tmp is private in both views
            with Sandbox(CFG, _disable=("minimal_fs", "child_filter")) as old:
                assert old.run(connect).stdout == "CONNECTED\n"
    finally:
        listener.close()
        os.unlink(path)
        os.rmdir(sock_dir)


# ----------------------------------------------------------------------------- fresh state
def _memory_scan(a: str, b: str) -> Program:
    """A program that reads all of its own writable memory and counts where `a + b` occurs.
    The two halves are separate objects: the whole never exists in its memory unless something
    else put it there."""
    return prog(f"""
        A, B = {a.encode()!r}, {b.encode()!r}
        hits = 0
        with open('/proc/self/maps') as f:
            regions = [l.split() for l in f]
        mem = open('/proc/self/mem', 'rb', buffering=0)
        for r in regions:
            if not r[1].startswith('rw'):
                continue
            lo, hi = (int(x, 16) for x in r[0].split('-'))
            try:
                mem.seek(lo); data = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            i = data.find(A)
            while i >= 0:
                hits += data[i + len(A):i + len(A) + len(B)] == B
                i = data.find(A, i + 1)
            del data
        print(hits)
    """)


def test_a_program_finds_no_earlier_programs_source_or_output_in_its_memory():
    """Sibling code theft: the template forks every program, so whatever it once held and freed
    (an earlier row's source, its output) was in every later program's memory. The template
    never reads a program's source now (the program's own process does), and the buffers its
    output passes through are fixed and zeroed after each program. The control shows the scan
    finds the token where a program itself put it and freed it."""
    token = uuid.uuid4().hex
    a, b = token[:16], token[16:]
    victim = prog(f"""
        SECRET = {token!r}  # a correct solution's code, say
        print(SECRET * 100)
        open('marker', 'w').write(SECRET)
    """, read_files=("marker",))
    control = prog(f"""
        x = ({a!r} + {b!r}) * 1000
        del x
    """)
    # (with a /proc: without one a program has no easy way to read all of its memory)
    with Sandbox(SandboxConfig(workers=1, timeout_s=10.0), _disable=("no_proc",)) as one:
        results = one.run_many([victim, victim, _memory_scan(a, b)])
        assert results[0].stdout == token * 100 + "\n" and results[0].files["marker"] == token.encode()
        assert results[2].stdout == "0\n", results[2]
        scan_self = textwrap.dedent(control.source) + _memory_scan(a, b).source
        assert int(one.run(Program(scan_self)).stdout) > 0  # control: the scan finds freed copies


# ----------------------------------------------------------------------------- shared-file channels
CHANNELS = prog("""
    import ctypes, fcntl, os
    f = open(os.__file__, 'rb')
    def attempt(name, call):
        try:
            call(); print(name, 'ok')
        except OSError as e:
            print(name, e.errno)
    attempt('flock', lambda: fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB))
    attempt('lockf', lambda: fcntl.lockf(f, fcntl.LOCK_SH | fcntl.LOCK_NB))
    attempt('fadvise', lambda: os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED))
    buf = bytearray(16)
    attempt('nowait', lambda: os.preadv(f.fileno(), [buf], 0, os.RWF_NOWAIT))
    attempt('preadv', lambda: os.preadv(f.fileno(), [buf], 0))
    d = os.open(os.path.dirname(os.__file__), os.O_RDONLY)
    attempt('dnotify', lambda: fcntl.fcntl(d, fcntl.F_NOTIFY, fcntl.DN_ACCESS))
    libc = ctypes.CDLL(None, use_errno=True)
    def sys_call(nr, *args):
        if libc.syscall(nr, *args) == -1:
            raise OSError(ctypes.get_errno(), 'x')
    attempt('inotify', lambda: sys_call(294, 0))  # inotify_init1
    attempt('io_uring', lambda: sys_call(425, 1, ctypes.create_string_buffer(120)))
    import mmap
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    for name, advice in (('cold', 20), ('pageout', 21), ('hugepage', 14), ('collapse', 25)):
        attempt(name, lambda: m.madvise(advice))
    attempt('willneed', lambda: m.madvise(mmap.MADV_WILLNEED))
    attempt('process_madvise', lambda: sys_call(440, -1, 0, 0, 0, 0))
""")


def test_lock_page_cache_and_watch_channels_are_refused(sb):
    """flock, POSIX locks, fadvise (evicts a shared file's pages), madvise's MADV_COLD,
    MADV_PAGEOUT (evict), MADV_HUGEPAGE and MADV_COLLAPSE (regroup cached pages), process_madvise,
    preadv2 with RWF_NOWAIT (tells whether a page is cached), dnotify and inotify (see other programs' reads) and io_uring (which
    would do these past the filter) fail with EPERM; plain reads work. Without the filter the
    same calls succeed."""
    need(sb, "no_file_channels")
    if os.uname().machine != "x86_64":
        pytest.skip("the probe uses x86_64 syscall numbers")
    lines = dict(line.split() for line in sb.run(CHANNELS).stdout.splitlines())
    assert lines == {"flock": "1", "lockf": "1", "fadvise": "1", "nowait": "1", "preadv": "ok",
                     "dnotify": "1", "inotify": "1", "io_uring": "1", "cold": "1", "pageout": "1",
                     "hugepage": "1", "collapse": "1", "willneed": "ok", "process_madvise": "1"}
    with Sandbox(CFG, _disable=("no_keyrings",)) as open_:
        lines = dict(line.split() for line in open_.run(CHANNELS).stdout.splitlines())
    assert lines["flock"] == lines["fadvise"] == lines["inotify"] == lines["pageout"] == "ok"
    assert lines["process_madvise"] == "9"  # EBADF: the call itself exists


def test_no_new_user_namespace_and_threads_and_processes_still_work(sb):
    """A user namespace is the way to capabilities (and much of the kernel's surface) for a
    process without them: clone and unshare refuse to make one, clone3 says ENOSYS (the C
    library then uses clone), and threads, a thread pool, fork and running a command still
    work (subprocess and multiprocessing do not: they need pipes, see
    `test_programs_make_no_object_numbered_host_wide`)."""
    need(sb, "no_keyrings")
    if os.uname().machine != "x86_64":
        pytest.skip("the probe uses x86_64 syscall numbers")
    r = sb.run(prog("""
        import ctypes, os, sys, threading
        from concurrent.futures import ThreadPoolExecutor
        libc = ctypes.CDLL(None, use_errno=True)
        print(libc.unshare(0x10000000), ctypes.get_errno())  # CLONE_NEWUSER
        print(libc.syscall(435, 0, 0), ctypes.get_errno())  # clone3
        t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()
        with ThreadPoolExecutor(2) as ex: print(list(ex.map(abs, [-1, -2])))
        if os.fork() == 0: os._exit(3)
        print(os.waitstatus_to_exitcode(os.wait()[1]))
        sys.stdout.flush(); os.system('echo sub')
    """, timeout_s=10.0))
    assert (r.error, r.stdout) == (None, "-1 1\n-1 38\nthread\n[1, 2]\n3\nsub\n"), r


# ----------------------------------------------------------------------------- bounded reads
def test_marker_files_are_read_back_up_to_read_bytes(sb):
    """A 16 MiB marker file costs the grader 4 KiB per row (here 20 rows)."""
    big = prog("open('marker', 'wb').write(b'PASS' + b'x' * ((16 << 20) - 4))", read_files=("marker",))
    results = sb.run_many([big] * 20)
    assert all(r.error is None for r in results)
    assert {len(r.files["marker"]) for r in results} == {CFG.read_bytes}
    assert results[0].files["marker"][:4] == b"PASS"


def test_flooding_the_status_pipe_is_output_limit(sb):
    r = sb.run(prog("import os\nwhile True: os.write(3, b'M' * 65536)"))
    assert (r.error, r.returncode) == ("output_limit", None)


def test_output_past_the_cap_after_exit_is_output_limit(sb):
    r = sb.run(prog(f"import sys; sys.stdout.write('y' * {CFG.output_bytes + 10})"))
    assert (r.error, r.returncode, len(r.stdout)) == ("output_limit", None, CFG.output_bytes)


def test_thousands_of_nested_directories_are_wiped_without_recursion():
    nest = prog("""
        import os
        for base in ('.', '/tmp', '/dev/shm'):
            os.chdir(base)
            for _ in range(1200):
                os.mkdir('d'); os.chdir('d')
            open('f', 'w').close()
            os.chmod('.', 0)
        print('nested')
    """, timeout_s=10.0)
    look = prog("import os; print(sorted(os.listdir('/tmp')), os.listdir('/dev/shm'))")
    for disable in ((), ("fresh_scratch",)):  # a fresh mount; the wipe (the fallback's way)
        with Sandbox(SandboxConfig(workers=1), _disable=disable) as one:
            r1, r2 = one.run_many([nest, look])
            assert (r1.error, r1.stdout) == (None, "nested\n"), r1.stderr[-500:]
            assert r2.error is None and r2.stdout.endswith("] []\n")
            # in a fresh /tmp: the same name for every program; without one, "run<count>", and under
            # a supervisor the count never moves in the template (each supervisor counts 1)
            own = "run1" if disable else "run"
            mine = {own} | ({".shm", ".var-tmp"} if one.isolation["minimal_fs"] else set())
            assert set(eval(r2.stdout.split("] ")[0] + "]")) == mine  # noqa: S307 - its own dir only


AIO = prog(textwrap.dedent("""
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    ctx = ctypes.c_ulong(0)
    r = libc.syscall(206, 1, ctypes.byref(ctx))  # io_setup(1, &ctx)
    print("aio", "ok" if r == 0 else ctypes.get_errno())
    if r == 0:
        libc.syscall(207, ctx)
"""))


def test_linux_aio_is_refused(sb):
    """io_setup moves the host-wide /proc/sys/fs/aio-nr: a red-team review carried expected
    values between two concurrent programs through it. Refused (EPERM) by the filter; without
    the filter it succeeds."""
    need(sb, "no_file_channels")
    if os.uname().machine != "x86_64":
        pytest.skip("the probe uses x86_64 syscall numbers")
    assert sb.run(AIO).stdout.split() == ["aio", "1"]
    with Sandbox(CFG, _disable=("no_keyrings",)) as open_:
        assert open_.run(AIO).stdout.split() == ["aio", "ok"]


# ----------------------------------------------------------------------------- state left behind
# Red-team round 3 passed a correct response's results to a wrong sibling's oracle program
# through state a program leaves on its worker: IPv6 flow labels and IP counters of the worker's
# network namespace, and the scratch tmpfs's inode counter.
LEAVE_INODES = prog("""
    import os
    for d in ('.', '/var/tmp', '/dev/shm'):
        for i in range(37):
            open(os.path.join(d, f'f{i}'), 'w').close()
        os.close(os.open(d, os.O_TMPFILE | os.O_WRONLY, 0o600))  # an unnamed one too
""")
READ_INODES = prog("""
    import os
    open('mine', 'w').close(); open('/var/tmp/mine', 'w').close(); open('/dev/shm/mine', 'w').close()
    print(os.stat('.').st_ino, os.stat('mine').st_ino, os.stat('/var/tmp/mine').st_ino, os.stat('/dev/shm/mine').st_ino)
""")


def test_a_program_reads_no_inode_counter_an_earlier_one_moved():
    """A tmpfs numbers new inodes from a counter of its own; every program gets a fresh scratch
    mount (/var/tmp and /dev/shm live in /tmp's), so its numbers are the same whatever came
    before. With fresh mounts off (the wipe only), the 38 inodes show."""
    with Sandbox(SandboxConfig(workers=1)) as one:
        need(one, "private_tmp")
        alone = [one.run(READ_INODES).stdout for _ in range(2)]
        one.run(LEAVE_INODES)
        after = one.run(READ_INODES).stdout
    assert alone[0] == alone[1] == after, (alone, after)
    with Sandbox(SandboxConfig(workers=1), _disable=("fresh_scratch",)) as loose:
        reads = [[int(x) for x in loose.run(READ_INODES).stdout.split()] for _ in range(2)]
        loose.run(LEAVE_INODES)
        reads.append([int(x) for x in loose.run(READ_INODES).stdout.split()])
    quiet = [b - a for a, b in zip(reads[0], reads[1], strict=True)]
    moved = [b - a for a, b in zip(reads[1], reads[2], strict=True)]
    assert all(m - q >= 38 for q, m in zip(quiet[2:], moved[2:], strict=True)), (quiet, moved)


SOCKETS = prog("""
    import socket
    for name, family, kind in (('inet', socket.AF_INET, socket.SOCK_DGRAM), ('inet6', socket.AF_INET6, socket.SOCK_DGRAM),
                               ('netlink', socket.AF_NETLINK, socket.SOCK_RAW), ('packet', socket.AF_PACKET, socket.SOCK_DGRAM),
                               ('unix', socket.AF_UNIX, socket.SOCK_STREAM)):
        try:
            socket.socket(family, kind).close(); print(name, 'ok')
        except OSError as e:
            print(name, e.errno)
    try:
        a, b = socket.socketpair()
    except OSError as e:
        raise SystemExit(print('socketpair', e.errno))
    try:
        a.sendmsg([b'x']); print('sendmsg ok')
    except OSError as e:
        print('sendmsg', e.errno)
    a.send(b'y'); print('send', b.recv(1).decode())
""")
SEND_UNROUTABLE = prog("""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(5):
        try: s.sendto(b'x', ('10.255.255.1', 9))
        except OSError: pass
""")
READ_SNMP = prog("""
    head, vals = [l.split() for l in open('/proc/net/snmp') if l.startswith('Ip:')][:2]
    print(vals[head.index('OutNoRoutes')])
""")


def test_programs_make_no_network_state_and_pass_no_descriptors(sb):
    """No sockets at all for a program (`child_filter`), and beneath that, for the template and
    anything it forks, unix sockets only: an IPv6 flow label or an IP counter of the worker's
    network namespace outlives the program that made it, and a later program on the worker
    reads it. sendmsg is refused too (a descriptor in flight keeps its socket alive after its
    program). Without either filter, a program's unroutable sends show in the next program's
    counters."""
    need(sb, "no_keyrings", "net_namespace")
    if os.uname().machine != "x86_64":
        pytest.skip("the seccomp numbers are checked on x86_64")
    lines = dict(line.rsplit(" ", 1) for line in sb.run(SOCKETS).stdout.splitlines())
    assert lines == {"inet": "1", "inet6": "1", "netlink": "1", "packet": "1", "unix": "1",
                     "socketpair": "1"}, lines
    with Sandbox(SandboxConfig(workers=1), _disable=("child_filter",)) as first_only:
        lines = dict(line.rsplit(" ", 1) for line in first_only.run(SOCKETS).stdout.splitlines())
    assert lines == {"inet": "1", "inet6": "1", "netlink": "1", "packet": "1", "unix": "ok",
                     "sendmsg": "1", "send": "y"}, lines
    with Sandbox(SandboxConfig(workers=1), _disable=("no_keyrings", "no_proc")) as loose:
        before = int(loose.run(READ_SNMP).stdout)
        loose.run(SEND_UNROUTABLE)
        assert int(loose.run(READ_SNMP).stdout) == before + 5


PIDFDS = prog("""
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        os.close(os.pidfd_open(os.getpid())); print('pidfd_open ok')
    except OSError as e:
        print('pidfd_open', e.errno)
    fd = ctypes.c_int(-1)  # clone(CLONE_PIDFD | SIGCHLD, 0, &fd, 0, 0): refused before it forks
    r = libc.syscall(56, 0x1000 | 17, 0, ctypes.byref(fd), 0, 0)
    if r == 0:
        os._exit(0)
    print('clone_pidfd', 'ok' if r > 0 else ctypes.get_errno())
    if r > 0:
        os.waitpid(r, 0)
""")


def test_programs_get_no_pidfds(sb):
    """A pidfd's inode number comes from a host-wide counter every new process moves: a
    red-team review passed results between programs running at the same time, in two graders,
    through it. Each program gets a second filter refusing pidfd_open and clone's CLONE_PIDFD
    (the template keeps its own pidfds). Without that filter both work."""
    need(sb, "no_keyrings")
    if os.uname().machine != "x86_64":
        pytest.skip("the probe uses x86_64 syscall numbers")
    assert sb.run(PIDFDS).stdout == "pidfd_open 1\nclone_pidfd 1\n"
    with Sandbox(SandboxConfig(workers=1), _disable=("child_filter",)) as loose:
        assert loose.run(PIDFDS).stdout == "pidfd_open ok\nclone_pidfd ok\n"


HOST_WIDE_OBJECTS = prog("""
    import ctypes, errno, os, socket
    libc = ctypes.CDLL(None, use_errno=True)
    def tried(name, make):
        try:
            make(); print(name, 'ok')
        except OSError as e:
            print(name, errno.errorcode[e.errno])
    tried('pipe', os.pipe)
    tried('socket', lambda: socket.socket(socket.AF_UNIX))
    tried('socketpair', socket.socketpair)
    tried('memfd_create', lambda: os.memfd_create('x'))
    page = ctypes.cast(libc.printf, ctypes.c_void_p)  # a page of libc's code: every process maps it
    for name, op in (('futex_shared', 1), ('futex_private', 1 | 128)):  # FUTEX_WAKE, 1 waiter
        r = libc.syscall(202, page, op, 1, 0, 0, 0)
        print(name, 'ok' if r >= 0 else errno.errorcode[ctypes.get_errno()])
    for name, nr, args in (('userfaultfd', 323, (1,)), ('perf_event_open', 298, (0, 0, -1, 0, 0)),
                           ('bpf', 321, (0, 0, 0)), ('syslog', 103, (10, 0, 0)),
                           ('name_to_handle_at', 303, (-100, b'/', 0, 0, 0)),
                           ('open_by_handle_at', 304, (-100, 0, 0)),
                           ('futex_waitv', 449, (0, 0, 0, 0, 0))):
        r = libc.syscall(nr, *args)
        print(name, 'ok' if r >= 0 else errno.errorcode[ctypes.get_errno()])
""")
def test_programs_make_no_object_numbered_host_wide(sb):
    """Pipes, sockets and memfds are numbered from counters the whole host shares (inode numbers
    and socket cookies, handed out in per-CPU batches), and a shared futex's key is a page of a
    file every process maps: a red-team review passed a correct sibling's results to wrong ones
    through pipe inode numbers (two programs at once) and through socket cookies (across graders,
    one after the other). Each program's second filter refuses every call that makes such an
    object or finds such a key (`child_filter`); a private futex (all that threads and locks
    use) still works. Without the filter the calls work (the host's counters are not read here:
    their per-CPU batches make a single reading meaningless; the review's reproducers decode them
    with redundancy)."""
    need(sb, "no_keyrings")
    if os.uname().machine != "x86_64":
        pytest.skip("the probe uses x86_64 syscall numbers")
    lines = dict(line.split() for line in sb.run(HOST_WIDE_OBJECTS).stdout.splitlines())
    assert lines == {"pipe": "EPERM", "socket": "EPERM", "socketpair": "EPERM", "memfd_create": "EPERM",
                     "futex_shared": "EPERM", "futex_private": "ok", "userfaultfd": "EPERM",
                     "perf_event_open": "EPERM", "bpf": "EPERM", "syslog": "EPERM",
                     "name_to_handle_at": "EPERM", "open_by_handle_at": "EPERM", "futex_waitv": "EPERM"}, lines
    with Sandbox(SandboxConfig(workers=1), _disable=("child_filter",)) as loose:
        lines = dict(line.split() for line in loose.run(HOST_WIDE_OBJECTS).stdout.splitlines())
        assert {k: lines[k] for k in ("pipe", "socket", "socketpair", "memfd_create", "futex_shared")} == dict.fromkeys(
            ("pipe", "socket", "socketpair", "memfd_create", "futex_shared"), "ok"), lines


OWN_CHANNEL_NUMBERS = prog("""
    import os
    print(*(os.fstat(fd).st_ino for fd in (1, 2, 3)), os.getcwd())
""")
HUGETLB_MAPS = prog("""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    refused = 0
    for _ in range(300):  # MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB: numbers an inode even if it fails
        libc.mmap(None, 2 << 20, 3, 0x2 | 0x20 | 0x40000, -1, 0)
        refused += ctypes.get_errno() == 1
    print(refused)
""")


def test_a_programs_own_channels_are_numbered_the_same_for_every_program(sb):
    """A pipe's inode number comes from a counter the whole host shares, and an anonymous
    MAP_HUGETLB mapping moves it (the kernel numbers the mapping's inode even when the map then
    fails): a red-team review moved it from one program and read it off the next program's own
    status pipe (fd 3), passing a correct sibling's answer to a wrong one. A program's stdout,
    stderr and status are FIFOs in its fresh /tmp (numbered from that mount's own counter: the
    same numbers for every program), and MAP_HUGETLB is refused. Its directory's name is the
    same for every program too (a count would tell it how many ran before it on the worker).
    The control, with plain pipes and no second filter: the numbers differ from one program to
    the next, and the maps go through to the kernel."""
    need(sb, "private_tmp", "no_keyrings")
    if os.uname().machine != "x86_64":
        pytest.skip("the probe uses x86_64 flags")
    with Sandbox(SandboxConfig(workers=1)) as one:
        before = one.run(OWN_CHANNEL_NUMBERS).stdout
        assert one.run(HUGETLB_MAPS).stdout == "300\n"
        assert one.run(OWN_CHANNEL_NUMBERS).stdout == before, before
    with Sandbox(SandboxConfig(workers=1), _disable=("fresh_scratch", "child_filter")) as loose:
        first = loose.run(OWN_CHANNEL_NUMBERS).stdout
        assert loose.run(HUGETLB_MAPS).stdout != "300\n"
        assert loose.run(OWN_CHANNEL_NUMBERS).stdout != first


REPLY_IN_REACH = prog("""
    import sys
    found, f = [], sys._getframe()
    while f is not None:
        found += [f.f_code.co_name + ':' + k for k in ('header', 'payload', 'reaped_before', 'bases')
                  if k in f.f_locals]
        me = f.f_locals.get('self')
        used = getattr(me, 'used', None)
        if used is not None and list(used) != [0, 0, 0]:
            found.append(f.f_code.co_name + ':used')
        cg = getattr(me, 'cg', None)  # the slot's cgroup: no count an earlier program moved
        found += [f.f_code.co_name + ':cg.' + k for k in vars(cg) if k.endswith('_base')] if cg else []
        f = f.f_back
    print(found)
""")


@pytest.mark.parametrize("supervise", [False, True])
def test_no_earlier_reply_is_in_reach_of_a_program(supervise):
    """A red-team review read the previous program's reply (exit code, output sizes: bits the
    previous program chose) from the template's frames, which every program inherits. The
    template drops it and zeroes its counts before the next program; under a supervisor
    (`supervise=True`) no reply is ever made in the template at all. A later review read, the
    same way, counts the template took before each fork that earlier programs move: the
    processes it reaped (`getrusage`: page faults a sender chose, 16 bits exact) and the slot's
    OOM kills (also under a supervisor). These are read after the fork now (the child waits to
    join its cgroup until they are), and the cgroup keeps none of them. Argued, not shown: the
    code before read them before the fork."""
    loud = prog("""
        import os, sys
        sys.stdout.write('x' * 12345)
        pages = bytearray(64 << 20)  # moves the template's count of children's page faults
        for i in range(0, len(pages), 4096):
            pages[i] = 1
        sys.exit(77)
    """)
    with Sandbox(SandboxConfig(workers=1, supervise=supervise)) as one:
        first, second = one.run_many([loud, REPLY_IN_REACH])
    assert (first.returncode, len(first.stdout)) == (77, 12345)
    assert second.stdout == "[]\n", second


def test_supervised_programs_keep_their_labels():
    """Under `supervise=True` each program runs under a supervisor forked for it alone, which
    replies and exits: the labels and the contract are the same."""
    progs = [prog("print('ok')"), prog("raise SystemExit(3)"), prog("while True: pass", timeout_s=0.5),
             prog("import os; os.kill(os.getpid(), 9)"),
             prog("import os\nif os.fork() == 0:\n    os.write(1, b'[1, 2]\\n'); os._exit(0)\nos.wait()\n"
                  "print(os.getpid(), os.listdir('.'))"),
             prog("import os\nif os.fork() == 0:\n    os.setsid(); import time; time.sleep(60)\nprint('left one')")]
    with Sandbox(SandboxConfig(workers=1, timeout_s=5.0, supervise=True)) as one:
        results = one.run_many(progs + progs[-2:])
    got = [(r.error, r.returncode, r.stdout) for r in results]
    assert got[:4] == [(None, 0, "ok\n"), (None, 3, ""), ("timeout", None, ""), ("crash", -9, "")]
    assert got[4] == got[6] == (None, 0, "[1, 2]\n3 []\n"), got  # pid 3: under its supervisor (2)
    assert got[5] == got[7] == (None, 0, "left one\n")
