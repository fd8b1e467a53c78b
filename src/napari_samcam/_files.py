"""Opening someone else's files: regular files only, and sizes bounded before anything is
allocated.

A path can name a FIFO or a device (``/dev/zero``), directly or through a link: reading one
blocks forever or never ends. Such paths are refused by what they are (``os.stat`` follows the
link to the thing itself), before any byte is read or hashed. A file also declares sizes (an
array's shape, a zip member's uncompressed size) that may be far larger than the file: those are
checked against a bound first.
"""

from __future__ import annotations

import os
import stat
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import IO

from .errors import InputError, UntrustedFileError

__all__ = [
    "MAX_ARRAY_BYTES",
    "check_declared_bytes",
    "check_zip_sizes",
    "is_regular_file",
    "npy_declared_bytes",
    "open_regular",
    "read_npy",
    "read_npz",
    "require_regular_file",
]

#: The most bytes one array read from a user's file may take (1 GiB): far more than any
#: saliency map, mask or stored per-image array, far less than a machine's memory.
MAX_ARRAY_BYTES = 1 << 30


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def is_regular_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` (through links) is a regular file; never opens it."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def require_regular_file(path: str | os.PathLike, what: str, error=InputError) -> Path:
    """Check that ``path`` (followed through links) is a regular file, without opening it.

    Raises
    ------
    InputError (or ``error``)
        It is missing, a folder, a FIFO, a device or a socket.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{what} {str(path)!r} does not exist: check the path.") from None
    except OSError as exc:
        raise error(f"{what} {str(path)!r} cannot be read ({exc.strerror or exc}).") from None
    if not stat.S_ISREG(mode):
        raise error(
            f"{what} {str(path)!r} is {_kind(mode)}, not a regular file; only regular files are "
            "read (a pipe or device would never end): pass the file itself."
        )
    return path


def open_regular(path: str | os.PathLike, what: str, error=InputError) -> IO[bytes]:
    """Open ``path`` for binary reading only if it is a regular file.

    The check is made on the opened descriptor (``O_NONBLOCK`` keeps a FIFO from blocking the
    open itself), so the file cannot be swapped for a pipe between check and read.
    """
    path = require_regular_file(path, what, error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(f"{what} {str(path)!r} cannot be read ({exc.strerror or exc}).") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{what} {str(path)!r} is {_kind(mode)}, not a regular file.")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def check_declared_bytes(
    declared: int, limit: int, *, what: str, path: str | os.PathLike, fix: str
) -> None:
    """Refuse a size a file declares before anything of that size is allocated.

    Raises
    ------
    InputError
        ``declared`` exceeds ``limit``.
    """
    if declared > limit:
        raise InputError(
            f"{what} {str(path)!r} declares {declared:,} bytes, more than the {limit:,} it may "
            f"take; nothing was allocated. {fix}"
        )


def check_zip_sizes(path: str | os.PathLike, limit: int, *, what: str, fix: str) -> None:
    """Bound every member of a zip archive (``.npz``, a ``torch.save`` file) by its declared
    uncompressed size, from the central directory only (nothing is decompressed).

    Raises
    ------
    InputError
        A member, or all of them together, declares more than ``limit`` bytes.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except _DAMAGED as exc:
        raise InputError(f"{what} {str(path)!r} is not a readable zip archive ({exc}).") from None
    total = sum(info.file_size for info in infos)
    check_declared_bytes(total, limit, what=what, path=path, fix=fix)


def npy_declared_bytes(handle: IO[bytes]) -> tuple[int, int]:
    """``(array bytes, header bytes)`` an ``.npy`` stream declares, from its header only.

    Raises
    ------
    ValueError
        Not an ``.npy`` header.
    """
    import numpy as np

    start = handle.tell()
    version = np.lib.format.read_magic(handle)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not one numpy writes")
    if version != (1, 0):  # a 4-byte header length, read whole by numpy before any check
        where = handle.tell()
        (length,) = struct.unpack("<I", handle.read(4))
        if length > _MAX_NPY_HEADER:
            raise ValueError(f"its header declares {length:,} bytes")
        handle.seek(where)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    count = 1
    for side in shape:
        count *= int(side)
    return count * dtype.itemsize, handle.tell() - start


def _npy_error(exc: BaseException, path, what: str) -> InputError:
    text = str(exc)
    if "allow_pickle" in text or "Object arrays" in text:
        return UntrustedFileError(
            f"{what} {str(path)!r} holds pickled Python objects, which are not read; save a "
            "plain numeric array (numpy.save(path, array))."
        )
    return InputError(
        f"{what} {str(path)!r} is not a complete .npy/.npz file ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0][:200] if text else ''}); save it again."
    )


def read_npy(path: str | os.PathLike, what: str, *, limit: int = MAX_ARRAY_BYTES):
    """An ``.npy`` file's array (no pickles), its declared size checked against the file and
    ``limit`` before anything is allocated.

    Raises
    ------
    InputError
        Not a regular file, not ``.npy``, truncated, or declaring more than it may hold.
    UntrustedFileError
        It holds pickled objects.
    """
    import numpy as np

    with open_regular(path, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            declared, header = npy_declared_bytes(handle)
        except _DAMAGED as exc:
            raise _npy_error(exc, path, what) from None
        check_declared_bytes(
            declared, min(limit, size - header), what=what, path=path, fix=_TRUNCATED
        )
        handle.seek(0)
        try:
            return np.load(handle, allow_pickle=False)
        except _DAMAGED as exc:
            raise _npy_error(exc, path, what) from None


_TRUNCATED = "The file is damaged or made to exhaust memory; save the array again."

#: numpy itself refuses headers over 10,000 bytes unless told otherwise.
_MAX_NPY_HEADER = 1 << 16

#: What numpy's header parser and zip's decompressor raise on damaged bytes.
_DAMAGED = (
    ValueError,
    TypeError,
    OverflowError,
    OSError,
    EOFError,
    SyntaxError,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,  # zip features the reader lacks, e.g. patched data
    struct.error,
)


def read_npz(path: str | os.PathLike, what: str, *, limit: int = MAX_ARRAY_BYTES) -> dict:
    """Every array of an ``.npz`` file (no pickles), each member's declared sizes (zip and
    ``.npy`` header) checked against ``limit`` before anything is decompressed.

    Raises
    ------
    InputError
        Not a regular zip archive, damaged, or declaring more than ``limit`` bytes.
    UntrustedFileError
        A member holds pickled objects.
    """
    import numpy as np

    with open_regular(path, what) as handle:
        try:
            archive = zipfile.ZipFile(handle)
        except _DAMAGED as exc:
            raise InputError(
                f"{what} {str(path)!r} is not a readable .npz file ({exc})."
            ) from None
        with archive:
            infos = [i for i in archive.infolist() if i.filename.endswith(".npy")]
            total = sum(info.file_size for info in infos)
            check_declared_bytes(total, limit, what=what, path=path, fix=_TRUNCATED)
            arrays = {}
            for info in infos:
                try:
                    with archive.open(info) as member:
                        declared, header = npy_declared_bytes(member)
                        check_declared_bytes(
                            declared,
                            info.file_size - header,
                            what=f"{what} member {info.filename!r} of",
                            path=path,
                            fix=_TRUNCATED,
                        )
                    with archive.open(info) as member:
                        arrays[info.filename[:-4]] = np.lib.format.read_array(
                            member, allow_pickle=False
                        )
                except _DAMAGED as exc:
                    if isinstance(exc, InputError):
                        raise
                    raise _npy_error(exc, path, what) from None
    return arrays
