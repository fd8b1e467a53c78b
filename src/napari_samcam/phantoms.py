"""Phantom lesion benchmark: real radiograph backgrounds with synthetic lesions of known extent.

Every case is a 2-D grayscale image built from one of the public test images shipped with
``pydicom-data`` (a PA chest radiograph first and foremost, plus an extremity radiograph and a
head CT slice), cropped, flipped, rotated and re-windowed at random. A chosen fraction of the
cases gets a synthetic lesion inside the body (inside the lung fields on the chest film): a round
nodule with soft edges or an irregular opacity. Each case carries the exact lesion mask and a
human-style box annotation (the lesion's bounding box plus a random margin and a few pixels of
jitter), so saliency localization can be scored against a ground truth.

Optionally a burned-in corner marker (a bright tag with a block letter, as radiographers' side
markers look) is drawn on some images; its presence can be tied to the label to build a
shortcut ("Clever Hans") data set.

With ``readers=N`` each lesion is also boxed as N independent readers would box it
(:func:`simulated_reader_boxes`: jittered, loose, occasionally missed), in the manifest's
``readers`` column, so the readers' own disagreement can be measured where the truth is known.

Boxes are ``(row0, col0, row1, col1)`` with the end exclusive, in pixels of the image.

Note that the chest film itself shows rounded opacities of its own; "negative" here means
"no synthetic lesion".

Usage::

    from napari_samcam.phantoms import generate_phantoms, write_phantoms

    cases = generate_phantoms(20, seed=1)           # in memory
    write_phantoms(200, "phantoms/", seed=0)        # PNG files + manifest.csv
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._folders import check_writable
from .errors import InputError, OutputExistsError
from .phantom_backgrounds import BACKGROUNDS, augment_geometry, background, warp
from .phantom_shapes import CHEST_ONLY_SHAPES, SHAPE_CLASSES, draw_shape, lesion_patch

__all__ = [
    "BACKGROUNDS",
    "MANIFEST_COLUMNS",
    "MARKER_MODES",
    "PhantomCase",
    "generate_phantoms",
    "write_phantoms",
]

Box = tuple[int, int, int, int]

#: Default share of each background among the cases.
DEFAULT_BACKGROUND_WEIGHTS: dict[str, float] = {"chest": 0.7, "extremity": 0.2, "head-ct": 0.1}

#: Marker modes -> (probability of a marker on a positive, on a negative).
MARKER_MODES: dict[str, tuple[float, float]] = {
    "none": (0.0, 0.0),
    "correlated": (0.97, 0.03),
    "random": (0.5, 0.5),
    "always": (1.0, 1.0),
}

#: Columns of ``manifest.csv``, in order.
MANIFEST_COLUMNS = (
    "image",
    "label",
    "mask",
    "box_r0",
    "box_c0",
    "box_r1",
    "box_c1",
    "split",
    "seed",
    "index",
    "marker",
    "marker_r0",
    "marker_c0",
    "marker_r1",
    "marker_c1",
    "background",
    "lesion_kind",
    "lesion_contrast",
    "lesion_radius",
)

MANIFEST_NAME = "manifest.csv"

# Lesion radius range in pixels of a 512-pixel image (scaled with ``size``).
DEFAULT_RADIUS = (8.0, 40.0)
# Peak added intensity of a lesion, in the [0, 1] units of the background.
DEFAULT_CONTRAST = (0.12, 0.3)

# 5x7 block letters for the burned-in marker.
_GLYPHS = {
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
}


@dataclass
class PhantomCase:
    """One phantom image with its ground truth.

    Attributes
    ----------
    index : int
        Position in the generated series.
    image : numpy.ndarray
        uint8 ``(size, size)`` grayscale, bright = dense (what is written to the PNG).
    label : int
        1 if a synthetic lesion was added, else 0.
    mask : numpy.ndarray
        bool ``(size, size)``: the lesion's pixels (all False for negatives).
    box : tuple of int or None
        Human-style annotation ``(row0, col0, row1, col1)``, end exclusive; None for negatives.
    body : numpy.ndarray
        bool ``(size, size)``: pixels inside the body (not air, not collimator, not text).
    marker_box : tuple of int or None
        Box of the burned-in corner marker, when one was drawn.
    background : str
        Key of :data:`BACKGROUNDS`.
    lesion_kind : str or None
        ``"nodule"`` or ``"irregular"``; with ``shapes``, the shape class
        (:data:`napari_samcam.phantom_shapes.SHAPE_CLASSES`).
    lesion_contrast : float or None
        Peak intensity added by the lesion (fraction of the [0, 1] range).
    lesion_radius : float or None
        Mean lesion radius in pixels.
    clean : numpy.ndarray or None
        For positives, the very same image without the lesion (same crop, noise and marker);
        None for negatives, whose ``image`` already is lesion-free.
    seed : int
        The series seed.
    """

    index: int
    image: np.ndarray
    label: int
    mask: np.ndarray
    box: Box | None
    body: np.ndarray
    marker_box: Box | None
    background: str
    lesion_kind: str | None
    lesion_contrast: float | None
    lesion_radius: float | None
    clean: np.ndarray | None
    seed: int

    @property
    def has_marker(self) -> bool:
        """Whether a corner marker is burned in."""
        return self.marker_box is not None


# --------------------------------------------------------------------------------------------
# Lesions and markers


def _marker_tag(rng: np.random.Generator, size: int) -> np.ndarray:
    """A bright tag with a dark block letter, as float32 values in [0, 1]."""
    letter = _GLYPHS["R" if rng.random() < 0.5 else "L"]
    bitmap = np.array([[c == "1" for c in row] for row in letter])
    height = max(12, round(rng.uniform(0.065, 0.09) * size))
    scale = max(1, int(np.floor(0.7 * height / 7)))
    glyph = np.kron(bitmap, np.ones((scale, scale), dtype=bool))
    width = max(glyph.shape[1] + 2 * max(2, scale), round(height * rng.uniform(0.75, 0.95)))
    tag = np.full((height, width), rng.uniform(0.88, 1.0), dtype=np.float32)
    r0 = (height - glyph.shape[0]) // 2
    c0 = (width - glyph.shape[1]) // 2
    ink = rng.uniform(0.0, 0.2)
    tag[r0 : r0 + glyph.shape[0], c0 : c0 + glyph.shape[1]][glyph] = ink
    return tag


def _marker_box(rng: np.random.Generator, tag_shape, size: int) -> Box:
    h, w = tag_shape
    margin_r = round(rng.uniform(0.02, 0.06) * size)
    margin_c = round(rng.uniform(0.02, 0.06) * size)
    top = rng.random() < 0.5
    left = rng.random() < 0.5
    r0 = margin_r if top else size - margin_r - h
    c0 = margin_c if left else size - margin_c - w
    return (r0, c0, r0 + h, c0 + w)


def _annotation_box(rng: np.random.Generator, mask: np.ndarray) -> Box:
    """Bounding box of ``mask`` plus a 10-25 % margin per side and a few pixels of jitter."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    h, w = r1 - r0, c1 - c0
    margins = []
    for extent in (h, w, h, w):
        pad = rng.uniform(0.10, 0.25) * extent + rng.integers(-2, 3)
        margins.append(max(1, round(pad)))
    size_r, size_c = mask.shape
    return (
        int(max(0, r0 - margins[0])),
        int(max(0, c0 - margins[1])),
        int(min(size_r, r1 + margins[2])),
        int(min(size_c, c1 + margins[3])),
    )


