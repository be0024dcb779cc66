"""The sandbox worker's isolation: namespaces, read-only mounts, private scratch, no IPC objects,
no keyrings, and the few system calls Python has no function for (through ctypes).

Loaded by `sandbox_worker.py` from this directory (the worker runs as a script under `-I`, so
it imports this file by path, not through the `evil_moe` package). Standard library only.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import stat
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x1000, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
SYS_MOUNT_SETATTR = 442  # same number on every architecture (generic syscall table, Linux >= 5.12)
# Keyrings outlive programs (a uid's, a persistent one, the session keyring the grader was
# started with) and are shared across namespaces, so programs get none: a seccomp filter makes
# add_key, request_key and keyctl fail with EPERM. Per architecture: its audit id and the three
# syscall numbers.
KEY_SYSCALLS = {"x86_64": (0xC000003E, (248, 249, 250)),
                "aarch64": (0xC00000B7, (217, 218, 219)),
                "riscv64": (0xC00000F3, (217, 218, 219))}.get(os.uname().machine)
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _function(name: str, *argtypes: type) -> ctypes._CFuncPtr:
    """A libc function with its argument types declared: a call converts plain ints with no
    temporary objects (programs call some of these; each object touched costs them a page)."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return fn


_UNSHARE = _function("unshare", ctypes.c_int)
_PRCTL = _function("prctl", ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)


def unshare(flags: int) -> None:
    _check(_UNSHARE(flags), "unshare")


