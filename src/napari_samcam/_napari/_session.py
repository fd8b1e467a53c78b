"""The model behind the dock widget: a plain Python object, no Qt.

:class:`SamcamSession` holds the settings (classifier, CAM method, SAM model, ...) and the loaded
models, and turns napari layers into calls of the core API and the results back into layers. The
dock widget only forwards its events here; napari's console gets the same object, and scripts can
create one for any viewer::

    session = SamcamSession(viewer, classifier="lesion-detector")
    saliency_layer = session.explain()                 # the selected image, displayed slice
    regions = session.segment(boxes=[(262, 349, 350, 447)])
    session.metrics()                                  # the regions table

Long operations are *jobs* (see :mod:`napari_samcam._napari._jobs`): generators that yield
:class:`Step` records between units of work and finally return a callable that applies the result
to the viewer. Jobs read the viewer only when they are created, on the calling thread, and touch
it again only in that final callable (see :mod:`napari_samcam._napari._result_layers`), which the
widget runs on the GUI thread. :meth:`SamcamSession.run` runs a job to the end in the calling
thread, which is what the plain methods (:meth:`explain`, :meth:`segment`, ...) do.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from psygnal import Signal

from ..errors import InputError, SamcamError
from ..evaluation_settings import setting
from ._choices import (
    BUILTIN_CLASSIFIER_NAMES,
    PROMPT_KINDS,
    SOURCE_OF_PROMPT_KIND,
    builtin_classifier_names,
    clip_status,
    explain_target,
    guess_prompt,
)
from ._jobs import (
    Cancellation,
    Job,
    JobCancelled,
    PlaneRequest,
    Step,
    explain_steps,
    limit_torch_threads,
    load_classifier_steps,
    predict_steps,
    run_job,
    segment_steps,
    volume_steps,
)
from ._later import Later, run_now
from ._layers import (
    all_indices,
    current_index,
    full_resolution,
    image_plane,
    index_text,
    leading_shape,
    plane_shape,
    points_to_prompts,
    samcam_meta,
    shapes_to_boxes,
)
from ._prompt_layers import (
    POLARITY_KEY,
    add_box_prompt_layer,
    add_point_prompt_layer,
    add_prompt_layers,
    bind_polarity_key,
    select_box_prompts,
    toggle_polarity,
)
from ._result_layers import (
    labels_to_scan,
    region_layers,
    text_style,
    unreliable_regions_note,
    write_regions,
    write_saliency,
)

__all__ = [
    "BUILTIN_CLASSIFIER_NAMES",
    "POLARITY_KEY",
    "PROMPT_KINDS",
    "SOURCE_OF_PROMPT_KIND",
    "Job",
    "JobCancelled",
    "SamcamSession",
    "Step",
    "bind_polarity_key",
    "builtin_classifier_names",
    "clip_status",
    "limit_torch_threads",
    "text_style",
    "toggle_polarity",
]

#: The defaults shared with dataset evaluation come from its settings' declaration.
_DEFAULT_METHOD = setting("methods").default[0]
_DEFAULT_SAM = setting("sam").default
_DEFAULT_CONTEXT = setting("context").default


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
        Class to explain. ``None``: the classifier's finding class when it declares one (the
        built-ins: ``"lesion"``), else the top-scoring class; ``"top"``: the top-scoring class.
    target_layer : str, optional
        Dotted name of the CAM target layer; chosen automatically when ``None``.
    segmenter : str or Segmenter
        SAM model (see :func:`napari_samcam.segment.load_segmenter`).
    context : float or None
        Box prompts: embed a crop ``context`` times the box around each box (better masks for
        small lesions, one encoder run per box); ``None`` embeds the whole image once.
    clip : str, optional
        CLIP model (local folder or hub id) for text prompts.
    sam_preprocess : str, optional
        Contrast pre-processing of the image SAM sees for box and point prompts
        (:mod:`napari_samcam.sam_preprocess`: ``"clahe"``, ``"gamma:0.5"``, ...).
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
        method: str = _DEFAULT_METHOD,
        target: int | str | None = None,
        target_layer: str | None = None,
        segmenter: Any = _DEFAULT_SAM,
        context: float | None = _DEFAULT_CONTEXT,
        clip: str | None = None,
        device: str | None = None,
        metric_options: dict | None = None,
        text_options: dict | None = None,
        sam_preprocess: str | None = None,
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
        self.sam_preprocess = sam_preprocess
        self.device = device
        self.metric_options = dict(metric_options or {})
        self.text_options = dict(text_options or {})
        self.predictions: dict[str, float] = {}
        #: The plane (leading indices; empty for a 2-D image) :attr:`predictions` belong to.
        self.predictions_index: tuple[int, ...] = ()
        #: How a job's new result layers are put into the viewer (see
        #: :func:`~napari_samcam._napari._result_layers.add_hidden`): at once, so that code gets
        #: them back in the viewer; the dock widget spreads the steps over the event loop.
        self.later: Later = run_now
        self._classifiers: dict[tuple, Any] = {}
        self._announced: Any = None
        self._image = None
        self._cancel = Cancellation()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------------------------------
    # cancellation and running

    def cancel(self) -> None:
        """Ask the running job to stop at its next step."""
        self._cancel.cancel()

    def clear_cancel(self) -> None:
        """Forget an earlier :meth:`cancel` (a new job starts)."""
        self._cancel.clear()

    def run(self, job: Job) -> Any:
        """Run a job to its end in the calling thread and apply its result; return that."""
        self.clear_cancel()
        return run_job(job)

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

    def _resolve(self, layer, kind: str, image=None):
        """A layer given by object or name, or the default of that kind (``layer=None``).

        Defaults: for images, :attr:`image`; for prompt layers (``shapes``, ``points``), the
        prompt layer made for ``image`` (by *Add prompt layers* or a sample), else the selected
        layer of that kind, else the topmost one. Layers the plugin derived itself (saliency
        maps, boxes around the saliency) are never a default.
        """
        cls = _layer_class(kind)
        layers = self._layers()
        if isinstance(layer, str):
            if layer not in layers:
                raise InputError(f"there is no layer named {layer!r} in the viewer.")
            layer = layers[layer]
        if layer is not None:
            if not isinstance(layer, cls):
                article = "an" if kind == "image" else "a"
                raise InputError(f"layer {layer.name!r} is not {article} {kind} layer.")
            return layer
        candidates = [lyr for lyr in layers if isinstance(lyr, cls) and not _derived(lyr)]
        if kind == "image" and any(lyr is self._image for lyr in candidates):
            return self._image
        if image is not None and kind in _PROMPT_KIND_OF:
            own = [
                lyr
                for lyr in candidates
                if samcam_meta(lyr).get("kind") == _PROMPT_KIND_OF[kind]
                and samcam_meta(lyr).get("image_layer") == image.name
            ]
            if own:
                return own[-1]
        active = layers.selection.active
        if any(lyr is active for lyr in candidates):
            return active
        if not candidates:
            raise InputError(
                f"no {kind} layer in the viewer: "
                + (
                    "open an image (File > Open, or File > Open Sample > SAM-CAM)."
                    if kind == "image"
                    else f"add a {kind} layer and draw the prompts in it."
                )
            )
        return candidates[-1]

    @property
    def image(self):
        """The image layer every action uses when none is given.

        It is the image the last action was given (by object or by name; a widget button gives
        the image chosen in the widget). Before any, or once that layer left the viewer, it is the
        selected image layer, else the topmost one that the plugin did not make. Layers added
        later, by hand or by the plugin, do not change it. Assign a layer or a name to choose.
        """
        return self.image_layer()

    @image.setter
    def image(self, layer) -> None:
        self._image = None if layer is None else self._resolve(layer, "image")

    def image_layer(self, layer=None):
        """The image layer ``layer`` (object or name), or :attr:`image` when ``None``.

        The layer returned becomes :attr:`image`, the default of the next action.
        """
        image = self._resolve(layer, "image")
        self._image = image
        return image

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

    def regions_layers(self, image=None, prompt: str | None = None) -> list:
        """The Labels layers holding the regions of ``image`` (of one ``prompt`` kind, or all).

        Each prompt kind has its own layer, ``"<image> box regions"`` and so on; a region that
        would overlap another of its kind on the same plane goes into a further layer
        (``"<image> box regions 2"``), so that every region keeps all its pixels. Empty before
        any segmentation.
        """
        image = self.image_layer(image)
        return region_layers(self._layers(), image, prompt)

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

    def finding_class(self) -> str | None:
        """The loaded classifier's finding class (explained by default), if it declares one."""
        found = explain_target(self._load_classifier(), None)
        return None if found is None else str(found)

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
        classifier = yield from load_classifier_steps(self._load_classifier)

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
        return self._predict_gen(plane, idx)

    def _predict_gen(self, plane, index: tuple[int, ...]) -> Job:
        probabilities = yield from predict_steps(plane, self._load_classifier, self._cancel)

        def apply():
            self.predictions = dict(probabilities)
            self.predictions_index = tuple(index)
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
        image (inferno, transparent where the map is low); its metadata holds the provenance.
        """
        image = self.image_layer(layer)
        planes = [image_plane(image, idx) for idx in self._indices(image, index, all_slices)]
        settings = {
            "method": self.method,
            "target": self.target,
            "target_layer": self.target_layer or None,
        }
        return self._explain_gen(image, planes, settings)

    def _explain_gen(self, image, planes, settings: dict) -> Job:
        classifier, results, names = yield from explain_steps(
            planes, settings, self._load_classifier, self._cancel
        )

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
        self._layers()
        layer = write_saliency(self.viewer, image, results, self.later)
        last = results[-1][1]
        self.predictions = dict(zip(names, last.probabilities, strict=False))
        self.predictions_index = tuple(results[-1][0])
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

        Regions go into the Labels layer of their prompt kind (``"<image> box regions"``, ...),
        one label per region, and its ``features`` table gets one row per region: label, the
        localization metrics against the saliency layer (``saliency``, or the newest saliency
        layer of the image), SAM score, area, region source and prompt. A region that would
        overlap another of its kind goes into a further layer (``"<image> box regions 2"``):
        no region hides another, and each table matches its layer's pixels. Labels are unique
        over all regions layers of the image. A new run on a plane replaces the regions of the
        same kind on that plane.
        """
        image = self.image_layer(layer)
        indices = self._indices(image, index, all_slices)
        kind = prompt or guess_prompt(boxes, points, text, shapes, points_layer)
        if kind not in PROMPT_KINDS:
            raise InputError(f"prompt={kind!r}: choose one of {', '.join(PROMPT_KINDS)}.")
        saliency_layer = self._saliency_for(image, saliency)
        if kind == "saliency" and saliency_layer is None:
            raise InputError(
                f"no saliency map for {image.name!r}: click Explain first (prompts 'from "
                "saliency' are boxes around the map's hot region)."
            )
        if kind == "text":  # the missing model first: without it the text field is disabled
            ok, message = clip_status(self.clip)
            if not ok:
                raise InputError(message)
            if not text or not str(text).strip():
                raise InputError("text prompt: type what to segment, e.g. 'nodule'.")
        dims_point = self._dims_point()
        shapes_layer = None
        if kind == "boxes" and boxes is None:
            shapes_layer = self._resolve(shapes, "shapes", image)
        if kind == "points" and points is None:
            points_layer = self._resolve(points_layer, "points", image)
        requests = []
        for idx in indices:
            request = PlaneRequest(image_plane(image, idx))
            if saliency_layer is not None:
                request.saliency = saliency_plane(saliency_layer, idx)
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
        where = "" if all_slices or not indices[0] else f" on slice {index_text(indices[0])}"
        if kind == "boxes" and not any(len(r.boxes) for r in requests):
            raise _missing_prompt("boxes", shapes_layer, image, where)
        if kind == "points" and not any(len(r.points) for r in requests):
            raise _missing_prompt("points", points_layer, image, where)
        if kind == "points" and not any(np.any(r.point_labels == 1) for r in requests):
            raise InputError(
                f"only negative points in layer {getattr(points_layer, 'name', '')!r}{where}: "
                "SAM needs at least one positive point on the region (select a point and press "
                "T to make it positive)."
            )
        settings = self._segment_settings(
            kind, saliency_layer, text=text, **self._labels_settings(image, kind, indices)
        )
        return self._segment_gen(image, requests, settings, shapes_layer)

    def _labels_settings(self, image, kind: str, indices) -> dict[str, Any]:
        """What a job's worker prepares for writing regions of ``kind`` on the planes
        ``indices`` of ``image`` (see :mod:`._labels_prep`): the image's regions arrays with
        the labels to clear, and the shape of the kind's layer when the job is to create it."""
        return {
            "labels_to_scan": labels_to_scan(self._layers(), image, kind, indices),
            "new_layer_shape": self._new_layer_shape(image, kind),
        }

    def _new_layer_shape(self, image, kind: str) -> tuple[int, ...] | None:
        """The shape of the regions layer of ``kind`` when a job is to create it, else
        ``None``."""
        shape = (*leading_shape(image), *plane_shape(image))
        if any(
            tuple(lyr.data.shape) == shape for lyr in region_layers(self._layers(), image, kind)
        ):
            return None
        return shape

    def _segment_settings(self, kind: str, saliency_layer, **extra) -> dict[str, Any]:
        """What a segment job needs of the session's settings (read on the GUI thread)."""
        return {
            "kind": kind,
            "text": None,
            "clip": self.clip,
            "context": self.context,
            "preprocess": self.sam_preprocess,
            "metric_options": dict(self.metric_options),
            "text_options": dict(self.text_options),
            "saliency_name": None if saliency_layer is None else saliency_layer.name,
            "class_name": _saliency_class(saliency_layer),
            **extra,
        }

    def segment_volume_job(
        self, layer=None, *, box=None, shapes=None, saliency=None, index=None
    ) -> Job:
        """ "Segment volume from this box": one box on the displayed slice of a volume, carried
        through every slice by SAM 2 (:meth:`~napari_samcam.segment.Segmenter.segment_volume`).

        The box is ``box`` ``(row0, col0, row1, col1)`` or the one rectangle of the Shapes layer
        ``shapes`` on that slice. Regions and metrics land as :meth:`segment_job`'s box
        regions do, one per slice.
        """
        image = self.image_layer(layer)
        if len(leading_shape(image)) != 1:
            raise InputError(
                f"layer {image.name!r} is not a volume (one slice axis): 'Segment volume from "
                "this box' needs a 3-D image."
            )
        (key,) = self._indices(image, index, False)
        saliency_layer = self._saliency_for(image, saliency)
        shapes_layer = None
        if box is None:
            shapes_layer = self._resolve(shapes, "shapes", image)
            boxes, _ = shapes_to_boxes(shapes_layer, image, key, self._dims_point())
        else:
            boxes = np.asarray(box, dtype=np.int64).reshape(-1, 4)
        if len(boxes) != 1:
            raise InputError(
                f"'Segment volume from this box' needs exactly one box on slice {key[0]}; "
                f"found {len(boxes)} in {getattr(shapes_layer, 'name', 'box')!r}."
            )
        requests = []
        for idx in all_indices(image):
            request = PlaneRequest(image_plane(image, idx))
            request.boxes = boxes
            if saliency_layer is not None:
                request.saliency = saliency_plane(saliency_layer, idx)
            requests.append(request)
        settings = self._segment_settings(
            "boxes",
            saliency_layer,
            source="sam-volume-box",
            **self._labels_settings(image, "boxes", [r.plane.index for r in requests]),
        )
        return self._volume_gen(image, requests, key[0], settings)

    def _volume_gen(self, image, requests, key: int, settings: dict):
        results, notes, prep = yield from volume_steps(
            requests, key, settings, self._load_segmenter, self._cancel
        )
        return lambda: self._apply_regions(image, results, settings, None, notes, prep)

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

    def _segment_gen(self, image, requests: list[PlaneRequest], settings: dict, shapes_layer):
        results, notes, prep = yield from segment_steps(
            requests, settings, self._load_segmenter, self._cancel
        )
        return lambda: self._apply_regions(image, results, settings, shapes_layer, notes, prep)

    def _apply_regions(self, image, results, settings, shapes_layer, notes: list[str], prep):
        self._layers()
        written, n_rows = write_regions(
            self.viewer, image, results, settings, shapes_layer, self.later, prep
        )
        for note in [*notes, unreliable_regions_note(results)]:
            if note:
                self._warn(note)
        source = SOURCE_OF_PROMPT_KIND[settings["kind"]]
        names = ", ".join(repr(layer.name) for layer in written)
        self.status.emit(f"{n_rows} region(s) from {source} in {names}")
        return written[0]

    def segment(self, layer=None, **kwargs):
        """Run :meth:`segment_job` to the end; returns the regions Labels layer (the first one
        that received a region; :meth:`regions_layers` lists them all)."""
        return self.run(self.segment_job(layer, **kwargs))

    # ---------------------------------------------------------------------------------------
    # metrics and saving

    def metrics(self, layer=None):
        """The regions table (a pandas DataFrame) of an image layer, one row per region.

        All regions layers of the image together, ordered by label; the ``layer`` column names
        the Labels layer that holds each region's pixels.
        """
        import pandas as pd

        tables = []
        for regions in self.regions_layers(layer):
            table = regions.features
            if len(table):
                tables.append(table.assign(layer=regions.name))
        if not tables:
            raise InputError("no regions yet: segment first (boxes, points, text or saliency).")
        table = pd.concat(tables, ignore_index=True)
        return table.sort_values("label", kind="stable").reset_index(drop=True)

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

    def add_prompt_layers(self, layer=None, later: Later = run_now):
        """Add a Shapes layer for box prompts and a Points layer for point prompts.

        Both sit on the image's grid. Points carry a ``positive`` feature (green positive, red
        negative); press T in the Points layer to toggle the selected points. New layers are
        in the viewer once the steps of ``later`` ran (at once by default).
        """
        image = self.image_layer(layer)
        self._layers()
        return add_prompt_layers(self.viewer, image, later)

    def add_point_prompts(self, layer=None, later: Later = run_now):
        """The Points layer for point prompts of an image layer (added unless it is there); see
        :meth:`add_prompt_layers`."""
        image = self.image_layer(layer)
        self._layers()
        return add_point_prompt_layer(self.viewer, image, later)

    def add_box_prompts(self, layer=None, later: Later = run_now):
        """The Shapes layer for box prompts of an image layer (added unless it is there),
        selected in rectangle mode; see :meth:`add_prompt_layers`."""
        image = self.image_layer(layer)
        self._layers()
        shapes = add_box_prompt_layer(self.viewer, image, later)
        later(lambda: select_box_prompts(self.viewer, shapes))
        return shapes