# --------------------------------------------------------------------------------------------
# Generation


def _check_range(value, name: str, default, low: float, high: float) -> tuple[float, float]:
    if value is None:
        return default
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}={value!r} is not a (min, max) pair; pass two numbers.") from exc
    if not (low <= a <= b <= high):
        raise InputError(f"{name}={value!r}: pass (min, max) with {low} <= min <= max <= {high}.")
    return a, b


def _marker_probabilities(marker) -> tuple[float, float]:
    if marker is None:
        return MARKER_MODES["none"]
    if isinstance(marker, str):
        if marker not in MARKER_MODES:
            raise InputError(
                f"marker={marker!r} is not a marker mode; pass None, one of "
                f"{sorted(MARKER_MODES)} or (p_positive, p_negative)."
            )
        return MARKER_MODES[marker]
    try:
        p_pos, p_neg = (float(v) for v in marker)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"marker={marker!r}: pass None, a mode name ({', '.join(MARKER_MODES)}) or "
            "(p_positive, p_negative), the probabilities of a marker on positives and negatives."
        ) from exc
    if not (0.0 <= p_pos <= 1.0 and 0.0 <= p_neg <= 1.0):
        raise InputError(f"marker={marker!r}: probabilities must lie in [0, 1].")
    return p_pos, p_neg


