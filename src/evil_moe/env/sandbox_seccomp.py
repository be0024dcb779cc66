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
RET_ENOSYS = 0x00050000 | errno.ENOSYS  # clone3's answer: the C library then falls back to clone

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
    prog += ["nosys", (RET, None, None, RET_ENOSYS)]
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
# clock id: those name another process's or thread's CPU-time clock, and the kernel checks no
# permission to read one in the same pid namespace (a red-team review read the template's, pid 1's, which
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


# The third filter, an ALLOW-list (x86_64): the calls pure-computation Python programs make (files
# in their own directory, FIFOs there, memory, signals, threads, time, fork/exec/wait, their own
# ids and limits), everything else EPERM (clone3 ENOSYS). The two deny-lists above each missed one call
# per red-team round (statfs, ustat, another process's clock); a call no program needs is now
# refused whether or not anyone has found a channel in it. Built from a sweep of every syscall
# number after round 10 (/tmp/sweep12 then: every canonical solution of the shipped set, 385
# grades in all 7 modes, and of the real split in gt_only and run_tests, 238, graded the same
# with it). By argument: ioctl (terminal queries and close-on-exec only), madvise (the plain
# advice), prctl (parent-death signal, dumpable query, thread name, VMA names), prlimit64 (its
# own process only) and utimensat (with a path: the NULL-path form sets a descriptor's file's
# times). Not statx: the kernel fills in the mount id, numbered host-wide, whatever mask the
# caller asks for (a red-team review, round 11); Python's os.stat uses newfstatat.
_ALLOW_X86 = {
    "read": 0, "write": 1, "readv": 19, "writev": 20, "pread64": 17, "pwrite64": 18, "preadv": 295,
    "pwritev": 296, "preadv2": 327, "pwritev2": 328, "lseek": 8, "close": 3, "close_range": 436, "dup": 32, "dup2": 33, "dup3": 292,
    "fcntl": 72, "poll": 7, "select": 23, "pselect6": 270, "ppoll": 271, "sendfile": 40,
    "copy_file_range": 326, "open": 2, "openat": 257, "openat2": 437, "stat": 4, "fstat": 5,
    "lstat": 6, "newfstatat": 262, "access": 21, "faccessat": 269, "faccessat2": 439,
    "readlink": 89, "readlinkat": 267, "getdents64": 217, "getcwd": 79, "chdir": 80, "fchdir": 81,
    "mkdir": 83, "mkdirat": 258, "rmdir": 84, "unlink": 87, "unlinkat": 263, "rename": 82,
    "renameat": 264, "renameat2": 316, "link": 86, "linkat": 265, "symlink": 88, "symlinkat": 266,
    "truncate": 76, "ftruncate": 77, "fallocate": 285, "fsync": 74, "fdatasync": 75, "umask": 95,
    "chmod": 90, "fchmod": 91, "fchmodat": 268, "mknod": 133, "mknodat": 259, "mmap": 9, "munmap": 11, "mprotect": 10,
    "mremap": 25, "brk": 12, "msync": 26, "rt_sigaction": 13, "rt_sigprocmask": 14,
    "rt_sigreturn": 15, "rt_sigpending": 127, "rt_sigtimedwait": 128, "rt_sigsuspend": 130,
    "sigaltstack": 131, "kill": 62, "tgkill": 234, "tkill": 200, "pause": 34, "alarm": 37,
    "getitimer": 36, "setitimer": 38, "nanosleep": 35, "clock_gettime": 228, "clock_getres": 229,
    "clock_nanosleep": 230, "gettimeofday": 96, "time": 201, "clone": 56, "futex": 202,
    "set_robust_list": 273, "set_tid_address": 218, "rseq": 334, "arch_prctl": 158, "exit": 60,
    "exit_group": 231, "wait4": 61, "waitid": 247, "sched_yield": 24, "sched_getaffinity": 204,
    "getrandom": 318, "execve": 59, "getpid": 39, "getppid": 110, "gettid": 186, "getuid": 102,
    "geteuid": 107, "getgid": 104, "getegid": 108, "getresuid": 118, "getresgid": 120,
    "getgroups": 115, "getpgrp": 111, "getpgid": 121, "getsid": 124, "setsid": 112, "setpgid": 109,
    "uname": 63, "getrlimit": 97, "setrlimit": 160, "getrusage": 98, "times": 100}
_ALLOW_BY_ARGUMENT_X86 = {"ioctl": 16, "madvise": 28, "prctl": 157, "prlimit64": 302, "utimensat": 280,
                          "clone3": 435}
IOCTL_ALLOWED = (0x5401, 0x5413, 0x541B, 0x5450, 0x5451)  # TCGETS TIOCGWINSZ FIONREAD FIONCLEX FIOCLEX
MADV_ALLOWED = (0, 1, 2, 3, 4, 8, 15)  # NORMAL RANDOM SEQUENTIAL WILLNEED DONTNEED FREE NOHUGEPAGE
PRCTL_ALLOWED = (1, 2, 3, 15, 16, 21, 39, 0x53564D41)  # PDEATHSIG set/get, GET_DUMPABLE, NAME set/get,
# GET_SECCOMP, GET_NO_NEW_PRIVS, SET_VMA


def program_allowlist() -> _SockFprog | None:
    """The third filter each program gets (see `_ALLOW_X86`): ALLOW for the listed calls and for
    the by-argument ones within their rules, ENOSYS for clone3, EPERM for everything else. None
    where there is no list for this machine (x86_64 only)."""
    if SYSCALLS is None or os.uname().machine != "x86_64":
        return None
    LD, JEQ, RET = BPF_LD, BPF_JEQ, BPF_RET
    nrs = _ALLOW_BY_ARGUMENT_X86
    prog: list = [(LD, None, None, 4), (JEQ, None, "allow", SYSCALLS[0]),  # another ABI: the first filter refuses it
                  (LD, None, None, 0)]
    prog += [(JEQ, "allow", None, nr) for nr in _ALLOW_X86.values()]
    prog += [(JEQ, name, None, nrs[name]) for name in ("ioctl", "madvise", "prctl", "prlimit64", "utimensat")]
    prog += [(JEQ, "nosys", "deny", nrs["clone3"])]
    prog += ["ioctl", (LD, None, None, 16 + 8 * 1)] + [(JEQ, "allow", None, c) for c in IOCTL_ALLOWED] + [(RET, None, None, RET_EPERM)]
    prog += ["madvise", (LD, None, None, 16 + 8 * 2)] + [(JEQ, "allow", None, a) for a in MADV_ALLOWED] + [(RET, None, None, RET_EPERM)]
    prog += ["prctl", (LD, None, None, 16)] + [(JEQ, "allow", None, o) for o in PRCTL_ALLOWED] + [(RET, None, None, RET_EPERM)]
    prog += ["prlimit64", (LD, None, None, 16), (JEQ, "allow", "deny", 0)]  # args[0]: pid 0, itself
    prog += ["utimensat", (LD, None, None, 16 + 8 * 1), (JEQ, None, "allow", 0),  # args[1]: the path,
             (LD, None, None, 16 + 8 * 1 + 4), (JEQ, "deny", "allow", 0)]  # NULL in both halves: refused
    prog += ["nosys", (RET, None, None, RET_ENOSYS),
             "allow", (RET, None, None, RET_ALLOW), "deny", (RET, None, None, RET_EPERM)]
    return _assemble(prog)
