"""Small LRU caches held per model object (weakly, so a dropped model frees its cache)."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

__all__ = ["CACHE_LOCK", "lru_get", "lru_put", "owner_lru"]

#: Guards every cache built with these helpers (the GUI and worker threads share them).
CACHE_LOCK = threading.RLock()


def owner_lru(store: weakref.WeakKeyDictionary, owner: Any) -> OrderedDict | None:
    """The per-owner LRU dict, or None when ``owner`` cannot be weakly referenced."""
    try:
        with CACHE_LOCK:
            return store.setdefault(owner, OrderedDict())
    except TypeError:
        return None


def lru_get(cache: OrderedDict | None, key):
    with CACHE_LOCK:
        if cache is not None and key in cache:
            cache.move_to_end(key)
            return cache[key]
    return None


def lru_put(cache: OrderedDict | None, key, value, size: int) -> None:
    if cache is None:
        return
    with CACHE_LOCK:
        cache[key] = value
        while len(cache) > size:
            cache.popitem(last=False)


# -- options -------------------------------------------------------------------------------------
