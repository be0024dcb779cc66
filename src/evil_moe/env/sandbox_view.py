"""The programs' file-system view: what is in it (`manifest`), putting it in place (`place`),
and keeping every page of every file in it in memory for good (`pin`).

Why pinned: the page cache is shared by every process on the host. A program that can tell
whether a page of some file is cached (fault-around maps only cached pages, and
`/proc/self/pagemap` shows what got mapped) learns what earlier or concurrent programs read,
and a program that reads a page, or makes the kernel drop one, tells the next. A red-team review
passed a correct response's results this way to a wrong sibling's oracle program. When every
page of every file a program can open or has mapped is in memory, mapped by a process outside
the programs (the worker: so no program's own memory pressure or `madvise` can drop it) and
locked where the host allows, every such probe reads the same answer whatever other programs
did.

So the view holds only what the interpreter needs, small enough to pin (about 90 MB here): the
interpreter, the standard library without its tests, GUI and packaging parts (`LEFT_OUT`), the
shared libraries these load (`ldd`), a few commands (`COMMANDS`) and `SYSTEM_FILES`. Of
site-packages only `PACKAGES` (LeetCode's Python has sortedcontainers too).

Why its directories are copies: a lookup of a name a directory lacks leaves a negative entry
in the kernel's dentry cache when the directory is on a disk file system, and a later lookup of
that name is measurably faster (7.7 us against 2.9 us): a red-team review stored a correct
response's results as such entries in the standard library's directory (about 256 bits in 2 ms,
across graders) and read them back in a wrong sibling's program. tmpfs keeps no such entries,
so the view's directories (the standard library, `PACKAGES`) are bound from one copy on a tmpfs
(`copy_trees`, about 57 MB, once per grader process); its single files, which expose no
directory, are bound from the host.

`manifest` and `copy_trees` run in the grader's process (once per process: `manifest` calls
`ldd`); `place` in the worker's template (`sandbox_isolation.minimal_root`), `pin` in the worker once the template's
view is its root too (`sandbox_isolation._pin_view`); loaded there by path. Standard library
only.
"""

from __future__ import annotations

import atexit
import ctypes
import fnmatch
import importlib.util
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile

