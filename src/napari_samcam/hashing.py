"""Content digests of files, the project's one way to say "this file has not changed".

Result keys, annotation ids and model versions are built from these digests, so a digest
that changed its algorithm would invalidate stored results: change them only on purpose.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ._files import open_regular
from .errors import InputError

__all__ = ["file_digest", "file_sha256", "file_version"]


def file_digest(path: Path) -> str:
    """The file's content digest, ``"missing"`` when it does not exist.

    Raises
    ------
    InputError
        ``path`` is a FIFO, a device or another file that is not a regular file (hashing one
        would never end).
    """
    if not os.path.lexists(path):
        return "missing"
    digest = hashlib.blake2b(digest_size=12)
    try:
        with open_regular(path, "file") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except InputError:
        if not os.path.exists(path):  # a dangling link
            return "missing"
        raise
    except OSError:
        return "missing"
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike, what: str = "file") -> str:
    """The SHA-256 hex digest of a regular file (``what`` names it in errors).

    Raises
    ------
    InputError
        ``path`` is not a regular file.
    """
    digest = hashlib.sha256()
    with open_regular(Path(path), what) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_version(path: str | os.PathLike | None) -> str:
    """A model file's version as tables show it: ``"sha256:"`` and 12 hex digits (``""``
    without a file)."""
    if path is None:
        return ""
    return "sha256:" + file_sha256(path, "weights file")[:12]
