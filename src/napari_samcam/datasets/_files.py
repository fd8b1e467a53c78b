"""Annotation files as distributed (plain, gzip or zip) and the image files they name.

Only regular files are opened. A zip archive must hold exactly one CSV member whose declared
size is within :data:`MAX_TEXT_BYTES`; a gzip stream is cut off (an error) past the same
bound, so a crafted archive cannot fill the memory.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError

__all__ = ["MAX_TEXT_BYTES", "ImageFinder", "csv_rows", "is_regular_file", "read_header"]

#: The largest annotation text read (decompressed): VinDr's train.csv is ~9 MB.
MAX_TEXT_BYTES = 1 << 30


def is_regular_file(path: Path) -> bool:
    """Whether ``path`` is a regular file (after links), not a folder, FIFO or device."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


class _Bounded(io.RawIOBase):
    """A binary stream that raises once more than ``limit`` bytes were read."""

    def __init__(self, raw, limit: int, name: str):
        self._raw, self._left, self._name = raw, limit, name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._raw.read(min(len(buffer), self._left + 1))
        self._left -= len(data)
        if self._left < 0:
            raise InputError(
                f"annotation file {self._name!r} holds more than {MAX_TEXT_BYTES} bytes of text "
                "once decompressed; it is not an annotation file as distributed."
            )
        buffer[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def _open_text(path: Path) -> Iterator[io.TextIOBase]:
    name = str(path)
    if not is_regular_file(path):
        raise InputError(f"annotation file {name!r} does not exist or is not a regular file.")
    with open(path, "rb") as handle:
        magic = handle.read(4)
        handle.seek(0)
        if magic[:2] == b"\x1f\x8b":
            raw = gzip.GzipFile(fileobj=handle, mode="rb")
        elif magic == b"PK\x03\x04":
            archive = zipfile.ZipFile(handle)
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1 or not members[0].filename.lower().endswith(".csv"):
                raise InputError(
                    f"annotation file {name!r}: a zip archive as distributed holds one .csv "
                    f"file; this one holds {[m.filename for m in members][:5]}."
                )
            if members[0].file_size > MAX_TEXT_BYTES:
                raise InputError(
                    f"annotation file {name!r}: member {members[0].filename!r} declares "
                    f"{members[0].file_size} bytes, more than {MAX_TEXT_BYTES}."
                )
            raw = archive.open(members[0])
        else:
            raw = handle
        bounded = io.BufferedReader(_Bounded(raw, MAX_TEXT_BYTES, name))
        text = io.TextIOWrapper(bounded, encoding="utf-8-sig", newline="")
        try:
            yield text
        except (UnicodeDecodeError, gzip.BadGzipFile, zipfile.BadZipFile, EOFError) as exc:
            raise InputError(
                f"annotation file {name!r} cannot be read as UTF-8 CSV text ({exc})."
            ) from None


def read_header(path: Path) -> list[str]:
    """The column names of a (possibly compressed) CSV file, stripped; ``[]`` if unreadable."""
    try:
        with _open_text(path) as text:
            line = text.readline(1 << 16)
    except (InputError, OSError, UnicodeDecodeError, gzip.BadGzipFile, zipfile.BadZipFile):
        return []
    return [cell.strip() for cell in next(csv.reader([line]), [])]


def csv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """``(line, cells)`` of each data row of ``path``, cells stripped, checked against
    ``columns`` (the header must start with them)."""
    name = str(path)
    with _open_text(path) as text:
        reader = csv.reader(text)
        try:
            header = [cell.strip() for cell in next(reader, [])]
            if tuple(header[: len(columns)]) != columns:
                raise InputError(
                    f"annotation file {name!r}: columns {header} are not {list(columns)}; is "
                    "this the file as distributed?"
                )
            for cells in reader:
                if not cells:
                    continue
                yield reader.line_num, [cell.strip() for cell in cells]
        except csv.Error as exc:
            raise InputError(
                f"annotation file {name!r}, line {reader.line_num}: not readable CSV ({exc})."
            ) from None


class ImageFinder:
    """Finds an image by its file name or its stem under ``root``.

    The places a dataset's download puts its images are tried first; only when a name is not
    there is the whole tree indexed once (regular files only; links to folders are not
    followed).
    """

    def __init__(self, root: Path, suffixes: tuple[str, ...], folders: tuple[str, ...] = ()):
        self.root = Path(root)
        self.suffixes = suffixes
        self.folders = ("", *folders)
        self._index: dict[str, Path] | None = None

    def find(self, name: str) -> Path | None:
        """The image named ``name`` (a file name, or a stem tried with each suffix)."""
        names = [name] if Path(name).suffix.lower() in self.suffixes else []
        names += [name + suffix for suffix in self.suffixes]
        for folder in self.folders:
            for candidate in names:
                path = self.root / folder / candidate
                if is_regular_file(path):
                    return path
        index = self._tree()
        for candidate in names:
            if candidate in index:
                return index[candidate]
        return None

    def _tree(self) -> dict[str, Path]:
        if self._index is None:
            self._index = {}
            for folder, _, files in os.walk(self.root):
                for file in files:
                    path = Path(folder) / file
                    if file.lower().endswith(self.suffixes) and is_regular_file(path):
                        self._index.setdefault(file, path)
        return self._index
