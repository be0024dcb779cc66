"""The sandbox worker's isolation: namespaces, read-only mounts, private scratch, no IPC objects,
no keyrings, and the few system calls Python has no function for (through ctypes).

Loaded by `sandbox_worker.py` from this directory (the worker runs as a script under `-I`, so
it imports this file by path, not through the `evil_moe` package). Standard library only.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import stat
import sys

try:  # imported as part of the package
    from . import sandbox_view
    from .sandbox_seccomp import _PRCTL, SYSCALLS, install_filter, template_filter
except ImportError:  # loaded by path, beside the worker
    import sandbox_view
    from sandbox_seccomp import _PRCTL, SYSCALLS, install_filter, template_filter

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x1000, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
SYS_MOUNT_SETATTR = 442  # same number on every architecture (generic syscall table, Linux >= 5.12)
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


def unshare(flags: int) -> None:
    _check(_UNSHARE(flags), "unshare")


def prctl(option: int, arg: int) -> None:
    _check(_PRCTL(option, arg, 0, 0, 0), f"prctl({option})")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Give up every capability of this process for good (capset with empty sets, version 3)."""
    _check(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), (_CapData * 2)()), "capset")


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
                         "ipc_namespace", "minimal_fs", "readonly_root", "private_tmp",
                         "private_home", "uid_drop", "no_keyrings", "no_file_channels",
                         "resident_view", "no_proc"),
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
    pinner = None  # the template's pipes to the worker, which pins the view for it
    if iso["pid_namespace"]:
        to_worker, to_template = os.pipe(), os.pipe()
        child = os.fork()
        if child:  # the worker process: stays outside, pins its template's view, waits for it,
            # and mirrors its exit
            os.close(to_worker[1])
            os.close(to_template[0])
            _pin_for_template(to_worker[0], to_template[1])
            _, status = os.waitpid(child, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        os.close(to_worker[0])
        os.close(to_template[1])
        pinner = (to_template[0], to_worker[1])
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
        try:
            if "minimal_fs" in disabled:
                raise OSError(errno.EPERM, "disabled")
            no_proc = iso["pid_namespace"] and "no_proc" not in disabled
            minimal_root(settings["host_dir"], settings.get("view"), iso["pid_namespace"],
                         settings["file_size_mb"], no_proc)
            iso.update(minimal_fs=True, readonly_root=True, private_home=True, private_tmp=True,
                       no_proc=no_proc, view_copied=bool(settings["view"].get("copy")))
            if "resident_view" not in disabled:
                _pin_view(pinner, iso, notes)
        except OSError as e:
            notes.append(f"minimal file-system view unavailable ({e}); the host's is used, read-only")
            _host_root_view(settings, iso, notes)
    if pinner is not None:  # ends the worker's wait, if no view was pinned
        os.close(pinner[0])
        os.close(pinner[1])
    global pid_counter_fd
    if pid_counter_fd is not None and "pid_counter_reset" in disabled:
        os.close(pid_counter_fd)
        pid_counter_fd = None
    if root and "uid_drop" not in disabled:
        iso["uid_drop"] = True
    # On this process (the template; the worker itself without a pid namespace), which never
    # execs: programs inherit no_new_privs and the filter through fork.
    prctl(PR_SET_NO_NEW_PRIVS, 1)  # an exec'd setuid binary gains nothing
    if "no_keyrings" not in disabled:
        if SYSCALLS is None:
            notes.append(f"keyrings not blocked (no seccomp filter for {os.uname().machine})")
        else:
            try:
                install_filter(template_filter())
                refused = _libc.syscall(SYSCALLS[1]["keyctl"], 0, -3, 0) == -1  # keyctl(GET_KEYRING_ID)
                iso["no_keyrings"] = refused and ctypes.get_errno() == errno.EPERM
                iso["no_file_channels"] = iso["no_keyrings"] and _flock_refused()
                if not iso["no_keyrings"]:
                    notes.append("keyrings not blocked (the seccomp filter let keyctl through)")
            except OSError as e:
                notes.append(f"keyrings not blocked (seccomp filters unavailable: {e})")
    return iso


def _pin_view(pinner: tuple[int, int] | None, iso: dict[str, bool], notes: list[str]) -> None:
    """Have every file of this (new) root pinned in memory (`sandbox_view.pin`): by the worker,
    outside the pid namespace, which shares this mount namespace and so this root, when there
    is one (a fork of the template then copies none of the mappings: with them, each of its
    forks took about 3 ms more); by this process otherwise."""
    if pinner is None:
        n, size, unlocked = sandbox_view.pin(sandbox_view.view_files("/"), dontfork=True)
    else:
        os.write(pinner[1], b"1")
        with os.fdopen(os.dup(pinner[0]), "rb") as f:
            reply = f.read().decode()
        if not reply:
            notes.append("the worker did not pin the view")
            return
        n, size, unlocked = json.loads(reply)
        if isinstance(n, str):
            notes.append(f"the worker could not pin the view ({n})")
            return
    iso["resident_view"] = True
    if unlocked:
        notes.append(f"the view's {n} files ({size >> 20} MiB) are in memory, mapped, not locked "
                     f"({unlocked}): host-wide memory pressure could evict their pages")


def _pin_for_template(from_template: int, to_template: int) -> None:
    """In the worker: once the template asks (its view is this mount namespace's root now), pin
    every file of it and reply (files, bytes, why not locked); the mappings live as long as
    this process, which outlives the template. Nothing asked (EOF): nothing to pin."""
    with os.fdopen(from_template, "rb") as f, os.fdopen(to_template, "wb") as out:
        if f.read(1) != b"1":
            return
        try:
            reply = list(sandbox_view.pin(sandbox_view.view_files("/")))
        except OSError as e:
            reply = [str(e), 0, None]
        out.write(json.dumps(reply).encode())


def _flock_refused() -> bool:
    import fcntl

    with open("/dev/null") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            return e.errno == errno.EPERM
    return False


def _host_root_view(settings: dict, iso: dict[str, bool], notes: list[str]) -> None:
    """The fallback view: every host mount read-only and nosuid, homes hidden, private /proc and
    scratch tmpfs (the benchmark's data stays readable where it is world-readable)."""
    try:
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
        _scratch("", settings["file_size_mb"])
        iso["private_tmp"] = True
    except OSError as e:
        notes.append(f"private /proc or /tmp unavailable ({e})")


SCRATCH_LINKS = {"/var/tmp": "/tmp/.var-tmp", "/dev/shm": "/tmp/.shm"}  # in the minimal view


def scratch_dirs(tmp: str, root: str = "") -> None:
    """The directories SCRATCH_LINKS point to, in the (fresh) tmpfs at `tmp`: any user may
    write there, as in /tmp itself."""
    if tmp == "/tmp" and os.path.islink(root + "/dev/shm"):
        for target in SCRATCH_LINKS.values():
            os.mkdir(root + target)
            os.chmod(root + target, 0o1777)


def _scratch(root: str, file_size_mb: int) -> None:
    for path in SCRATCH:
        if os.path.isdir(root + path):
            _scratch_mount(root + path, file_size_mb)


def _scratch_mount(path: str, file_size_mb: int) -> None:
    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={max(4 * file_size_mb, 64)}m,nr_inodes=4096,mode=1777")


def fresh_scratch(path: str, file_size_mb: int) -> None:
    """Replace the scratch tmpfs at `path` by an empty one (what a wipe could not remove goes)."""
    _check(_libc.umount2(path.encode(), ctypes.c_int(MNT_DETACH)), f"umount {path}")
    _scratch_mount(path, file_size_mb)


# What a program sees: the view's manifest (`sandbox_view.manifest`: the interpreter, the standard
# library, the libraries they load, a few commands, the loader's cache and the time zone), a
# private /dev with DEV_NODES, an empty /proc and a private /tmp. No home, no /work, no
# site-packages beyond `sandbox_view.PACKAGES`, no /usr beyond those files, no /run or /sys.
DEV_NODES = ("null", "zero", "random", "urandom")
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41}.get(os.uname().machine)
MNT_DETACH = 2
MS_RDONLY, MS_REMOUNT = 0x1, 0x20
pid_counter_fd: int | None = None  # this pid namespace's ns_last_pid, open for writing (see minimal_root)


