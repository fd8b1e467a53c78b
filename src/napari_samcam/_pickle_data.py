"""What the restricted unpickler of saliency pickles may build: data only, each size bounded.

A pickle names the functions that rebuild its objects, with arguments of its choosing. The
functions admitted here only rebuild data, and each checks what the file asks for before
allocating: an array or tensor may not hold more bytes than the file carries for it (no shape
or stride that stretches a few bytes into gigabytes), nor more than
:data:`~napari_samcam._files.MAX_ARRAY_BYTES`. ``numpy.ndarray`` itself is never callable from a
file (it would allocate any shape it is given); it is only the type ``_reconstruct`` is told to
make, and that array checks its state before numpy fills it.
"""

from __future__ import annotations

import io
import pickle
import warnings
from typing import Any

import numpy as np

from ._files import MAX_ARRAY_BYTES
from .errors import InputError

__all__ = ["allowed_globals"]


class _Refuse(InputError):
    """A size or type a pickle asks for that is not built."""


def _count(shape: Any) -> int:
    try:
        sides = [int(s) for s in shape]
    except (TypeError, ValueError):
        raise _Refuse(f"a shape {shape!r} that is not a tuple of integers") from None
    if any(s < 0 for s in sides):
        raise _Refuse(f"a negative shape {tuple(sides)}")
    count = 1
    for side in sides:
        count *= side
    return count


def _check_bytes(declared: int, held: int, what: str) -> None:
    if declared > min(held, MAX_ARRAY_BYTES):
        raise _Refuse(f"{what} of {declared:,} bytes from {held:,} bytes of data")


class _NdarrayType:
    """Stands for ``numpy.ndarray`` in a pickle: ``_reconstruct`` may be told to make one;
    calling it directly (which would allocate any shape) is refused."""

    def __new__(cls, *args: Any, **kwargs: Any):
        raise _Refuse("a call of numpy.ndarray (an array of any size, from no data)")


class _CheckedArray(np.ndarray):
    """The array ``_reconstruct`` makes: its state (shape, dtype, data) is checked before
    numpy allocates and fills it."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refuse("an array state numpy does not write")
        shape, dtype, data = state[-4], state[-3], state[-1]
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise _Refuse("an array of Python objects")
        if not isinstance(data, (bytes, bytearray)):
            raise _Refuse("an array whose data is not bytes")
        declared = _count(shape) * dtype.itemsize
        if declared != len(data):
            raise _Refuse(f"an array of {declared:,} bytes with {len(data):,} bytes of data")
        _check_bytes(declared, len(data), "an array")
        super().__setstate__(state)


def _reconstruct(subtype: Any, shape: Any, dtype: Any):
    if subtype is not _NdarrayType:
        raise _Refuse(f"an array of type {getattr(subtype, '__name__', subtype)!r}")
    if _count(shape) > 1:  # numpy pickles start from an empty array and set its state
        raise _Refuse(f"an empty array of shape {shape!r}")
    return np.ndarray.__new__(_CheckedArray, (0,), dtype="b")


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any):
    if not isinstance(buffer, (bytes, bytearray)) or not isinstance(dtype, np.dtype):
        raise _Refuse("an array from something other than bytes")
    if dtype.hasobject:
        raise _Refuse("an array of Python objects")
    declared = _count(shape) * dtype.itemsize
    if declared != len(buffer):
        raise _Refuse(f"an array of {declared:,} bytes with {len(buffer):,} bytes of data")
    _check_bytes(declared, len(buffer), "an array")
    return np.frombuffer(buffer, dtype=dtype).reshape(tuple(int(s) for s in shape), order=order)


def _scalar(dtype: Any, data: Any = None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise _Refuse("a numpy scalar that is not numeric data")
    if len(data) != dtype.itemsize:
        raise _Refuse("a numpy scalar whose data does not fit its type")
    return np.frombuffer(data, dtype=dtype)[0]


def _dtype(name: Any, align: Any = False, copy: Any = False):
    if not isinstance(name, str):
        raise _Refuse(f"a numpy dtype named by {type(name).__name__}")
    dtype = np.dtype(name)
    if dtype.hasobject or dtype.itemsize > 64:
        raise _Refuse(f"a numpy dtype {name!r}")
    return np.dtype(name, bool(align), bool(copy))


def _encode(text: Any, encoding: Any = "utf-8"):
    """``_codecs.encode`` as protocols 0-2 use it for bytes (``latin1`` only)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refuse("a text encoding other than latin1")
    return text.encode("latin1")


