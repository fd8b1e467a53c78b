"""Grad-CAM and friends through pytorch-grad-cam, returned at the image's own resolution."""

from __future__ import annotations

import contextlib
import copy
import re
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ._module_copies import channels_last_copy, fingerprint
from ._resample import upsample
from ._threads import env_flag, torch_threads
from .classifiers import (
    Classifier,
    center_crop_box,
    classifier_tensor,
    find_target_layer,
    load_classifier,
)
from .errors import InputError
from .images import checked_image

__all__ = ["CAM_METHODS", "Saliency", "explain", "predict"]


def _cam_classes() -> dict[str, type]:
    import pytorch_grad_cam as pgc

    names = [
        "GradCAM",
        "HiResCAM",
        "GradCAMPlusPlus",
        "XGradCAM",
        "LayerCAM",
        "EigenCAM",
        "EigenGradCAM",
        "ScoreCAM",
        "AblationCAM",
        "FullGrad",
        "GradCAMElementWise",
        "KPCA_CAM",
        "ShapleyCAM",
        "FinerCAM",
    ]
    return {cam_method_key(n): getattr(pgc, n) for n in names if hasattr(pgc, n)}


def cam_method_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("++", "plusplus"))


#: CAM method names accepted by :func:`explain` (case and punctuation do not matter).
CAM_METHODS = (
    "gradcam",
    "hirescam",
    "gradcam++",
    "xgradcam",
    "layercam",
    "eigencam",
    "eigengradcam",
    "scorecam",
    "ablationcam",
    "fullgrad",
    "gradcamelementwise",
    "kpca_cam",
    "shapleycam",
    "finercam",
)

_RAW_CLASSES: dict[type, type] = {}


def _recording(cls: type) -> type:
    """A CAM subclass that keeps each layer's CAM before pytorch-grad-cam rescales it."""
    if cls not in _RAW_CLASSES:

        def get_cam_image(self, *args, **kwargs):
            cam = cls.get_cam_image(self, *args, **kwargs)
            self.samcam_raw.append(np.asarray(cam, dtype=np.float32))
            return cam

        _RAW_CLASSES[cls] = type(
            f"Recording{cls.__name__}", (cls,), {"get_cam_image": get_cam_image}
        )
    return _RAW_CLASSES[cls]


@dataclass
class Saliency:
    """A saliency map with its provenance.

    Attributes
    ----------
    map : numpy.ndarray
        float32 ``(H, W)`` at the image's resolution, min-max normalised to ``[0, 1]``.
    raw : numpy.ndarray
        float32 un-normalised CAM (after ReLU) at the target layer's grid, comparable across
        images of the same classifier and method.
    class_index : int
        The class explained.
    class_name : str
    probability : float
        The model's probability for that class (softmax, or sigmoid for multi-label models).
    method : str
    layer : str
        Dotted name of the target layer.
    classifier : str
    classifier_version : str
    probabilities : list of float
        Every class's probability.
    source : str
        The file the map was read from (``method="file"``, see
        :func:`napari_samcam.saliency_files.read_saliency`); ``""`` when computed.
    """

    map: np.ndarray
    raw: np.ndarray
    class_index: int
    class_name: str
    probability: float
    method: str
    layer: str
    classifier: str
    classifier_version: str = ""
    probabilities: list[float] = field(default_factory=list)
    source: str = ""

    def provenance(self) -> dict[str, Any]:
        """Everything but the arrays, as a JSON-friendly dict."""
        # not dataclasses.asdict: it deep-copies the maps first (0.6 s for an 8000² image)
        info = {
            f.name: copy.deepcopy(getattr(self, f.name))
            for f in fields(self)
            if f.name not in ("map", "raw")
        }
        info["raw_max"] = float(self.raw.max()) if self.raw.size else 0.0
        return info


def _probabilities(logits, classifier: Classifier) -> np.ndarray:
    import torch

    logits = logits.detach().float()
    probs = torch.sigmoid(logits) if classifier.multilabel else torch.softmax(logits, dim=-1)
    return probs[0].cpu().numpy()


def predict(image: np.ndarray, classifier: Any, *, window=None) -> dict[str, float]:
    """Class probabilities for one image.

    Returns
    -------
    dict
        Class name -> probability, in the model's class order.
    """
    import torch

    classifier = classifier if isinstance(classifier, Classifier) else load_classifier(classifier)
    with torch.inference_mode():
        logits = classifier.model(classifier_tensor(image, classifier, window=window))
    probs = _probabilities(logits, classifier)
    return {classifier.class_label(i): float(p) for i, p in enumerate(probs)}


def _layer_name(model, layer) -> str:
    for name, module in model.named_modules():
        if module is layer:
            return name
    return type(layer).__name__