def check_shapes(shapes) -> tuple[str, ...] | None:
    """Validate shape class names (a list, a comma-separated string or ``"all"``)."""
    if shapes is None:
        return None
    if isinstance(shapes, str):
        shapes = list(SHAPE_CLASSES) if shapes == "all" else shapes.split(",")
    out = tuple(str(s).strip() for s in shapes)
    unknown = [s for s in out if s not in SHAPE_CLASSES]
    if not out or unknown:
        raise InputError(
            f"shapes={shapes!r}: pass shape classes from {', '.join(SHAPE_CLASSES)} (or 'all')."
        )
    return tuple(dict.fromkeys(out))


def _check_shape_backgrounds(shapes, names: list[str]) -> None:
    chest_only = [s for s in shapes or () if s in CHEST_ONLY_SHAPES]
    if chest_only and names != ["chest"]:
        raise InputError(
            f"shapes {chest_only} are drawn relative to the lungs and need the chest background "
            f"only; backgrounds={names} also holds others. Pass backgrounds=['chest'] (or leave "
            "it out)."
        )


def _background_weights(backgrounds) -> tuple[list[str], np.ndarray]:
    if backgrounds is None:
        backgrounds = DEFAULT_BACKGROUND_WEIGHTS
    if isinstance(backgrounds, str):
        backgrounds = [backgrounds]
    if isinstance(backgrounds, Mapping):
        names, weights = list(backgrounds), [float(v) for v in backgrounds.values()]
    else:
        names = list(backgrounds)
        weights = [1.0] * len(names)
    unknown = [n for n in names if n not in BACKGROUNDS]
    if not names or unknown or min(weights) < 0 or sum(weights) <= 0:
        raise InputError(
            f"backgrounds={backgrounds!r}: pass names from {sorted(BACKGROUNDS)} (a list, or a "
            "dict of non-negative weights)."
        )
    w = np.asarray(weights, dtype=np.float64)
    return names, w / w.sum()