def _missing_prompt(kind: str, layer, image, where: str) -> InputError:
    """What is wrong when a prompt layer gives no prompt: nothing drawn, or nothing usable."""
    name = getattr(layer, "name", "")
    drawn = 0 if layer is None else len(layer.data)
    height, width = plane_shape(image)
    size = f"{height} x {width} pixels"
    if kind == "boxes" and drawn:
        return InputError(
            f"the {drawn} shape(s) of layer {name!r} give no usable box{where}: a box must "
            f"overlap the image {image.name!r} ({size}) and have a non-zero height and width. "
            "Draw the rectangle over the region (rectangle tool, R)."
        )
    if kind == "boxes":
        return InputError(
            f"no box prompt{where}: draw a rectangle in the Shapes layer {name!r} over the "
            "region (rectangle tool, R)."
        )
    if drawn:
        return InputError(
            f"none of the {drawn} point(s) of layer {name!r} lies on the image {image.name!r} "
            f"({size}){where}: click inside the image."
        )
    return InputError(
        f"no point prompt in layer {name!r}{where}: add points (P), and press T to toggle a "
        "selected point's polarity."
    )


def saliency_plane(layer, index: tuple[int, ...]) -> np.ndarray:
    """Plane ``index`` of a saliency layer as float32, for a job to read off the GUI thread.

    A 2-D map is read where it is (a copy froze the GUI thread 0.5 s at 8000²): Explain gives
    the layer a new array rather than writing into this one. A plane of a stack is copied,
    since Explain writes into the stack.
    """
    data = full_resolution(layer)
    if index:
        return np.array(data[index], dtype=np.float32)
    return np.asarray(data, dtype=np.float32)


def _saliency_class(layer) -> str | None:
    if layer is None:
        return None
    provenance = samcam_meta(layer).get("provenance", {})
    return provenance.get("class_name")


#: Which prompt layer the plugin makes for each kind of prompt layer.
_PROMPT_KIND_OF = {"shapes": "box-prompts", "points": "point-prompts"}

#: Kinds of layer the plugin derives from its results (never a default input).
_DERIVED_KINDS = ("saliency", "saliency-boxes", "regions")


def _layer_class(kind: str):
    from napari import layers

    return {
        "image": layers.Image,
        "labels": layers.Labels,
        "shapes": layers.Shapes,
        "points": layers.Points,
    }[kind]


def _derived(layer) -> bool:
    return samcam_meta(layer).get("kind") in _DERIVED_KINDS
