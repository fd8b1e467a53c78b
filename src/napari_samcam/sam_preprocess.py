"""Contrast pre-processing of the image SAM sees: CLAHE and gamma, by name.

A pre-processing is named by a string of steps joined by ``+``, applied in order to the
``[0, 1]`` image (after windowing, before SAM's own resizing):

``none``
    nothing (the default).
``clahe`` or ``clahe:<clip>``
    contrast-limited adaptive histogram equalization
    (:func:`skimage.exposure.equalize_adapthist`, clip limit 0.01 by default, tiles of 1/8 of the
    image side), per channel.
``gamma:<g>``
    ``x ** g``: ``g < 1`` brightens dark tissue, ``g > 1`` darkens it.

e.g. ``"clahe"``, ``"gamma:0.5"``, ``"clahe+gamma:0.8"``. The name is part of the embedding cache
key and of each region's prompt (``"preprocess"``), so results say how they were made.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["PREPROCESS_EXAMPLES", "apply_preprocess", "canonical_name", "parse_preprocess"]

#: Names shown in the CLI help and the widget.
PREPROCESS_EXAMPLES = ("none", "clahe", "gamma:0.5", "gamma:2", "clahe+gamma:0.8")


def parse_preprocess(name: str | None) -> tuple[tuple[str, float], ...]:
    """``"clahe+gamma:0.5"`` -> ``(("clahe", 0.01), ("gamma", 0.5))``; ``None``/``"none"`` -> ().

    Raises
    ------
    InputError
        An unknown step or a bad parameter.
    """
    if name is None or str(name).strip().lower() in ("", "none"):
        return ()
    steps = []
    for part in str(name).lower().split("+"):
        kind, _, value = part.strip().partition(":")
        try:
            number = float(value) if value else None
        except ValueError:
            number = None  # reported below
        if kind == "clahe" and (not value or (number is not None and 0 < number <= 1)):
            steps.append(("clahe", 0.01 if number is None else number))
        elif kind == "gamma" and number is not None and number > 0:
            steps.append(("gamma", number))
        else:
            raise InputError(
                f"SAM pre-processing {name!r}: step {part!r} is not 'clahe', 'clahe:<clip in "
                "(0, 1]>' or 'gamma:<g > 0>'; e.g. 'clahe', 'gamma:0.5', 'clahe+gamma:0.8' "
                "(CLI: --sam-preprocess NAME)."
            )
    return tuple(steps)


def canonical_name(name: str | None) -> str | None:
    """The normalised name (``None`` for no pre-processing), as recorded in provenance."""
    steps = parse_preprocess(name)
    if not steps:
        return None
    return "+".join(f"{kind}:{value:g}" for kind, value in steps)


def apply_preprocess(unit: np.ndarray, name: str | None) -> np.ndarray:
    """Apply the named pre-processing to a ``[0, 1]`` float image (``(H, W)`` or ``(H, W, C)``).

    Returns float32 in ``[0, 1]`` (the input itself when there is nothing to do).
    """
    steps = parse_preprocess(name)
    if not steps:
        return unit
    from skimage.exposure import equalize_adapthist

    out = np.clip(np.asarray(unit, dtype=np.float64), 0.0, 1.0)
    for kind, value in steps:
        if kind == "clahe":
            if out.ndim == 3:
                out = np.stack(
                    [
                        equalize_adapthist(out[..., c], clip_limit=value)
                        for c in range(out.shape[-1])
                    ],
                    axis=-1,
                )
            else:
                out = equalize_adapthist(out, clip_limit=value)
        else:
            out = out**value
    return out.astype(np.float32)
