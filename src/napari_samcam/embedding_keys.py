"""Content keys of images for the embedding cache, computed once per content.

:func:`embedding_key` names an image by :func:`~napari_samcam.images.image_hash` of its
content; a cheaper parallel :func:`content_digest` finds the key of content seen before, and
:func:`array_signature` lets a prompt on the very array segmented last start before its key is
known.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from .hashing import content_digest, image_hash
from .images import validate_image

__all__ = [
    "array_signature",
    "check_finite_once",
    "content_digest",
    "embedding_key",
    "key_pool",
]

_KEY_MEMO_LOCK = threading.Lock()
_KEY_MEMO: OrderedDict[bytes, str] = OrderedDict()
_KEY_MEMO_SIZE = 256
_FINITE_KEYS: OrderedDict[str, None] = OrderedDict()
_KEY_POOL = None


def array_signature(array: np.ndarray) -> tuple:
    """Which array object and memory this is (not its content)."""
    return (
        id(array),
        array.__array_interface__["data"][0],
        array.shape,
        array.strides,
        array.dtype.str,
    )


def key_pool():
    """One thread for content keys computed next to a prompt's decoding."""
    global _KEY_POOL
    with _KEY_MEMO_LOCK:
        if _KEY_POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            _KEY_POOL = ThreadPoolExecutor(1, thread_name_prefix="samcam-key")
        return _KEY_POOL


def check_finite_once(image: np.ndarray, key: str) -> None:
    """:func:`validate_image`'s finite-values check, skipped for content (``key``) that passed."""
    with _KEY_MEMO_LOCK:
        if key in _FINITE_KEYS:
            _FINITE_KEYS.move_to_end(key)
            return
    validate_image(image)
    with _KEY_MEMO_LOCK:
        _FINITE_KEYS[key] = None
        while len(_FINITE_KEYS) > _KEY_MEMO_SIZE:
            _FINITE_KEYS.popitem(last=False)


def embedding_key(image: np.ndarray, *, threads: int | None = None) -> str:
    """:func:`~napari_samcam.images.image_hash` of ``image``, computed once per content.

    The embedding cache is keyed by ``image_hash`` (BLAKE2b), which callers may also pass as
    ``key=``. Prompting the same image again would hash all of it again; here a cheaper
    :func:`content_digest` of the content looks up the ``image_hash`` computed the first time.
    Both are content hashes, so an array edited in place gets a new key. ``threads``: see
    :func:`content_digest`.
    """
    digest = content_digest(image, threads=threads)
    with _KEY_MEMO_LOCK:
        key = _KEY_MEMO.get(digest)
        if key is not None:
            _KEY_MEMO.move_to_end(digest)
            return key
    key = image_hash(image)
    with _KEY_MEMO_LOCK:
        _KEY_MEMO[digest] = key
        while len(_KEY_MEMO) > _KEY_MEMO_SIZE:
            _KEY_MEMO.popitem(last=False)
    return key