def _cam_model(classifier: Classifier, layer, reshape) -> tuple[Any, Any]:
    """The model and target layer a CAM runs on.

    On CPU, for CNNs (no reshape transform), a channels-last copy of the classifier's model,
    kept in ``classifier.extra`` and rebuilt when the weights change; the classifier's own
    model otherwise, or when ``SAMCAM_ACCELERATE=0``.
    """
    if (
        reshape is not None
        or classifier.device.type != "cpu"
        or not env_flag("SAMCAM_ACCELERATE", True)
    ):
        return classifier.model, layer
    stamp = fingerprint(classifier.model)
    cached = classifier.extra.get("cam_copy")
    if cached is None or cached[0] != stamp or cached[1] is not layer:
        clone = channels_last_copy(classifier.model)
        names = {id(m): name for name, m in classifier.model.named_modules()}
        clone_layer = None
        if clone is not None and id(layer) in names:
            clone_layer = dict(clone.named_modules()).get(names[id(layer)])
        cached = (stamp, layer, clone, clone_layer)
        classifier.extra["cam_copy"] = cached
    if cached[3] is None:
        return classifier.model, layer
    return cached[2], cached[3]


def _cam_setup(classifier: Classifier) -> tuple[Any, Any, int]:
    """Target layer, reshape transform and class count, found once per classifier."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if "cam_setup" not in classifier.extra:
        layer, reshape = find_target_layer(classifier)
        size = classifier.input_size or (224, 224)
        probe = torch.zeros(1, classifier.channels, *size, device=classifier.device)
        flops = None
        with torch.inference_mode():
            try:
                with FlopCounterMode(display=False) as counter:
                    n_classes = int(classifier.model(probe).shape[-1])
                flops = float(counter.get_total_flops())
            except Exception:  # a model the FLOP counter cannot trace: just run it
                n_classes = int(classifier.model(probe).shape[-1])
        classifier.extra["cam_setup"] = (layer, reshape, n_classes)
        classifier.extra.setdefault("forward_flops", flops)
    return classifier.extra["cam_setup"]


#: Below this many FLOPs per forward pass, a CAM runs on one CPU thread (see :func:`_cam_threads`).
SMALL_FORWARD_FLOPS = 5e9


def _cam_threads(classifier: Classifier) -> int | None:
    """torch threads for one CAM on CPU: 1 for small classifiers, else torch's setting.

    A small network's layers are short kernels; with several threads each one waits until every
    thread is scheduled, which costs more than the kernel itself as soon as other work keeps the
    cores busy (measured for a resnet18 on 2 busy cores: ~50 ms on one thread, ~1 s on two).
    """
    if classifier.device.type != "cpu":
        return None
    flops = classifier.extra.get("forward_flops")
    return 1 if flops is not None and flops < SMALL_FORWARD_FLOPS else None


def upsampled_map(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A small map upsampled (bilinear, ``align_corners=False``) to ``shape``, over its maximum.

    Negative values are set to 0 first (an all-zero map stays zero); the maps ``explain``
    passes are non-negative already (ReLU'd raw CAMs, pytorch-grad-cam's [0, 1] maps). A
    constant map stays exactly constant: resizing would add rounding noise that the metrics
    would take for structure.
    """
    import torch

    clipped = np.maximum(np.asarray(cam, dtype=np.float32), 0)
    if clipped.size and clipped.min() == clipped.max():
        return np.full(tuple(shape), 1.0 if clipped.flat[0] > 0 else 0.0, dtype=np.float32)
    tensor = torch.from_numpy(clipped)
    if tuple(tensor.shape) != tuple(shape):
        tensor = upsample(tensor, shape)
    high = float(torch.amax(tensor))  # a reduction over all dimensions: faster than max()
    if high > 0:
        tensor *= 1.0 / high
    return tensor.numpy()


def _target_gradient_only(cam: Any) -> bool:
    """Whether the method needs gradients at the target layers only (not inputs, not weights)."""
    cam = getattr(cam, "base_cam", cam)  # FinerCAM wraps another method
    return bool(
        getattr(cam, "uses_gradients", False)
        and not getattr(cam, "compute_input_gradient", True)
        and getattr(getattr(cam, "activations_and_grads", None), "detach", False)
    )


@contextlib.contextmanager
def _gradients_from(model, layer):
    """Backpropagate only from the outputs down to ``layer``'s output.

    pytorch-grad-cam runs ``loss.backward()`` with the model's weights requiring gradients, so
    the backward pass computes every weight's gradient down to the first layer — none of which
    a CAM uses. Here the weights are frozen for the call and ``layer``'s output is made the
    leaf that requires gradients: the layers before it record no graph, the backward pass stops
    there, and the gradient at ``layer`` is the same partial derivative as before.
    """

    def start_graph(module, args, output):
        import torch

        if isinstance(output, torch.Tensor) and not output.requires_grad:
            # a copy of a new leaf: the model may change it in place afterwards, as DenseNet's
            # relu_ after its last norm does (autograd forbids that on a leaf or a leaf's view)
            return output.detach().requires_grad_(True).clone()
        return None

    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    handle = layer.register_forward_hook(start_graph, prepend=True)
    try:
        yield
    finally:
        handle.remove()
        for p in frozen:
            p.requires_grad_(True)


