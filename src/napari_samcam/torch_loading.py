"""Weights from files: a state dict loaded safely, and loaded into a module strictly.

Both classifiers and Segment Anything models load their weights here. Torch is imported inside
the functions so that importing this module stays free of it.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

from ._files import check_zip_sizes, require_regular_file
from .errors import CheckpointError, InputError, UntrustedFileError
from .model_files import TRUST_FIX, first_line, refused_global
from .module_pickles import ModuleRecord, records_state_dict

__all__ = ["load_checkpoint", "load_state_strict"]


def load_checkpoint(path: str | Path, *, trust_checkpoint: bool = False) -> dict:
    """Load a state dict from ``path`` safely (``weights_only=True``).

    Accepts a plain state dict or one nested under ``state_dict`` / ``model``; strips a
    ``module.`` prefix left by ``DataParallel``.

    Raises
    ------
    CheckpointError
        The file is missing, or needs arbitrary unpickling and ``trust_checkpoint`` is False.
    """
    import torch

    path = require_regular_file(path, "checkpoint", CheckpointError)
    if zipfile.is_zipfile(path):  # torch.save's format: records are stored, not compressed
        try:
            check_zip_sizes(
                path,
                max(path.stat().st_size, 1 << 20),
                what="checkpoint",
                fix="A torch.save file stores its tensors uncompressed; save it again.",
            )
        except InputError as exc:
            raise CheckpointError(str(exc)) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as exc:
        raise UntrustedFileError(
            f"checkpoint {str(path)!r} holds Python objects beyond tensors and was not loaded, "
            "because unpickling them can run any code their author put there. Re-save it as a "
            f"state dict (torch.save(model.state_dict(), path)). {TRUST_FIX}."
            + refused_global(exc)
        ) from exc
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} could not be read by torch.load ({first_line(exc)})."
        ) from exc
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if isinstance(state, ModuleRecord):  # a pickled module read as data
        try:
            state = records_state_dict(state, where=f"checkpoint {str(path)!r}")
        except ValueError as exc:
            raise CheckpointError(f"{exc}; save the weights as a state dict.") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds a {type(state).__name__}, not a state dict."
        )
    return {re.sub(r"^module\.", "", k): v for k, v in state.items()}


def load_state_strict(module, state: dict, *, what: str) -> None:
    """``module.load_state_dict(state)`` with an error that lists what does not fit."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or mismatched:

        def show(keys):
            return ", ".join(keys[:5]) + (f" … ({len(keys)} in all)" if len(keys) > 5 else "")

        parts = [
            f"{label}: {show(keys)}"
            for label, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches (checkpoint vs model)", mismatched),
            )
            if keys
        ]
        raise CheckpointError(
            f"{what} does not fit the architecture: "
            + "; ".join(parts)
            + ". Check the architecture name and the number of classes."
        )
    module.load_state_dict(state, strict=True)
