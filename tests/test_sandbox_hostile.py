"""Hostile programs against the sandbox: each asserts containment and the right label.

One shared sandbox runs them all; the last test closes it and checks that no process and no
file outside temporary directories was left behind. Tests that need a protection this host
lacks are skipped, naming it.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from evil_moe.env.sandbox import Program, Sandbox, SandboxConfig
from evil_moe.env.sandbox_worker import UID_BASE

TOKEN = f"evilmoe{uuid.uuid4().hex[:10]}"
SECRET_NAME, SECRET_VALUE = f"EVIL_MOE_SECRET_{TOKEN}", f"hunter2-{TOKEN}"
DAEMON_MARK = f"{7000 + int(TOKEN[-4:], 16) % 1000}.{os.getpid() % 997}"  # `sleep <mark>`
CFG = SandboxConfig(timeout_s=1.0, memory_mb=256, file_size_mb=4, max_processes=16,
                    output_bytes=4096, workers=2)
REPO = Path(__file__).resolve().parents[1]
TARGET_DIRS = ["/", "/root", "/etc", "/tmp", "/var/tmp", "/dev/shm", "/run/lock", str(REPO),
               str(Path.home()), os.getcwd(), str(Path(sys.executable).parent)]
STARTED_AT = time.time()


def _host_processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, uid, cmdline) of every host process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            uid = os.stat(f"/proc/{name}").st_uid
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        out[int(name)] = (ppid, uid, cmd)
    return out


@pytest.fixture(scope="module")
def host():
    os.environ[SECRET_NAME] = SECRET_VALUE  # set in the parent before any worker starts
    sleeper = subprocess.Popen(["sleep", "300"])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    before = _host_processes()
    others = _worker_pids()  # workers of sandboxes that other tests of this process still hold
    sb = Sandbox(CFG)
    workers = _worker_pids() - others
    assert len(workers) == CFG.workers
    yield {"sb": sb, "sleeper": sleeper, "listener": listener, "before": before,
           "program_uids": {UID_BASE + pid for pid in workers}}
    sb.close()
    sleeper.kill()
    sleeper.wait()
    listener.close()
    os.environ.pop(SECRET_NAME, None)


@pytest.fixture(scope="module")
def walls():
    """A sandbox whose wall backstop is short (1.5 s for a 0.5 s CPU limit), for programs that
    wait rather than compute; the main one keeps the default backstop (max(3t, t + 10 s)), so
    its CPU-bound programs reach their CPU limit however loaded this machine is."""
    with Sandbox(CFG.__class__(**{**CFG.__dict__, "workers": 1, "wall_factor": 1.0,
                                  "wall_slack_s": 1.0})) as sb:
        yield {"sb": sb}


def run(host, source: str, **kw) -> object:
    return host["sb"].run(Program(textwrap.dedent(source), **kw))


def need(host, *keys: str) -> None:
    missing = [k for k in keys if not host["sb"].isolation[k]]
    if missing:
        pytest.skip(f"this host lacks {', '.join(missing)}")


# ----------------------------------------------------------------------------- time
def test_infinite_loop_times_out(host):
    r = run(host, "while True: pass")
    assert (r.error, r.returncode) == ("timeout", None)
    assert 1.0 <= r.cpu_s < 1.5  # its CPU time, whatever the machine's load made its wall time


def test_sleep_hits_the_wall_backstop_not_the_cpu_limit(walls):
    r = run(walls, "import time; print('start', flush=True); time.sleep(100)", timeout_s=0.5)
    assert (r.error, r.returncode, r.stdout) == ("wall_timeout", None, "start\n")
    assert r.cpu_s < 0.5 and 1.5 <= r.wall_s < 2.5  # backstop: max(1 x 0.5, 0.5 + 1) s


def test_ignoring_sigterm_and_sigxcpu_does_not_help(host):
    r = run(host, """
        import signal
        for s in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        while True: pass
    """)
    assert (r.error, r.returncode) == ("timeout", None)


def test_stopping_itself_is_killed_at_the_deadline(walls):
    r = run(walls, "import os, signal; os.kill(os.getpid(), signal.SIGSTOP); print('resumed')",
            timeout_s=0.5)
    assert (r.error, r.stdout) == ("wall_timeout", "")


def test_non_daemon_thread_that_never_ends_times_out(walls):
    r = run(walls, "import threading, time; threading.Thread(target=time.sleep, args=(99,)).start()",
            timeout_s=0.5)
    assert r.error == "wall_timeout"


BURN = "import time\nwhile time.process_time() < {}: pass\nprint('done')"


def test_per_program_timeout_overrides_config(host):
    r = run(host, BURN.format(0.6), timeout_s=0.3)
    assert (r.error, r.stdout) == ("timeout", "")
    r = run(host, BURN.format(1.3), timeout_s=2.0)  # over the config's 1 s, under its own 2 s
    assert (r.error, r.returncode, r.stdout) == (None, 0, "done\n")
    assert 1.3 <= r.cpu_s < 2.0


def test_the_cpu_limit_sums_every_process_of_a_program(host):
    """Four processes, each under the limit alone (0.4 s of a 1 s limit), 1.6 s together: the
    program's CPU time is the sum. (Per process, as RLIMIT_CPU counts, each would pass.)"""
    need(host, "cpu_limit")
    r = run(host, """
        import os, time
        for _ in range(3):
            if os.fork() == 0:
                break
        while time.process_time() < 0.4: pass
        print('done', flush=True)
        time.sleep(5)
    """)
    assert (r.error, r.returncode) == ("timeout", None)
    assert 1.0 <= r.cpu_s < 1.5


