"""What a user can choose in a session: prompt kinds, built-in classifiers, text prompts."""

from __future__ import annotations

import sys

#: Prompt kinds the session understands.
PROMPT_KINDS = ("boxes", "points", "text", "saliency")

#: Region source recorded for each prompt kind.
SOURCE_OF_PROMPT_KIND = {
    "boxes": "sam-box",
    "points": "sam-points",
    "text": "sam-text",
    "saliency": "sam-saliency-box",
}

#: The ``target`` that asks for the top-scoring class even when the classifier declares a
#: finding class (``None``, the default, explains the finding class then).
TOP_CLASS = "top"

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
    # the CLIP module itself, not napari_samcam.text, which loads torch (seconds)
    from .._clip import clip_available as check

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


def explain_target(classifier, target):
    """The class to explain for a session's ``target`` setting (``None``: the top class).

    ``None`` means the classifier's finding class when it declares one (the built-ins:
    ``"lesion"``; a localization check is about the finding's evidence, not about whichever
    class scores highest), else the top-scoring class; :data:`TOP_CLASS` always means the top
    class; anything else is a class name or index.
    """
    if target == TOP_CLASS:
        return None
    if target is None:
        finding = getattr(classifier, "finding_class", None)
        return finding if finding in (classifier.class_names or ()) else None
    return target
