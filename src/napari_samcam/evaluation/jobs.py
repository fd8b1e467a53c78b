"""The per-image job: one image, every classifier x CAM method, every region, every metric.

The job reads the image once, runs each classifier x CAM method once per target class, gets
each region once (SAM embeddings are cached by the segmenter, and each annotation-based region
is shared by all saliency maps of the item), scores every (saliency, region) pair with
:func:`napari_samcam.metrics.localization_metrics` and returns tidy long rows (one per metric).

Models are loaded once per process (:func:`get_classifier`, :func:`get_segmenter`), so a Dask
worker loads them with its first image and keeps them.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import warnings
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..evaluation_settings import spec_fields
from ..region_trust import quality_of_region
from .manifests import Item
from .readers import reader_regions, source_rank
from .regions import ANNOTATION_SOURCES, SALIENCY_SOURCES, annotation_region, saliency_region

__all__ = [
    "COLUMNS",
    "OPTIONAL_COLUMNS",
    "REGION_COLUMNS",
    "EvalSpec",
    "ImageJob",
    "JobResult",
    "ModelRef",
    "classifier_ref",
    "get_classifier",
    "get_segmenter",
    "make_jobs",
    "run_image_job",
    "sam_ref",
    "with_optional_columns",
]

#: Columns of the tidy metrics table, in order.
COLUMNS = (
    "image",
    "image_id",
    "image_key",
    "item",
    "label",
    "class",
    "classifier",
    "classifier_version",
    "cam_method",
    "target_class",
    "probability",
    "region_source",
    "prompt",
    "sam_model",
    "region_area",
    "region_score",
    "metric",
    "value",
    "protocol",
    "nan_reason",
)

#: Columns a part written by an older version may lack, with the value they then take.
OPTIONAL_COLUMNS = {"nan_reason": ""}

#: Columns of the region table: every region's size and overlap with the ground truth.
REGION_COLUMNS = (
    "image",
    "image_id",
    "image_key",
    "item",
    "label",
    "class",
    "region_source",
    "classifier",
    "cam_method",
    "prompt",
    "sam_model",
    "region_area",
    "region_score",
    "truth_area",
    "dice",
    "iou",
    "region_action",
    "region_reason",
    "region_stability",
    "region_box_fill",
    "region_box_span",
    "region_unreliable",
)


# --------------------------------------------------------------------------------------------
# Model references and the per-process model cache
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A picklable reference to a model and its identity.

    Attributes
    ----------
    kind : str
        ``"classifier"`` or ``"sam"``.
    spec : str or object
        A name / path, or a model object (``torch.nn.Module``, ``Classifier``, ``SamModel``).
    token : str
        Identity of the weights: the name plus the checkpoint's digest for named models, a
        digest of the state dict for objects. Keys the per-process cache and the configuration.
    options : tuple
        ``(key, value)`` pairs passed to the loader (checkpoint, device, ...).
    """

    kind: str
    spec: Any
    token: str
    options: tuple = ()

    def describe(self) -> dict:
        """JSON-friendly identity (no objects)."""
        spec = self.spec if isinstance(self.spec, str) else type(self.spec).__name__
        options = {k: str(v) for k, v in self.options if k not in ("device",) and v is not None}
        return {"spec": spec, "token": self.token, **options}


def _state_digest(module) -> str:
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _file_token(path) -> str:
    if path is None:
        return ""
    from ..hashing import file_digest as _file_digest

    return _file_digest(Path(path))


def classifier_ref(spec: Any, **options: Any) -> ModelRef:
    """A :class:`ModelRef` for a classifier spec (see ``load_classifier``)."""
    from ..classifiers import Classifier

    if isinstance(spec, ModelRef):
        return spec
    opts = tuple(sorted((k, v) for k, v in options.items() if v is not None))
    if isinstance(spec, Classifier):
        token = f"{spec.name}|{spec.version}|{_state_digest(spec.model)}"
    elif isinstance(spec, str):
        version = ""
        from ..classifier_specs import find_spec

        named = find_spec(spec)
        if named is not None:
            version = named.version(spec)
        elif Path(spec).is_file():
            version = _file_token(spec)
        token = f"{spec}|{version}|{_file_token(options.get('checkpoint'))}"
    else:
        token = f"{type(spec).__name__}|{_state_digest(spec)}"
    return ModelRef("classifier", spec, token, opts)


def sam_ref(spec: Any, **options: Any) -> ModelRef:
    """A :class:`ModelRef` for a SAM spec (see ``load_segmenter``)."""
    from ..sam import SamBackend, SamModel
    from ..segment import Segmenter

    if isinstance(spec, ModelRef):
        return spec
    opts = tuple(sorted((k, v) for k, v in options.items() if v is not None))
    if isinstance(spec, str):
        token = f"{spec}|{_file_token(options.get('checkpoint'))}"
    elif isinstance(spec, Segmenter):
        token = f"{spec.name}|{_state_digest(spec.backend.module)}"
    elif isinstance(spec, SamBackend):
        token = f"{spec.name}|{_state_digest(spec.module)}"
    elif isinstance(spec, SamModel):
        token = f"{spec.name}|{_state_digest(spec.sam)}"
    else:
        token = f"{type(spec).__name__}|{_state_digest(spec)}"
    return ModelRef("sam", spec, token, opts)


@dataclass
class _LoadedClassifier:
    classifier: Any
    n_classes: int
    version: str
    lock: threading.Lock = field(default_factory=threading.Lock)


_CLASSIFIERS: dict[str, _LoadedClassifier] = {}
_SEGMENTERS: dict[str, Any] = {}
_CACHE_LOCK = threading.Lock()


def get_classifier(ref: ModelRef) -> _LoadedClassifier:
    """The classifier of ``ref``, loaded once per process (with a lock for CAM hooks)."""
    import torch

    from ..classifiers import load_classifier

    with _CACHE_LOCK:
        loaded = _CLASSIFIERS.get(ref.token)
        if loaded is None:
            classifier = load_classifier(ref.spec, **dict(ref.options))
            size = classifier.input_size or (224, 224)
            probe = torch.zeros(1, classifier.channels, *size, device=classifier.device)
            with torch.inference_mode():
                n_classes = int(classifier.model(probe).shape[-1])
            version = classifier.version or (
                "token:" + hashlib.blake2b(ref.token.encode(), digest_size=6).hexdigest()
            )
            loaded = _CLASSIFIERS[ref.token] = _LoadedClassifier(classifier, n_classes, version)
        return loaded


def get_segmenter(ref: ModelRef):
    """The :class:`~napari_samcam.segment.Segmenter` of ``ref``, loaded once per process."""
    from ..segment import Segmenter, load_segmenter

    with _CACHE_LOCK:
        segmenter = _SEGMENTERS.get(ref.token)
        if segmenter is None:
            if isinstance(ref.spec, Segmenter):
                segmenter = ref.spec
            else:
                segmenter = load_segmenter(ref.spec, **dict(ref.options))
            _SEGMENTERS[ref.token] = segmenter
        return segmenter


# --------------------------------------------------------------------------------------------
# Configuration and jobs
# --------------------------------------------------------------------------------------------


#: The job settings stored as they are (:func:`~napari_samcam.evaluation_settings.spec_fields`),
#: fields of :class:`EvalSpec` with the declared defaults.
_JobSettings = make_dataclass(
    "_JobSettings",
    [(entry.name, Any, field(default=entry.default)) for entry in spec_fields()],
    frozen=True,
    kw_only=True,
)
_JobSettings.__module__ = __name__


@dataclass(frozen=True, kw_only=True)
class EvalSpec(_JobSettings):
    """Everything that decides the numbers of an evaluation (picklable, hashed for resume).

    Besides the attributes below, an ``EvalSpec`` has one attribute per job setting stored as
    given (``methods``, ``region_sources``, ``context``, ``target``, ``protocol``, ...: the
    settings of :data:`~napari_samcam.evaluation_settings.SETTINGS` with ``in_spec``), with
    the declared defaults. :func:`~napari_samcam.evaluation.runner.make_spec` checks them.

    Attributes
    ----------
    classifiers : tuple of ModelRef
        From the ``classifiers``, ``checkpoint``, ``trust_checkpoint`` and ``device`` settings.
    sam : ModelRef or None
        Needed when a SAM-based region source is asked for.
    binarization : dict
        ``method``, ``threshold``, ``percentile`` for :func:`~napari_samcam.metrics.binarize`
        (metrics and saliency boxes), from the ``binarization`` and ``threshold`` settings.
    """

    classifiers: tuple
    sam: ModelRef | None = None
    binarization: dict = field(default_factory=lambda: {"method": "otsu"})

    def config(self) -> dict:
        """The JSON-friendly configuration (model identities instead of objects).

        A setting declared with ``record="changed"`` is recorded only when it is not the
        default, and one with ``record="saliency"`` only with a saliency folder, so that output
        folders of earlier runs still resume.
        """
        from .. import __version__

        config = {
            "classifiers": [c.describe() for c in self.classifiers],
            "sam": None if self.sam is None else self.sam.describe(),
            "binarization": dict(self.binarization),
        }
        for entry in spec_fields():
            value = getattr(self, entry.name)
            if entry.record == "changed" and value == entry.default:
                continue
            if entry.record == "saliency" and self.saliency is None:
                continue
            config[entry.name] = _recorded(entry.name, value)
        config["napari_samcam"] = __version__
        return config

    def digest(self) -> str:
        """Hash of :meth:`config`."""
        text = json.dumps(self.config(), sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass
class ImageJob:
    """The items of one image, with the key its results are stored under.

    ``maps`` holds each item's saliency file (in item order) when the maps are read from files.
    """

    path: Path
    image: str
    items: tuple[Item, ...]
    key: str = ""
    maps: tuple = ()


def _image_digest(path: Path) -> str:
    from ..hashing import file_digest as _file_digest

    if path.is_dir():
        digest = hashlib.blake2b(digest_size=12)
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(child.relative_to(path)).encode())
            digest.update(_file_digest(child).encode())
        return digest.hexdigest()
    return _file_digest(path)


def make_jobs(items: list[Item], spec: EvalSpec) -> list[ImageJob]:
    """Group items by image file, in manifest order, and key each job.

    The key hashes the configuration, the image file's bytes, the items' annotations and their
    saliency files' bytes, so a stored result is reused only for exactly the same work.

    Raises
    ------
    InputError
        ``spec.saliency`` is set and an item has no map file in that folder.
    """
    from ..hashing import file_digest as _file_digest

    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(str(item.path), []).append(item)
    config = spec.digest()
    folder = None
    if spec.saliency is not None:
        from ..saliency_files import SaliencyFolder

        folder = SaliencyFolder(spec.saliency)
    jobs = []
    for path_text, group in groups.items():
        path = Path(path_text)
        digest = hashlib.blake2b(digest_size=16)
        digest.update(config.encode())
        digest.update(_image_digest(path).encode())
        maps = []
        for item in group:
            digest.update(item.annotation_id().encode())
            if folder is not None:
                found = _map_of(folder, item)
                digest.update(_file_digest(found).encode())
                maps.append(str(found))
        jobs.append(ImageJob(path, group[0].image, tuple(group), digest.hexdigest(), tuple(maps)))
    return jobs


def _map_of(folder, item: Item) -> Path:
    """The saliency file of ``item`` in ``folder`` (a SaliencyFolder)."""
    image = Path(item.image).as_posix()
    for suffix in (".nii.gz", Path(image).suffix):
        if suffix and image.lower().endswith(suffix):
            image = image[: -len(suffix)]
            break
    ids = [item.image_id, image, Path(image).name]
    found = folder.find(ids, item.cls)
    if found is None:
        task = f"_{item.cls}" if item.cls else ""
        raise InputError(
            f"{item.where or item.image}: no saliency file for image {ids[0] or ids[1]!r}"
            f"{' and class ' + repr(item.cls) if item.cls else ''} in {str(folder.folder)!r}; "
            f"expected e.g. {ids[0] or Path(image).name}{task}_map.pkl (CheXlocalize) or "
            f"{ids[0] or Path(image).name}{task}.npy."
        )
    return found


# --------------------------------------------------------------------------------------------
# Running one job
# --------------------------------------------------------------------------------------------