# ----------------------------------------------------------------------------- memory, disk, output
def test_memory_bomb_by_growth(host):
    r = run(host, "x = []\nwhile True: x.append(bytearray(10**7))", timeout_s=5)
    assert (r.error, r.returncode) == ("memory", 1)
    assert "MemoryError" in r.stderr


def test_memory_bomb_one_allocation(host):
    r = run(host, "x = bytearray(10**10)", timeout_s=5)
    assert (r.error, r.returncode) == ("memory", 1)


def test_disk_fill_one_file_stops_at_file_size_cap(host):
    r = run(host, """
        import os
        with open('big', 'wb') as f:
            try:
                while True: f.write(b'x' * 2**20); f.flush()
            except OSError as e:
                print(e.errno, os.path.getsize('big'))
    """)
    assert (r.error, r.returncode) == (None, 0)
    assert r.stdout.split() == ["27", str(CFG.file_size_mb << 20)]  # EFBIG at exactly the cap


def test_disk_fill_many_files_stops_at_private_tmpfs_size(host):
    need(host, "private_tmp")
    r = run(host, """
        import errno
        n = 0
        try:
            while n < 10000:
                with open(f'f{n}', 'wb') as f:
                    f.write(b'x' * (2**22 - 1))
                n += 1
        except OSError as e:
            print(errno.errorcode[e.errno], n)
    """, timeout_s=5)
    assert r.error is None
    code, n = r.stdout.split()
    assert code == "ENOSPC" and int(n) <= 64 // 4


def test_huge_stdout_is_capped_and_labelled(host):
    r = run(host, "while True: print('y' * 1000)")
    assert (r.error, r.returncode) == ("output_limit", None)
    assert len(r.stdout) == CFG.output_bytes and set(r.stdout) <= {"y", "\n"}


def test_huge_stderr_without_newline_is_capped(host):
    r = run(host, "import sys\nwhile True: sys.stderr.write('z' * 5000)")
    assert (r.error, r.returncode, r.stderr) == ("output_limit", None, "z" * CFG.output_bytes)


def test_invalid_utf8_output_is_replaced_not_fatal(host):
    r = run(host, "import sys; sys.stdout.buffer.write(b'ok\\xff\\xfe')")
    assert (r.error, r.returncode, r.stdout) == (None, 0, "ok\ufffd\ufffd")


# ----------------------------------------------------------------------------- stdin, crashes
def test_stdin_is_empty(host):
    r = run(host, "import sys; print(repr(sys.stdin.read())); input()")
    assert (r.error, r.returncode, r.stdout) == (None, 1, "''\n")
    assert "EOFError" in r.stderr


def test_plain_recursion_is_an_exception(host):
    r = run(host, "def f(n): return f(n + 1)\nf(0)")
    assert (r.error, r.returncode) == (None, 1)
    assert "RecursionError" in r.stderr


def test_deep_recursion_through_c_crashes_the_stack(host):
    src = "import sys\nsys.setrecursionlimit(10**8)\ndef f(n): return list(map(f, [n + 1]))\nf(0)"
    r = run(host, src)
    assert (r.error, r.returncode) == ("crash", -signal.SIGSEGV)


