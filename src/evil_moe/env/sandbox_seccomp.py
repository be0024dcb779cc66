"""The sandbox's seccomp filters: the one the template installs on itself (every program inherits
it) and the second one each program gets (`child_filter`). Each is a short classic-BPF program
built here from the tables below, per architecture; anything refused fails with EPERM (clone3
with ENOSYS).

Loaded by `sandbox_isolation.py` and `sandbox_worker.py` (by path in the worker, as part of the
package elsewhere). Standard library only.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

# The seccomp filter the template installs on itself, which every program inherits (see
# `template_filter`). Per architecture: its audit id and
# syscall numbers. Refused outright (EPERM):
# - add_key, request_key, keyctl: keyrings outlive programs (a uid's, a persistent one, the
#   session keyring the grader was started with) and are shared across namespaces;
# - flock, fadvise64, readahead, mincore, cachestat, the inotify and fanotify calls and io_uring:
#   channels between programs through the files they all see (locks, the page cache, access
#   events), or (io_uring) a way to make such calls past this filter;
# - sysinfo: host-wide free memory, load and process count (the counters of /proc, which the
#   programs' /proc covers: HOST_COUNTERS);
# - sendmsg, sendmmsg: passing descriptors over a unix socket can keep a socket (and a name it
#   holds) alive in flight after its program is gone;
# - the Linux AIO calls (io_setup ...): each context moves the host-wide /proc/sys/fs/aio-nr,
#   which a red-team review used to carry expected values between two concurrent programs;
# and, by argument: socket and socketpair of any family but AF_UNIX (IPv6 flow labels, IP
# counters and netlink objects live in the worker's network namespace, shared by its programs,
# and outlive a program: a red-team review passed results through them), fcntl's lock, lease and directory-notification commands (POSIX and OFD
# locks, dnotify), madvise's MADV_COLD, MADV_PAGEOUT, MADV_HUGEPAGE and MADV_COLLAPSE (and
# process_madvise, refused outright: ways to make the kernel drop cached pages or regroup them
# into huge pages, which fault-around would show), preadv2/pwritev2 with RWF_NOWAIT (which tells
# whether a page is cached), and clone/unshare making a user namespace (the way to
# capabilities, and to much of the kernel, for a process without them). clone3 fails with ENOSYS (its flags are out of a filter's
# reach); the C library then falls back to clone.
_X86 = {"add_key": 248, "request_key": 249, "keyctl": 250, "sysinfo": 99, "sendmsg": 46, "sendmmsg": 307, "flock": 73, "fadvise64": 221,
        "readahead": 187, "mincore": 27, "cachestat": 451, "inotify_init": 253,
        "inotify_init1": 294, "inotify_add_watch": 254, "fanotify_init": 300, "fanotify_mark": 301,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "io_setup": 206, "io_destroy": 207, "io_getevents": 208, "io_submit": 209, "io_cancel": 210,
        "io_pgetevents": 333,
        "process_madvise": 440,
        "socket": 41, "socketpair": 53, "fcntl": 72, "madvise": 28, "preadv2": 327, "pwritev2": 328, "clone": 56, "unshare": 272, "clone3": 435}
_GENERIC = {"add_key": 217, "request_key": 218, "keyctl": 219, "sysinfo": 179, "sendmsg": 211, "sendmmsg": 269, "flock": 32, "fadvise64": 223,
            "readahead": 213, "mincore": 232, "cachestat": 451, "inotify_init1": 26,
            "inotify_add_watch": 27, "fanotify_init": 262, "fanotify_mark": 263,
            "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
            "io_setup": 0, "io_destroy": 1, "io_submit": 2, "io_cancel": 3, "io_getevents": 4,
            "io_pgetevents": 292,
            "process_madvise": 440,
            "socket": 198, "socketpair": 199, "fcntl": 25, "madvise": 233, "preadv2": 286, "pwritev2": 287, "clone": 220, "unshare": 97, "clone3": 435}
SYSCALLS = {"x86_64": (0xC000003E, _X86), "aarch64": (0xC00000B7, _GENERIC),
            "riscv64": (0xC00000F3, _GENERIC)}.get(os.uname().machine)
FCNTL_REFUSED = (5, 6, 7, 36, 37, 38, 1024, 1026)  # F_GETLK F_SETLK F_SETLKW F_OFD_* F_SETLEASE F_NOTIFY
AF_UNIX = 1
MADV_REFUSED = (12, 14, 20, 21, 25)  # MADV_MERGEABLE, MADV_HUGEPAGE, MADV_COLD, MADV_PAGEOUT, MADV_COLLAPSE
RWF_NOWAIT = 0x8
CLONE_NEWUSER_FLAG = 0x10000000
CLONE_PIDFD = 0x1000
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
BPF_LD, BPF_JEQ, BPF_JGE, BPF_JSET, BPF_RET = 0x20, 0x15, 0x35, 0x45, 0x06  # LD|W|ABS, JMP|JEQ|K, JGE, JSET, RET|K
RET_ALLOW, RET_EPERM = 0x7FFF0000, 0x00050000 | errno.EPERM  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO

_PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # (sandbox_isolation's prctl too)
_PRCTL.argtypes, _PRCTL.restype = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong), ctypes.c_int


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def template_filter() -> _SockFprog:
    """The seccomp program (see SYSCALLS): EPERM for the refused calls, for sockets of other families than AF_UNIX, for fcntl's lock
    commands, for madvise's MADV_REFUSED, for preadv2/pwritev2 with RWF_NOWAIT, for a new user namespace, and for every
    syscall of another ABI (32-bit or x32 calls would have other numbers); ENOSYS for clone3;
    everything else is allowed."""
    arch, nrs = SYSCALLS
    LD, JEQ, JGE, JSET, RET, allow, deny = BPF_LD, BPF_JEQ, BPF_JGE, BPF_JSET, BPF_RET, RET_ALLOW, RET_EPERM
    by_argument = ("socket", "socketpair", "fcntl", "madvise", "preadv2", "pwritev2", "clone",
                   "unshare", "clone3")
    refused = [nr for name, nr in nrs.items() if name not in by_argument]
    # (code, jump-if-true label, jump-if-false label, k); labels resolve to relative offsets
    prog: list = [(LD, None, None, 4), (JEQ, None, "deny", arch),  # seccomp_data.arch
                  (LD, None, None, 0), (JGE, "deny", None, 0x40000000)]  # .nr; x32: deny
    prog += [(JEQ, "deny", None, nr) for nr in refused]
    prog += [(JEQ, "family", None, nrs["socket"]), (JEQ, "family", None, nrs["socketpair"]),
             (JEQ, "fcntl", None, nrs["fcntl"]), (JEQ, "madvise", None, nrs["madvise"]),
             (JEQ, "rwf", None, nrs["preadv2"]),
             (JEQ, "rwf", None, nrs["pwritev2"]), (JEQ, "clone", None, nrs["clone"]),
             (JEQ, "clone", None, nrs["unshare"]), (JEQ, "nosys", None, nrs["clone3"]),
             (RET, None, None, allow)]
    prog += ["fcntl", (LD, None, None, 16 + 8 * 1)]  # args[1] (low half, little-endian): cmd
    prog += [(JEQ, "deny", None, cmd) for cmd in FCNTL_REFUSED] + [(RET, None, None, allow)]
    prog += ["family", (LD, None, None, 16), (JEQ, "allow", "deny", AF_UNIX)]  # args[0]: domain
    prog += ["allow", (RET, None, None, allow)]
    prog += ["madvise", (LD, None, None, 16 + 8 * 2)]  # args[2]: advice
    prog += [(JEQ, "deny", None, a) for a in MADV_REFUSED] + [(RET, None, None, allow)]
    prog += ["rwf", (LD, None, None, 16 + 8 * 5), (JSET, "deny", None, RWF_NOWAIT),  # args[5]: flags
             (RET, None, None, allow)]
    prog += ["clone", (LD, None, None, 16), (JSET, "deny", None, CLONE_NEWUSER_FLAG),  # args[0]: flags
             (RET, None, None, allow)]
    prog += ["nosys", (RET, None, None, 0x00050000 | errno.ENOSYS)]
    prog += ["deny", (RET, None, None, deny)]
    return _assemble(prog)


def _assemble(prog: list) -> _SockFprog:
    """A seccomp program from (code, jump-if-true label, jump-if-false label, k) tuples and the
    label strings between them (labels resolve to relative offsets; None: the next one)."""
    at, n = {}, 0
    for item in prog:
        if isinstance(item, str):
            at[item] = n
        else:
            n += 1
    code, n = [], 0
    for item in prog:
        if isinstance(item, str):
            continue
        op, jt, jf, k = item
        code.append((op, 0 if jt is None else at[jt] - n - 1, 0 if jf is None else at[jf] - n - 1, k))
        n += 1
    if sys.byteorder != "little":
        raise OSError(errno.ENOSYS, "the seccomp filter reads arguments' low halves little-endian")
    insns = (_SockFilter * len(code))(*[_SockFilter(*c) for c in code])
    prog_ = _SockFprog(len(code), insns)
    prog_._keep = insns  # the array must outlive the struct that points to it
    return prog_


# What `child_filter` refuses each program, per architecture (the template itself makes pipes and
# pidfds): outright, every call that makes a kernel object numbered from a counter that the whole
# host shares, or shares one between processes that hold no common descriptor:
# - pipe, pipe2, socket, socketpair (their inodes are numbered from one host-wide counter, and
#   a socket's cookie from another), memfd_create, memfd_secret and userfaultfd (the same, for
#   the kernel's internal mounts), perf_event_open (event ids), bpf (map and program ids);
# - syslog: the kernel's log, which records a crashing process's fault address;
# - name_to_handle_at, open_by_handle_at: a pidfs file handle opens a pidfd by its inode number
#   (a red-team review found its child's by search, and so the count of new processes);
# - futex_waitv and the futex2 calls (their flags are out of a filter's reach);
# - statmount, listmount (host-wide mount ids), sched_rr_get_interval (another CPU's load),
#   (x86_64) futimesat (obsolete; its NULL-path form sets the times of a descriptor's file);
# - statfs, fstatfs and (x86_64) ustat: the free blocks and inodes of the file systems the view's
#   files live on, the host's disk and /dev/shm among them, which the host's own writes move;
#   ustat finds any mounted file system by its device number, whatever the caller's mount
#   namespace, so also a concurrent program's fresh /tmp, whose counts that program sets (a
#   red-team review passed a correct sibling's answers that way, 23 of 25 wrong receivers);
# and, by argument: futex without FUTEX_PRIVATE_FLAG (a shared futex's key is the file and
# offset of the page, so two programs that map the same library page could wake each other),
# clone with CLONE_PIDFD (with pidfd_open: a pidfd's inode number counts new processes),
# mmap with MAP_HUGETLB (the kernel numbers the mapping's inode from the host-wide counter that
# numbers pipes, even when the mapping then fails: a red-team review moved it so), prctl's
# PR_SET_MEMORY_MERGE (KSM for the whole process, as MADV_MERGEABLE, which the first filter
# refuses: merged pages are shared with other processes' identical pages), and
# clock_gettime, clock_getres, clock_nanosleep, timer_create and clock_settime on a negative
# clock id: those
# name another process's or thread's CPU-time clock, and the kernel checks no permission to
# read one in the same pid namespace (a red-team review read the template's, pid 1's, which
# the previous program's teardown moves, with no /proc). A program's own clocks
# (`time.process_time`, `time.thread_time`: positive ids) still work; its own threads' clocks
# by id (`time.pthread_getcpuclockid`) do not.
_CHILD_X86 = {"pipe": 22, "pipe2": 293, "socket": 41, "socketpair": 53, "memfd_create": 319,
              "memfd_secret": 447, "userfaultfd": 323, "perf_event_open": 298, "bpf": 321,
              "syslog": 103, "name_to_handle_at": 303, "open_by_handle_at": 304, "pidfd_open": 434,
              "futex_waitv": 449, "futex_wake": 454, "futex_wait": 455, "futex_requeue": 456,
              "statfs": 137, "fstatfs": 138, "ustat": 136, "futimesat": 261, "statmount": 457,
              "listmount": 458, "sched_rr_get_interval": 148, "prctl": 157,
              "futex": 202, "clone": 56, "mmap": 9,
              "clock_gettime": 228, "clock_getres": 229, "clock_nanosleep": 230, "timer_create": 222,
              "clock_settime": 227}
_CHILD_GENERIC = {"pipe2": 59, "socket": 198, "socketpair": 199, "memfd_create": 279,
                  "memfd_secret": 447, "userfaultfd": 282, "perf_event_open": 241, "bpf": 280,
                  "syslog": 116, "name_to_handle_at": 264, "open_by_handle_at": 265,
                  "pidfd_open": 434, "futex_waitv": 449, "futex_wake": 454, "futex_wait": 455,
                  "futex_requeue": 456, "statfs": 43, "fstatfs": 44, "statmount": 457, "listmount": 458,
                  "sched_rr_get_interval": 127, "prctl": 167, "futex": 98, "clone": 220, "mmap": 222,
                  "clock_gettime": 113, "clock_getres": 114, "clock_nanosleep": 115, "timer_create": 107,
                  "clock_settime": 112}
CHILD_SYSCALLS = {"x86_64": _CHILD_X86, "aarch64": _CHILD_GENERIC, "riscv64": _CHILD_GENERIC}.get(os.uname().machine)
FUTEX_PRIVATE_FLAG = 128
MAP_HUGETLB = 0x40000
CLOCK_CALLS = ("clock_gettime", "clock_getres", "clock_nanosleep", "timer_create", "clock_settime")  # args[0]: clockid
PR_SET_MEMORY_MERGE = 67
CLOCKID_SIGN = 0x80000000  # clockid_t is an int: negative ids (another process's CPU clock) have bit 31 set


def child_filter() -> _SockFprog | None:
    """A second seccomp filter, stacked on each program: EPERM for the calls `CHILD_SYSCALLS`
    lists (see the comment above it), for futex without FUTEX_PRIVATE_FLAG, for clone with
    CLONE_PIDFD, for mmap with MAP_HUGETLB, for prctl(PR_SET_MEMORY_MERGE) and for the
    `CLOCK_CALLS` on a negative clock id.
    Each makes or finds a kernel object or a count that another program, at the same time or
    later, could see: red-team reviews passed results between programs through pidfd inode
    numbers, pipe inode numbers, socket cookies and the template's CPU clock. None where there
    is no filter for this machine."""
    if SYSCALLS is None or CHILD_SYSCALLS is None:
        return None
    arch, nrs = SYSCALLS[0], CHILD_SYSCALLS
    LD, JEQ, JSET, RET, allow, deny = BPF_LD, BPF_JEQ, BPF_JSET, BPF_RET, RET_ALLOW, RET_EPERM
    prog: list = [(LD, None, None, 4), (JEQ, None, "allow", arch),  # another ABI: the first filter refuses it
                  (LD, None, None, 0)]
    by_argument = ("futex", "clone", "mmap", "prctl", *CLOCK_CALLS)
    prog += [(JEQ, "deny", None, nr) for name, nr in nrs.items() if name not in by_argument]
    prog += [(JEQ, "clock", None, nrs[name]) for name in CLOCK_CALLS]
    prog += [(JEQ, "prctl", None, nrs["prctl"])]
    prog += [(JEQ, "futex", None, nrs["futex"]), (JEQ, "mmap", None, nrs["mmap"]),
             (JEQ, None, "allow", nrs["clone"]),
             (LD, None, None, 16), (JSET, "deny", "allow", CLONE_PIDFD),  # clone's args[0]: flags
             "futex", (LD, None, None, 16 + 8 * 1), (JSET, "allow", "deny", FUTEX_PRIVATE_FLAG),  # args[1]: op
             "mmap", (LD, None, None, 16 + 8 * 3), (JSET, "deny", "allow", MAP_HUGETLB),  # args[3]: flags
             "clock", (LD, None, None, 16), (JSET, "deny", "allow", CLOCKID_SIGN),  # args[0]: clockid
             "prctl", (LD, None, None, 16), (JEQ, "deny", "allow", PR_SET_MEMORY_MERGE),  # args[0]: option
             "allow", (RET, None, None, allow), "deny", (RET, None, None, deny)]
    return _assemble(prog)


def install_filter(prog: _SockFprog) -> None:
    """Install a seccomp filter on this process, on top of any it has (no_new_privs must be set)."""
    if _PRCTL(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")
