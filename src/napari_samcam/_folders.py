"""Output folders: checked writable before any work, locked while a run writes into them."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputBusyError, OutputExistsError, OutputNotWritableError

__all__ = [
    "LOCK_NAME",
    "atomic_path",
    "check_writable",
    "create_new_file",
    "output_lock",
    "refuse_link",
]

#: The lock file a run keeps in its output folder while it writes there.
LOCK_NAME = ".samcam.lock"


def check_writable(folder: str | os.PathLike, *, name: str = "out") -> Path:
    """Check that files can be created in ``folder`` (or, if it does not exist yet, that it can be
    created), without leaving anything behind.

    The check creates and deletes a temporary file in ``folder`` or in its nearest existing parent:
    permissions alone do not tell (read-only file systems, ACLs, running as root).

    Raises
    ------
    OutputNotWritableError
        ``folder`` (or its parent) is a file, or cannot be written.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputNotWritableError(
            f"{name}={str(folder)!r}: {str(existing)!r} is a file, not a folder; choose another "
            "output folder."
        )
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".samcam-write-check-"):
            pass
    except OSError as exc:
        where = "" if existing == folder else f" (its parent {str(existing)!r} cannot be written)"
        raise OutputNotWritableError(
            f"{name}={str(folder)!r} is not writable{where}: {exc.strerror or exc}; choose a "
            "folder you can write to."
        ) from None
    return folder


@contextlib.contextmanager
def atomic_path(path: Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path``, unique to this process, moved onto ``path`` on success.

    Nothing is left behind when the block raises. The move replaces a link at ``path`` rather
    than writing through it. ``suffix`` ends the temporary name (writers that choose the format
    by the name need the real one).
    """
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _lock(handle) -> bool:
    """Take an exclusive lock on an open file without waiting; False when another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"process {info['pid']} on {info['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def refuse_link(path: str | os.PathLike, what: str) -> None:
    """Refuse to write to ``path`` when it is a symbolic link (dangling or not).

    Raises
    ------
    OutputNotWritableError
        ``path`` is a link: writing through it would change a file elsewhere.
    """
    if os.path.islink(path):
        raise OutputNotWritableError(
            f"{what} {str(path)!r} is a symbolic link (to {os.readlink(path)!r}); outputs are "
            "never written through a link, which could change a file outside the output "
            "folder. Remove the link or choose another name."
        )


def create_new_file(path: str | os.PathLike, what: str, mode: str = "wb"):
    """Open ``path`` for writing only if nothing (not even a dangling link) is there.

    ``O_CREAT | O_EXCL`` never follows a link and never truncates an existing file.

    Raises
    ------
    OutputExistsError
        Something exists at ``path``.
    OutputNotWritableError
        ``path`` is a link, or its folder cannot be written.
    """
    refuse_link(path, what)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except FileExistsError:
        raise OutputExistsError(
            f"{what} {str(path)!r} exists; choose another name (outputs are never overwritten)."
        ) from None
    except OSError as exc:
        raise OutputNotWritableError(
            f"{what} {str(path)!r} cannot be written ({exc.strerror or exc}); choose a folder "
            "you can write to."
        ) from None
    return os.fdopen(fd, mode)


def _open_lock(path: Path):
    """Open (creating) the lock file, refusing a link or anything but a regular file."""
    refuse_link(path, "lock file")
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if os.path.islink(path):  # created between the check and the open
            refuse_link(path, "lock file")
        raise OutputNotWritableError(
            f"lock file {str(path)!r} cannot be opened ({exc.strerror or exc}); remove it if it "
            "is not a file, or choose another output folder."
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputNotWritableError(
            f"lock file {str(path)!r} is not a regular file; remove it or choose another output "
            "folder."
        )
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "r+", encoding="utf-8")


@contextlib.contextmanager
def output_lock(folder: Path, *, what: str = "run") -> Iterator[None]:
    """Hold ``folder/.samcam.lock`` for the block: one writer per output folder.

    The lock is an operating-system file lock, released by the system when its process ends, so
    a lock file left by a crashed or killed process does not block a later run.

    Raises
    ------
    OutputBusyError
        Another process holds the lock.
    """
    path = Path(folder) / LOCK_NAME
    while True:
        handle = _open_lock(path)
        handle.seek(0)
        if not _lock(handle):
            handle.close()
            raise OutputBusyError(
                f"output folder {str(folder)!r} is in use by another {what} ({_holder(path)}); "
                "wait for it to finish or choose another output folder."
            )
        try:
            same = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()  # the previous holder deleted the file while we waited: lock the new one
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        handle.flush()
        yield
    finally:
        # POSIX: delete while still holding the lock (a waiter that opened this file notices it
        # is gone); Windows cannot delete an open file.
        if os.name == "nt":
            handle.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        handle.close()