def test_unbounded_pure_python_recursion_is_stopped(host):
    # Python 3.11 keeps Python-to-Python frames off the C stack: this grows the heap instead.
    r = run(host, "import sys\nsys.setrecursionlimit(10**8)\ndef f(n): return f(n + 1)\nf(0)")
    assert r.error in ("timeout", "memory") and r.returncode in (None, 1)


def test_ctypes_segfault(host):
    r = run(host, "import ctypes; ctypes.string_at(0)")
    assert (r.error, r.returncode) == ("crash", -signal.SIGSEGV)


def test_abort(host):
    r = run(host, "import os; os.abort()")
    assert (r.error, r.returncode) == ("crash", -signal.SIGABRT)


# ----------------------------------------------------------------------------- signals, processes
def _worker_pids() -> set[int]:
    me = os.getpid()
    return {pid for pid, (ppid, _, cmd) in _host_processes().items()
            if ppid == me and "sandbox_worker.py" in cmd}


def test_killing_the_parent_does_not_stop_the_worker(host):
    need(host, "pid_namespace")
    workers = _worker_pids()
    r = run(host, """
        import os, signal
        for s in (signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV):
            try: os.kill(os.getppid(), s)
            except OSError: pass
        print('alive', os.getppid())
    """)
    # its parent is its supervisor, pid 2 (the template, pid 1, without one); neither can be signalled
    assert (r.error, r.returncode, r.stdout) == (None, 0, "alive 2\n")
    assert run(host, "print(6 * 7)").stdout == "42\n"
    assert _worker_pids() == workers  # no restart was needed


def test_killing_its_own_process_group(host):
    r = run(host, "import os, signal; os.killpg(os.getpgrp(), signal.SIGKILL)")
    assert (r.error, r.returncode) == ("crash", -signal.SIGKILL)
    assert run(host, "print('next')").stdout == "next\n"


def test_kill_everything_reaches_no_host_process(host):
    need(host, "pid_namespace")
    r = run(host, """
        import os, signal
        for s in (signal.SIGKILL, signal.SIGTERM):
            try: os.kill(-1, s)
            except OSError as e: print('nothing to signal', e.errno)
        print('survived')
    """)
    assert (r.error, r.returncode) == (None, 0) and r.stdout.endswith("survived\n")
    assert host["sleeper"].poll() is None


def test_signalling_host_processes_fails(host):
    need(host, "pid_namespace", "uid_drop")
    pids = [os.getpid(), host["sleeper"].pid, os.getppid()]
    r = run(host, f"""
        import os, signal
        for pid in {pids}:
            try:
                os.kill(pid, signal.SIGKILL); print('sent', pid)
            except OSError as e:
                print('refused', pid, e.errno)
    """)
    assert r.error is None
    assert host["sleeper"].poll() is None  # the test process is obviously still alive too


def test_host_processes_are_invisible(host):
    need(host, "pid_namespace")
    r = run(host, """
        import os
        cmds = []
        for p in os.listdir('/proc'):
            if p.isdigit():
                try: cmds.append(open(f'/proc/{p}/cmdline', 'rb').read())
                except OSError: pass
        print(len(cmds), any(b'pytest' in c or c.startswith(b'sleep') for c in cmds))
    """)
    assert r.stdout == "0 False\n"  # programs get no /proc at all


def test_bounded_fork_bomb_is_capped_and_cleaned(host):
    need(host, "process_limit")
    r = run(host, """
        import os, time
        ok = failed = 0
        for _ in range(300):
            try:
                if os.fork() == 0:
                    time.sleep(60); os._exit(0)
                ok += 1
            except OSError:
                failed += 1
        print(ok, failed)
    """, timeout_s=5)
    assert r.error is None
    ok, failed = map(int, r.stdout.split())
    assert ok + failed == 300 and ok < CFG.max_processes and failed > 0


def test_exponential_fork_bomb_is_bounded(walls):
    need(walls, "process_limit")
    r = run(walls, """
        import os, time
        for _ in range(9):  # would be 512 processes
            try: os.fork()
            except OSError: pass
        time.sleep(60)
    """, timeout_s=0.5)
    assert r.error == "wall_timeout"


