"""Segment Anything prompted by points, boxes and masks, with an embedding cache.

:class:`Segmenter` owns the embedding cache, the regions and the prompt strategies (boxes,
clicks answered by boxes for box-only models, zoomed context windows); the model itself is a
backend (:mod:`napari_samcam.sam`). Coordinates are numpy / napari ``(row, col)``; boxes are
``(row0, col0, row1, col1)`` with the end exclusive.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._prompt_checks import check_boxes, check_points
from ._resample import resized_unit_range
from ._threads import env_flag, torch_threads
from .devices import default_device
from .embedding_keys import (
    array_signature,
    check_finite_once,
    content_digest,
    embedding_key,
    key_pool,
)
from .errors import InputError, PromptError
from .images import checked_image, to_unit_range, validate_image
from .point_prompts import point_regions
from .sam import Prompts, SamBackend, make_backend
from .sam.types import Embedding, Region, context_crop, to_sam_coords
from .sam.upsample import MaskUpsampler
from .sam_models import load_sam_model
from .sam_preprocess import apply_preprocess, canonical_name

__all__ = [
    "Embedding",
    "Region",
    "Segmenter",
    "content_digest",
    "embedding_key",
    "load_segmenter",
    "to_sam_coords",
]


_UPSAMPLERS_KEPT = 32
#: Worker threads of one prompt's decoder when ``Segmenter(prompt_threads=None)``.
MAX_PROMPT_THREADS = 4
#: Box prompts per mask-decoder call (see :class:`Segmenter`).
PROMPT_BATCH = 4


def _prompt_base(pts, labels, preprocess) -> dict[str, Any]:
    """The prompt fields every region of one call shares."""
    base: dict[str, Any] = {}
    if preprocess is not None:
        base["preprocess"] = preprocess
    if pts is not None:
        base["points"] = pts.tolist()
        base["point_labels"] = labels.tolist()
    return base


class Segmenter:
    """Prompted Segment Anything with embeddings cached per (image content, window, crop).

    Parameters
    ----------
    model : SamModel or SamBackend
        From :func:`~napari_samcam.sam_models.load_sam_model` (its backend is made by
        :func:`napari_samcam.sam.make_backend`), or a backend.
    cache_size : int
        How many embeddings to keep (least recently used are dropped).
    accelerate : bool, optional
        Use the family's fast variant where there is one (``segment_anything`` models:
        :mod:`napari_samcam.sam._fast`, inference-only copies of the encoder and decoder with
        folded batch norms, channels-last convolutions, fused oneDNN kernels on CPU and fused
        attention): same masks, several times faster. Default on; the environment variable
        ``SAMCAM_ACCELERATE=0`` turns it off.
    compile_encoder : bool, optional
        Also ``torch.compile`` the encoder. Its first use compiles (a minute or more cold,
        seconds with inductor's disk cache warm), so it is off by default; turn it on for long
        batch runs, or with ``SAMCAM_COMPILE=1``. Falls back to the uncompiled encoder if
        compilation fails.
    prompt_threads : int or None
        Threads that answer a prompt on a cached embedding. The mask decoder's work on the
        image tokens is split into blocks of image rows run on this many worker threads with
        one torch thread each (the fast variant's staged decoder); the rest of a prompt
        (prompt encoder, the prompt tokens' side of the decoder, mask upsampling) runs on one
        torch thread, because it is many small kernels and with torch's threads each one waits
        for every thread to be scheduled (measured on 2 busy cores: 1 thread ~85 ms, 2 threads
        ~700 ms per prompt). ``None`` (default): torch's thread count, at most
        :data:`MAX_PROMPT_THREADS`. The encoder uses all of torch's threads.
    prompt_batch : int
        How many box prompts go through the mask decoder at once. Memory grows with it (about
        24 MB per prompt with LiteMedSAM) and not with the number of boxes; the masks and
        scores do not depend on it.

    Attributes
    ----------
    backend : SamBackend
        The model behind embed / decode / upsample.
    encoder_calls : int
        How many times the image encoder ran (cache misses).
    """

    def __init__(
        self,
        model: Any,
        *,
        cache_size: int = 16,
        accelerate: bool | None = None,
        compile_encoder: bool | None = None,
        prompt_threads: int | None = None,
        prompt_batch: int = PROMPT_BATCH,
    ):
        accelerate = env_flag("SAMCAM_ACCELERATE", True) if accelerate is None else accelerate
        if compile_encoder is None:
            compile_encoder = env_flag("SAMCAM_COMPILE", False)
        if not isinstance(model, SamBackend) and getattr(model, "family", None) is None:
            model = load_sam_model(model)  # a bare model module (e.g. a segment_anything Sam)
        self.backend: SamBackend = make_backend(
            model, accelerate=bool(accelerate), compile_encoder=bool(compile_encoder)
        )
        self.model = self.backend.model
        self.cache_size = int(cache_size)
        self.encoder_calls = 0
        if prompt_threads is not None and int(prompt_threads) < 1:
            raise InputError(
                f"prompt_threads={prompt_threads!r}: pass a positive number of threads, or None "
                "for torch's thread count."
            )
        self.prompt_threads = prompt_threads
        if int(prompt_batch) < 1:
            raise InputError(f"prompt_batch={prompt_batch!r}: pass a positive number of prompts.")
        self.prompt_batch = int(prompt_batch)
        self._cache: OrderedDict[tuple, Embedding] = OrderedDict()
        self._upsamplers: OrderedDict[tuple, MaskUpsampler] = OrderedDict()
        # (array signature, content key) of the last image segmented without a given key
        self._last_key: tuple = (None, None)
        self._lock = threading.RLock()

    def _workers(self) -> int:
        """Threads for the decoder's image-side stages (``prompt_threads``, resolved)."""
        import torch

        if self.prompt_threads is None:
            return max(1, min(torch.get_num_threads(), MAX_PROMPT_THREADS))
        return max(1, int(self.prompt_threads))

    @property
    def name(self) -> str:
        """Model name and version, for provenance."""
        backend = self.backend
        return f"{backend.name}@{backend.version}" if backend.version else backend.name

    @property
    def device(self):
        """The device the model lives on."""
        return self.backend.device

    @property
    def image_size(self) -> int:
        """Long side of the encoder input."""
        return self.backend.image_size

    @property
    def box_only(self) -> bool:
        """Whether the model answers box prompts only (clicks become boxes)."""
        return self.backend.box_only

    @property
    def mask_threshold(self) -> float:
        """Logits above it are inside a mask."""
        return float(self.backend.mask_threshold)

    @property
    def compile_encoder(self) -> bool:
        """Whether the encoder runs compiled (False after a failed compilation too)."""
        return bool(getattr(self.backend, "compile_encoder", False))

    def clear_cache(self) -> None:
        """Forget every cached embedding."""
        with self._lock:
            self._cache.clear()

    # -- embedding ---------------------------------------------------------------------------
    def _prepare(self, view: np.ndarray, window: tuple[float, float] | None):
        """Stored image -> ``(1, 3, h, w)`` 0-255 intensities at the backend's input size.

        The stored values are resized (antialiased bilinear, ``_resample.downsample_image``)
        without a float copy of the whole image; the intensity map of
        :func:`~napari_samcam.images.to_unit_range` is applied after resizing without a
        window (it is affine), block by block before resizing with one.
        """
        new = self.backend.input_size(view.shape[:2])
        if view.ndim == 3 and view.shape[-1] == 4:
            view = view[..., :3]  # alpha is dropped
        tensor = resized_unit_range(view, new, window)
        # Resizing is per channel: a grey image is resized once, then repeated as RGB.
        tensor = tensor[None].to(self.device) * 255.0
        if tensor.shape[1] == 1:
            tensor = tensor.expand(-1, 3, -1, -1)
        return tensor, new

    def embed(
        self,
        image: np.ndarray,
        *,
        window: tuple[float, float] | None = None,
        crop: tuple[int, int, int, int] | None = None,
        key: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        preprocess: str | None = None,
    ) -> Embedding:
        """Compute (or fetch from the cache) the embedding of an image or of a crop of it.

        Parameters
        ----------
        image : numpy.ndarray
            ``(H, W)`` or ``(H, W, 3|4)``.
        window : (float, float), optional
            Intensity window (see :func:`~napari_samcam.images.to_unit_range`).
        crop : (int, int, int, int), optional
            ``(row0, col0, row1, col1)`` sub-image to embed instead of the whole image.
        key : str, optional
            A precomputed :func:`~napari_samcam.images.image_hash` of ``image``.
        progress : callable, optional
            Called as ``progress(done, total)``.
        preprocess : str, optional
            Contrast pre-processing of the image SAM sees
            (:mod:`napari_samcam.sam_preprocess`: ``"clahe"``, ``"gamma:0.5"``, ...).
        """
        preprocess = canonical_name(preprocess)
        image = checked_image(image).array
        return self._embed(image, window, crop, key, progress, preprocess)

    def _embed(self, image, window, crop, key, progress, preprocess=None) -> Embedding:
        """:meth:`embed` of an already validated image."""
        cache_key = self._cache_key(key or embedding_key(image), window, crop, preprocess)
        with self._lock:
            if cache_key in self._cache:
                self._cache.move_to_end(cache_key)
                if progress:
                    progress(1, 1)
                return self._cache[cache_key]
        if progress:
            progress(0, 1)
        view = image if crop is None else image[crop[0] : crop[2], crop[1] : crop[3]]
        if preprocess is None:
            tensor, new = self._prepare(view, window)
        else:  # contrast enhancement works on the whole [0, 1] image
            unit = apply_preprocess(to_unit_range(view, window), preprocess)
            tensor, new = self._prepare(unit, (0.0, 1.0))
        features = self.backend.embed(tensor)
        offset = (0, 0) if crop is None else (int(crop[0]), int(crop[1]))
        embedding = Embedding(features, tuple(view.shape[:2]), new, offset)
        with self._lock:
            self.encoder_calls += 1
            self._cache[cache_key] = embedding
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        if progress:
            progress(1, 1)
        return embedding

    # -- prompting ---------------------------------------------------------------------------
    def _upsampler(self, embedding: Embedding, low: int) -> MaskUpsampler:
        geometry = (low, embedding.input_size, embedding.original_size)
        key = self.backend.upsampler_key(*geometry)
        with self._lock:
            upsampler = self._upsamplers.get(key)
            if upsampler is None:
                upsampler = self.backend.upsampler(*geometry)
                self._upsamplers[key] = upsampler
                while (
                    len(self._upsamplers) > _UPSAMPLERS_KEPT
                ):  # one per crop size in context mode
                    self._upsamplers.popitem(last=False)
            else:
                self._upsamplers.move_to_end(key)
        return upsampler

    def mask_upsampler(self, embedding: Embedding, low: int) -> MaskUpsampler:
        """The exact map from ``low`` x ``low`` logits of ``embedding`` to its pixels."""
        return self._upsampler(embedding, low)

    def _decode(
        self,
        embedding: Embedding,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        boxes: np.ndarray | None,
        mask_input: np.ndarray | None,
        multimask: bool,
    ) -> list[tuple[np.ndarray, float]]:
        """Run prompt encoder + mask decoder; one (mask, score) per box (or one for points).

        Boxes go through the decoder :attr:`prompt_batch` at a time, so memory stays bounded
        whatever their number (the decoder's activations grow by about 24 MB per prompt with
        LiteMedSAM); each box's answer does not depend on the others in its batch.
        """
        import torch

        point_arg, sam_boxes, masks_arg = self._prompt_args(
            embedding, points, labels, boxes, mask_input
        )
        n = 1 if boxes is None else len(boxes)
        step = self.prompt_batch
        # All masks in one allocation made before the decoder runs: masks allocated one by one
        # between the decoder's large temporaries fragment the heap, which then grows by several
        # MB per prompt (measured: 2000 boxes on 256 x 256, 1.4 -> 2.5 GB); each Region's mask
        # is one plane of it.
        masks = np.zeros((n, *embedding.original_size), dtype=bool)
        scores: list[float] = []
        threshold = self.mask_threshold
        workers = self._workers()  # before the one-thread block below, which it would read
        with torch.inference_mode(), torch_threads(1):
            for begin in range(0, n, step):
                out = masks[begin : begin + step]
                box_arg = None
                if sam_boxes is not None:
                    box_arg = torch.as_tensor(sam_boxes[begin : begin + step], device=self.device)
                low_res, iou = self._run_decoder(
                    embedding, point_arg, box_arg, masks_arg, multimask, workers
                )
                best = iou.argmax(1)
                upsampler = self._upsampler(embedding, low_res.shape[-1])
                for i in range(len(out)):
                    j = int(best[i])
                    upsampler.mask(low_res[i, j].float(), threshold, out=out[i], workers=workers)
                    scores.append(float(iou[i, j]))
        return list(zip(masks, scores, strict=True))

    def predict_logits(
        self,
        embedding: Embedding,
        *,
        boxes=None,
        points=None,
        labels=None,
        mask_input=None,
        multimask: bool = False,
    ) -> tuple[Any, Any]:
        """Low-resolution mask logits ``(n, k, h, w)`` and predicted IoUs ``(n, k)``.

        One row per box (one for points alone), ``k`` = 3 with ``multimask`` else 1; prompts in
        ``(row, col)`` pixels of the embedded image (or crop), all in one decoder call (meant for
        a few candidate prompts; :meth:`segment` batches many). :meth:`mask_upsampler` maps the
        logits to masks.
        """
        import torch

        point_arg, sam_boxes, masks_arg = self._prompt_args(
            embedding, points, labels, boxes, mask_input
        )
        workers = self._workers()  # before the one-thread block below, which it would read
        with torch.inference_mode(), torch_threads(1):
            box_arg = None if sam_boxes is None else torch.as_tensor(sam_boxes, device=self.device)
            return self._run_decoder(embedding, point_arg, box_arg, masks_arg, multimask, workers)

    def _prompt_args(self, embedding: Embedding, points, labels, boxes, mask_input):
        """SAM's prompt tensors: points ``(1, N, 2)`` + labels, boxes as an ``(M, 4)`` array of
        SAM coordinates, the mask ``(1, 1, h, w)``; ``None`` where a prompt is absent."""
        import torch

        device = self.device
        point_arg = None
        if points is not None and len(points):
            coords = to_sam_coords(points, embedding.original_size, embedding.input_size)
            point_arg = (
                torch.as_tensor(coords, device=device)[None],
                torch.as_tensor(labels, dtype=torch.int, device=device)[None],
            )
        sam_boxes = None
        if boxes is not None:
            # SAM boxes are (x0, y0, x1, y1) of pixel indices: the end-exclusive edge minus one.
            corners = np.stack([boxes[:, :2], boxes[:, 2:] - 1], 1)
            sam_boxes = to_sam_coords(corners, embedding.original_size, embedding.input_size)
            sam_boxes = sam_boxes.reshape(len(boxes), 4)
        masks_arg = None
        if mask_input is not None:
            masks_arg = torch.as_tensor(mask_input, dtype=torch.float32, device=device)
            masks_arg = masks_arg.reshape(1, 1, *masks_arg.shape[-2:])
        return point_arg, sam_boxes, masks_arg

    def _run_decoder(
        self, embedding: Embedding, point_arg, box_arg, masks_arg, multimask, workers
    ):
        """One decoder call (the points and mask shared by every box): low-resolution logits
        ``(n, k, h, w)`` and IoU predictions ``(n, k)``."""
        prompts = Prompts(point_arg, box_arg, masks_arg)
        return self.backend.decode(
            embedding.features, prompts, multimask=multimask, workers=workers
        )

    def segment(
        self,
        image: np.ndarray,
        *,
        points: Sequence | np.ndarray | None = None,
        point_labels: Sequence | np.ndarray | None = None,
        boxes: Sequence | np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool | None = None,
        context: float | None = None,
        window: tuple[float, float] | None = None,
        source: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        key: str | None = None,
        preprocess: str | None = None,
    ) -> list[Region]:
        """Segment regions from prompts.

        Parameters
        ----------
        image : numpy.ndarray
            ``(H, W)`` or ``(H, W, 3|4)``.
        points : array_like, optional
            ``(N, 2)`` ``(row, col)`` points.
        point_labels : array_like, optional
            ``(N,)``: 1 for a positive (foreground) point, 0 for a negative one. All positive
            when omitted.
        boxes : array_like, optional
            ``(M, 4)`` ``(row0, col0, row1, col1)`` boxes, end exclusive; one region per box
            (the points, if any, join every box).
        mask_input : numpy.ndarray, optional
            A low-resolution logit mask from an earlier prediction (SAM's mask prompt).
        multimask : bool, optional
            Let SAM propose 3 masks and keep the best-scored; default: only for a single point.
        context : float, optional
            Zoom mode for boxes: embed a crop of ``context`` times the box size around each box
            (one encoder run per box, cached) — much better masks for small lesions on large
            images with a low-resolution encoder. ``None`` embeds the whole image once.
        window : (float, float), optional
            Intensity window.
        source : str, optional
            Region source name for provenance (default from the prompt kind).
        progress : callable, optional
            ``progress(done, total)`` over encoder runs.
        key : str, optional
            A precomputed :func:`~napari_samcam.images.image_hash` of ``image`` (skips hashing
            it; it must be the hash of this very content).
        preprocess : str, optional
            Contrast pre-processing of the image SAM sees for point and box prompts
            (:mod:`napari_samcam.sam_preprocess`: ``"clahe"``, ``"gamma:0.5"``,
            ``"clahe+gamma:0.8"``); recorded in each region's prompt as ``"preprocess"``.

        Returns
        -------
        list of Region
        """
        # the finite-values pass only for content not checked before (below, once the key is
        # known): none for a CheckedImage that passed it
        checked = checked_image(image, finite=False)
        image = checked.array
        preprocess = canonical_name(preprocess)
        height, width = image.shape[:2]
        pts, labels = check_points(points, point_labels, (height, width))
        boxes_arr = check_boxes(boxes, (height, width))
        if pts is None and boxes_arr is None and mask_input is None:
            raise PromptError(
                "segment: no prompt given; pass points=, boxes= or mask_input= (for a text "
                "prompt: napari_samcam.clip_regions.segment_text(segmenter, image, text, "
                "clip=...))."
            )
        speculate = key is None and context is None
        speculate = speculate and not (self.box_only and pts is not None)
        if speculate:
            regions = self._segment_speculatively(
                image, pts, labels, boxes_arr, mask_input, multimask, window, source, preprocess
            )
            if regions is not None:
                if progress:
                    progress(1, 1)  # the embedding was cached
                return regions
        given = key is not None
        if key is None:
            key = embedding_key(image)
        if not checked.finite:
            check_finite_once(image, key)
        if not given:
            self._last_key = (array_signature(image), key)
        if self.box_only and pts is not None and mask_input is None:
            source = source or ("sam-box" if boxes_arr is not None else "sam-points")
            return point_regions(
                self,
                image,
                pts,
                labels,
                boxes_arr,
                context=context,
                window=window,
                key=key,
                source=source,
                progress=progress,
                preprocess=preprocess,
            )
        if context is not None and boxes_arr is not None:
            source = source or ("sam-box" if boxes_arr is not None else "sam-points")
            prompt_base = _prompt_base(pts, labels, preprocess)
            return self._segment_in_context(
                image, key, pts, labels, boxes_arr, context, window, source, prompt_base, progress
            )
        embedding = self._embed(image, window, None, key, progress, preprocess)
        return self._regions(
            embedding, pts, labels, boxes_arr, mask_input, multimask, source, preprocess
        )

    def _regions(
        self, embedding, pts, labels, boxes, mask_input, multimask, source, preprocess
    ) -> list[Region]:
        """Decode the prompts on ``embedding`` into Regions (the end of :meth:`segment`)."""
        if multimask is None:
            multimask = boxes is None and pts is not None and len(pts) == 1
        if source is None:
            source = "sam-box" if boxes is not None else "sam-points"
        prompt_base = _prompt_base(pts, labels, preprocess)
        decoded = self._decode(embedding, pts, labels, boxes, mask_input, multimask)
        regions = []
        for i, (mask, score) in enumerate(decoded):
            prompt = dict(prompt_base)
            if boxes is not None:
                prompt["box"] = boxes[i].tolist()
            regions.append(Region(mask, source, prompt, score, self.name))
        return regions

    def _segment_speculatively(
        self, image, pts, labels, boxes, mask_input, multimask, window, source, preprocess
    ) -> list[Region] | None:
        """Prompt the very array object segmented last while its content key is computed.

        The last key of this array object (same object, buffer, shape, strides and dtype) names
        a cached embedding; the prompt is decoded on it while another thread hashes the content
        on one core (the decoder leaves a core idle between its stages). The regions are kept
        only if the content's key is that key; otherwise (the array was edited in place, or is a
        new one in a recycled object) they are dropped and :meth:`segment` goes on with the
        right key. None when there is nothing to speculate on.
        """
        signature, guess = self._last_key
        if guess is None or signature != array_signature(image):
            return None
        embedding = self._cached_embedding(guess, window, preprocess)
        if embedding is None:
            return None
        pending = key_pool().submit(embedding_key, image, threads=1)
        try:
            regions = self._regions(
                embedding, pts, labels, boxes, mask_input, multimask, source, preprocess
            )
        finally:
            key = pending.result()
        return regions if key == guess else None

    def _cached_embedding(self, key: str, window, preprocess) -> Embedding | None:
        with self._lock:
            return self._cache.get(self._cache_key(key, window, None, preprocess))

    def _cache_key(self, key: str, window, crop, preprocess) -> tuple:
        """The embedding cache's key: content, model, intensity window, crop, pre-processing."""
        return (
            key,
            self.name,
            None if window is None else tuple(map(float, window)),
            None if crop is None else tuple(int(v) for v in crop),
            preprocess,
        )

    def segment_volume(
        self,
        volume: np.ndarray,
        box: Sequence | np.ndarray,
        *,
        key_slice: int,
        window: tuple[float, float] | None = None,
        source: str = "sam-volume-box",
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Region]:
        """Segment a 3-D volume from one box on one slice ("Segment volume from this box").

        The box is prompted on ``key_slice`` and carried through the slices after it, then
        through those before it, by the model's memory of earlier slices (SAM 2's video
        predictor; other models raise :class:`~napari_samcam.errors.InputError`).

        Parameters
        ----------
        volume : numpy.ndarray
            ``(Z, H, W)`` or ``(Z, H, W, 3|4)``.
        box : array_like
            ``(row0, col0, row1, col1)`` on ``key_slice``, end exclusive.
        key_slice : int
            The slice the box is drawn on.
        window : (float, float), optional
            Intensity window; default: the whole volume's range (the same map for every slice).
        source : str
            Region source name for provenance.
        progress : callable, optional
            ``progress(done, total)`` over slices.

        Returns
        -------
        list of Region
            One per slice, in slice order; ``prompt`` holds the box, ``key_slice`` and
            ``slice``, and SAM 2's object score logit of the slice (``object_score``).
        """
        import torch

        if not self.backend.propagates:
            raise InputError(
                f"segment_volume: SAM model {self.name!r} cannot carry a box through a volume; "
                "load a SAM 2 model (e.g. 'sam2.1_hiera_tiny', the sam2 extra) or prompt each "
                "slice."
            )
        volume = np.asarray(volume)
        if volume.ndim not in (3, 4) or volume.shape[0] < 1:
            raise InputError(
                f"segment_volume: volume of shape {volume.shape}; pass (Z, H, W) or (Z, H, W, 3)."
            )
        depth = volume.shape[0]
        if not (0 <= int(key_slice) < depth):
            raise InputError(
                f"segment_volume: key_slice={key_slice!r} is outside the volume's {depth} slices."
            )
        size = tuple(volume.shape[1:3])
        boxes = check_boxes(box, size, name="box")
        if boxes is None or len(boxes) != 1:
            raise PromptError("segment_volume: pass exactly one box (row0, col0, row1, col1).")
        if window is None:  # one intensity map for every slice (none for a constant volume)
            low, high = float(np.min(volume)), float(np.max(volume))
            window = (low, high) if high > low else None
        frames = torch.cat(
            [self._prepare(validate_image(volume[z]), window)[0] for z in range(depth)]
        )
        r0, c0, r1, c1 = boxes[0]
        xyxy = np.array([c0, r0, c1 - 1, r1 - 1], dtype=np.float32)
        masks, scores = self.backend.propagate(
            frames, int(key_slice), xyxy, size, progress=progress
        )
        prompt = {"box": boxes[0].tolist(), "key_slice": int(key_slice)}
        return [
            Region(
                masks[z],
                source,
                dict(prompt, slice=z, object_score=float(scores[z])),
                float("nan"),
                self.name,
            )
            for z in range(depth)
        ]

    def _segment_in_context(
        self, image, key, pts, labels, boxes, context, window, source, prompt_base, progress
    ) -> list[Region]:
        if not context >= 1.0:
            raise InputError(f"context={context!r}: the zoom factor must be >= 1 (e.g. 2.5).")
        height, width = image.shape[:2]
        regions = []
        for i, box in enumerate(boxes):
            crop = context_crop(box, (height, width), context, self.image_size // 4)
            embedding = self._embed(image, window, crop, key, None, prompt_base.get("preprocess"))
            offset = np.array(crop[:2])
            local_box = (box - np.tile(offset, 2))[None]
            local_pts = None
            local_labels = None
            if pts is not None:
                inside = np.all((pts >= crop[:2]) & (pts < crop[2:]), axis=1)
                local_pts, local_labels = pts[inside] - offset, labels[inside]
            ((mask, score),) = self._decode(
                embedding, local_pts, local_labels, local_box, None, False
            )
            full = np.zeros((height, width), dtype=bool)
            full[crop[0] : crop[2], crop[1] : crop[3]] = mask
            prompt = dict(prompt_base, box=box.tolist(), context=float(context), crop=list(crop))
            regions.append(Region(full, source, prompt, score, self.name))
            if progress:
                progress(i + 1, len(boxes))
        return regions


_SEGMENTERS: dict[tuple, Segmenter] = {}
_SEGMENTERS_LOCK = threading.Lock()


def load_segmenter(
    spec: Any = "litemedsam",
    *,
    checkpoint: Any = None,
    device: Any = None,
    download: bool = False,
    cache_size: int = 16,
) -> Segmenter:
    """A :class:`Segmenter` for a SAM model; named models are loaded once per process.

    Parameters
    ----------
    spec : str, SamModel or model module
        See :func:`~napari_samcam.sam_models.load_sam_model`; ``"litemedsam"`` by default.
    checkpoint, device, download
        Passed to :func:`~napari_samcam.sam_models.load_sam_model`.
    cache_size : int
        Embeddings kept in memory.
    """
    if not isinstance(spec, str):
        return Segmenter(load_sam_model(spec, device=device), cache_size=cache_size)

    key = (spec, str(checkpoint), str(default_device(device)))
    with _SEGMENTERS_LOCK:
        if key not in _SEGMENTERS:
            model = load_sam_model(spec, checkpoint=checkpoint, device=device, download=download)
            _SEGMENTERS[key] = Segmenter(model, cache_size=cache_size)
        return _SEGMENTERS[key]