def prctl(option: int, arg: int) -> None:
    _check(_PRCTL(option, arg, 0, 0, 0), f"prctl({option})")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _no_keyrings_filter() -> _SockFprog:
    """A seccomp program: EPERM for add_key, request_key and keyctl, and for every syscall of
    another ABI (32-bit or x32 calls would have other numbers); everything else is allowed."""
    arch, nrs = KEY_SYSCALLS
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, JMP|JGE|K, BPF_RET|K
    allow, deny = 0x7FFF0000, 0x00050000 | errno.EPERM  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO
    n = len(nrs)
    code = [(ld, 0, 0, 4),  # seccomp_data.arch
            (jeq, 1, 0, arch), (ret, 0, 0, deny),
            (ld, 0, 0, 0),  # seccomp_data.nr
            (jge, n + 1, 0, 0x40000000)]  # x32: deny
    code += [(jeq, n - k, 0, nr) for k, nr in enumerate(nrs)]  # each jumps to the deny below
    code += [(ret, 0, 0, allow), (ret, 0, 0, deny)]
    insns = (_SockFilter * len(code))(*[_SockFilter(*c) for c in code])
    prog = _SockFprog(len(code), insns)
    prog._keep = insns  # the array must outlive the struct that points to it
    return prog


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Give up every capability of this process for good (capset with empty sets, version 3)."""
    _check(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), (_CapData * 2)()), "capset")


def _seccomp(prog: _SockFprog) -> None:
    """Install a seccomp filter on this process (no_new_privs must be set)."""
    _check(_PRCTL(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0), "seccomp")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _readonly_tree(path: str) -> None:
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    _check(_libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), path.encode(),
                         ctypes.c_uint(AT_RECURSIVE), ctypes.byref(attr),
                         ctypes.c_size_t(ctypes.sizeof(attr))), "mount_setattr")


def isolate(settings: dict, notes: list[str]) -> dict[str, bool]:
    """Unshare namespaces; in a new pid namespace fork and return only in the template (pid 1)."""
    disabled = set(settings.get("disable", ()))
    root = os.geteuid() == 0
    iso = dict.fromkeys(("user_namespace", "mount_namespace", "pid_namespace", "net_namespace",
                         "ipc_namespace", "readonly_root", "private_tmp", "private_home", "uid_drop",
                         "no_keyrings"),
                        False)
    wanted = [(CLONE_NEWNS, "mount_namespace"), (CLONE_NEWPID, "pid_namespace"),
              (CLONE_NEWNET, "net_namespace"), (CLONE_NEWIPC, "ipc_namespace")]
    wanted = [(f, k) for f, k in wanted if k not in disabled]
    uid, gid = os.geteuid(), os.getegid()
    if not root and wanted and "user_namespace" not in disabled:
        try:
            unshare(CLONE_NEWUSER)
            with open("/proc/self/setgroups", "w") as f:
                f.write("deny")
            with open("/proc/self/uid_map", "w") as f:
                f.write(f"0 {uid} 1")
            with open("/proc/self/gid_map", "w") as f:
                f.write(f"0 {gid} 1")
            iso["user_namespace"] = True
        except OSError as e:
            notes.append(f"user namespace unavailable ({e})")
    if root or iso["user_namespace"]:
        for flag, key in wanted:
            try:
                unshare(flag)
                iso[key] = True
            except OSError as e:
                notes.append(f"{key} unavailable ({e})")
    if iso["ipc_namespace"]:
        try:
            _no_ipc_objects()
        except OSError as e:
            notes.append(f"System V IPC and POSIX message queues not refused ({e})")
            iso["ipc_namespace"] = False
    if iso["pid_namespace"]:
        child = os.fork()
        if child:  # the worker process: stays outside, waits for its template, mirrors its exit
            _, status = os.waitpid(child, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        # Dies with the worker. Should the worker die before this line, the template still ends
        # when the grader closes its end of the request pipe (EOF ends the serve loop).
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if iso["mount_namespace"]:
        try:
            _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
        except OSError as e:
            notes.append(f"private mounts unavailable ({e})")
            iso["mount_namespace"] = False
    if iso["mount_namespace"]:
        try:  # every host mount read-only and nosuid; the mounts added below stay writable
            _readonly_tree("/")
            iso["readonly_root"] = True
        except OSError as e:
            notes.append(f"read-only root unavailable ({e})")
        try:
            hide_homes()
            iso["private_home"] = True
        except OSError as e:
            notes.append(f"hiding home directories failed ({e})")
        try:
            if iso["pid_namespace"]:
                _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
            size = max(4 * settings["file_size_mb"], 64)
            for path in SCRATCH:
                if os.path.isdir(path):
                    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV,
                           f"size={size}m,nr_inodes=4096,mode=1777")
            iso["private_tmp"] = True
        except OSError as e:
            notes.append(f"private /proc or /tmp unavailable ({e})")
    if root and "uid_drop" not in disabled:
        iso["uid_drop"] = True
    # On this process (the template; the worker itself without a pid namespace), which never
    # execs: programs inherit no_new_privs and the filter through fork.
    prctl(PR_SET_NO_NEW_PRIVS, 1)  # an exec'd setuid binary gains nothing
    if "no_keyrings" not in disabled:
        if KEY_SYSCALLS is None:
            notes.append(f"keyrings not blocked (no seccomp filter for {os.uname().machine})")
        else:
            try:
                _seccomp(_no_keyrings_filter())
                refused = _libc.syscall(KEY_SYSCALLS[1][2], 0, -3, 0) == -1  # keyctl(GET_KEYRING_ID)
                iso["no_keyrings"] = refused and ctypes.get_errno() == errno.EPERM
                if not iso["no_keyrings"]:
                    notes.append("keyrings not blocked (the seccomp filter let keyctl through)")
            except OSError as e:
                notes.append(f"keyrings not blocked (seccomp filters unavailable: {e})")
    return iso


def _no_ipc_objects() -> None:
    """Let no process of this (new) IPC namespace create a System V shared-memory segment,
    semaphore set or message queue, or a POSIX message queue: a program could leave one behind
    for the next program on the worker. These limits belong to the namespace (the host's are
    untouched). The kernel lets the namespace's root uid write them: a program under a uid of
    its own cannot (it gets ENOSPC), and one that is root of a user namespace gets an IPC
    namespace of its own (see `Template._child` in `sandbox_worker.py`)."""
    for name in ("kernel/shmmni", "kernel/msgmni", "fs/mqueue/queues_max"):
        with open(f"/proc/sys/{name}", "w") as f:
            f.write("0")
    with open("/proc/sys/kernel/sem") as f:  # SEMMSL SEMMNS SEMOPM SEMMNI: no set at all
        semmsl, semmns, semopm, _ = f.read().split()
    with open("/proc/sys/kernel/sem", "w") as f:
        f.write(f"{semmsl} {semmns} {semopm} 0")


def _python_dirs() -> list[str]:
    """The interpreter's own directories (prefixes, stdlib, site-packages), top-most only."""
    found = {os.path.realpath(p) for p in (sys.prefix, sys.exec_prefix, sys.base_prefix,
                                            os.path.dirname(os.path.realpath(sys.executable)),
                                            *sys.path) if p and os.path.isdir(p)}
    top: list[str] = []
    for d in sorted(found):
        if not any(d.startswith(t + "/") or d == t for t in top):
            top.append(d)
    return top


def _closed_ancestor(path: str) -> str | None:
    """The first directory on the way to `path` that others may not traverse, if any."""
    cur = ""
    for part in path.strip("/").split("/"):
        cur += "/" + part
        if not os.stat(cur).st_mode & stat.S_IXOTH:
            return cur
    return None


def hide_homes() -> None:
    """Cover /root, the user's home and any closed directory on the way to the interpreter with
    empty read-only tmpfs; bind the interpreter's own directories back at the same paths, so a
    dropped uid can still import the standard library and site-packages (pyenv lives in /root)."""
    import pwd

    pydirs = _python_dirs()
    hide = {"/root", pwd.getpwuid(os.getuid()).pw_dir} | {a for d in pydirs if (a := _closed_ancestor(d))}
    hide = {h for h in hide if h not in ("", "/") and os.path.isdir(h)
            and not any(h == d or h.startswith(d + "/") for d in pydirs)}
    expose = [d for d in pydirs if any(d.startswith(h + "/") for h in hide)]
    fds = {d: os.open(d, os.O_PATH | os.O_DIRECTORY) for d in expose}
    try:
        for h in sorted(hide):
            _mount("tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        for d, fd in fds.items():
            os.makedirs(d, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", d, None, MS_BIND | MS_REC, None)
        for h in hide:
            _readonly_tree(h)
    finally:
        for fd in fds.values():
            os.close(fd)
