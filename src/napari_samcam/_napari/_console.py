"""What the dock widget puts into napari's console: the Python API and the widget's session.

The API's functions enter the console as :class:`LazyFunction` stand-ins: putting them there
costs nothing (some of their modules load torch, which takes seconds), and the first call, or
``help()`` / ``?`` on one, imports the real function.
"""

from __future__ import annotations

import importlib
from typing import Any

#: The functions of :mod:`napari_samcam` offered by name in the console.
CONSOLE_FUNCTIONS = (
    "read_image",
    "load_classifier",
    "explain",
    "predict",
    "load_segmenter",
    "saliency_boxes",
    "localization_metrics",
)


class LazyFunction:
    """A function of :mod:`napari_samcam` that is imported on first use.

    Parameters
    ----------
    name : str
        Its name in the package's public API.
    """

    def __init__(self, name: str):
        self.__name__ = self.__qualname__ = name

    @property
    def __wrapped__(self):
        # inspect.signature, help() and IPython's `?` follow __wrapped__ to the real function
        return getattr(importlib.import_module("napari_samcam"), self.__name__)

    @property
    def __doc__(self):  # type: ignore[override]
        return self.__wrapped__.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<napari_samcam.{self.__name__} (imported on first use)>"


def console_namespace(session) -> dict[str, Any]:
    """``samcam`` (the package), ``samcam_session`` and the API functions, none imported yet."""
    package = importlib.import_module("napari_samcam")
    namespace: dict[str, Any] = {"samcam": package, "samcam_session": session}
    namespace.update({name: LazyFunction(name) for name in CONSOLE_FUNCTIONS})
    return namespace