# Directories of the standard library left out of the view (any depth): its own tests, the GUI,
# packaging and 2to3 tools, and site-packages.
LEFT_OUT = ("site-packages", "dist-packages", "test", "tests", "idle_test", "idlelib", "tkinter",
            "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "config-*")
PACKAGES = ("sortedcontainers",)  # from site-packages, where installed (LeetCode's Python has it)
COMMANDS = ("sh", "env", "sleep", "echo", "cat", "true", "false")  # for subprocess (/bin/sh: os.system)
# the loader's cache, the time zone, UTC for zoneinfo, and the shell os.system runs
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/usr/share/zoneinfo/UTC", "/bin/sh")
COMMAND_PATH = "/usr/local/bin:/usr/bin:/bin"

_manifest: dict | None = None


def manifest() -> dict:
    """What the view holds, as host paths: {"trees": directories bound whole, "masks":
    directories inside them covered by an empty one, "files": single files (each symlink on
    the way to one is copied into the view)}. Computed once per process."""
    global _manifest
    if _manifest is None:
        _manifest = _compute()
    return _manifest


def _compute() -> dict:
    paths = sysconfig.get_paths()
    trees = sorted({os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib") if os.path.isdir(paths[k])})
    masks, libraries = [], []
    for tree in trees:
        for top, dirs, files in os.walk(tree):
            for d in list(dirs):
                if any(fnmatch.fnmatch(d, pattern) for pattern in LEFT_OUT):
                    masks.append(os.path.join(top, d))
                    dirs.remove(d)
            libraries += [os.path.join(top, f) for f in files if ".so" in f and not f.startswith("_tkinter")]
    commands = [p for c in COMMANDS if (p := shutil.which(c, path=COMMAND_PATH))]
    executables = [sys.executable, os.path.realpath(sys.executable)]
    files = executables + commands + [f for f in SYSTEM_FILES if os.path.lexists(f)]
    files += [os.path.dirname(spec.origin) for name in PACKAGES
              if (spec := importlib.util.find_spec(name)) and spec.origin]
    files += _shared_libraries([os.path.realpath(sys.executable), *commands, *libraries])
    return {"trees": trees, "masks": sorted(masks), "files": sorted(set(files))}


TMPFS_MAGIC = 0x01021994
COPY_PREFIX = "evil_moe_view_"
COPY_PARENTS = ("/dev/shm", "/run/shm", "/tmp")  # the first that is a writable tmpfs holds the copy
_copy: str | None = None


def on_tmpfs(path: str) -> bool:
    """Whether `path` is on a tmpfs (statfs's f_type, the struct's first field)."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _libc.statfs(path.encode(), buf) != 0:
        return False
    return ctypes.c_long.from_buffer(buf).value == TMPFS_MAGIC


def copy_trees(view: dict) -> str:
    """A copy, on a tmpfs, of every directory the view binds whole (`view["trees"]` without its
    masks, which stay as empty directories, and the directories among `view["files"]`), each at
    its host path under the returned directory, readable by every uid. Made once per process,
    in the first of `COPY_PARENTS` that is a writable tmpfs with room for it, and removed when
    the process exits; copies left by dead processes are removed first. Raises OSError where no
    such tmpfs is found."""
    global _copy
    if _copy is not None:
        return _copy
    tried = []
    for parent in COPY_PARENTS:
        if not (os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK) and on_tmpfs(parent)):
            continue
        _sweep_copies(parent)
        base = tempfile.mkdtemp(prefix=f"{COPY_PREFIX}{os.getpid()}_", dir=parent)
        try:
            _copy_into(base, view)
        except OSError as e:  # full (a container's /dev/shm is often 64 MB): the next one
            shutil.rmtree(base, ignore_errors=True)
            tried.append(f"{parent}: {e}")
            continue
        atexit.register(_remove_copy, base, os.getpid())
        _copy = base
        return base
    raise OSError(f"no writable tmpfs with room for the view's copy ({'; '.join(tried) or 'none of '}"
                  f"{'' if tried else ', '.join(COPY_PARENTS)})")


def _remove_copy(base: str, owner: int) -> None:
    if os.getpid() == owner:  # not in a forked child that exits normally: the owner still uses it
        shutil.rmtree(base, ignore_errors=True)


def _copy_into(base: str, view: dict) -> None:
    masks = set(view["masks"])
    dirs = view["trees"] + [os.path.realpath(f) for f in view["files"] if os.path.isdir(f)]
    for tree in dirs:
        shutil.copytree(tree, base + tree, symlinks=True, copy_function=shutil.copyfile, dirs_exist_ok=True,
                        ignore=lambda top, names: [n for n in names if os.path.join(top, n) in masks])
    for mask in masks:
        os.makedirs(base + mask, exist_ok=True)
    for top, _, files in os.walk(base):
        os.chmod(top, 0o755)
        for f in files:
            if not os.path.islink(path := os.path.join(top, f)):
                os.chmod(path, 0o644)


def _sweep_copies(parent: str) -> None:
    """Remove copies made by processes that are gone (named evil_moe_view_<pid>_*)."""
    for name in os.listdir(parent):
        pid = name[len(COPY_PREFIX):].split("_", 1)[0]
        if name.startswith(COPY_PREFIX) and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _shared_libraries(objects: list[str]) -> list[str]:
    """Every shared library the loader would map for `objects` (one `ldd` call)."""
    out = subprocess.run(["ldd", *objects], capture_output=True, text=True, check=False,
                         env={"PATH": COMMAND_PATH, "LC_ALL": "C"}).stdout
    found = set()
    for line in out.splitlines():
        if not line.startswith("\t"):
            continue
        words = line.split()
        path = words[2] if len(words) > 2 and words[1] == "=>" else words[0]
        if path.startswith("/") and os.path.isfile(path):
            found.add(path)
    if not found:
        raise OSError(f"ldd found no shared library for the interpreter ({out[:200]!r})")
    return sorted(found)


def place(root: str, path: str, bind, covered=lambda p: False, depth: int = 0) -> None:
    """Make `path` resolve under `root` as it does on the host: each symlink on the way is copied
    (and its target placed), and the directory or file it ends at is bound by `bind(src, dst)`.
    Paths `covered(p)` are already there (inside a tree bound whole): nothing is made there."""
    if depth > 40:
        raise OSError(f"too many symlinks on the way to {path}")
    parts = [p for p in path.split("/") if p]
    cur = ""
    for i, part in enumerate(parts):
        cur += "/" + part
        if os.path.islink(cur):
            target = os.readlink(cur)
            if not covered(cur) and not os.path.lexists(root + cur):
                os.makedirs(os.path.dirname(root + cur), mode=0o755, exist_ok=True)
                os.symlink(target, root + cur)
            rest = "/".join(parts[i + 1:])
            resolved = os.path.normpath(os.path.join(os.path.dirname(cur), target, rest))
            return place(root, resolved, bind, covered, depth + 1)
    if covered(cur) or os.path.lexists(root + cur):
        return
    if os.path.isdir(cur):
        os.makedirs(root + cur, mode=0o755)
    elif os.path.isfile(cur):
        os.makedirs(os.path.dirname(root + cur), mode=0o755, exist_ok=True)
        open(root + cur, "w").close()
    else:
        return
    bind(cur, root + cur)


PROT_READ, MAP_SHARED, MAP_POPULATE, MADV_DONTFORK = 0x1, 0x1, 0x8000, 10
_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_mmap.restype = ctypes.c_void_p
_madvise = _libc.madvise
_madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_mlock = _libc.mlock
_mlock.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
MAP_FAILED = ctypes.c_void_p(-1).value


NOT_FILES = ("/proc", "/dev", "/tmp")  # in the view: no page cache, or private (/var/tmp is a link)


def view_files(root: str) -> list[str]:
    """Every file under the view's `root` (symlinks not followed), but in NOT_FILES."""
    skip = {os.path.join(root, d.lstrip("/")) for d in NOT_FILES}
    found = []
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(top, d) not in skip]
        found += [os.path.join(top, f) for f in files]
    return found


def mapped_files() -> list[str]:
    """The files this process has mapped (its programs inherit the mappings)."""
    with open("/proc/self/maps") as f:
        fields = [line.rstrip("\n").split(None, 5) for line in f]
    return sorted({f[5] for f in fields if len(f) == 6 and f[5].startswith("/")})


def pin(paths: list[str], dontfork: bool = False) -> tuple[int, int, str | None]:
    """Map every page of each regular file in `paths` into this process, read-only and shared,
    populated, and lock it where the host allows: the kernel cannot then drop these pages on a
    program's behalf (its memory pressure reclaims only pages it brought in; `madvise` leaves
    pages another process maps alone), so they stay in memory as long as this process lives.
    `dontfork`: a fork of this process does not inherit the mappings (`MADV_DONTFORK`).
    Returns (files, bytes, why not locked, or None when every page is locked)."""
    seen: set[tuple[int, int]] = set()
    n = size_total = 0
    unlocked = None
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # a socket, a link, or gone: nothing to keep in memory
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0 or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            addr = _mmap(None, st.st_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0)
            if addr in (None, MAP_FAILED):
                err = ctypes.get_errno()
                raise OSError(err, f"mmap {path}: {os.strerror(err)}")
        finally:
            os.close(fd)
        if dontfork and _madvise(addr, st.st_size, MADV_DONTFORK) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"madvise(MADV_DONTFORK) {path}: {os.strerror(err)}")
        if unlocked is None and _mlock(addr, st.st_size) != 0:
            unlocked = f"mlock: {os.strerror(ctypes.get_errno())}"
        n += 1
        size_total += st.st_size
    return n, size_total, unlocked
