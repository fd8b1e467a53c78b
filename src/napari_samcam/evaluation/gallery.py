"""The report's gallery: the items with the lowest and highest scores, drawn small.

Per classifier x CAM method x region source and per gallery metric (IoU and energy by default),
the ``per_end`` items with the lowest and the highest score are drawn as one thumbnail each: the
image (gray, in its display window), the saliency map blended over it, the region's outline
(yellow), the ground-truth outline (green, when the region is another one) and the box
annotations (cyan). Thumbnails are JPEGs of at most :data:`THUMBNAIL` pixels a side, embedded as
base64, so the report stays one file. Their number depends on the configuration, not on the
number of items: ``groups x metrics x 2 x per_end`` at most.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np

from ..images import read_image
from .arrays import arrays_path, read_job_arrays, region_mask
from .stored import mask_boxes, score_table

__all__ = ["GALLERY_METRICS", "THUMBNAIL", "gallery_html", "thumbnail"]

#: Metrics the gallery ranks items by.
GALLERY_METRICS = ("iou", "energy")
#: Longest side of a thumbnail in pixels.
THUMBNAIL = 160
#: Scores printed under each thumbnail.
CAPTION_METRICS = ("iou", "energy", "hit")

# A perceptually ordered dark-to-bright map (anchors of matplotlib's inferno).
_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float32,
)
_LUT = np.stack(
    [
        np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c])
        for c in range(3)
    ],
    axis=1,
).astype(np.float32)


def _thumb_shape(shape: tuple[int, int], size: int) -> tuple[int, int]:
    scale = size / max(shape)
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _gray(image: np.ndarray, window, shape: tuple[int, int]) -> np.ndarray:
    """``image`` as float32 RGB in [0, 255] at ``shape`` (area-averaged)."""
    from PIL import Image

    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 3:
        array = array[..., :3].mean(axis=-1) if array.shape[-1] >= 3 else array[..., 0]
    if window is not None and float(window[1]) > float(window[0]):
        low, high = float(window[0]), float(window[1])
    else:
        low, high = np.percentile(array, (0.5, 99.5)) if array.size else (0.0, 1.0)
    scaled = np.clip((array - low) / max(float(high - low), 1e-12), 0, 1) * 255
    small = Image.fromarray(scaled.astype(np.uint8)).resize(
        (shape[1], shape[0]), Image.Resampling.BOX
    )
    return np.repeat(np.asarray(small, dtype=np.float32)[..., None], 3, axis=-1)


def _resize_map(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A CAM resized (bilinear) to ``shape`` and scaled to [0, 1] by its maximum.

    PIL rather than torch: a few small resizes, where torch's thread pool costs more than the
    work on busy cores.
    """
    from PIL import Image

    cam = np.maximum(np.asarray(cam, dtype=np.float32), 0)
    resized = np.asarray(
        Image.fromarray(cam, mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    )
    high = float(resized.max()) if resized.size else 0.0
    return resized / high if high > 0 else np.zeros(shape, dtype=np.float32)


def _nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rows = (np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0]
    cols = (np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1]
    return mask[rows.astype(int)[:, None], cols.astype(int)[None, :]]


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (or on the border)."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def thumbnail(
    image: np.ndarray,
    saliency: np.ndarray | None,
    *,
    window=None,
    region: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    boxes=(),
    size: int = THUMBNAIL,
    quality: int = 80,
) -> bytes:
    """A JPEG of image + saliency + region outlines + boxes, at most ``size`` pixels a side.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``.
    saliency : numpy.ndarray, optional
        Any 2-D map in ``[0, 1]`` (upsampled to the thumbnail); blended with an opacity that
        grows with the value.
    window : (low, high), optional
        Display window of ``image`` (default: its 0.5-99.5 percentiles).
    region, truth : numpy.ndarray, optional
        bool ``(H, W)`` masks outlined in yellow and green.
    boxes : sequence of (row0, col0, row1, col1)
        Drawn in cyan.
    """
    shape = _thumb_shape(image.shape[:2], size)
    background = _gray(image, window, shape)
    return _compose(background, image.shape[:2], saliency, region, truth, boxes, quality)


def _compose(background, image_shape, saliency, region, truth, boxes, quality) -> bytes:
    from PIL import Image

    shape = background.shape[:2]
    picture = background.copy()
    if saliency is not None:
        small = _resize_map(saliency, shape)
        color = _LUT[np.clip((small * 255).astype(np.int32), 0, 255)]
        alpha = (0.6 * small)[..., None]
        picture = picture * (1 - alpha) + color * alpha
    for mask, rgb in ((truth, (60, 220, 60)), (region, (255, 230, 0))):
        if mask is not None and mask.any():
            picture[_outline(_nearest(mask, shape))] = rgb
    scale_r, scale_c = shape[0] / image_shape[0], shape[1] / image_shape[1]
    for r0, c0, r1, c1 in boxes:
        top, bottom = int(r0 * scale_r), min(shape[0] - 1, max(0, math.ceil(r1 * scale_r) - 1))
        left, right = int(c0 * scale_c), min(shape[1] - 1, max(0, math.ceil(c1 * scale_c) - 1))
        cyan = (0, 220, 255)
        picture[top, left : right + 1] = cyan
        picture[bottom, left : right + 1] = cyan
        picture[top : bottom + 1, left] = cyan
        picture[top : bottom + 1, right] = cyan
    buffer = io.BytesIO()
    Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=quality
    )
    return buffer.getvalue()


