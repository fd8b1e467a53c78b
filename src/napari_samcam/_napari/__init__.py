"""The napari side of napari-samcam that needs napari but no Qt.

Reader, writers, sample data, the layer <-> core adapters and :class:`SamcamSession`, the plain
Python model behind the dock widget (also usable from napari's console or a script).
"""

from __future__ import annotations

from typing import Any

from ._triton_guard import guard_triton

# Before anything of the plugin can import torch: see _triton_guard (a segfault otherwise).
guard_triton()

__all__ = ["SamcamSession"]


def __getattr__(name: str) -> Any:
    # Lazy: napari imports the reader and writers of this package at start-up; the session model
    # (and what it imports) is only needed once the widget or a script asks for it.
    if name == "SamcamSession":
        from ._session import SamcamSession

        return SamcamSession
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
