"""A program's files, from the template's side: reading named files back (bounded, no symlink
followed) and emptying a directory whatever a program left in it (no recursion).

Loaded by `sandbox_worker.py` from this directory, by path. Standard library only.
"""

from __future__ import annotations

import os
import stat


def safe_read(root: str, name: str, view: memoryview) -> int | None:
    """Read `root/name` into `view` (at most its size) without following symlinks at any level;
    the bytes read, or None unless a regular file."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or name.startswith("/"):
        return None
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for part in parts[:-1]:
            fds.append(os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fds[-1])
        fds.append(fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        got = 0
        while got < len(view) and (k := os.readv(fd, [view[got:]])):
            got += k
        return got
    except OSError:
        return None
    finally:
        for fd in fds:
            os.close(fd)


def empty_dir(path: str) -> None:
    """Remove everything inside `path` without recursion and with short paths at any depth:
    each non-empty directory's entries move up to `path` (each entry moves once), then it goes.
    Never follows symlinks; bounded by the entries there are (a scratch tmpfs holds 4096)."""
    moved = 0
    while True:
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        if not entries:
            return
        progress = False
        for e in entries:
            try:
                if not e.is_dir(follow_symlinks=False):
                    os.unlink(e.path)
                    progress = True
                    continue
                try:
                    os.rmdir(e.path)
                    progress = True
                    continue
                except OSError:
                    pass
                os.chmod(e.path, 0o700)  # a program may have left it unreadable
                for child in os.scandir(e.path):
                    moved += 1
                    while os.path.lexists(dst := os.path.join(path, f".wipe{moved}")):
                        moved += 1
                    os.rename(child.path, dst)
                    progress = True
            except OSError:
                pass
        if not progress:
            return
