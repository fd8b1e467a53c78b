"""The classifier registry: one way to load every kind of image classifier the project explains.

Specs understood by :func:`load_classifier`:

* a registered name (:mod:`napari_samcam.classifier_specs`): the built-ins
  (``"lesion-detector"``, ``"shortcut-detector"``) and torchxrayvision's models
  (``"xrv:densenet121-res224-all"``, ...);
* ``"torchvision:<arch>"`` or ``"timm:<arch>"`` with ``checkpoint=`` a local state dict;
* a ``torch.export`` program (``.pt2``, saved with ``torch.export.save``): fully explainable;
* a TorchScript file (``.pt`` / ``.pth`` / ``.ts`` saved with ``torch.jit.save``): prediction
  only, since TorchScript layers cannot be hooked for CAM methods;
* ``"hf:<folder or hub id>[@revision]"`` or a local folder with a ``config.json``: a
  ``transformers`` image-classification model;
* any ``torch.nn.Module`` passed from Python.

``.pt2`` and TorchScript files can run code when opened: they are opened only with
``trust_checkpoint=True`` (see :mod:`napari_samcam.model_files`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ._resample import resized_unit_range
from .classifier_specs import find_spec, registered_names
from .devices import available_devices, check_device, default_device
from .errors import CheckpointError, InputError, ModelNotAvailableError
from .hashing import file_version
from .images import checked_image, to_unit_range
from .model_files import (
    hf_pretrained,
    is_torchscript,
    load_exported_program,
    load_torchscript,
    split_revision,
)
from .torch_loading import load_checkpoint, load_state_strict

__all__ = [
    "Classifier",
    "available_devices",
    "check_device",
    "classifier_tensor",
    "default_device",
    "find_target_layer",
    "load_checkpoint",
    "load_classifier",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Classifier:
    """An image classifier with everything needed to feed and explain it.

    Attributes
    ----------
    model : torch.nn.Module
        Returns class scores (logits) of shape ``(N, n_classes)``.
    name : str
        Provenance name (a built-in name, an architecture, a file name).
    class_names : list of str or None
        One name per output, when the model has them.
    input_size : (int, int) or None
        ``(H, W)`` the network takes; images are resized to it. ``None`` keeps the image size.
    channels : int
        1 or 3 input channels.
    mean, std : tuple of float
        Per-channel normalisation applied to intensities in ``[0, 1]``.
    target_layer : torch.nn.Module or None
        Default Grad-CAM layer; found automatically when ``None``.
    reshape_transform : callable or None
        Turns the target layer's output into ``(N, C, h, w)`` (transformers' tokens).
    multilabel : bool
        Scores are independent sigmoids rather than a softmax.
    version : str
        Weights version or checksum, for provenance.
    source : str
        Where the weights came from (file, package, hub id).
    finding_class : str or None
        The class whose evidence a localization check is about (the built-ins: ``"lesion"``);
        napari's widget explains it by default. ``None`` when the classifier declares none.
    center_crop : bool
        Crop the image to its centred square before resizing (torchxrayvision's
        ``XRayCenterCrop``); saliency outside the square is 0.
    """

    model: Any
    name: str
    class_names: list[str] | None = None
    input_size: tuple[int, int] | None = (224, 224)
    channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    target_layer: Any = None
    reshape_transform: Callable | None = None
    multilabel: bool = False
    version: str = ""
    source: str = ""
    finding_class: str | None = None
    extra: dict = field(default_factory=dict)
    center_crop: bool = False

    @property
    def device(self):
        """The device the model's parameters live on."""
        import torch

        for param in self.model.parameters():
            return param.device
        return torch.device("cpu")

    def to(self, device) -> Classifier:
        """Move the model to ``device`` and return ``self``."""
        self.model.to(default_device(device))
        return self

    def class_index(self, target: int | str | None, n_classes: int) -> int | None:
        """Resolve a class given by index or name to an index (``None`` stays ``None``)."""
        if target is None:
            return None
        if isinstance(target, str) and not target.lstrip("-").isdigit():
            names = [n.lower() for n in (self.class_names or [])]
            if target.lower() not in names:
                raise InputError(
                    f"target class {target!r} is not one of classifier {self.name!r}'s classes "
                    f"{self.class_names}; pass one of those names or an index."
                )
            return names.index(target.lower())
        index = int(target)
        if not 0 <= index < n_classes:
            raise InputError(
                f"target class {index} is out of range for classifier {self.name!r} with "
                f"{n_classes} classes; pass an index in [0, {n_classes - 1}]."
            )
        return index

    def class_label(self, index: int) -> str:
        """The class name of ``index`` (its number when the model has no names)."""
        if self.class_names and 0 <= index < len(self.class_names):
            return str(self.class_names[index])
        return str(index)