def test_setsid_double_fork_daemon_is_gone_afterwards(host):
    r = run(host, f"""
        import os
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp('sleep', ['sleep', '{DAEMON_MARK}'])
            os._exit(0)
        if os.fork() == 0:  # a daemon that execs at once, in a session of its own
            os.setsid()
            os.execvp('sleep', ['sleep', '{DAEMON_MARK}'])
        print('detached')
    """)
    assert (r.error, r.returncode, r.stdout) == (None, 0, "detached\n")
    time.sleep(0.2)
    assert not [c for _, _, c in _host_processes().values() if DAEMON_MARK in c]


def test_the_daemon_check_can_fail_without_the_sandbox():
    """Control: the same daemon under a bare subprocess survives, so the check above means something."""
    mark = f"{DAEMON_MARK}1"
    src = f"import os\nif os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['sleep', '{mark}'])\n"
    subprocess.run([sys.executable, "-c", src], check=True, timeout=10)
    time.sleep(0.2)
    found = [p for p, (_, _, c) in _host_processes().items() if mark in c]
    for pid in found:
        os.kill(pid, signal.SIGKILL)
    assert found


def test_thread_flood_is_capped(host):
    """Threads count against the program's process limit. With room for their address space:
    at CFG's 256 MB, glibc's per-thread malloc arenas (64 MB of address space each) run out
    after about four threads, which side of that limit a thread lands on depends on a few
    hundred KiB of layout, and a thread whose first allocation fails leaves `Thread.start`
    waiting for it forever (CPython), so the program would end at the wall backstop instead."""
    need(host, "process_limit")
    with Sandbox(dataclasses.replace(CFG, memory_mb=2048, workers=1)) as roomy:
        r = run({"sb": roomy}, """
            import threading, time
            n = 0
            try:
                for _ in range(200):
                    threading.Thread(target=time.sleep, args=(30,), daemon=True).start(); n += 1
            except RuntimeError:
                pass
            print(n)
        """)
    assert r.error is None and int(r.stdout) < CFG.max_processes, r


def test_cannot_raise_its_limits_or_become_root(host):
    need(host, "uid_drop")
    r = run(host, """
        import os, resource
        for attempt in (lambda: resource.setrlimit(resource.RLIMIT_AS, (-1, -1)),
                        lambda: resource.setrlimit(resource.RLIMIT_NPROC, (10**6, 10**6)),
                        lambda: os.setuid(0), lambda: os.system('mount -o remount,rw / 2>/dev/null') == 0 or 1/0):
            try:
                attempt(); print('ALLOWED')
            except (OSError, ValueError, ZeroDivisionError):
                print('refused')
    """)
    assert (r.error, r.stdout) == (None, "refused\n" * 4)


def test_cannot_read_the_template_memory_or_environment(host):
    need(host, "pid_namespace")
    r = run(host, """
        for path in ('/proc/1/environ', '/proc/1/mem', '/proc/1/maps'):
            try: open(path, 'rb').read(64); print('READ', path)
            except OSError: print('refused')
    """)
    assert (r.error, r.stdout) == (None, "refused\n" * 3)


# ----------------------------------------------------------------------------- files, env, network
def test_writes_outside_its_dir_do_not_reach_the_host(host):
    need(host, "mount_namespace", "readonly_root", "private_tmp")
    r = run(host, f"""
        import os
        for d in {TARGET_DIRS!r}:
            p = os.path.join(d, '{TOKEN}')
            try:
                open(p, 'w').write('x'); print('wrote', p)
            except OSError as e:
                print('refused', p)
    """)
    assert r.error is None
    for d in TARGET_DIRS:
        assert not os.path.exists(os.path.join(d, TOKEN))
    wrote = [line for line in r.stdout.splitlines() if line.startswith("wrote")]
    assert all(line.split()[1].startswith(("/tmp/", "/var/tmp/", "/dev/shm/")) for line in wrote)


def test_home_is_its_private_dir(host):
    r = run(host, f"""
        import os
        home = os.path.expanduser('~')
        open(os.path.join(home, '{TOKEN}.rc'), 'w').write('x')
        print(home == os.getcwd(), sorted(os.listdir('.')))
    """)
    assert (r.error, r.stdout) == (None, f"True ['{TOKEN}.rc']\n")
    assert not (Path.home() / f"{TOKEN}.rc").exists()


def test_parent_secret_environment_is_invisible(host):
    r = run(host, """
        import os
        seen = [repr(dict(os.environ))]
        for p in os.listdir('/proc'):
            if p.isdigit():
                try: seen.append(open(f'/proc/{p}/environ', 'rb').read().decode(errors='replace'))
                except OSError: pass
        print('\\n'.join(seen))
    """)
    assert r.error is None and "PATH" in r.stdout
    assert SECRET_VALUE not in r.stdout and SECRET_NAME not in r.stdout
    assert os.environ[SECRET_NAME] == SECRET_VALUE  # the secret was really there to steal