def explain(
    image: np.ndarray,
    classifier: Any,
    *,
    method: str = "gradcam",
    target: int | str | None = None,
    target_layer: Any = None,
    window: tuple[float, float] | None = None,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
    device: Any = None,
) -> Saliency:
    """Compute a class activation map for one 2-D image.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, 3|4)``, any numeric dtype.
    classifier : Classifier, str or torch.nn.Module
        A loaded classifier or anything :func:`~napari_samcam.classifiers.load_classifier` takes.
    method : str
        One of :data:`CAM_METHODS` (case-insensitive).
    target : int or str, optional
        Class index or name to explain; the top-scoring class by default.
    target_layer : torch.nn.Module or str, optional
        Overrides the automatically chosen layer.
    window : (float, float), optional
        Intensity window applied before the model
        (see :func:`~napari_samcam.images.to_unit_range`).
    aug_smooth, eigen_smooth : bool
        pytorch-grad-cam's test-time augmentation and first-principal-component smoothing.
    device : optional
        Moves the classifier there first.

    Returns
    -------
    Saliency
        ``map`` at the image's resolution in ``[0, 1]``; an all-zero map means the class has no
        positive evidence at that layer.
    """
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    # shape and type now; classifier_tensor checks the values on its way through them
    checked = checked_image(image, finite=False)
    image = checked.array
    if not isinstance(classifier, Classifier):
        classifier = load_classifier(classifier, device=device)
    elif device is not None:
        classifier.to(device)
    if target_layer is not None:
        classifier = load_classifier(classifier, target_layer=target_layer)
    classes = _cam_classes()
    key = cam_method_key(method)
    if key not in classes:
        raise InputError(
            f"method {method!r} is not a CAM method; choose one of {', '.join(CAM_METHODS)}."
        )
    finer = key == "finercam"
    if finer and aug_smooth:
        raise InputError(
            "method 'finercam' has no test-time augmentation; pass aug_smooth=False or choose "
            "another method."
        )
    layer, reshape, n_classes = _cam_setup(classifier)
    index = classifier.class_index(target, n_classes)
    model, cam_layer = _cam_model(classifier, layer, reshape)
    # One thread for small classifiers (see _cam_threads); torch's setting otherwise.
    with torch_threads(_cam_threads(classifier)):
        tensor = classifier_tensor(checked, classifier, window=window)
        if model is not classifier.model and tensor.ndim == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        options = {"model": model, "target_layers": [cam_layer], "reshape_transform": reshape}
        if finer:  # FinerCAM runs a Grad-CAM of (target - most similar classes)
            options["base_method"] = _recording(classes["gradcam"])
            cam_cls = classes[key]
        else:
            cam_cls = _recording(classes[key])
        outputs = []
        # FinerCAM keeps no outputs: record them from the model itself
        record = model.register_forward_hook(lambda module, args, output: outputs.append(output))
        try:
            with cam_cls(**options) as cam:
                recorder = getattr(cam, "base_cam", cam)
                recorder.samcam_raw = []
                shortcut = (
                    _gradients_from(model, cam_layer)
                    if _target_gradient_only(cam)
                    else contextlib.nullcontext()
                )
                if finer:  # it builds its own targets from the class index
                    call = {"targets": None, "target_idx": index}
                else:
                    targets = None if index is None else [ClassifierOutputTarget(index)]
                    call = {"targets": targets, "aug_smooth": aug_smooth}
                with torch.enable_grad(), shortcut:
                    scaled = cam(input_tensor=tensor, eigen_smooth=eigen_smooth, **call)
                raw_layers = list(recorder.samcam_raw)
        finally:
            record.remove()
        if aug_smooth:  # the recorded passes saw augmented copies of the image
            with torch.no_grad():
                outputs = [model(tensor)]
        probs = _probabilities(outputs[0], classifier)
        if index is None:
            index = int(np.argmax(probs))
        spatial = image.shape[:2]
        if raw_layers and not aug_smooth:
            raw = np.maximum(raw_layers[-1][0], 0)
        else:  # methods that bypass get_cam_image (FullGrad) or average augmentations
            raw = np.asarray(scaled[0], dtype=np.float32)
        if classifier.center_crop:  # the model saw the centred square only
            row0, col0, side = center_crop_box(spatial)
            saliency_map = np.zeros(spatial, dtype=np.float32)
            saliency_map[row0 : row0 + side, col0 : col0 + side] = upsampled_map(raw, (side,) * 2)
        else:
            saliency_map = upsampled_map(raw, spatial)
    return Saliency(
        map=saliency_map,
        raw=raw.astype(np.float32),
        class_index=index,
        class_name=classifier.class_label(index),
        probability=float(probs[index]),
        method=method,
        layer=_layer_name(classifier.model, layer),
        classifier=classifier.name,
        classifier_version=classifier.version,
        probabilities=[float(p) for p in probs],
    )