def _render_case(
    index: int,
    label: int,
    seed: int,
    size: int,
    names: list[str],
    weights: np.ndarray,
    marker_p: tuple[float, float],
    radius_range: tuple[float, float],
    contrast_range: tuple[float, float],
    shape: str | None = None,
) -> PhantomCase:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    name = names[int(rng.choice(len(names), p=weights))]
    work, work_body, work_place = background(name, size)
    with_marker = rng.random() < (marker_p[0] if label else marker_p[1])
    tag = _marker_tag(rng, size) if with_marker else None
    marker_box = _marker_box(rng, tag.shape, size) if tag is not None else None

    for _attempt in range(20):
        matrix = augment_geometry(rng, name, work.shape, size)
        base = warp(work, matrix, size, order=1, mode="reflect")
        body = warp(work_body.astype(np.float32), matrix, size, order=0, mode="constant") > 0.5
        place = warp(work_place.astype(np.float32), matrix, size, order=0, mode="constant") > 0.5
        if marker_box is not None:
            r0, c0, r1, c1 = marker_box
            pad = max(4, size // 32)
            place[max(0, r0 - pad) : r1 + pad, max(0, c0 - pad) : c1 + pad] = False
        if not label or place.sum() > 0.01 * size * size:
            break

    mask = np.zeros((size, size), dtype=bool)
    lesion = np.zeros((size, size), dtype=np.float32)
    kind = contrast = mean_radius = box = None
    drawn = None
    if label and shape not in (None, "compact"):
        drawn = draw_shape(rng, shape, base, body, place)
    if drawn is not None:
        lesion, mask, contrast = drawn
        kind = shape
        mean_radius = float(np.sqrt(mask.sum() / np.pi))
    elif label:
        kind = "nodule" if rng.random() < 0.5 else "irregular"
        lo, hi = (v * size / 512.0 for v in radius_range)
        radius = float(np.exp(rng.uniform(np.log(max(lo, 1.5)), np.log(max(hi, 1.5)))))
        contrast = float(rng.uniform(*contrast_range))
        candidates = np.argwhere(place if place.any() else body)
        if len(candidates) == 0:
            candidates = np.argwhere(np.ones((size, size), dtype=bool))
        placed = False
        for attempt in range(60):
            if attempt and attempt % 15 == 0:
                radius *= 0.8
            profile, pmask = lesion_patch(rng, kind, radius)
            half = profile.shape[0] // 2
            r, c = candidates[int(rng.integers(len(candidates)))]
            border = half + 2
            if not (border <= r < size - border and border <= c < size - border):
                continue
            sl = (slice(r - half, r + half + 1), slice(c - half, c + half + 1))
            if not body[sl][pmask].all():
                continue
            if place.any() and place[sl][pmask].mean() < 0.6:
                continue
            placed = True
            break
        if not placed:
            # Fall back to the deepest point of the body, smallest lesion of the range.
            inside = body.copy()
            inside[:, [0, -1]] = inside[[0, -1], :] = False
            depth = ndi.distance_transform_edt(inside)
            r, c = np.unravel_index(int(np.argmax(depth)), depth.shape)
            radius = float(min(max(lo, 1.5), max(depth[r, c] / 1.8 - 2, 1.0)))
            profile, pmask = lesion_patch(rng, "nodule", radius)
            half = profile.shape[0] // 2
            r = int(np.clip(r, half, size - half - 1))
            c = int(np.clip(c, half, size - half - 1))
            sl = (slice(r - half, r + half + 1), slice(c - half, c + half + 1))
            pmask &= body[sl]
        lesion[sl] = profile
        mask[sl] = pmask
        mean_radius = float(np.sqrt(pmask.sum() / np.pi))
        if shape is not None:
            kind = "compact"  # also when a shape did not fit this background

    # intensity augmentation, applied the same way to the image with and without the lesion
    gamma = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    gain = rng.uniform(0.88, 1.08)
    bias = rng.uniform(-0.05, 0.05)
    noise_sigma = rng.uniform(0.004, 0.02)
    noise = rng.standard_normal((size, size)).astype(np.float32) * noise_sigma

    def finish(values: np.ndarray) -> np.ndarray:
        out = np.clip(values, 0.0, 1.0) ** gamma * gain + bias + noise
        if marker_box is not None:
            r0, c0, r1, c1 = marker_box
            out[r0:r1, c0:c1] = tag
        return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)

    image = finish(base + contrast * lesion if label else base)
    clean = finish(base) if label else None
    if label:
        box = _annotation_box(rng, mask)
    return PhantomCase(
        index=index,
        image=image,
        label=int(label),
        mask=mask,
        box=box,
        body=body,
        marker_box=marker_box,
        background=name,
        lesion_kind=kind,
        lesion_contrast=contrast,
        lesion_radius=mean_radius,
        clean=clean,
        seed=seed,
    )