def minimal_root(new: str, view: dict | None, own_proc: bool, file_size_mb: int,
                 no_proc: bool) -> None:
    """Make `new` (an existing empty directory) this mount namespace's root, holding only the
    view's manifest (`sandbox_view`), read-only, its directories bound from their copy on a
    tmpfs where `view["copy"]` names one, its files from the host; a private /dev with DEV_NODES only (no pty: no
    ptmx, no pts); an empty private tmpfs on /tmp, with /var/tmp and /dev/shm links into it
    (SCRATCH_LINKS); and, with `no_proc`, an
    empty /proc (the template keeps a handle on its pid namespace's counter), else this pid
    namespace's /proc (if `own_proc`; the host's otherwise). The old root is detached, so no
    other host path (data, sockets) is reachable. The files this process has mapped (its
    programs inherit the mappings) are in the view too."""
    if SYS_PIVOT_ROOT is None:
        raise OSError(errno.ENOSYS, f"no pivot_root number for {os.uname().machine}")
    if not view:
        raise OSError(errno.ENOENT, "no manifest of the view")
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")
    copy = view.get("copy")

    def bind(src: str, dst: str) -> None:
        if copy and os.path.isdir(src):  # a directory: its copy on a tmpfs (`sandbox_view.copy_trees`)
            src = copy + src
        _mount(src, dst, None, MS_BIND | MS_REC, None)

    def under(path: str, dirs: list[str]) -> bool:
        return any(path == d or path.startswith(d + "/") for d in dirs)

    for tree in view["trees"]:
        sandbox_view.place(new, tree, bind)
    for mask in () if copy else view["masks"]:  # the left-out parts of the standard library:
        # an empty directory (the copy has them empty already)
        _mount("tmpfs", new + mask, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,nr_inodes=64,mode=0755")
    # and what this process has mapped (its programs inherit the mappings: the C library's
    # locale, say): every file a program has mapped is one it can open (and is pinned)
    for path in view["files"] + sandbox_view.mapped_files():
        sandbox_view.place(new, path, bind, lambda p: under(p, view["trees"]) and not under(p, view["masks"]))
    os.makedirs(new + "/dev", mode=0o755, exist_ok=True)
    _mount("tmpfs", new + "/dev", "tmpfs", MS_NOSUID, "size=64k,nr_inodes=64,mode=0755")
    for node in DEV_NODES:
        open(f"{new}/dev/{node}", "w").close()
        _mount(f"/dev/{node}", f"{new}/dev/{node}", None, MS_BIND, None)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{new}/dev/{name}")
    for d in ("/proc", "/tmp", "/var"):
        os.makedirs(new + d, mode=0o755, exist_ok=True)
    # /var/tmp and /dev/shm live in /tmp's tmpfs: one mount, made afresh for every program
    for link, target in SCRATCH_LINKS.items():
        os.symlink(target, new + link)
    if not own_proc:
        _mount("/proc", new + "/proc", None, MS_BIND | MS_REC, None)
    _readonly_tree(new)  # the root, the binds and /dev; the scratch mounts below stay writable
    if own_proc:
        # A writable /proc first, for the template's handle on this pid namespace's counter,
        # then a read-only one over it, the only one programs see: no sysctl of the namespaces
        # a program shares with later ones can be written through it.
        global pid_counter_fd
        flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
        _mount("proc", new + "/proc", "proc", flags, None)
        try:
            pid_counter_fd = os.open(new + "/proc/sys/kernel/ns_last_pid", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            pid_counter_fd = None
        if no_proc:  # programs get none: /proc/self's smaps (Pss), pagemap, net and the
            # host-wide counters are all ways to read what concurrent programs do; the handle
            # stays usable once the mount is detached
            _check(_libc.umount2((new + "/proc").encode(), ctypes.c_int(MNT_DETACH)), "umount /proc")
        else:
            # hidepid=2: under a uid of its own a program does not see the template's process
            # (its counters would be a channel from earlier programs)
            _mount("proc", new + "/proc", "proc", flags | MS_RDONLY, "hidepid=2")
            _mask_host_counters(new + "/proc")
    _scratch_mount(new + "/tmp", file_size_mb)
    scratch_dirs("/tmp", root=new)
    os.chdir(new)
    _check(_libc.syscall(ctypes.c_long(SYS_PIVOT_ROOT), b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", ctypes.c_int(MNT_DETACH)), "umount old root")
    os.chdir("/")


# Host-wide counters in /proc that move with what programs do (memory, processes, open files,
# dentries, CPU time, pressure): one program can set them and a concurrent or later one read
# them. Each is covered by an empty file (or directory) in the programs' /proc.
HOST_COUNTERS = ("meminfo", "stat", "loadavg", "vmstat", "zoneinfo", "buddyinfo", "pagetypeinfo",
                 "slabinfo", "schedstat", "softirqs", "interrupts", "diskstats", "uptime",
                 "swaps", "locks", "key-users", "vmallocinfo", "timer_list",
                 "sys/fs/file-nr", "sys/fs/inode-nr", "sys/fs/inode-state", "sys/fs/dentry-state",
                 "sys/fs/aio-nr", "sys/kernel/random/entropy_avail", "pressure")


def _mask_host_counters(proc: str) -> None:
    for name in HOST_COUNTERS:
        path = f"{proc}/{name}"
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,nr_inodes=1")
        elif os.path.exists(path):
            _mount("/dev/null", path, None, MS_BIND, None)
            _mount("none", path, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)


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
    """The interpreter's own directories (prefixes, stdlib, site-packages), top-most, as real
    paths."""
    import site

    dirs = [p for p in (sys.prefix, sys.exec_prefix, sys.base_prefix,
                        os.path.dirname(os.path.realpath(sys.executable)), *sys.path,
                        *site.getsitepackages()) if p and os.path.isdir(p)]
    found = {os.path.realpath(p) for p in dirs}
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
