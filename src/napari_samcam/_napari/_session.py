"""The model behind the dock widget: a plain Python object, no Qt.

:class:`SamcamSession` holds the settings (classifier, CAM method, SAM model, ...) and the loaded
models, and turns napari layers into calls of the core API and the results back into layers. The
dock widget only forwards its events here; napari's console gets the same object, and scripts can
create one for any viewer::

    session = SamcamSession(viewer, classifier="lesion-detector")
    saliency_layer = session.explain()                 # the selected image, displayed slice
    regions = session.segment(boxes=[(262, 349, 350, 447)])
    session.metrics()                                  # the regions layer's features table

Long operations are *jobs*: generators that yield :class:`Step` records between units of work
(so a worker thread can report progress and stop at any of them) and finally return a callable
that applies the result to the viewer. Jobs read the viewer only when they are created, on the
calling thread, and touch it again only in that final callable, which the widget runs on the
GUI thread. :meth:`SamcamSession.run` runs a job to the end in the calling thread, which is
what the plain methods (:meth:`explain`, :meth:`segment`, ...) do.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psygnal import Signal

from ..errors import InputError, SamcamError
from ._layers import (
    META_KEY,
    POINT_COLORS,
    Plane,
    all_indices,
    box_to_rectangle,
    current_index,
    geometry_kwargs,
    image_plane,
    json_text,
    leading_shape,
    metrics_summary,
    plane_shape,
    points_to_prompts,
    regions_name,
    saliency_name,
    samcam_meta,
    shapes_to_boxes,
)

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

Job = Generator["Step", None, Callable[[], Any] | None]


class JobCancelled(SamcamError):
    """The user cancelled a running job."""


@dataclass
class Step:
    """Progress of a job: ``done`` of ``total`` units, and what is being done now."""

    message: str
    done: int
    total: int


@dataclass
class _PlaneRequest:
    """Inputs of one plane of a segmentation job, captured on the calling thread."""

    plane: Plane
    boxes: np.ndarray | None = None
    points: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    shape_ids: list[int] = field(default_factory=list)
    saliency: np.ndarray | None = None


def builtin_classifier_names() -> tuple[str, ...]:
    """Names of the classifiers shipped with the package.

    The registry module imports torch (seconds); when it is not loaded yet the known names are
    returned instead, so that opening the widget stays fast.
    """
    import sys

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


def limit_torch_threads(leave_free: int = 1) -> int:
    """Let torch use all cores but ``leave_free`` (at least one thread); returns the count.

    On a small machine a worker thread running torch on every core starves the GUI thread; one
    core left free keeps napari responsive at a small cost in speed.
    """
    import torch

    cores = os.cpu_count() or 1
    threads = max(1, cores - int(leave_free))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


class SamcamSession:
    """Saliency, SAM regions and localization metrics for the layers of one napari viewer.

    Parameters
    ----------
    viewer : napari.Viewer or napari.components.ViewerModel
        The viewer whose layers are read and written.
    classifier : str, Classifier or torch.nn.Module
        Anything :func:`napari_samcam.classifiers.load_classifier` takes; a built-in by default.
    checkpoint : str, optional
        State dict for ``torchvision:``/``timm:`` classifier specs.
    trust_checkpoint : bool
        Trust the classifier file: open ``.pt2`` and TorchScript files and checkpoints that
        need full unpickling, which can run code (see ``load_classifier``).
    method : str
        CAM method (see :data:`napari_samcam.saliency.CAM_METHODS`).
    target : int or str, optional
        Class to explain; the top-scoring class when ``None``.
    target_layer : str, optional
        Dotted name of the CAM target layer; chosen automatically when ``None``.
    segmenter : str or Segmenter
        SAM model (see :func:`napari_samcam.segment.load_segmenter`).
    context : float or None
        Box prompts: embed a crop ``context`` times the box around each box (better masks for
        small lesions, one encoder run per box); ``None`` embeds the whole image once.
    clip : str, optional
        CLIP model (local folder or hub id) for text prompts.
    device : str, optional
        Torch device; CUDA when available.
    metric_options : dict, optional
        Keyword arguments of :func:`napari_samcam.metrics.localization_metrics`.
    text_options : dict, optional
        Keyword arguments of :func:`napari_samcam.text.segment_text` (``top_k``, thresholds,
        proposal settings) for text prompts.
    """

    #: Emitted with ``{class name: probability}`` after a prediction or an explanation.
    predictions_changed = Signal(dict)
    #: Emitted with the loaded classifier object.
    classifier_loaded = Signal(object)
    #: Emitted with a short status text.
    status = Signal(str)
    #: Emitted with a message about something the user should know (no metrics, empty mask).
    warning = Signal(str)

    def __init__(
        self,
        viewer=None,
        *,
        classifier: Any = "lesion-detector",
        checkpoint: str | None = None,
        trust_checkpoint: bool = False,
        method: str = "gradcam",
        target: int | str | None = None,
        target_layer: str | None = None,
        segmenter: Any = "litemedsam",
        context: float | None = 2.5,
        clip: str | None = None,
        device: str | None = None,
        metric_options: dict | None = None,
        text_options: dict | None = None,
    ):
        self.viewer = viewer
        self.classifier_spec = classifier
        self.checkpoint = checkpoint
        self.trust_checkpoint = bool(trust_checkpoint)
        self.method = method
        self.target = target
        self.target_layer = target_layer
        self.segmenter_spec = segmenter
        self.context = context
        self.clip = clip
        self.device = device
        self.metric_options = dict(metric_options or {})
        self.text_options = dict(text_options or {})
        self.predictions: dict[str, float] = {}
        self._classifiers: dict[tuple, Any] = {}
        self._announced: Any = None
        self._cancel = threading.Event()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------------------------------
    # cancellation and running

    def cancel(self) -> None:
        """Ask the running job to stop at its next step."""
        self._cancel.set()

    def clear_cancel(self) -> None:
        """Forget an earlier :meth:`cancel` (a new job starts)."""
        self._cancel.clear()

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if :meth:`cancel` was called since the job started."""
        if self._cancel.is_set():
            raise JobCancelled("cancelled")

    def _progress_callback(self, message: str) -> Callable[[int, int], None]:
        """A core ``progress(done, total)`` callback that stops the job when cancelled."""

        def progress(done: int, total: int) -> None:
            self.check_cancelled()

        return progress

    def run(self, job: Job) -> Any:
        """Run a job to its end in the calling thread and apply its result; return that."""
        self.clear_cancel()
        try:
            while True:
                next(job)
        except StopIteration as stop:
            apply = stop.value
        return apply() if callable(apply) else apply

    def _warn(self, message: str) -> None:
        """Tell the user: through :attr:`warning` when something listens, else a warning."""
        if len(self.warning):
            self.warning.emit(message)
        else:
            warnings.warn(message, UserWarning, stacklevel=3)

    # ---------------------------------------------------------------------------------------
    # layers

    def _layers(self):
        if self.viewer is None:
            raise InputError("this session has no viewer; create it with SamcamSession(viewer).")
        return self.viewer.layers

    def _resolve(self, layer, kind: str):
        """A layer given by object or name (``None``: the selected layer of that kind, else the
        topmost one)."""
        from napari import layers as napari_layers

        cls = {
            "image": napari_layers.Image,
            "labels": napari_layers.Labels,
            "shapes": napari_layers.Shapes,
            "points": napari_layers.Points,
        }[kind]
        layers = self._layers()
        if isinstance(layer, str):
            if layer not in layers:
                raise InputError(f"there is no layer named {layer!r} in the viewer.")
            layer = layers[layer]
        if layer is not None:
            if not isinstance(layer, cls):
                raise InputError(f"layer {layer.name!r} is not a {kind} layer.")
            return layer
        active = layers.selection.active
        if isinstance(active, cls) and not (kind == "image" and samcam_meta(active)):
            return active
        candidates = [lyr for lyr in layers if isinstance(lyr, cls)]
        if kind == "image":
            candidates = [lyr for lyr in candidates if not samcam_meta(lyr)] or candidates
        if not candidates:
            raise InputError(
                f"no {kind} layer in the viewer: "
                + (
                    "open an image (File > Open, or File > Open Sample > napari-samcam)."
                    if kind == "image"
                    else f"add a {kind} layer and draw the prompts in it."
                )
            )
        return candidates[-1]

    def image_layer(self, layer=None):
        """The image layer the session works on (given, selected, or the topmost image)."""
        return self._resolve(layer, "image")

    def _dims_point(self):
        return None if self.viewer is None else tuple(self.viewer.dims.point)

    def _indices(self, image, index, all_slices: bool) -> list[tuple[int, ...]]:
        if all_slices:
            return all_indices(image)
        if index is None:
            return [current_index(image, self._dims_point())]
        index = (index,) if isinstance(index, (int, np.integer)) else tuple(index)
        lead = leading_shape(image)
        inside = len(index) == len(lead) and all(
            0 <= i < n for i, n in zip(index, lead, strict=True)
        )
        if not inside:
            raise InputError(
                f"slice {index} is not a plane of layer {image.name!r} (leading axes {lead})."
            )
        return [tuple(int(i) for i in index)]

    def saliency_layer(self, image=None):
        """The newest saliency layer made for ``image`` (``None`` if there is none)."""
        image = self.image_layer(image)
        layers = self._layers()
        for layer in reversed(list(layers)):
            meta = samcam_meta(layer)
            if meta.get("kind") == "saliency" and meta.get("image_layer") == image.name:
                return layer
        return None

    def regions_layer(self, image=None):
        """The Labels layer holding the regions of ``image`` (``None`` before any segmentation)."""
        image = self.image_layer(image)
        name = regions_name(image)
        layers = self._layers()
        return _find(layers, name)

    # ---------------------------------------------------------------------------------------
    # models

    def _classifier_key_now(self) -> tuple:
        spec = self.classifier_spec
        spec_key = spec if isinstance(spec, str) else id(spec)
        return (
            spec_key,
            str(self.checkpoint or ""),
            str(self.device or ""),
            self.trust_checkpoint,
        )

    def _load_classifier(self):
        """The loaded classifier of the current settings (cached; call from any thread)."""
        key = self._classifier_key_now()
        with self._lock:
            if key in self._classifiers:
                return self._classifiers[key]
        from ..classifiers import load_classifier

        spec = self.classifier_spec
        if isinstance(spec, str) and not spec.strip():
            raise InputError(
                "no classifier: choose a built-in one, a TorchScript file, or a name such as "
                "'torchvision:resnet18' (with a checkpoint file)."
            )
        kwargs: dict[str, Any] = {"device": self.device, "trust_checkpoint": self.trust_checkpoint}
        if self.checkpoint:
            kwargs["checkpoint"] = self.checkpoint
        classifier = load_classifier(spec.strip() if isinstance(spec, str) else spec, **kwargs)
        with self._lock:
            self._classifiers[key] = classifier
        return classifier

    @property
    def classifier(self):
        """The loaded classifier (loads it on first use)."""
        return self._load_classifier()

    def _load_segmenter(self):
        from ..segment import Segmenter, load_segmenter

        spec = self.segmenter_spec
        if isinstance(spec, Segmenter):
            return spec
        return load_segmenter(spec, device=self.device)

    @property
    def segmenter(self):
        """The SAM segmenter (loaded once per process and model)."""
        return self._load_segmenter()

    def class_names(self) -> list[str]:
        """Class names of the loaded classifier (indices as text when it has none)."""
        classifier = self._load_classifier()
        if classifier.class_names:
            return [str(n) for n in classifier.class_names]
        n = classifier.extra.get("cam_setup", (None, None, 0))[2]
        return [str(i) for i in range(n)]

    def target_layer_names(self) -> tuple[str, list[str]]:
        """The automatically chosen CAM layer and every named module of the classifier."""
        from ..classifiers import find_target_layer

        classifier = self._load_classifier()
        auto = ""
        try:
            layer, _ = find_target_layer(classifier)
            for name, module in classifier.model.named_modules():
                if module is layer:
                    auto = name
                    break
        except SamcamError:
            pass
        names = [name for name, _ in classifier.model.named_modules() if name]
        return auto, names

    # ---------------------------------------------------------------------------------------
    # jobs: classifier

    def load_classifier_job(self) -> Job:
        """Load the classifier of the current settings (and emit :attr:`classifier_loaded`)."""
        return self._load_classifier_gen()

    def _load_classifier_gen(self) -> Job:
        yield Step("loading classifier", 0, 1)
        classifier = self._load_classifier()
        yield Step("classifier loaded", 1, 1)

        def apply():
            self._announce(classifier)
            self.status.emit(f"classifier {classifier.name} loaded")
            return classifier

        return apply

    def predict_job(self, layer=None, *, index=None) -> Job:
        """Class probabilities of the displayed plane of an image layer."""
        image = self.image_layer(layer)
        (idx,) = self._indices(image, index, False)
        plane = image_plane(image, idx)
        return self._predict_gen(plane)

    def _predict_gen(self, plane: Plane) -> Job:
        from ..saliency import predict

        yield Step("loading classifier", 0, 2)
        classifier = self._load_classifier()
        self.check_cancelled()
        yield Step("predicting", 1, 2)
        probabilities = predict(plane.array, classifier, window=plane.window)
        yield Step("done", 2, 2)

        def apply():
            self.predictions = dict(probabilities)
            self.predictions_changed.emit(dict(probabilities))
            return dict(probabilities)

        return apply

    def predict(self, layer=None, *, index=None) -> dict[str, float]:
        """``{class: probability}`` for the displayed plane of an image layer."""
        return self.run(self.predict_job(layer, index=index))

    # ---------------------------------------------------------------------------------------
    # jobs: explain

    def explain_job(self, layer=None, *, index=None, all_slices: bool = False) -> Job:
        """Compute the saliency of the displayed plane (or of every plane) of an image layer.

        The result goes into an Image layer named after classifier, method and class, over the
        image (heat colormap, additive blending); its metadata holds the provenance.
        """
        image = self.image_layer(layer)
        planes = [image_plane(image, idx) for idx in self._indices(image, index, all_slices)]
        settings = {
            "method": self.method,
            "target": self.target,
            "target_layer": self.target_layer or None,
        }
        return self._explain_gen(image, planes, settings)

    def _explain_gen(self, image, planes: list[Plane], settings: dict) -> Job:
        from ..saliency import explain

        total = len(planes) + 1
        yield Step("loading classifier", 0, total)
        classifier = self._load_classifier()
        results = []
        for i, plane in enumerate(planes):
            self.check_cancelled()
            where = f" (slice {_index_text(plane.index)})" if plane.index else ""
            yield Step(f"{settings['method']}{where}", i + 1, total)
            saliency = explain(
                plane.array,
                classifier,
                method=settings["method"],
                target=settings["target"],
                target_layer=settings["target_layer"],
                window=plane.window,
            )
            results.append((plane.index, saliency))
        names = [classifier.class_label(i) for i in range(len(results[-1][1].probabilities))]
        self.check_cancelled()
        yield Step("done", total, total)

        def apply():
            self._announce(classifier)
            return self._apply_saliency(image, results, names)

        return apply

    def _announce(self, classifier) -> None:
        """Emit :attr:`classifier_loaded` once per classifier object (its classes, layers)."""
        if self._announced is not classifier:
            self._announced = classifier
            self.classifier_loaded.emit(classifier)

    def _apply_saliency(self, image, results: list[tuple[tuple[int, ...], Any]], names):
        """Put saliency maps into their layer (created or updated) and record provenance."""
        if not results:
            return None
        layers = self._layers()
        last = results[-1][1]
        name = saliency_name(last)
        lead = leading_shape(image)
        shape = (*lead, *plane_shape(image))
        layer = _find(layers, name)
        meta = samcam_meta(layer) if layer is not None else {}
        fresh = (
            layer is None
            or meta.get("kind") != "saliency"
            or meta.get("image_layer") != image.name
            or tuple(layer.data.shape) != shape
        )
        if fresh:
            data = np.zeros(shape, dtype=np.float32)
            slices: dict[str, Any] = {}
        else:
            data = np.asarray(layer.data)
            slices = dict(meta.get("slices", {}))
        for index, saliency in results:
            data[index] = saliency.map
            if index:
                slices[_index_text(index)] = saliency.provenance()
        metadata = {
            META_KEY: {
                "kind": "saliency",
                "image_layer": image.name,
                "provenance": last.provenance(),
                **({"slices": slices} if lead else {}),
            }
        }
        if fresh:
            if layer is not None:
                layers.remove(layer)
            layer = self.viewer.add_image(
                data,
                name=name,
                colormap="inferno",
                blending="additive",
                opacity=0.5,
                contrast_limits=(0.0, 1.0),
                metadata=metadata,
                **geometry_kwargs(image),
            )
        else:
            layer.metadata = {**layer.metadata, **metadata}
            layer.refresh()
        self.predictions = dict(zip(names, last.probabilities, strict=False))
        self.predictions_changed.emit(dict(self.predictions))
        self.status.emit(
            f"{last.classifier}: {last.class_name} (p = {last.probability:.2f}), {last.method} "
            f"at {last.layer}"
        )
        return layer

    def explain(self, layer=None, *, index=None, all_slices: bool = False):
        """Saliency of an image layer's displayed plane (or every plane) as a new Image layer.

        Returns
        -------
        napari.layers.Image
            The saliency layer (its metadata holds the provenance).
        """
        return self.run(self.explain_job(layer, index=index, all_slices=all_slices))

    # ---------------------------------------------------------------------------------------
    # jobs: segment

    def segment_job(
        self,
        layer=None,
        *,
        prompt: str | None = None,
        boxes: Sequence | np.ndarray | None = None,
        points: Sequence | np.ndarray | None = None,
        point_labels: Sequence | None = None,
        text: str | None = None,
        shapes=None,
        points_layer=None,
        saliency=None,
        index=None,
        all_slices: bool = False,
    ) -> Job:
        """Regions from SAM for the displayed plane (or every plane) of an image layer.

        Prompts, by ``prompt`` kind (guessed from the arguments when omitted):

        - ``"boxes"``: ``boxes`` given as ``(row0, col0, row1, col1)`` pixel boxes (end
          exclusive), or the rectangles of the Shapes layer ``shapes``;
        - ``"points"``: ``points`` ``(row, col)`` with ``point_labels`` (1 positive, 0
          negative), or the Points layer ``points_layer`` with its ``positive`` feature;
        - ``"text"``: ``text`` scored by the CLIP model of :attr:`clip`;
        - ``"saliency"``: boxes around the binarized saliency map.

        Regions go into the image's Labels layer ``"<image> regions"``, one label per region,
        and its ``features`` table gets one row per region: label, region source, prompt, SAM
        score and the localization metrics against the saliency layer (``saliency``, or the
        newest saliency layer of the image). A new run on a plane replaces the regions of the
        same source on that plane.
        """
        image = self.image_layer(layer)
        indices = self._indices(image, index, all_slices)
        kind = prompt or _guess_prompt(boxes, points, text, shapes, points_layer)
        if kind not in PROMPT_KINDS:
            raise InputError(f"prompt={kind!r}: choose one of {', '.join(PROMPT_KINDS)}.")
        saliency_layer = self._saliency_for(image, saliency)
        if kind == "saliency" and saliency_layer is None:
            raise InputError(
                f"no saliency map for {image.name!r}: click Explain first (prompts 'from "
                "saliency' are boxes around the map's hot region)."
            )
        if kind == "text":
            if not text or not str(text).strip():
                raise InputError("text prompt: type what to segment, e.g. 'nodule'.")
            ok, message = clip_status(self.clip)
            if not ok:
                raise InputError(message)
        dims_point = self._dims_point()
        shapes_layer = None
        if kind == "boxes" and boxes is None:
            shapes_layer = self._resolve(shapes, "shapes")
        if kind == "points" and points is None:
            points_layer = self._resolve(points_layer, "points")
        requests = []
        for idx in indices:
            request = _PlaneRequest(image_plane(image, idx))
            if saliency_layer is not None:
                request.saliency = np.array(saliency_layer.data[idx], dtype=np.float32)
            if kind == "boxes":
                if boxes is not None:
                    request.boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
                else:
                    request.boxes, request.shape_ids = shapes_to_boxes(
                        shapes_layer, image, idx, dims_point
                    )
            elif kind == "points":
                if points is not None:
                    request.points = np.asarray(points, dtype=float).reshape(-1, 2)
                    labels = np.ones(len(request.points)) if point_labels is None else point_labels
                    request.point_labels = np.asarray(labels, dtype=np.int64).reshape(-1)
                else:
                    request.points, request.point_labels = points_to_prompts(
                        points_layer, image, idx, dims_point
                    )
            requests.append(request)
        if kind == "boxes" and not any(len(r.boxes) for r in requests):
            where = "" if all_slices or not indices[0] else f" on slice {_index_text(indices[0])}"
            raise InputError(
                f"no box prompt{where}: draw a rectangle in the Shapes layer "
                f"{getattr(shapes_layer, 'name', '')!r} over the region (rectangle tool, R)."
            )
        if kind == "points" and not any(len(r.points) for r in requests):
            raise InputError(
                f"no point prompt in layer {getattr(points_layer, 'name', '')!r} on this slice: "
                "add points (P), and press T to toggle a selected point's polarity."
            )
        settings = {
            "kind": kind,
            "text": text,
            "clip": self.clip,
            "context": self.context,
            "metric_options": dict(self.metric_options),
            "text_options": dict(self.text_options),
            "saliency_name": None if saliency_layer is None else saliency_layer.name,
            "class_name": _saliency_class(saliency_layer),
        }
        return self._segment_gen(image, requests, settings, shapes_layer)

    def _saliency_for(self, image, saliency):
        if saliency is None:
            return self.saliency_layer(image)
        layer = self._resolve(saliency, "image")
        if tuple(layer.data.shape[-2:]) != plane_shape(image) or layer.data.ndim != (
            len(leading_shape(image)) + 2
        ):
            raise InputError(
                f"saliency layer {layer.name!r} (shape {layer.data.shape}) does not match image "
                f"{image.name!r}; explain that image first."
            )
        return layer

    def _segment_gen(self, image, requests: list[_PlaneRequest], settings: dict, shapes_layer):
        from ..metrics import localization_metrics

        kind = settings["kind"]
        source = REGION_SOURCES[kind]
        total = 1 + 2 * len(requests)
        yield Step("loading SAM", 0, total)
        segmenter = self._load_segmenter()
        results = []
        notes: list[str] = []
        step = 1
        for request in requests:
            self.check_cancelled()
            plane = request.plane
            where = f" (slice {_index_text(plane.index)})" if plane.index else ""
            boxes, points, labels = request.boxes, request.points, request.point_labels
            if kind == "saliency":
                from ..prompts import saliency_boxes

                boxes = saliency_boxes(request.saliency)
                if len(boxes) == 0:
                    notes.append(f"no hot region in the saliency map{where}")
            empty = (kind == "boxes" or kind == "saliency") and (boxes is None or len(boxes) == 0)
            empty |= kind == "points" and (points is None or len(points) == 0)
            if empty:
                step += 2
                continue
            yield Step(f"image embedding{where}", step, total)
            context = settings["context"] if kind in ("boxes", "saliency") else None
            if context is None or kind == "text":
                # The embedding is the long part: compute it as its own step (then cached).
                segmenter.embed(
                    plane.array,
                    window=plane.window,
                    progress=self._progress_callback("embedding"),
                )
            self.check_cancelled()
            yield Step(f"SAM {kind}{where}", step + 1, total)
            step += 2
            kwargs: dict[str, Any] = {"window": plane.window, "source": source}
            if kind == "text":
                kwargs.update(text=settings["text"], clip=settings["clip"])
                kwargs.update(settings["text_options"])
            else:
                kwargs.update(boxes=boxes, points=points, point_labels=labels)
                if context is not None and boxes is not None and len(boxes):
                    kwargs["context"] = context
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                regions = segmenter.segment(
                    plane.array, progress=self._progress_callback("segmenting"), **kwargs
                )
            for warning in caught:
                if not _is_metric_warning(warning):
                    notes.append(str(warning.message))
            rows = []
            for region in regions:
                row: dict[str, Any] = {}
                if request.saliency is not None:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        row.update(
                            localization_metrics(
                                request.saliency, region.mask, **settings["metric_options"]
                            )
                        )
                rows.append(row)
            results.append((request, boxes, regions, rows))
        self.check_cancelled()
        yield Step("done", total, total)
        if settings["saliency_name"] is None:
            notes.append("no saliency map yet: click Explain, then segment again to get metrics")
        return lambda: self._apply_regions(image, results, settings, shapes_layer, notes)

    def _apply_regions(self, image, results, settings, shapes_layer, notes: list[str]):
        import pandas as pd

        layers = self._layers()
        lead = leading_shape(image)
        shape = (*lead, *plane_shape(image))
        name = regions_name(image)
        layer = _find(layers, name)
        if layer is not None and tuple(layer.data.shape) != shape:
            layers.remove(layer)
            layer = None
        data = np.zeros(shape, dtype=np.int32) if layer is None else np.asarray(layer.data)
        old = _regions_table(layer)
        source = REGION_SOURCES[settings["kind"]]
        replaced = set()
        for request, *_ in results:
            replaced.add(_index_text(request.plane.index))
        if len(old):
            drop = (old["region_source"] == source) & old["slice"].astype(str).isin(replaced)
            for label in old.loc[drop, "label"]:
                data[data == int(label)] = 0
            old = old.loc[~drop].reset_index(drop=True)
        next_label = int(max(data.max(initial=0), old["label"].max() if len(old) else 0)) + 1
        rows, summaries = [], {}
        saliency_boxes_layer = []
        for request, boxes, regions, metric_rows in results:
            index = request.plane.index
            plane = data[index] if index else data
            order = np.argsort([-r.area for r in regions])  # small regions painted last, on top
            labels_for = {}
            for k in order:
                plane[regions[k].mask] = next_label + k
                labels_for[k] = next_label + k
            for k, (region, metrics) in enumerate(zip(regions, metric_rows, strict=True)):
                row = {
                    "index": labels_for[k],
                    "label": labels_for[k],
                    "slice": _index_text(index),
                    "region_source": region.source,
                    "prompt": json_text(region.prompt),
                    "score": float(region.score),
                    "area": int(region.area),
                    "model": region.model,
                    "saliency": settings["saliency_name"] or "",
                    "class_name": settings["class_name"] or "",
                    **{m: float(v) for m, v in metrics.items()},
                }
                rows.append(row)
                if request.shape_ids and k < len(request.shape_ids):
                    summaries[request.shape_ids[k]] = metrics_summary(row)
                if settings["kind"] == "saliency" and boxes is not None and k < len(boxes):
                    saliency_boxes_layer.append((index, boxes[k], metrics_summary(row)))
            next_label += len(regions)
        table = pd.concat([old, pd.DataFrame(rows)], ignore_index=True) if rows else old
        table = _order_columns(table, bool(lead))
        metadata = {
            META_KEY: {
                "kind": "regions",
                "image_layer": image.name,
                "segmenter": _first(r.model for _, _, regs, _ in results for r in regs),
            }
        }
        if layer is None:
            layer = self.viewer.add_labels(
                data, name=name, opacity=0.45, metadata=metadata, **geometry_kwargs(image)
            )
        else:
            layer.data = data
            layer.metadata = {**layer.metadata, **metadata}
        layer.features = table  # reassigning fires the features event (features table widget)
        if shapes_layer is not None and summaries:
            _label_shapes(shapes_layer, summaries)
        if saliency_boxes_layer:
            self._show_saliency_boxes(image, saliency_boxes_layer, replaced)
        layers.selection.active = layer
        for note in notes:
            self._warn(note)
        self.status.emit(f"{len(rows)} region(s) from {source} in {name!r}")
        return layer

    def _show_saliency_boxes(self, image, boxes: list[tuple], replaced: set[str]):
        """Show the boxes derived from the saliency, labelled with their metrics.

        Boxes of the slices segmented now replace earlier ones; other slices keep theirs.
        """
        layers = self._layers()
        name = f"{image.name} saliency boxes"
        lead = bool(leading_shape(image))
        shapes = [box_to_rectangle(box, index if lead else ()) for index, box, _ in boxes]
        texts = [text for _, _, text in boxes]
        old = _find(layers, name)
        if old is not None:
            if lead and "metrics" in old.features:
                for vertices, text in zip(old.data, old.features["metrics"], strict=True):
                    if _index_text((int(round(vertices[0, 0])),)) not in replaced:
                        shapes.append(np.asarray(vertices))
                        texts.append(str(text))
            layers.remove(old)
        self.viewer.add_shapes(
            shapes,
            shape_type="rectangle",
            name=name,
            edge_color="orange",
            face_color="transparent",
            edge_width=2,
            features={"metrics": texts},
            text=text_style(len(shapes[0][0]) if shapes else 2),
            metadata={META_KEY: {"kind": "saliency-boxes", "image_layer": image.name}},
            **geometry_kwargs(image),
        )

    def segment(self, layer=None, **kwargs):
        """Run :meth:`segment_job` to the end; returns the regions Labels layer."""
        return self.run(self.segment_job(layer, **kwargs))

    # ---------------------------------------------------------------------------------------
    # metrics and saving

    def metrics(self, layer=None):
        """The regions table (a pandas DataFrame) of an image layer, one row per region."""
        regions = self.regions_layer(layer)
        if regions is None:
            raise InputError("no regions yet: segment first (boxes, points, text or saliency).")
        return regions.features.copy()

    def export_metrics(self, path: str | os.PathLike, layer=None) -> list[str]:
        """Write the regions table of an image layer to a CSV file."""
        from ._writer import write_table

        return write_table(path, self.metrics(layer))

    def save(self, path: str | os.PathLike, layers: Iterable | None = None) -> list[str]:
        """Save layers (all by default) as a session folder the reader opens again exactly."""
        from ._writer import write_session

        chosen = list(self._layers()) if layers is None else list(layers)
        return write_session(path, [lyr.as_layer_data_tuple() for lyr in chosen])

    # ---------------------------------------------------------------------------------------
    # prompt layers

    def add_prompt_layers(self, layer=None):
        """Add a Shapes layer for box prompts and a Points layer for point prompts.

        Both sit on the image's grid. Points carry a ``positive`` feature (green positive, red
        negative); press T in the Points layer to toggle the selected points.
        """
        image = self.image_layer(layer)
        layers = self._layers()
        geometry = geometry_kwargs(image)
        lead = leading_shape(image)
        ndim = len(lead) + 2
        boxes_name, points_name = f"{image.name} boxes", f"{image.name} points"
        if boxes_name not in layers:
            self.viewer.add_shapes(
                ndim=ndim,
                name=boxes_name,
                edge_color="cyan",
                face_color="transparent",
                edge_width=2,
                metadata={META_KEY: {"kind": "box-prompts", "image_layer": image.name}},
                **geometry,
            )
        if points_name not in layers:
            points = self.viewer.add_points(
                np.zeros((0, ndim)),
                ndim=ndim,
                name=points_name,
                features={"positive": np.zeros(0, dtype=bool)},
                face_color="positive",
                face_color_cycle=POINT_COLORS,
                size=max(6.0, min(plane_shape(image)) / 60.0),
                metadata={META_KEY: {"kind": "point-prompts", "image_layer": image.name}},
                **geometry,
            )
            points.feature_defaults = {"positive": True}
            bind_polarity_key(points)
        shapes = layers[boxes_name]
        shapes.mode = "add_rectangle"
        layers.selection.active = shapes
        return layers[boxes_name], layers[points_name]


def text_style(ndim: int) -> dict:
    """How metrics are written on boxes: yellow text above the box's upper-left corner."""
    return {
        "string": "{metrics}",
        "anchor": "upper_left",
        "size": 10,
        "color": "yellow",
        "translation": (0.0,) * (ndim - 2) + (-4.0, 0.0),
    }


#: Key that toggles the polarity of the selected prompt points.
POLARITY_KEY = "t"


def toggle_polarity(points_layer) -> None:
    """Flip the ``positive`` feature of the selected points (or of new points if none)."""
    features = points_layer.features.copy()
    if "positive" not in features:
        features["positive"] = np.ones(len(features), dtype=bool)
    selected = sorted(points_layer.selected_data)
    if selected:
        column = features["positive"].to_numpy(dtype=bool).copy()
        column[selected] = ~column[selected]
        features["positive"] = column
        points_layer.features = features
        points_layer.refresh_colors()
    else:
        defaults = points_layer.feature_defaults
        now = bool(defaults["positive"].iloc[0]) if "positive" in defaults else True
        points_layer.feature_defaults = {**defaults.iloc[0].to_dict(), "positive": not now}


def bind_polarity_key(points_layer) -> None:
    """Bind :data:`POLARITY_KEY` in a Points layer to :func:`toggle_polarity`."""
    points_layer.bind_key(POLARITY_KEY, toggle_polarity, overwrite=True)
    if "positive" not in points_layer.features:
        points_layer.features = {"positive": np.ones(len(points_layer.data), dtype=bool)}
        points_layer.feature_defaults = {"positive": True}


def _label_shapes(shapes_layer, summaries: dict[int, str]) -> None:
    """Write metrics summaries into a Shapes layer's ``metrics`` feature and show them."""
    features = shapes_layer.features.copy()
    n = len(shapes_layer.data)
    if len(features) != n:
        features = features.reindex(range(n))
    if "metrics" not in features:
        features["metrics"] = [""] * n
    column = features["metrics"].astype(object).where(features["metrics"].notna(), "")
    for i, text in summaries.items():
        if i < n:
            column.iloc[i] = text
    features["metrics"] = column.astype(str)
    shapes_layer.features = features
    defaults = shapes_layer.feature_defaults
    base = defaults.iloc[0].to_dict() if len(defaults) else {}
    shapes_layer.feature_defaults = {**base, "metrics": ""}
    shapes_layer.text = text_style(shapes_layer.ndim)


def _regions_table(layer):
    import pandas as pd

    if layer is None:
        return pd.DataFrame()
    features = layer.features
    if "label" not in features or "region_source" not in features:
        return pd.DataFrame()
    table = features.copy()
    if "slice" not in table:
        table["slice"] = ""
    return table


def _order_columns(table, volume: bool):
    """Identity and score first, then the metrics, then provenance details, then the rest."""
    from ._layers import REGION_COLUMNS, REGION_DETAILS

    try:
        from ..metrics import METRIC_NAMES
    except ImportError:
        METRIC_NAMES = ()
    first = [c for c in REGION_COLUMNS if c in table and (volume or c != "slice")]
    metrics = [c for c in METRIC_NAMES if c in table]
    details = [c for c in REGION_DETAILS if c in table]
    placed = set(first) | set(metrics) | set(details) | ({"slice"} if not volume else set())
    rest = [c for c in table.columns if c not in placed]
    return table[first + metrics + details + rest].reset_index(drop=True)


def _guess_prompt(boxes, points, text, shapes, points_layer) -> str:
    if text is not None:
        return "text"
    if points is not None or points_layer is not None:
        return "points"
    return "boxes"


def _index_text(index: tuple[int, ...]) -> str:
    if not index:
        return ""
    return str(index[0]) if len(index) == 1 else ",".join(str(i) for i in index)


def _saliency_class(layer) -> str | None:
    if layer is None:
        return None
    provenance = samcam_meta(layer).get("provenance", {})
    return provenance.get("class_name")


def _is_metric_warning(warning) -> bool:
    return type(warning.message).__name__ == "DegenerateInputWarning"


def _find(layers, name: str):
    """The layer called ``name``, or ``None`` (napari's LayerList has no ``get``)."""
    for layer in layers:
        if layer.name == name:
            return layer
    return None


def _first(values) -> str:
    for value in values:
        return value
    return ""