def generate_phantoms(
    n: int,
    *,
    seed: int = 0,
    size: int = 512,
    positive_fraction: float = 0.5,
    marker: str | tuple[float, float] | None = None,
    lesion_radius: tuple[float, float] | None = None,
    lesion_contrast: tuple[float, float] | None = None,
    backgrounds: Sequence[str] | Mapping[str, float] | None = None,
    shapes: Sequence[str] | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[PhantomCase]:
    """Generate ``n`` phantom cases in memory.

    Parameters
    ----------
    n : int
        Number of images (at least 1).
    seed : int
        Non-negative seed; the same arguments always give identical cases.
    size : int
        Side of the square images in pixels (at least 64).
    positive_fraction : float
        Share of images with a lesion; exactly ``round(n * positive_fraction)`` positives, in
        shuffled order.
    marker : None, str or (float, float)
        Burned-in corner marker. None: never. ``"correlated"``: on 97 % of positives and 3 % of
        negatives. ``"random"``: on half the images regardless of the label. ``"always"``: on
        every image. Or ``(p_positive, p_negative)``: the probability of a marker on a positive
        and on a negative image.
    lesion_radius : (float, float), optional
        Lesion radius range in pixels *of a 512-pixel image* (scaled with ``size``); default
        ``(8, 40)``, sampled log-uniformly.
    lesion_contrast : (float, float), optional
        Range of the lesion's peak added intensity on the [0, 1] scale before the random gamma
        and gain; default ``(0.12, 0.3)``. Lower values make lesions harder to see.
    backgrounds : list of str or dict, optional
        Background names (:data:`BACKGROUNDS`) to draw from, or a dict of weights. Default:
        70 % chest, 20 % extremity, 10 % head CT; chest only when ``shapes`` is given.
    shapes : list of str or "all", optional
        Lesion shape classes (:data:`napari_samcam.phantom_shapes.SHAPE_CLASSES`: compact,
        diffuse, heart, tube, multipart, rib-nodule), given to the positives in turn, so each
        class gets an equal share; ``lesion_kind`` then names the class. None (default): the
        original compact lesions only (``lesion_kind`` ``"nodule"`` or ``"irregular"``), drawn
        exactly as before. A shape that does not fit a case's background is drawn as
        ``"compact"``.
    progress : callable, optional
        Called as ``progress(done, total)`` after each case.

    Returns
    -------
    list of PhantomCase
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n={n!r}: pass the number of images as a positive integer.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed={seed!r}: pass a non-negative integer.")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 64:
        raise InputError(f"size={size!r}: pass an integer side length of at least 64 pixels.")
    try:
        positive_fraction = float(positive_fraction)
    except (TypeError, ValueError) as exc:
        raise InputError(f"positive_fraction={positive_fraction!r}: pass a number.") from exc
    if not 0.0 <= positive_fraction <= 1.0:
        raise InputError(f"positive_fraction={positive_fraction!r}: pass a value in [0, 1].")
    marker_p = _marker_probabilities(marker)
    radius_range = _check_range(lesion_radius, "lesion_radius", DEFAULT_RADIUS, 1.0, 200.0)
    contrast_range = _check_range(lesion_contrast, "lesion_contrast", DEFAULT_CONTRAST, 0.0, 1.0)
    shapes = check_shapes(shapes)
    if shapes is not None and backgrounds is None:
        backgrounds = ["chest"]
    names, weights = _background_weights(backgrounds)
    _check_shape_backgrounds(shapes, names)
    n, seed, size = int(n), int(seed), int(size)

    n_pos = round(n * positive_fraction)
    labels = np.zeros(n, dtype=int)
    labels[:n_pos] = 1
    labels = np.random.default_rng(np.random.SeedSequence([seed, 2**31])).permutation(labels)

    cases = []
    rank = np.cumsum(labels) - 1  # each positive's position among the positives
    for i in range(n):
        shape = None if shapes is None else shapes[int(rank[i]) % len(shapes)]
        cases.append(
            _render_case(
                i,
                int(labels[i]),
                seed,
                size,
                names,
                weights,
                marker_p,
                radius_range,
                contrast_range,
                shape,
            )
        )
        if progress is not None:
            progress(i + 1, n)
    return cases


# --------------------------------------------------------------------------------------------
# Simulated readers

#: A simulated reader misses a lesion with this probability.
READER_MISS_RATE = 0.1
#: Margin a simulated reader adds per side, as a fraction of the lesion's extent.
READER_MARGIN = (0.0, 0.4)
#: Standard deviation of a simulated reader's per-side jitter, as a fraction of the extent.
READER_JITTER = 0.08


def _reader_names(n_readers) -> list[str]:
    if isinstance(n_readers, bool) or not isinstance(n_readers, (int, np.integer)):
        raise InputError(f"readers={n_readers!r}: pass a whole number of readers.")
    if not 0 <= int(n_readers) <= 26:
        raise InputError(f"readers={n_readers!r}: pass 0 (none) to 26 simulated readers.")
    return [f"R{k + 1}" for k in range(int(n_readers))]


def simulated_reader_boxes(case: PhantomCase, n_readers: int) -> dict[str, list[Box]]:
    """How ``n_readers`` independent readers box the lesion of ``case``: ``{"R1": [box], ...}``.

    Each reader misses the lesion with probability :data:`READER_MISS_RATE` (no box);
    otherwise draws the lesion's bounding box loosened by a margin per side drawn from
    :data:`READER_MARGIN` and shifted per side by Gaussian jitter of :data:`READER_JITTER`
    (fractions of the lesion's height or width), clipped to the image and at least one pixel
    wide. Negatives get no boxes. The draw depends on the case's seed and index only.
    """
    names = _reader_names(n_readers)
    if not case.label:
        return {name: [] for name in names}
    rng = np.random.default_rng(np.random.SeedSequence([case.seed, case.index, 7919]))
    rows = np.flatnonzero(case.mask.any(axis=1))
    cols = np.flatnonzero(case.mask.any(axis=0))
    truth = np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], dtype=np.float64)
    extent = np.array([truth[2] - truth[0], truth[3] - truth[1]] * 2)
    outward = np.array([-1.0, -1.0, 1.0, 1.0])
    readers: dict[str, list[Box]] = {}
    for name in names:
        margin = rng.uniform(*READER_MARGIN, size=4)
        jitter = rng.normal(0.0, READER_JITTER, size=4)
        missed = rng.random() < READER_MISS_RATE
        if missed:
            readers[name] = []
            continue
        box = np.round(truth + extent * (outward * margin + jitter)).astype(int)
        r0, c0 = max(int(box[0]), 0), max(int(box[1]), 0)
        r1 = min(max(int(box[2]), r0 + 1), case.mask.shape[0])
        c1 = min(max(int(box[3]), c0 + 1), case.mask.shape[1])
        readers[name] = [(min(r0, r1 - 1), min(c0, c1 - 1), r1, c1)]
    return readers


def _readers_cell(case: PhantomCase, n_readers: int) -> str:
    if not case.label:
        return ""
    boxes = simulated_reader_boxes(case, n_readers)
    return json.dumps({name: [list(b) for b in found] for name, found in boxes.items()})


# --------------------------------------------------------------------------------------------
# Writing


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _manifest_row(case: PhantomCase, image_rel: str, mask_rel: str, split: str) -> dict:
    box = case.box or (None,) * 4
    mbox = case.marker_box or (None,) * 4
    return {
        "image": image_rel,
        "label": case.label,
        "mask": mask_rel,
        "box_r0": _fmt(box[0]),
        "box_c0": _fmt(box[1]),
        "box_r1": _fmt(box[2]),
        "box_c1": _fmt(box[3]),
        "split": split,
        "seed": case.seed,
        "index": case.index,
        "marker": int(case.has_marker),
        "marker_r0": _fmt(mbox[0]),
        "marker_c0": _fmt(mbox[1]),
        "marker_r1": _fmt(mbox[2]),
        "marker_c1": _fmt(mbox[3]),
        "background": case.background,
        "lesion_kind": case.lesion_kind or "",
        "lesion_contrast": _fmt(case.lesion_contrast),
        "lesion_radius": _fmt(case.lesion_radius),
    }


def write_phantoms(
    n: int,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    size: int = 512,
    positive_fraction: float = 0.5,
    marker: str | tuple[float, float] | None = None,
    lesion_radius: tuple[float, float] | None = None,
    lesion_contrast: tuple[float, float] | None = None,
    backgrounds: Sequence[str] | Mapping[str, float] | None = None,
    shapes: Sequence[str] | str | None = None,
    split: str = "test",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    readers: int = 0,
) -> Path:
    """Generate ``n`` phantoms and write them to ``out`` as PNG files plus ``manifest.csv``.

    Layout: ``out/images/phantom_00000.png`` (8-bit grayscale), ``out/masks/phantom_00000.png``
    (0/255, positives only) and ``out/manifest.csv`` with the columns of
    :data:`MANIFEST_COLUMNS`; paths in the manifest are relative to it and use ``/``. Boxes are
    ``(box_r0, box_c0, box_r1, box_c1)``, end exclusive; box and mask cells are empty for
    negatives, marker box cells empty without a marker.

    Everything is written into a hidden temporary folder first and moved into place at the end,
    the manifest last, so an interrupted run leaves no manifest behind.

    Parameters
    ----------
    n, seed, size, positive_fraction, marker, lesion_radius, lesion_contrast, backgrounds, shapes
        As for :func:`generate_phantoms`.
    out : path
        Output folder; created if needed.
    split : str
        Value of the manifest's ``split`` column.
    overwrite : bool
        Replace an existing phantom set (its manifest, ``images/`` and ``masks/`` folders).
    progress : callable, optional
        ``progress(done, total)`` after each case.
    readers : int
        Simulated readers per lesion (:func:`simulated_reader_boxes`), written as JSON in an
        extra ``readers`` column (region source ``readers`` of ``samcam evaluate``); 0: none.

    Returns
    -------
    pathlib.Path
        The manifest's path.

    Raises
    ------
    OutputExistsError
        ``out`` already holds a ``manifest.csv`` and ``overwrite`` is False.
    """
    import imageio.v3 as iio

    out = Path(out)
    manifest = out / MANIFEST_NAME
    if out.exists() and not out.is_dir():
        raise InputError(f"out={str(out)!r} is a file; pass a folder for the phantom set.")
    check_writable(out)
    if manifest.exists() and not overwrite:
        raise OutputExistsError(
            f"{str(manifest)!r} already exists; pass overwrite=True (CLI: --overwrite) to replace "
            "that phantom set, or choose another output folder."
        )
    if not isinstance(split, str) or not split or "," in split or "\n" in split:
        raise InputError(f"split={split!r}: pass a non-empty name such as 'test' or 'train'.")
    if not overwrite:
        for sub in ("images", "masks"):
            if (out / sub).exists():
                raise OutputExistsError(
                    f"{str(out / sub)!r} already exists; pass overwrite=True (CLI: --overwrite) "
                    "or choose another output folder."
                )
    if readers:
        _reader_names(readers)  # checked before anything is generated
    cases = generate_phantoms(
        n,
        seed=seed,
        size=size,
        positive_fraction=positive_fraction,
        marker=marker,
        lesion_radius=lesion_radius,
        lesion_contrast=lesion_contrast,
        backgrounds=backgrounds,
        shapes=shapes,
        progress=progress,
    )
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".phantoms-tmp-", dir=out))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        rows = []
        for case in cases:
            stem = f"phantom_{case.index:05d}"
            image_rel = f"images/{stem}.png"
            iio.imwrite(tmp / image_rel, case.image, extension=".png")
            mask_rel = ""
            if case.label:
                mask_rel = f"masks/{stem}.png"
                iio.imwrite(
                    tmp / mask_rel, case.mask.astype(np.uint8) * np.uint8(255), extension=".png"
                )
            rows.append(_manifest_row(case, image_rel, mask_rel, split))
            if readers:
                rows[-1]["readers"] = _readers_cell(case, readers)
        columns = list(MANIFEST_COLUMNS) + (["readers"] if readers else [])
        with open(tmp / MANIFEST_NAME, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        # Move into place: the old set (if overwriting) goes first, the manifest comes last.
        if manifest.exists():
            manifest.unlink()
        for sub in ("images", "masks"):
            target = out / sub
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp / sub, target)
        os.replace(tmp / MANIFEST_NAME, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest
