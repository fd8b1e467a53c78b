"""Jobs: the long work of a session as generators, cancellable between steps.

A job yields :class:`Step` records between units of work, so that a worker thread can report
progress and stop at any of them, and finally returns a callable that applies the result to the
viewer. The generators here do the computing only: they read no layer, and return what they
computed; :class:`~napari_samcam._napari._session.SamcamSession` wraps them into jobs whose final
callable writes the layers (see :mod:`napari_samcam._napari._result_layers`).
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SamcamError
from ._choices import SOURCE_OF_PROMPT_KIND, explain_target
from ._labels_prep import LabelsPrep, prepare_labels
from ._layers import Plane, index_text

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
class PlaneRequest:
    """Inputs of one plane of a segmentation job, captured on the calling thread."""

    plane: Plane
    boxes: np.ndarray | None = None
    points: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    shape_ids: list[int] = field(default_factory=list)
    saliency: np.ndarray | None = None


@dataclass
class RegionDisplay:
    """What writing a region into a Labels layer needs, computed in the job's worker thread:
    on the GUI thread each whole-plane pass over an 8000² mask cost 20-100 ms.

    Attributes
    ----------
    where : tuple of slice
        The rows and columns of the region's bounding box (empty slices for an empty mask).
    mask : numpy.ndarray
        The region's mask inside ``where``.
    trust : dict
        The region table's trust columns (``region_unreliable``, ``region_reason``).
    area : int
        Pixels in the mask.
    """

    where: tuple[slice, slice]
    mask: np.ndarray
    trust: dict
    area: int


def region_display(region) -> RegionDisplay:
    """The :class:`RegionDisplay` of a SAM region."""
    from ..box_prompts import mask_box
    from ..region_trust import quality_of_region

    box = mask_box(region.mask)
    r0, c0, r1, c1 = (0, 0, 0, 0) if box is None else (int(v) for v in box)
    where = (slice(r0, r1), slice(c0, c1))
    quality = quality_of_region(region)
    trust = {k: quality[k] for k in ("region_unreliable", "region_reason")}
    return RegionDisplay(where, region.mask[where], trust, region.area)


class Cancellation:
    """A flag the GUI thread sets and a job checks between its steps."""

    def __init__(self):
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def check(self) -> None:
        """Raise :class:`JobCancelled` if :meth:`cancel` was called since :meth:`clear`."""
        if self._event.is_set():
            raise JobCancelled("cancelled")

    def progress(self, message: str) -> Callable[[int, int], None]:
        """A core ``progress(done, total)`` callback that stops the job when cancelled."""

        def progress(done: int, total: int) -> None:
            self.check()

        return progress


def run_job(job: Job) -> Any:
    """Run a job to its end in the calling thread and apply its result; return that."""
    try:
        while True:
            next(job)
    except StopIteration as stop:
        apply = stop.value
    return apply() if callable(apply) else apply


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


def load_classifier_steps(load_classifier: Callable[[], Any]) -> Generator[Step, None, Any]:
    """Load the classifier; returns it."""
    yield Step("loading classifier", 0, 1)
    classifier = load_classifier()
    yield Step("classifier loaded", 1, 1)
    return classifier


def predict_steps(
    plane: Plane, load_classifier: Callable[[], Any], cancel: Cancellation
) -> Generator[Step, None, dict[str, float]]:
    """Class probabilities of one plane; returns ``{class name: probability}``."""
    from ..saliency import predict

    yield Step("loading classifier", 0, 2)
    classifier = load_classifier()
    cancel.check()
    yield Step("predicting", 1, 2)
    probabilities = predict(plane.array, classifier, window=plane.window)
    yield Step("done", 2, 2)
    return dict(probabilities)


def explain_steps(
    planes: list[Plane], settings: dict, load_classifier: Callable[[], Any], cancel: Cancellation
) -> Generator[Step, None, tuple[Any, list[tuple[tuple[int, ...], Any]], list[str]]]:
    """Saliency of each plane.

    Returns the classifier, ``[(plane index, Saliency)]`` and the classifier's class names.
    """
    from ..saliency import explain

    total = len(planes) + 1
    yield Step("loading classifier", 0, total)
    classifier = load_classifier()
    results = []
    for i, plane in enumerate(planes):
        cancel.check()
        where = f" (slice {index_text(plane.index)})" if plane.index else ""
        yield Step(f"{settings['method']}{where}", i + 1, total)
        saliency = explain(
            plane.array,
            classifier,
            method=settings["method"],
            target=explain_target(classifier, settings["target"]),
            target_layer=settings["target_layer"],
            window=plane.window,
        )
        results.append((plane.index, saliency))
    names = [classifier.class_label(i) for i in range(len(results[-1][1].probabilities))]
    cancel.check()
    yield Step("done", total, total)
    return classifier, results, names


def segment_steps(
    requests: list[PlaneRequest],
    settings: dict,
    load_segmenter: Callable[[], Any],
    cancel: Cancellation,
) -> Generator[Step, None, tuple[list[tuple], list[str], LabelsPrep]]:
    """SAM regions of each plane, with their metrics against the plane's saliency.

    Returns ``[(request, boxes, regions, metric rows, region displays)]``, notes for the user
    and the :class:`~napari_samcam._napari._labels_prep.LabelsPrep` of ``settings``.
    """
    kind = settings["kind"]
    source = SOURCE_OF_PROMPT_KIND[kind]
    total = 1 + 2 * len(requests)
    yield Step("loading SAM", 0, total)
    segmenter = load_segmenter()
    results = []
    notes: list[str] = []
    step = 1
    for request in requests:
        cancel.check()
        plane = request.plane
        where = f" (slice {index_text(plane.index)})" if plane.index else ""
        boxes, points, labels = request.boxes, request.points, request.point_labels
        if kind == "saliency":
            from ..box_prompts import saliency_boxes

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
                progress=cancel.progress("embedding"),
                preprocess=None if kind == "text" else settings["preprocess"],
            )
        cancel.check()
        yield Step(f"SAM {kind}{where}", step + 1, total)
        step += 2
        kwargs: dict[str, Any] = {"window": plane.window}
        run = segmenter.segment
        if kind == "text":  # text prompts are built on the segmenter
            from ..clip_regions import segment_text

            run = functools.partial(segment_text, segmenter, text=settings["text"])
            kwargs.update(clip=settings["clip"], **settings["text_options"])
        else:
            kwargs.update(boxes=boxes, points=points, point_labels=labels, source=source)
            kwargs["preprocess"] = settings["preprocess"]
            if context is not None and boxes is not None and len(boxes):
                kwargs["context"] = context
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            regions = run(plane.array, progress=cancel.progress("segmenting"), **kwargs)
        for warning in caught:
            if not _is_metric_warning(warning):
                notes.append(str(warning.message))
        metric_rows = _metric_rows(request, regions, settings)
        displays = [region_display(region) for region in regions]
        results.append((request, boxes, regions, metric_rows, displays))
    cancel.check()
    prep = prepare_labels(settings)
    yield Step("done", total, total)
    if settings["saliency_name"] is None:
        notes.append("no saliency map yet: click Explain, then segment again to get metrics")
    return results, notes, prep


def _metric_rows(request: PlaneRequest, regions: list, settings: dict) -> list[dict[str, Any]]:
    """The localization metrics of each region against the plane's saliency (``{}`` without)."""
    from ..metrics import localization_metrics

    if request.saliency is None or not regions:
        return [{} for _ in regions]
    with warnings.catch_warnings():  # one sort of the map for all its regions
        warnings.simplefilter("ignore")
        return localization_metrics(
            request.saliency, [r.mask for r in regions], **settings["metric_options"]
        )


def volume_steps(
    requests: list[PlaneRequest],
    key: int,
    settings: dict,
    load_segmenter: Callable[[], Any],
    cancel: Cancellation,
) -> Generator[Step, None, tuple[list[tuple], list[str], LabelsPrep]]:
    """One box on plane ``key`` of a volume carried through every plane (SAM 2), then each
    plane's region scored against its saliency: the same results as :func:`segment_steps`."""
    total = 3
    yield Step("loading SAM", 0, total)
    segmenter = load_segmenter()
    cancel.check()
    yield Step("SAM volume from the box", 1, total)
    box = requests[key].boxes[0]
    volume = np.stack([request.plane.array for request in requests])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        regions = segmenter.segment_volume(
            volume,
            box,
            key_slice=key,
            window=requests[key].plane.window,
            source=settings["source"],
            progress=cancel.progress("propagating"),
        )
    notes = [str(w.message) for w in caught if not _is_metric_warning(w)]
    cancel.check()
    yield Step("metrics", 2, total)
    results = [
        (
            request,
            request.boxes,
            [region],
            _metric_rows(request, [region], settings),
            [region_display(region)],
        )
        for request, region in zip(requests, regions, strict=True)
    ]
    prep = prepare_labels(settings)
    yield Step("done", total, total)
    if settings["saliency_name"] is None:
        notes.append("no saliency map yet: click Explain, then segment again to get metrics")
    return results, notes, prep


def _is_metric_warning(warning) -> bool:
    return type(warning.message).__name__ == "DegenerateInputWarning"
