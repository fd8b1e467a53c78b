"""Lesion shapes of real chest findings for the phantom benchmark, each with its exact mask.

A compact blob is the one shape SAM handles well; real findings are often not compact. Each
shape class below draws a lesion's thickness profile (peak 1) and its exact mask on a full
``(size, size)`` phantom, given the phantom's body and lung masks:

================  =================================================================================
class             lesion
================  =================================================================================
``compact``       a round nodule or an irregular opacity of radius 8-40 px (per 512 px), the
                  original phantom lesion
``diffuse``       a large, faint airspace opacity (radius 40-80 px) with very soft edges
``heart``         an enlarged heart silhouette: a wide, asymmetric lobe low between the lungs
``tube``          a thin bright tube or line (2-5 px wide) running from above the lung into it
``multipart``     2-4 small irregular opacities close together, annotated by one box
``rib-nodule``    a small nodule (radius 5-11 px) on a rib edge (strong intensity gradient)
================  =================================================================================

Sizes are in pixels of a 512-pixel image and scale with the phantom's side.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["CHEST_ONLY_SHAPES", "SHAPE_CLASSES", "draw_shape", "lesion_patch"]

#: Shape class -> one-line description.
SHAPE_CLASSES: dict[str, str] = {
    "compact": "round nodule or irregular opacity, radius 8-40 px (the original lesion)",
    "diffuse": "large faint airspace opacity with very soft edges, radius 40-80 px",
    "heart": "enlarged heart silhouette, wide and asymmetric, low between the lungs",
    "tube": "thin bright tube or line, 2-5 px wide, from above the lung into it",
    "multipart": "2-4 small irregular opacities close together under one box",
    "rib-nodule": "small nodule, radius 5-11 px, on a rib edge",
}

#: Classes that need a chest background (they are placed relative to the lungs or ribs).
CHEST_ONLY_SHAPES = ("heart", "tube", "rib-nodule")

# Peak added intensity per class, in the [0, 1] units of the background.
_CONTRAST = {
    "diffuse": (0.08, 0.16),
    "heart": (0.10, 0.20),
    "tube": (0.30, 0.50),
    "multipart": (0.12, 0.28),
    "rib-nodule": (0.15, 0.30),
}


class _Canvas:
    """Full-size arrays a shape is drawn into, with the phantom's body and placement masks."""

    def __init__(self, size: int, body: np.ndarray, place: np.ndarray, base: np.ndarray):
        self.size, self.body, self.base = size, body, base
        self.place = place if place.any() else body
        self.scale = size / 512.0

    def paste(self, profile: np.ndarray, pmask: np.ndarray, centre) -> tuple | None:
        """``(profile, mask)`` at full size with the patch centred on ``centre``, or None when
        the patch would leave the image or the body."""
        half = profile.shape[0] // 2
        r, c = (int(v) for v in centre)
        if not (half + 2 <= r < self.size - half - 2 and half + 2 <= c < self.size - half - 2):
            return None
        sl = (slice(r - half, r + half + 1), slice(c - half, c + half + 1))
        if not self.body[sl][pmask].all():
            return None
        full = np.zeros((self.size, self.size), dtype=np.float32)
        mask = np.zeros((self.size, self.size), dtype=bool)
        full[sl], mask[sl] = profile, pmask
        return full, mask


