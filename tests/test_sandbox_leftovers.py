"""What the template is left holding after a program, and what a program can read of the
template without /proc (issue 14, red-team round 9): each test shows the channel contained, and
its breach where the protection is absent (`supervise=False`, or the second filter disabled).

The older attack classes are in test_sandbox_attacks.py.
"""

from __future__ import annotations

import os
import struct
import textwrap

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


@pytest.mark.skipif(os.uname().machine != "x86_64" or os.sys.version_info[:2] != (3, 11),
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
    import os, time
    out = []
    for name, call in (('cpuclock_pid1', lambda: time.clock_gettime(-14)),  # pid 1's CPU clock
                       ('cpuclock_res', lambda: time.clock_getres(-14)),
                       ('own_thread_clock', lambda: time.clock_gettime(time.pthread_getcpuclockid(
                           __import__('threading').get_ident()))),
                       ('statvfs', lambda: os.statvfs('/')),
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
    blocks and inodes of the host's disk and /dev/shm, which the host's writes move. The second
    filter refuses both (clock_gettime, clock_getres, clock_nanosleep and timer_create on a
    negative id; statfs and fstatfs); a program's own clocks still work. The control, without the
    second filter: every call works."""
    with Sandbox(SandboxConfig(workers=1)) as one:
        if not one.isolation["no_keyrings"]:
            pytest.skip("this host has no seccomp filter")
        got = one.run(TEMPLATE_READS)
    assert got.stdout.split() == ["cpuclock_pid1=EPERM", "cpuclock_res=EPERM", "own_thread_clock=EPERM",
                                  "statvfs=EPERM", "fstatvfs=EPERM", "process_time=ok", "thread_time=ok",
                                  "monotonic=ok"], got
    with Sandbox(SandboxConfig(workers=1), _disable=("child_filter",)) as loose:
        got = loose.run(TEMPLATE_READS)
    assert all(w.endswith("=ok") for w in got.stdout.split()) and len(got.stdout.split()) == 8, got