@dataclass
class JobResult:
    """Rows of one job, and optionally the arrays behind them (for pictures).

    Attributes
    ----------
    rows : list of dict
        One dict per metric value with the keys of :data:`COLUMNS`; ``nan_reason`` says why
        a NaN ``value`` is undefined (empty where the value is a number).
    region_rows : list of dict
        One dict per region with the keys of :data:`REGION_COLUMNS`: its area and its Dice and
        IoU with the item's ground-truth mask (NaN without one), and how far to trust it
        (:func:`napari_samcam.region_trust.quality_of_region`). Annotation-based regions have
        empty ``classifier`` and ``cam_method``; saliency-based ones one row per saliency map.
    image : numpy.ndarray or None
    window : tuple or None
    saliencies : dict
        ``(classifier, method, target_index) -> Saliency`` (with ``keep_arrays``).
    regions : dict
        ``(item, classifier, method, target_index, source) -> Region`` (with ``keep_arrays``).
    """

    rows: list[dict]
    region_rows: list[dict] = field(default_factory=list)
    image: np.ndarray | None = None
    window: Any = None
    saliencies: dict = field(default_factory=dict)
    regions: dict = field(default_factory=dict)

    def frame(self):
        """The rows as a pandas DataFrame with the columns of :data:`COLUMNS`."""
        import pandas as pd

        return rows_frame(self.rows, pd)

    def region_frame(self):
        """The region rows as a DataFrame with the columns of :data:`REGION_COLUMNS`."""
        return region_frame(self.region_rows)


