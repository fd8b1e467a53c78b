"""Weights out of a pickled torch module (``torch.save(model)``), read as data only.

Some published files (torchxrayvision's DenseNets) are whole pickled modules rather than state
dicts. Unpickling a module the usual way calls its class; allowing the class in
``torch.load(weights_only=True)`` lets a file *call* it with any arguments (pickle's ``REDUCE``),
and a class whose ``__init__`` opens, downloads or imports something then runs that. So no real
class is allowed here: every module class the file names is read as :class:`ModuleRecord`, a
plain record that keeps the attributes the file stores and runs nothing, whatever arguments the
file passes. The tensors come from torch's own weights-only rebuild functions, and
:func:`records_state_dict` walks the records' ``_parameters`` / ``_buffers`` / ``_modules`` into
a state dict, which the caller loads into a model it built itself.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

__all__ = ["ModuleRecord", "module_record_globals", "records_state_dict"]


class ModuleRecord:
    """What a pickled module becomes: the attributes the file stores, nothing else.

    Calling it (pickle ``REDUCE``) or creating it (``NEWOBJ``) with any arguments only makes
    an empty record; ``__setstate__`` (pickle ``BUILD``) keeps a dict state and ignores
    anything else. No file, network or import is touched.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = state[0]
        self.state = dict(state) if isinstance(state, dict) else {}


def module_record_globals(names: Iterable[str]) -> list[tuple[type, str]]:
    """``torch.serialization.safe_globals`` entries reading each class ``name`` (its full
    dotted path, e.g. ``"torch.nn.modules.conv.Conv2d"``) as :class:`ModuleRecord`."""
    return [(ModuleRecord, name) for name in names]


def records_state_dict(root: Any, *, where: str) -> dict:
    """The state dict of a tree of :class:`ModuleRecord` (parameters and persistent buffers).

    Parameters
    ----------
    root : ModuleRecord
        What the file unpickled to.
    where : str
        The file, for messages.

    Raises
    ------
    ValueError
        ``root`` is not a module record, or its tree holds no tensor.
    """
    import torch

    if not isinstance(root, ModuleRecord):
        raise ValueError(f"{where} holds a {type(root).__name__}, not a pickled module")
    state: dict = collections.OrderedDict()
    pending = [("", root)]
    seen: set[int] = set()
    while pending:  # iterative: a deep or cyclic tree cannot exhaust the stack
        prefix, record = pending.pop()
        if id(record) in seen:
            continue
        seen.add(id(record))
        attributes = record.state
        skipped = attributes.get("_non_persistent_buffers_set") or ()
        for group in ("_parameters", "_buffers"):
            entries = attributes.get(group) or {}
            if not isinstance(entries, dict):
                raise ValueError(f"{where}: {prefix or 'the model'}'s {group} is not a dict")
            for name, value in entries.items():
                if value is None or (group == "_buffers" and name in skipped):
                    continue
                if not isinstance(value, torch.Tensor):
                    raise ValueError(f"{where}: {prefix}{name} is not a tensor")
                state[f"{prefix}{name}"] = value
        children = attributes.get("_modules") or {}
        if not isinstance(children, dict):
            raise ValueError(f"{where}: {prefix or 'the model'}'s _modules is not a dict")
        for name, child in reversed(list(children.items())):
            if child is None:
                continue
            if not isinstance(child, ModuleRecord):
                raise ValueError(f"{where}: {prefix}{name} is not a module")
            pending.append((f"{prefix}{name}.", child))
    if not state:
        raise ValueError(f"{where} holds no weights")
    return dict(state)
