"""Overlay pictures: image, saliency heatmap, region outlines and metric values, as PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .images import to_unit_range, unit_range_limits

__all__ = ["save_overlay"]

#: Outline colours of successive regions.
REGION_COLOURS = ("#00e5ff", "#76ff03", "#ff4081", "#ffea00", "#b388ff")


def save_overlay(
    path: str | Path,
    image: np.ndarray,
    *,
    saliency: np.ndarray | None = None,
    regions: Sequence = (),
    boxes: Sequence = (),
    title: str = "",
    lines: Sequence[str] = (),
    window: tuple[float, float] | None = None,
    max_side: int = 768,
) -> Path:
    """Write a PNG of ``image`` with the saliency as a heatmap and region outlines on top.

    Parameters
    ----------
    path : str or Path
        Output PNG (written to a temporary name, then renamed).
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, 3)``.
    saliency : numpy.ndarray, optional
        ``(H, W)`` map in ``[0, 1]``, drawn with the "inferno" colormap at half opacity.
    regions : sequence of Region
        Outlined in successive colours and named in the legend.
    boxes : sequence of (row0, col0, row1, col1)
        Drawn as dashed white rectangles (annotations).
    title : str
    lines : sequence of str
        Text lines drawn in the corner (metric values).
    window : (float, float), optional
        Display window for the image.
    max_side : int
        Images larger than this are shown downsampled (the PNG stays small).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    path = Path(path)
    step = max(1, int(np.ceil(max(image.shape[:2]) / max_side)))
    shown = image[::step, ::step]  # a view: a large image is not copied before it is shrunk
    if window is None and step > 1:
        # the intensity range of the whole image, not of the pixels shown
        colour = image.ndim == 3
        low, high = unit_range_limits(image[..., :3] if colour else image)
        window = (low, high) if high > low else None
    shown = to_unit_range(shown, window)
    height, width = shown.shape[:2]
    fig = Figure(figsize=(width / 100, height / 100 + 0.01), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if saliency is not None:
        ax.imshow(np.asarray(saliency)[::step, ::step], cmap="inferno", alpha=0.45, vmin=0, vmax=1)
    handles = []
    for i, region in enumerate(regions):
        colour = REGION_COLOURS[i % len(REGION_COLOURS)]
        mask = np.asarray(region.mask)[::step, ::step]
        if mask.any():
            ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.5)
        handles.append(Line2D([], [], color=colour, lw=2, label=region.source))
    for box in boxes:
        r0, c0, r1, c1 = (float(v) / step for v in box)
        ax.add_patch(
            Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, ec="white", ls="--")
        )
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.6)
    text = "\n".join([title, *lines]) if title else "\n".join(lines)
    if text:
        ax.text(
            4,
            4,
            text,
            color="white",
            fontsize=7,
            va="top",
            family="monospace",
            bbox={"facecolor": "black", "alpha": 0.55, "pad": 3, "lw": 0},
        )
    ax.set_axis_off()
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)
    return path