def region_frame(rows: list[dict]):
    """Region rows -> DataFrame with :data:`REGION_COLUMNS` and stable dtypes."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(REGION_COLUMNS))
    numeric = {"item": "int64", "region_area": "int64", "truth_area": "float64"}
    numeric |= {"region_score": "float64", "dice": "float64", "iou": "float64"}
    numeric |= {f"region_{k}": "float64" for k in ("stability", "box_fill", "box_span")}
    numeric["region_unreliable"] = "bool"
    for column in REGION_COLUMNS:
        frame[column] = frame[column].astype(numeric.get(column, str))
    return frame


def _overlap(region: np.ndarray, truth: np.ndarray | None) -> tuple[float, float, float]:
    """``(truth area, Dice, IoU)`` of a region with the ground truth; NaN where undefined."""
    if truth is None:
        return math.nan, math.nan, math.nan
    inter = float(np.count_nonzero(region & truth))
    a, b = float(np.count_nonzero(region)), float(np.count_nonzero(truth))
    if a + b == 0:
        return b, math.nan, math.nan
    return b, 2 * inter / (a + b), inter / (a + b - inter)


def with_optional_columns(frame):
    """A metrics frame with the :data:`OPTIONAL_COLUMNS` it lacks added (an older part)."""
    missing = {k: v for k, v in OPTIONAL_COLUMNS.items() if k not in frame.columns}
    return frame.assign(**missing) if missing else frame


def rows_frame(rows: list[dict], pd=None):
    """Rows -> DataFrame with :data:`COLUMNS` and stable dtypes."""
    if pd is None:
        import pandas as pd
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("item", "region_area"):
        frame[column] = frame[column].astype("int64")
    for column in ("probability", "region_score", "value"):
        frame[column] = frame[column].astype("float64")
    for column in set(COLUMNS) - {"item", "region_area", "probability", "region_score", "value"}:
        frame[column] = frame[column].astype(str)
    return frame


def _select_2d(data, item: Item):
    """The image of ``data`` (a :class:`~napari_samcam.images.CheckedImage`), if it is 2-D."""
    checked = data.checked
    if checked.ndim == 3 and not data.rgb:
        raise InputError(
            f"{item.where}: image {item.image!r} is a volume of {checked.shape[0]} slices; "
            "evaluation works on 2-D images: export the slices you want as 2-D files."
        )
    return checked


def _resolve_target(loaded: _LoadedClassifier, item: Item, target) -> int | None:
    classifier = loaded.classifier
    if target is not None:
        return classifier.class_index(target, loaded.n_classes)
    names = [str(n).lower() for n in (classifier.class_names or [])]
    if item.cls and item.cls.lower() in names:
        return names.index(item.cls.lower())
    if loaded.n_classes == 2:
        return 1
    return None


def run_image_job(job: ImageJob, spec: EvalSpec, *, keep_arrays: bool = False) -> JobResult:
    """Run every classifier x method x region source x metric of one image.

    Parameters
    ----------
    job : ImageJob
    spec : EvalSpec
    keep_arrays : bool
        Keep the image, saliency maps and regions in the result (for overlays).

    Returns
    -------
    JobResult
    """
    from ..images import image_hash, read_image
    from ..metric_protocols import get_protocol
    from ..metrics import DegenerateInputWarning
    from ..saliency import explain
    from ..saliency_files import read_saliency

    data = read_image(job.path)
    # checked once, where it is read: everything below takes the CheckedImage as it is
    checked = _select_2d(data, job.items[0])
    image = checked.array
    window = data.window
    image_key = image_hash(image)
    shape = image.shape[:2]
    uses_sam = any(s.startswith("sam-") for s in spec.region_sources)
    segmenter = get_segmenter(spec.sam) if uses_sam and spec.sam is not None else None
    if uses_sam and segmenter is None:
        raise InputError("SAM-based region sources need a SAM model; pass sam='litemedsam'.")
    binarization = {k: v for k, v in spec.binarization.items() if v is not None}

    rows: list[dict] = []
    result = JobResult(rows)
    if keep_arrays:
        result.image, result.window = image, window
    saliencies: dict[tuple, Any] = {}
    saliency_regions: dict[tuple, Any] = {}

    def add_region_row(item: Item, region, truth, classifier_name: str, method: str) -> None:
        truth_area, dice, iou = _overlap(region.mask, truth)
        result.region_rows.append(
            {
                "image": item.image,
                "image_key": image_key,
                "item": item.index,
                "label": item.label,
                "class": item.cls,
                "region_source": region.source,
                "classifier": classifier_name,
                "cam_method": method,
                "prompt": json.dumps(region.prompt, sort_keys=True, default=_plain),
                "sam_model": region.model or "",
                "region_area": region.area,
                "region_score": region.score,
                "truth_area": truth_area,
                "dice": dice,
                "iou": iou,
                **quality_of_region(region),
            }
        )

    loaded = [get_classifier(ref) for ref in spec.classifiers]
    names = [entry.classifier.name for entry in loaded]
    if len(set(names)) != len(names):
        raise InputError(
            f"classifiers {names}: two classifiers share a name, so their rows could not be told "
            "apart; give each a distinct Classifier.name (dataclasses.replace(c, name=...))."
        )

    protocol = get_protocol(spec.protocol)
    # The map every region of an item is scored against, prepared (sorted, binarized) once and
    # kept until the next map: one at a time, as a prepared 6.6 MP map holds ~60 MB.
    prepared: dict[tuple, Any] = {}
    metrics_device = _metrics_device(loaded)
    maps = dict(zip((item.index for item in job.items), job.maps, strict=False))
    file_source = "" if spec.saliency is None else Path(spec.saliency).name

    def item_saliencies(item: Item):
        """``(classifier, version, method, key, Saliency)`` of every map scored for ``item``."""
        if spec.saliency is not None:
            skey = (file_source, "file", item.index)
            if skey not in saliencies:
                saliencies[skey] = read_saliency(
                    maps[item.index],
                    shape,
                    task=item.cls,
                    name=file_source,
                    trust=spec.trust_saliency,
                )
            yield file_source, "", "file", skey, saliencies[skey]
            return
        for entry in loaded:
            classifier = entry.classifier
            target = _resolve_target(entry, item, spec.target)
            for method in spec.methods:
                skey = (classifier.name, method, target)
                if skey not in saliencies:
                    with entry.lock:
                        saliencies[skey] = explain(
                            checked,
                            classifier,
                            method=method,
                            target=target,
                            window=window,
                            aug_smooth=spec.aug_smooth,
                            eigen_smooth=spec.eigen_smooth,
                        )
                yield classifier.name, entry.version, method, skey, saliencies[skey]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateInputWarning)
        for item in job.items:
            mask = item.load_mask(shape)
            boxes = item.box_list(mask, shape)
            fixed = []
            for source in spec.region_sources:
                if source not in ANNOTATION_SOURCES:
                    continue
                if source == "readers":
                    for region in reader_regions(item.readers, shape):
                        if region.area:  # a reader who did not mark the finding has no score
                            fixed.append(region)
                        add_region_row(item, region, mask, "", "")
                    continue
                region = annotation_region(
                    source,
                    checked,
                    mask=mask,
                    boxes=boxes,
                    segmenter=segmenter,
                    context=spec.context,
                    window=window,
                    text=spec.text or item.cls or None,
                    clip=spec.clip,
                    text_options=spec.text_options,
                    key=image_key,
                    preprocess=spec.sam_preprocess,
                )
                if region is not None:
                    fixed.append(region)
                    if source != "ground-truth":
                        add_region_row(item, region, mask, "", "")
            for name, version, method, skey, saliency in item_saliencies(item):
                if skey not in prepared:
                    prepared.clear()
                    prepared[skey] = protocol.prepare(saliency, shape, device=metrics_device)
                regions = list(fixed)
                for source in spec.region_sources:
                    if source not in SALIENCY_SOURCES:
                        continue
                    rkey = (*skey, source)
                    if rkey not in saliency_regions:
                        saliency_regions[rkey] = saliency_region(
                            source,
                            checked,
                            saliency.map,
                            segmenter=segmenter,
                            binarization=binarization,
                            context=spec.context,
                            max_boxes=spec.saliency_max_boxes,
                            window=window,
                            key=image_key,
                            preprocess=spec.sam_preprocess,
                            binary=_shared_binary(prepared[skey], source, binarization),
                        )
                    regions.append(saliency_regions[rkey])
                    add_region_row(item, saliency_regions[rkey], mask, name, method)
                regions.sort(key=lambda r: source_rank(spec.region_sources, r.source))
                base = {
                    "image": item.image,
                    "image_id": item.image_id or item.image,
                    "image_key": image_key,
                    "item": item.index,
                    "label": item.label,
                    "class": item.cls,
                    "classifier": name,
                    "classifier_version": version,
                    "cam_method": method,
                    "target_class": saliency.class_name,
                    "probability": saliency.probability,
                }
                scores = protocol.results_many(
                    prepared[skey], [region.mask for region in regions], binarization
                )
                for region, values in zip(regions, scores, strict=True):
                    common = dict(
                        base,
                        region_source=region.source,
                        prompt=json.dumps(region.prompt, sort_keys=True, default=_plain),
                        sam_model=region.model or "",
                        region_area=region.area,
                        region_score=region.score,
                    )
                    for metric, (value, why) in values.items():
                        rows.append(
                            dict(
                                common,
                                metric=metric,
                                value=value,
                                protocol=protocol.name,
                                nan_reason=why or "",
                            )
                        )
                    if keep_arrays:
                        result.regions[(item.index, *skey, region.source)] = region
    if keep_arrays:
        result.saliencies = saliencies
    return result


def _shared_binary(prepared, source: str, binarization: dict):
    """The map's binarized mask for ``sam-saliency-box`` prompts: the one the metrics use."""
    from ..metrics import PreparedMap

    if source != "sam-saliency-box" or not isinstance(prepared, PreparedMap):
        return None
    if prepared.constant:
        return None
    prepared.order  # noqa: B018 - sorted first: binarizing then reads the sorted values
    return prepared.binarize(**binarization)


def _metrics_device(loaded: list[_LoadedClassifier]):
    """The CUDA device the classifiers run on, where the metrics sort the maps; else None."""
    for entry in loaded:
        device = getattr(entry.classifier, "device", None)
        if getattr(device, "type", None) == "cuda":
            return device
    return None


def _recorded(name: str, value: Any) -> Any:
    """A job setting's value as ``config.json`` records it."""
    if name == "clip":
        return None if value is None else _describe(value)
    if isinstance(value, (tuple, list)):
        return list(value)
    if isinstance(value, dict) or (name == "text_options" and value is None):
        return dict(value or {})
    return value


def _describe(value: Any) -> str:
    return value if isinstance(value, str) else getattr(value, "name", type(value).__name__)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