def _pick(values, per_end: int) -> tuple[list, list]:
    """Indices of the ``per_end`` lowest and (others) highest of a Series, NaN left out."""
    ordered = values.dropna().sort_values(kind="stable")
    low = list(ordered.index[:per_end])
    high = [i for i in ordered.index[::-1][:per_end] if i not in low]
    return low, high


def _figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        "<figure class='thumb'><img alt='' src='data:image/jpeg;base64,"
        f"{data}'><figcaption>{caption}</figcaption></figure>"
    )


def gallery_html(
    out: Path,
    jobs,
    metrics,
    *,
    per_end: int = 3,
    rank_by=GALLERY_METRICS,
    size: int = THUMBNAIL,
) -> str:
    """The gallery section of ``report.html`` (empty when no arrays were kept).

    Parameters
    ----------
    out : Path
        The evaluation's output folder.
    jobs : list of ImageJob
    metrics : pandas.DataFrame
        The tidy metric rows.
    per_end : int
        Items drawn at each end (lowest, highest) per group and metric.
    rank_by : sequence of str
        Metrics to rank by.
    """
    files = {}
    for job in jobs:
        path = arrays_path(out, job.key)
        if path.is_file():
            files.update({item.index: (job, path) for item in job.items})
    if not files or not len(metrics):
        return ""
    wide = score_table(metrics)
    wide = wide[wide["item"].isin(list(files))].reset_index(drop=True)
    stored_cache: dict = {}
    backgrounds: dict = {}  # job key -> (image shape, gray thumbnail): each image read once
    masks: dict = {}  # id of a region record -> its mask: each region decoded once
    drawn: dict = {}

    def mask_of(record, shape):
        if record is None:
            return None
        if id(record) not in masks:  # an RLE of another size than the image is refused
            masks[id(record)] = region_mask(record, shape)
        return masks[id(record)]

    def arrays_of(item):
        path = files[item][1]
        if path not in stored_cache:
            stored_cache[path] = read_job_arrays(path)
        return stored_cache[path]

    def draw(row) -> str:
        key = (row["item"], row["classifier"], row["cam_method"], row["region_source"])
        if key in drawn:
            return drawn[key]
        item = int(row["item"])
        stored = arrays_of(item)
        job = files[item][0]
        if job.key not in backgrounds:
            image = np.asarray(read_image(stored.image_path).array)
            shape = _thumb_shape(image.shape[:2], size)
            backgrounds[job.key] = (image.shape[:2], _gray(image, stored.meta["window"], shape))
        image_shape, background = backgrounds[job.key]
        record = stored.region(item, row["region_source"], row["classifier"], row["cam_method"])
        truth = mask_of(stored.region(item, "ground-truth"), image_shape)
        region = mask_of(record, image_shape)
        boxes = [tuple(b) for b in stored.item_info(item)["boxes"]]
        if not boxes and truth is not None:
            boxes = mask_boxes(truth)
        png = _compose(
            background,
            image_shape,
            stored.raw(item, row["classifier"], row["cam_method"]),
            None if row["region_source"] == "ground-truth" else region,
            truth,
            boxes,
            80,
        )
        scores = ", ".join(
            f"{m} {row[m]:.2f}" for m in CAPTION_METRICS if m in row and not math.isnan(row[m])
        )
        caption = f"#{item} {html.escape(str(row['image']))}<br>{scores}"
        drawn[key] = _figure(png, caption)
        return drawn[key]

    parts = [
        "<h2>Gallery</h2>",
        f"<p class='note'>Per classifier, CAM method and region source: the {per_end} items "
        "with the lowest and the highest scores. Saliency blended over the image; outlines: "
        "<span style='color:#c9b000'>region</span>, <span style='color:#2a2'>ground truth"
        "</span>, <span style='color:#09c'>box annotation</span>.</p>",
    ]
    groups = wide.groupby(["classifier", "cam_method", "region_source"], sort=False)
    for (classifier, method, source), group in groups:
        parts.append(
            f"<h3>{html.escape(str(classifier))} · {html.escape(str(method))} · "
            f"{html.escape(str(source))}</h3>"
        )
        for metric in rank_by:
            if metric not in group.columns:
                continue
            low, high = _pick(group[metric], per_end)
            for label, chosen in (("lowest", low), ("highest", high)):
                if not chosen:
                    continue
                figures = "".join(draw(group.loc[i]) for i in chosen)
                parts.append(
                    f"<div class='row'><span class='rank'>{label} {html.escape(metric)}</span>"
                    f"{figures}</div>"
                )
    return "\n".join(parts)
