"""What a user can choose in a session: prompt kinds, built-in classifiers, text prompts."""

from __future__ import annotations

import sys

#: Prompt kinds the session understands.
PROMPT_KINDS = ("boxes", "points", "text", "saliency")

#: Region source recorded for each prompt kind.
REGION_SOURCES = {
    "boxes": "sam-box",
    "points": "sam-points",
    "text": "sam-text",
    "saliency": "sam-saliency-box",
}

#: Built-in classifier names offered first (the registry may hold more).
BUILTIN_CLASSIFIER_NAMES = ("lesion-detector", "shortcut-detector")


def builtin_classifier_names() -> tuple[str, ...]:
    """Names of the classifiers shipped with the package.

    The registry module imports torch (seconds); when it is not loaded yet the known names are
    returned instead, so that opening the widget stays fast.
    """
    registry = sys.modules.get("napari_samcam.builtin_classifiers")
    names = getattr(registry, "BUILTIN_CLASSIFIERS", None)
    return tuple(names) if names else BUILTIN_CLASSIFIER_NAMES


def clip_status(spec: str | None) -> tuple[bool, str]:
    """Whether text prompts can run with CLIP model ``spec``, and a message saying why not."""
    try:
        from .. import text as text_module
    except ImportError:
        return False, (
            "Text prompts need the CLIP support of napari-samcam (napari_samcam.text), which "
            "this installation does not have; update napari-samcam."
        )
    check = getattr(text_module, "clip_available", None)
    if check is None:
        return False, "Text prompts are not available in this version of napari-samcam."
    try:
        ok, message = check(spec or None)
    except Exception as exc:  # a broken check must not break the widget
        return False, f"CLIP check failed: {exc}"
    return bool(ok), str(message)


def guess_prompt(boxes, points, text, shapes, points_layer) -> str:
    """The prompt kind the arguments of a segmentation call imply."""
    if text is not None:
        return "text"
    if points is not None or points_layer is not None:
        return "points"
    return "boxes"