def lesion_patch(
    rng: np.random.Generator, kind: str, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """A lesion's thickness profile (peak 1) and its mask on a square patch centred on it."""
    from scipy import ndimage as ndi  # scipy stays out of the CLI's start

    half = int(np.ceil(radius * 1.7)) + 3
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    yy += rng.uniform(-0.5, 0.5)
    xx += rng.uniform(-0.5, 0.5)
    theta = np.arctan2(yy, xx)
    dist = np.hypot(yy, xx)
    if kind == "nodule":
        aspect = rng.uniform(0.85, 1.0)
        phi = rng.uniform(0, np.pi)
        u = xx * np.cos(phi) + yy * np.sin(phi)
        v = (-xx * np.sin(phi) + yy * np.cos(phi)) / aspect
        rel = np.hypot(u, v) / radius
        texture = 1.0
        edge = rng.uniform(0.06, 0.14) * radius
    else:
        contour = np.ones_like(theta)
        for k in range(2, 7):
            amp = rng.uniform(0.0, 0.22) / k**0.7
            contour += amp * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        contour = np.maximum(contour, 0.45)
        aspect = rng.uniform(0.6, 1.0)
        phi = rng.uniform(0, np.pi)
        stretch = 1.0 + (1.0 / aspect - 1.0) * np.cos(theta - phi) ** 2
        rel = dist / (radius * contour * np.sqrt(aspect)) * np.sqrt(stretch)
        noise = ndi.gaussian_filter(rng.standard_normal(dist.shape), max(radius / 4, 1.0))
        noise /= noise.std() + 1e-8
        texture = np.clip(0.75 + 0.2 * noise, 0.3, 1.2)
        edge = rng.uniform(0.12, 0.25) * radius
    mask = rel < 1.0
    if not mask.any():
        mask[half, half] = True
    thickness = np.sqrt(np.clip(1.0 - rel * rel, 0.0, 1.0)) * texture
    thickness = ndi.gaussian_filter(thickness, max(edge, 0.6))
    peak = float(thickness[mask].max())
    return (thickness / peak).astype(np.float32), mask


def _place_patch(
    rng, canvas: _Canvas, make, candidates: np.ndarray, min_place: float, tries: int = 60
) -> tuple | None:
    """Paste ``make()`` patches at random candidate centres until one lies in the lung."""
    for _ in range(tries):
        profile, pmask = make()
        r, c = candidates[int(rng.integers(len(candidates)))]
        pasted = canvas.paste(profile, pmask, (r, c))
        if pasted is not None and canvas.place[pasted[1]].mean() >= min_place:
            return pasted
    return None


def _log_uniform(rng, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _diffuse(rng, canvas: _Canvas):
    from scipy import ndimage as ndi  # scipy stays out of the CLI's start

    radius = _log_uniform(rng, 40 * canvas.scale, 80 * canvas.scale)

    def make():
        profile, pmask = lesion_patch(rng, "irregular", radius)
        # an airspace opacity fades out: its profile is smoothed far past the sharp edge
        profile = ndi.gaussian_filter(profile, 0.2 * radius)
        return (profile / profile[pmask].max()).astype(np.float32), pmask

    for shrink in (1.0, 0.8, 0.65):
        radius *= shrink
        found = _place_patch(rng, canvas, make, np.argwhere(canvas.place), 0.5, tries=20)
        if found is not None:
            return found
    return None


def _rib_nodule(rng, canvas: _Canvas):
    from scipy import ndimage as ndi  # scipy stays out of the CLI's start

    radius = rng.uniform(5 * canvas.scale, 11 * canvas.scale)
    gradient = ndi.gaussian_gradient_magnitude(canvas.base, max(1.0, 1.5 * canvas.scale))
    inside = canvas.place & canvas.body
    level = np.quantile(gradient[inside], 0.85) if inside.any() else 0.0
    candidates = np.argwhere(inside & (gradient >= level))
    if len(candidates) == 0:
        return None
    return _place_patch(rng, canvas, lambda: lesion_patch(rng, "nodule", radius), candidates, 0.6)


def _multipart(rng, canvas: _Canvas):
    parts = int(rng.integers(2, 5))
    spread = rng.uniform(25 * canvas.scale, 60 * canvas.scale)
    candidates = np.argwhere(canvas.place)
    for _ in range(30):
        centre = candidates[int(rng.integers(len(candidates)))]
        profile = np.zeros((canvas.size, canvas.size), dtype=np.float32)
        mask = np.zeros_like(canvas.body)
        ok = True
        for _part in range(parts):
            radius = rng.uniform(8 * canvas.scale, 20 * canvas.scale)
            offset = rng.uniform(-spread, spread, size=2)
            pasted = canvas.paste(*lesion_patch(rng, "irregular", radius), centre + offset)
            if pasted is None or canvas.place[pasted[1]].mean() < 0.6:
                ok = False
                break
            profile = np.maximum(profile, pasted[0])
            mask |= pasted[1]
        if ok:
            return profile, mask
    return None


def _lung_columns(place: np.ndarray) -> tuple[float, float, float, float] | None:
    """Row span and the two lungs' centre columns: ``(top, bottom, left, right)``."""
    from scipy import ndimage as ndi  # scipy stays out of the CLI's start

    labels, count = ndi.label(place)
    if count == 0:
        return None
    sizes = ndi.sum(place, labels, index=np.arange(1, count + 1))
    biggest = 1 + np.argsort(sizes)[::-1][:2]
    cols = sorted(float(np.argwhere(labels == k)[:, 1].mean()) for k in biggest)
    rows = np.flatnonzero(place.any(1))
    return float(rows[0]), float(rows[-1]), cols[0], cols[-1]


def _heart(rng, canvas: _Canvas):
    from scipy import ndimage as ndi  # scipy stays out of the CLI's start

    span = _lung_columns(canvas.place)
    if span is None:
        return None
    _top, bottom, left, right = span
    size = canvas.size
    side = 1.0 if rng.random() < 0.5 else -1.0  # which side the enlarged ventricle bulges to
    centre_r = bottom - rng.uniform(0.12, 0.2) * size
    centre_c = (left + right) / 2 + side * rng.uniform(0.02, 0.06) * size
    half_r = rng.uniform(0.11, 0.16) * size
    half_c = rng.uniform(0.17, 0.24) * size
    rr, cc = np.mgrid[0:size, 0:size].astype(np.float64)
    dc = cc - centre_c
    # the bulging side reaches further than the other one
    half_cols = np.where(dc * side > 0, half_c * rng.uniform(1.15, 1.4), half_c * 0.8)
    rel = ((rr - centre_r) / half_r) ** 2 + (dc / half_cols) ** 2
    mask = (rel < 1.0) & canvas.body
    if mask.sum() < 0.01 * size * size:
        return None
    profile = np.sqrt(np.clip(1.0 - rel, 0.0, 1.0))
    profile = ndi.gaussian_filter(profile, 0.04 * half_r) * canvas.body
    return (profile / profile[mask].max()).astype(np.float32), mask


def _tube(rng, canvas: _Canvas):
    from scipy import ndimage as ndi  # scipy stays out of the CLI's start

    span = _lung_columns(canvas.place)
    if span is None:
        return None
    top, bottom, left, right = span
    size = canvas.size
    width = rng.uniform(2 * canvas.scale, 5 * canvas.scale)
    lung_c = left if rng.random() < 0.5 else right
    start = np.array([max(2.0, top - rng.uniform(0.02, 0.12) * size), (left + right) / 2])
    start[1] += rng.uniform(-0.04, 0.04) * size
    end = np.array(
        [top + rng.uniform(0.45, 0.85) * (bottom - top), lung_c + rng.uniform(-0.06, 0.06) * size]
    )
    bend = (start + end) / 2 + rng.uniform(-0.08, 0.08, size=2) * size
    t = np.linspace(0.0, 1.0, 4 * size)[:, None]
    curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end
    line = np.zeros((size, size), dtype=bool)
    points = np.clip(np.round(curve).astype(int), 0, size - 1)
    line[points[:, 0], points[:, 1]] = True
    distance = ndi.distance_transform_edt(~line)
    mask = (distance <= width / 2) & canvas.body
    if mask.sum() < 4:
        return None
    profile = np.clip(1.0 - distance / (width / 2 + 1.0), 0.0, 1.0) * canvas.body
    return profile.astype(np.float32), mask


_DRAW: dict[str, Callable] = {
    "diffuse": _diffuse,
    "heart": _heart,
    "tube": _tube,
    "multipart": _multipart,
    "rib-nodule": _rib_nodule,
}


def draw_shape(
    rng: np.random.Generator,
    shape: str,
    base: np.ndarray,
    body: np.ndarray,
    place: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Draw one lesion of a non-compact shape class on a phantom.

    Parameters
    ----------
    rng : numpy.random.Generator
        The case's generator.
    shape : str
        A key of :data:`SHAPE_CLASSES` other than ``"compact"`` (the phantom generator draws that
        one itself).
    base : numpy.ndarray
        float ``(size, size)`` background in [0, 1], bright = dense.
    body, place : numpy.ndarray
        bool ``(size, size)``: the body and where lesions may go (the lungs on a chest film).

    Returns
    -------
    (profile, mask, contrast) or None
        float32 thickness profile with peak 1, its exact bool mask and the peak contrast to add;
        None when the shape does not fit on this background (the caller falls back).
    """
    canvas = _Canvas(base.shape[0], body, place, base)
    drawn = _DRAW[shape](rng, canvas)
    if drawn is None:
        return None
    profile, mask = drawn
    contrast = float(rng.uniform(*_CONTRAST[shape]))
    return profile, mask, contrast