def test_tcp_connect_to_host_listener_fails(host):
    need(host, "net_namespace")
    port = host["listener"].getsockname()[1]
    r = run(host, f"""
        import socket
        for addr in ('127.0.0.1', 'localhost'):
            try:
                socket.create_connection((addr, {port}), timeout=0.5); print('CONNECTED')
            except OSError as e:
                print('refused')
    """)
    assert (r.error, r.stdout) == (None, "refused\nrefused\n")
    with pytest.raises(BlockingIOError):
        host["listener"].accept()


def test_udp_and_dns_fail(host):
    need(host, "net_namespace")
    r = run(host, """
        import socket
        try: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('8.8.8.8', 53)); print('SENT')
        except OSError: print('refused')
        try: socket.getaddrinfo('pypi.org', 443); print('RESOLVED')
        except OSError: print('refused')
    """)
    assert (r.error, r.stdout) == (None, "refused\nrefused\n")


def test_read_files_does_not_follow_symlinks_or_block_on_fifos(host):
    r = run(host, """
        import os
        os.symlink('/etc/hostname', 'result.txt')
        os.mkfifo('fifo')
        os.mkdir('d'); os.symlink('/etc', 'sub')
        open('d/ok.txt', 'w').write('PASS')
    """, read_files=("result.txt", "fifo", "sub/hostname", "d/ok.txt", "missing"))
    assert r.error is None
    assert r.files == {"result.txt": None, "fifo": None, "sub/hostname": None,
                       "d/ok.txt": b"PASS", "missing": None}


# ----------------------------------------------------------------------------- correctness fakes
def test_early_exit_status_is_reported_faithfully(host):
    r = run(host, "import os\ntry:\n    assert 1 == 2\nfinally:\n    os._exit(0)")
    assert (r.error, r.returncode) == (None, 0)
    r = run(host, "import sys, atexit\natexit.register(lambda: print('bye'))\nsys.exit('failed')")
    assert (r.returncode, r.stdout, r.stderr) == (1, "bye\n", "failed\n")


def test_patching_builtins_and_modules_dies_with_the_program(host):
    sb = Sandbox(SandboxConfig(workers=1, timeout_s=2))  # one worker: the next program is its child
    try:
        r = sb.run(Program("""
import builtins, math, os, sys, collections
builtins.exec = builtins.eval = lambda *a, **k: None
builtins.len = lambda x: 0
math.pi = 3
collections.Counter = dict
sys.modules['json'] = None
open('left_here', 'w').write('x')
for d in ('/tmp', '/var/tmp', '/dev/shm'):
    try: open(d + '/left_there', 'w').write('x')
    except OSError: pass
"""))
        assert (r.error, r.returncode) == (None, 0)
        r = sb.run(Program("""
import builtins, math, os, collections, json
exec('x = 1')
print(x, len('abc'), math.pi, collections.Counter('aab')['a'],
      sorted(os.listdir('.')), [os.path.exists(d + '/left_there') for d in ('/tmp', '/var/tmp', '/dev/shm')])
"""))
        assert r.stdout == f"1 3 {__import__('math').pi} 2 [] [False, False, False]\n"
    finally:
        sb.close()


# ----------------------------------------------------------------------------- after the suite
def test_zz_no_stray_process_or_file_after_suite(host, walls):
    host["sb"].close()
    walls["sb"].close()
    time.sleep(0.3)
    after = _host_processes()

    def ours(pid: int) -> bool:  # a descendant of this test process (other sessions run too)
        seen = set()
        while pid in after and pid not in seen:
            seen.add(pid)
            pid = after[pid][0]
            if pid == os.getpid():
                return True
        return False

    stray = {p: v for p, v in after.items()
             if v[1] in host["program_uids"] or DAEMON_MARK in v[2]
             or (ours(p) and p not in host["before"] and p != host["sleeper"].pid)}
    assert stray == {}
    for d in TARGET_DIRS:
        assert not os.path.exists(os.path.join(d, TOKEN))
    changed = [p for p in REPO.rglob("*") if ".git" not in p.parts and p.is_file()
               and p.stat().st_mtime > STARTED_AT and TOKEN in p.read_text(errors="replace")]
    assert changed == []