def center_crop_box(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(row0, col0, side)`` of the centred square crop of an image of ``shape`` (H, W, ...),
    placed as torchxrayvision's ``XRayCenterCrop`` places it."""
    height, width = int(shape[0]), int(shape[1])
    side = min(height, width)
    return height // 2 - side // 2, width // 2 - side // 2, side


def classifier_tensor(
    image: np.ndarray, classifier: Classifier, *, window: tuple[float, float] | None = None
):
    """Convert an image to the ``(1, C, H, W)`` float tensor ``classifier`` takes.

    Intensities go through :func:`napari_samcam.images.to_unit_range` (with ``window``), then
    grayscale is repeated to 3 channels or colour averaged to 1 as the model needs, the image is
    resized (bilinear, antialiased) to ``classifier.input_size`` and normalised with its mean/std.

    Without a window the intensity mapping is affine, so the image is resized first and only
    the resized pixels are mapped (same values to float32 rounding, a fraction of the work on
    large images). With a window, the image is mapped and resized a block of columns at a
    time. Either way the image is never copied whole to float32.
    """
    import torch

    image = checked_image(image, finite=False).array
    if classifier.center_crop:
        row0, col0, side = center_crop_box(image.shape)
        image = image[row0 : row0 + side, col0 : col0 + side]
    rgb = image.ndim == 3
    if rgb and image.shape[-1] == 4:
        image = image[..., :3]
    size = None if classifier.input_size is None else tuple(int(s) for s in classifier.input_size)
    grey = rgb and classifier.channels == 1
    if size is None or tuple(image.shape[:2]) == size:
        array = to_unit_range(image, window, rgb=rgb)
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        tensor = tensor.permute(2, 0, 1) if rgb else tensor[None]
        if grey:
            tensor = tensor.mean(0, keepdim=True)
    else:
        tensor = resized_unit_range(image, size, window, grey=grey)
    if classifier.channels == 3 and tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    mean = torch.tensor(classifier.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(classifier.std, dtype=torch.float32).view(-1, 1, 1)
    return ((tensor - mean) / std)[None].to(classifier.device)


def _head_classes(state: dict) -> int | None:
    weights = [v for k, v in state.items() if k.endswith("weight") and getattr(v, "ndim", 0) == 2]
    return int(weights[-1].shape[0]) if weights else None


def _arch_model(library: str, arch: str, checkpoint, num_classes, trust_checkpoint):
    state = None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, trust_checkpoint=trust_checkpoint)
        num_classes = num_classes or _head_classes(state)
    kwargs = {"num_classes": num_classes} if num_classes else {}
    if library == "torchvision":
        import torchvision

        try:
            model = torchvision.models.get_model(arch, weights=None, **kwargs)
        except ValueError as exc:
            raise InputError(
                f"classifier 'torchvision:{arch}': unknown architecture ({exc}); see "
                "torchvision.models.list_models()."
            ) from exc
    else:
        try:
            import timm
        except ImportError as exc:
            raise ModelNotAvailableError(
                f"classifier 'timm:{arch}' needs the timm package: pip install timm."
            ) from exc
        try:
            model = timm.create_model(arch, pretrained=False, **kwargs)
        except RuntimeError as exc:
            raise InputError(
                f"classifier 'timm:{arch}': unknown architecture ({exc}); see timm.list_models()."
            ) from exc
    if state is None:
        raise CheckpointError(
            f"classifier '{library}:{arch}' needs its trained weights: pass checkpoint=PATH "
            "(CLI: --checkpoint PATH). Random weights would explain nothing."
        )
    load_state_strict(model, state, what=f"checkpoint {str(checkpoint)!r}")
    return model


def _exported_classifier(path: Path, trusted: bool) -> Classifier:
    """A ``torch.export`` program (``.pt2``), unflattened so that its layers can be hooked."""
    import torch

    program = load_exported_program(path, trusted=trusted)
    shape = None
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            shape = tuple(node.meta["val"].shape)
            break
    module = torch.export.unflatten(program)
    channels, size = (shape[1], tuple(shape[2:4])) if shape and len(shape) == 4 else (3, None)
    return Classifier(
        model=module,
        name=path.name,
        input_size=size,
        channels=int(channels),
        mean=IMAGENET_MEAN[:channels] if channels == 3 else (0.5,) * channels,
        std=IMAGENET_STD[:channels] if channels == 3 else (0.5,) * channels,
        source=str(path),
        version=file_version(path),
    )


def _hf_classifier(spec: str, device, trusted: bool, download: bool) -> Classifier:
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    source, revision = split_revision(spec)
    options = {"what": f"classifier 'hf:{spec}'", "download": download, "revision": revision}
    config = hf_pretrained(AutoConfig.from_pretrained, source, weights=False, **options)
    hf_model = hf_pretrained(
        AutoModelForImageClassification.from_pretrained, source, trusted=trusted, **options
    )

    class HFLogits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner(pixel_values=pixel_values).logits

    mean, std, size = IMAGENET_MEAN, IMAGENET_STD, (224, 224)
    try:
        processor = AutoImageProcessor.from_pretrained(
            source, local_files_only=True, revision=revision
        )
        mean = tuple(getattr(processor, "image_mean", mean))
        std = tuple(getattr(processor, "image_std", std))
        proc_size = getattr(processor, "size", None) or {}
        if "height" in proc_size:
            size = (int(proc_size["height"]), int(proc_size["width"]))
        elif "shortest_edge" in proc_size:
            size = (int(proc_size["shortest_edge"]),) * 2
    except (OSError, ValueError):
        image_size = getattr(config, "image_size", None)
        if isinstance(image_size, int):
            size = (image_size, image_size)
    labels = getattr(config, "id2label", None) or {}
    names = [labels[i] for i in sorted(labels)] if labels else None
    channels = int(getattr(config, "num_channels", 3))
    return Classifier(
        model=HFLogits(hf_model).to(device).eval(),
        name=f"hf:{spec}",
        class_names=names,
        input_size=size,
        channels=channels,
        mean=mean[:channels],
        std=std[:channels],
        multilabel=getattr(config, "problem_type", None) == "multi_label_classification",
        source=str(spec),
    )


def load_classifier(
    spec: Any,
    *,
    checkpoint: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    input_size: tuple[int, int] | None = None,
    channels: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    target_layer: Any = None,
    device: Any = None,
    trust_checkpoint: bool = False,
    download: bool = False,
) -> Classifier:
    """Load a classifier from a spec (see the module docstring) or wrap a module.

    Parameters
    ----------
    spec : str, Path, torch.nn.Module or Classifier
        What to load.
    checkpoint : path, optional
        State dict for ``torchvision:`` / ``timm:`` architectures (loaded with
        ``weights_only=True``).
    class_names : sequence of str, optional
        Overrides or supplies class names.
    num_classes : int, optional
        Output count for architectures; inferred from the checkpoint's head when omitted.
    input_size, channels, mean, std : optional
        Override the input conventions (defaults: 224x224 RGB with ImageNet statistics).
    target_layer : torch.nn.Module or str, optional
        Default Grad-CAM layer (a module or its dotted name); found automatically otherwise.
    device : str or torch.device, optional
        CUDA when available, else CPU.
    trust_checkpoint : bool
        Trust the model file: open ``.pt2`` (``torch.export``) and TorchScript files, and
        checkpoints or ``pytorch_model.bin`` weights that need full unpickling. Each of these can
        run code when opened: only for files whose author you trust.
    download : bool
        Allow fetching an ``hf:`` hub id that is not in the local Hugging Face cache; it needs
        a pinned revision, ``"hf:ORG/NAME@COMMIT"``. Off by default: nothing is downloaded.

    Returns
    -------
    Classifier
    """
    import torch

    device = default_device(device)
    if isinstance(spec, Classifier):
        classifier = spec
    elif isinstance(spec, torch.nn.Module):
        classifier = Classifier(model=spec, name=type(spec).__name__, source="python")
    else:
        text = str(spec)

        path = Path(text)
        named = find_spec(text)
        if named is not None:
            classifier = named.load(
                text,
                device=device,
                checkpoint=checkpoint,
                trust_checkpoint=trust_checkpoint,
                download=download,
            )
        elif text.startswith(("torchvision:", "timm:")):
            library, arch = text.split(":", 1)
            model = _arch_model(library, arch, checkpoint, num_classes, trust_checkpoint)
            classifier = Classifier(
                model=model, name=text, source=str(checkpoint), version=file_version(checkpoint)
            )
        elif text.startswith("hf:") or (path.is_dir() and (path / "config.json").is_file()):
            classifier = _hf_classifier(
                text.removeprefix("hf:"), device, trust_checkpoint, download
            )
        elif path.is_file() and path.suffix == ".pt2":
            classifier = _exported_classifier(path, trust_checkpoint)
        elif path.is_file() and is_torchscript(path):
            model = load_torchscript(path, trusted=trust_checkpoint)
            classifier = Classifier(
                model=model, name=path.name, source=text, version=file_version(path)
            )
        elif path.is_file():
            raise InputError(
                f"classifier {text!r} is a file but not a TorchScript model. For a state dict, "
                "name the architecture: load_classifier('torchvision:resnet18', checkpoint=PATH) "
                "(CLI: --model torchvision:resnet18 --checkpoint PATH)."
            )
        else:
            raise InputError(
                f"classifier {text!r} is not a registered name ({', '.join(registered_names())}), "
                "an existing file or folder, or a 'torchvision:ARCH' / 'timm:ARCH' / 'hf:ID' spec."
            )
    overrides: dict[str, Any] = {}
    if class_names is not None:
        overrides["class_names"] = list(class_names)
    if input_size is not None:
        overrides["input_size"] = tuple(int(v) for v in input_size)
    if channels is not None:
        overrides["channels"] = int(channels)
    if mean is not None:
        overrides["mean"] = tuple(float(v) for v in mean)
    if std is not None:
        overrides["std"] = tuple(float(v) for v in std)
    if target_layer is not None:
        if isinstance(target_layer, str):
            try:
                target_layer = classifier.model.get_submodule(target_layer)
            except AttributeError as exc:
                raise InputError(
                    f"target layer {target_layer!r} is not a submodule of classifier "
                    f"{classifier.name!r}; see [n for n, _ in model.named_modules()]."
                ) from exc
        overrides["target_layer"] = target_layer
    if overrides:
        # A fresh `extra`: cached CAM settings belong to the old target layer.
        classifier = replace(classifier, **overrides, extra={})
    if len(classifier.mean) != classifier.channels or len(classifier.std) != classifier.channels:
        raise InputError(
            f"classifier {classifier.name!r}: mean/std have {len(classifier.mean)}/"
            f"{len(classifier.std)} values for {classifier.channels} channels; pass one value "
            "per channel."
        )
    classifier.model.to(device).eval()
    return classifier


def _token_reshape(tokens):
    """``(N, T, D)`` transformer tokens -> ``(N, D, s, s)``, dropping class/register tokens."""
    import math

    n, t, d = tokens.shape
    side = math.isqrt(t)
    extra = t - side * side
    grid = tokens[:, extra:, :].reshape(n, side, side, d)
    return grid.permute(0, 3, 1, 2)


def _channels_last_reshape(tensor):
    return tensor.permute(0, 3, 1, 2)


def find_target_layer(classifier: Classifier) -> tuple[Any, Callable | None]:
    """Choose the Grad-CAM layer and reshape transform for a classifier.

    CNNs: the last module (in execution order) whose output is a spatial ``(N, C, h, w)`` map
    with ``h, w > 1`` — the last convolutional stage. Vision transformers: the first norm layer
    of the last block (tokens reshaped to a square grid, class tokens dropped). Swin-style
    channel-last ``(N, h, w, C)`` outputs of norm layers get a permuting reshape.
    """
    import torch

    if classifier.target_layer is not None:
        return classifier.target_layer, classifier.reshape_transform
    if isinstance(classifier.model, torch.jit.ScriptModule):
        raise InputError(
            f"classifier {classifier.name!r} is TorchScript, whose layers cannot be hooked for "
            "CAM methods (prediction works). Export it instead: torch.export.save("
            "torch.export.export(model, (example_input,)), 'model.pt2') and load the .pt2, or "
            "load the architecture with its state dict (torchvision:ARCH --checkpoint PATH)."
        )
    size = classifier.input_size or (224, 224)
    probe = torch.zeros(1, classifier.channels, *size, device=classifier.device)
    records: list[tuple[str, Any, tuple]] = []
    handles = []
    for name, module in classifier.model.named_modules():
        if name == "":
            continue

        def hook(mod, _inputs, output, _name=name):
            if isinstance(output, torch.Tensor):
                records.append((_name, mod, tuple(output.shape)))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            classifier.model(probe)
    finally:
        for handle in handles:
            handle.remove()
    spatial = [
        (n, m, s)
        for n, m, s in records
        if len(s) == 4 and s[2] > 1 and s[3] > 1 and not isinstance(m, torch.nn.LayerNorm)
    ]
    tokens = [
        (n, m, s) for n, m, s in records if len(s) == 3 and isinstance(m, torch.nn.LayerNorm)
    ]
    channels_last = [
        (n, m, s)
        for n, m, s in records
        if len(s) == 4 and isinstance(m, torch.nn.LayerNorm) and s[1] > 1 and s[2] > 1
    ]
    if tokens:
        block = re.compile(r"(.*\.)?(blocks|layers?)\.([A-Za-z_]*?)(\d+)\.")
        last = max(
            (tok for tok in tokens if block.match(tok[0])),
            key=lambda tok: int(block.match(tok[0]).group(4)),
            default=None,
        )
        if last is not None:
            prefix = block.match(last[0]).group(0)
            first_norm = next(tok for tok in tokens if tok[0].startswith(prefix))
            return first_norm[1], _token_reshape
    if channels_last:
        return channels_last[-1][1], _channels_last_reshape
    if spatial:
        return spatial[-1][1], None
    raise InputError(
        f"classifier {classifier.name!r}: no layer with a spatial output was found for Grad-CAM; "
        "pass target_layer= (a module or its dotted name)."
    )