class _StorageHeader(pickle.Unpickler):
    """Reads what a legacy ``torch.save`` of one storage declares, without building it."""

    def find_class(self, module: str, name: str):
        if module == "torch" and name.endswith("Storage"):
            return name
        raise _Refuse(f"a storage that refers to {module}.{name}")

    def persistent_load(self, pid: Any):
        self.declared = pid
        return None


_STORAGE_SIZES = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "UntypedStorage": 1,
}


def _storage_from_bytes(data: Any):
    """``torch.storage._load_from_bytes``: one storage, saved by ``torch.save`` in torch's
    legacy format. What it declares is checked against the bytes it carries, then it is
    loaded weights-only."""
    import torch

    if not isinstance(data, (bytes, bytearray)):
        raise _Refuse("a tensor storage that is not bytes")
    stream = io.BytesIO(data)
    try:
        for _ in range(3):  # magic number, protocol version, system information
            _StorageHeader(stream).load()  # numbers and a dict of them: nothing is called
        header = _StorageHeader(stream)
        header.declared = None
        header.load()
        pid = header.declared
        kind, numel = pid[1], int(pid[4])
    except _Refuse:
        raise
    except Exception:
        raise _Refuse("a tensor storage that is not a torch.save of one storage") from None
    if kind not in _STORAGE_SIZES:
        raise _Refuse(f"a tensor storage of type {kind!r}")
    _check_bytes(numel * _STORAGE_SIZES[kind], len(data), "a tensor storage")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any):
    import torch
    import torch._utils

    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise _Refuse("a tensor without a storage")
    count = _count(size)
    try:
        steps = [int(s) for s in stride]
        offset = int(offset)
    except (TypeError, ValueError):
        raise _Refuse("a tensor stride that is not integers") from None
    if len(steps) != len(tuple(size)) or offset < 0 or any(s < 0 for s in steps):
        raise _Refuse("a tensor view with a negative or mismatched stride")
    typed = isinstance(storage, torch.TypedStorage)
    with warnings.catch_warnings():  # TypedStorage's deprecation notice
        warnings.simplefilter("ignore")
        item = storage.dtype.itemsize if typed else 1
        held = storage.nbytes() // item
    if count:
        reach = offset + sum((int(n) - 1) * s for n, s in zip(size, steps, strict=True))
        if reach >= held:
            raise _Refuse("a tensor view that reaches past its storage")
    # a view may repeat elements (stride 0); a map is copied out, so bound the copy too
    _check_bytes(count * item, held * item, "a tensor")
    if not rest:  # torch._utils._rebuild_tensor
        return torch._utils._rebuild_tensor(storage, offset, tuple(size), tuple(steps))
    return torch._utils._rebuild_tensor_v2(storage, offset, tuple(size), tuple(steps), *rest[:3])


def allowed_globals() -> dict[tuple[str, str], Any]:
    """``(module, name)`` -> the checked builder a saliency pickle may refer to."""
    import collections

    allowed: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("_codecs", "encode"): _encode,
        ("numpy", "ndarray"): _NdarrayType,
        ("numpy", "dtype"): _dtype,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
        allowed[(module, "scalar")] = _scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = _frombuffer
    return allowed


#: The refusal type, for the caller to turn into a message naming the file.
Refused = _Refuse
