"""The registry of named classifier specs.

A provider (the built-in phantom classifiers, torchxrayvision's models, ...) registers a
:class:`ClassifierSpec` for each name or name prefix it loads;
:func:`napari_samcam.classifiers.load_classifier` looks a text spec up here. The registry imports
no provider: providers import it (and :mod:`napari_samcam.classifiers` for ``Classifier``), and
the modules named in :data:`PROVIDERS` are imported on the first look-up, so the dependency
points one way only.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PROVIDERS", "ClassifierSpec", "find_spec", "register", "registered_names"]

#: Modules that register classifier specs when imported.
PROVIDERS = ("napari_samcam.builtin_classifiers", "napari_samcam.xrv_classifiers")


@dataclass(frozen=True)
class ClassifierSpec:
    """How to load the classifiers of one name (or of every name with a prefix).

    Attributes
    ----------
    name : str
        The exact name (``"lesion-detector"``) or, with ``prefix=True``, the prefix
        (``"xrv:"``).
    load : callable
        ``load(text, *, device, checkpoint, trust_checkpoint, download) -> Classifier``.
    version : callable
        ``version(text) -> str``: the weights' identity, for result provenance and resume keys
        (``""`` when unknown before loading).
    prefix : bool
    names : tuple of str
        The full names a prefix spec knows (for help texts and the widget).
    """

    name: str
    load: Callable[..., Any]
    version: Callable[[str], str] = lambda text: ""
    prefix: bool = False
    names: tuple = ()

    def matches(self, text: str) -> bool:
        """Whether this spec loads ``text``."""
        return text.startswith(self.name) if self.prefix else text == self.name


_SPECS: dict[str, ClassifierSpec] = {}
_LOCK = threading.Lock()
_loaded = False


def register(spec: ClassifierSpec) -> ClassifierSpec:
    """Add (or replace) a spec; returns it."""
    with _LOCK:
        _SPECS[spec.name] = spec
    return spec


def _load_providers() -> None:
    global _loaded
    if _loaded:
        return
    for module in PROVIDERS:
        importlib.import_module(module)
    _loaded = True


def find_spec(text: str) -> ClassifierSpec | None:
    """The spec that loads ``text``, or ``None``."""
    _load_providers()
    with _LOCK:
        specs = list(_SPECS.values())
    for spec in specs:
        if spec.matches(text):
            return spec
    return None


def registered_names() -> list[str]:
    """Every name the registered specs know (prefix specs list their known names)."""
    _load_providers()
    with _LOCK:
        specs = list(_SPECS.values())
    names: list[str] = []
    for spec in specs:
        names.extend(spec.names if spec.prefix else (spec.name,))
    return names
