"""torchxrayvision's chest X-ray classifiers as classifier specs: ``xrv:<weights>``.

``xrv:densenet121-res224-all`` (and ``-nih``, ``-pc``, ``-chex``, ``-rsna``, ``-mimic_nb``,
``-mimic_ch``) and ``xrv:resnet50-res512-all`` load torchxrayvision's architectures with:

* its preprocessing: one channel, intensities scaled to ``[-1024, 1024]`` (its ``normalize``),
  the centred square crop (its ``XRayCenterCrop``) resized to its input size (224, or 512 for
  the ResNet);
* its pathology names, with the two that CheXlocalize names otherwise renamed (``Effusion`` ->
  ``Pleural Effusion``, ``Lung Opacity`` -> ``Airspace Opacity``), so evaluating a CheXlocalize
  manifest explains each item's task by default;
* the Grad-CAM layer: the last dense block's norm (``features.norm5``) for the DenseNets,
  ``layer4`` for the ResNet;
* raw logits (the class probability is their sigmoid); torchxrayvision's operating-point
  calibration (``op_threshs``) is not applied.

Weights: ``checkpoint=`` a local state dict (``weights_only=True``), else torchxrayvision's own
file in its cache (``~/.torchxrayvision/models_data``). With ``download=True`` a missing file is
fetched there by torchxrayvision's own downloader (from its GitHub release; no digest is
published to pin it to). Its DenseNet files are pickled modules: they are read with
``torch.load(weights_only=True)`` allowing only torchxrayvision's DenseNet classes and torch's
layers, so a file cannot run code; anything else needs ``trust_checkpoint=True``. A missing file
without ``download=True``, or a failed download, is a
:class:`~napari_samcam.errors.ModelNotAvailableError` that says where to put the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .classifier_specs import ClassifierSpec, register
from .classifiers import Classifier, _file_version, load_checkpoint, load_state_strict
from .errors import InputError, ModelNotAvailableError

__all__ = ["XRV_WEIGHTS", "build_xrv_model", "xrv_class_names", "xrv_weights_file"]

#: torchxrayvision weights names this spec loads (``xrv:<name>``).
XRV_WEIGHTS = (
    "densenet121-res224-all",
    "densenet121-res224-nih",
    "densenet121-res224-pc",
    "densenet121-res224-chex",
    "densenet121-res224-rsna",
    "densenet121-res224-mimic_nb",
    "densenet121-res224-mimic_ch",
    "resnet50-res512-all",
)

#: torchxrayvision pathology -> CheXlocalize task, where the names differ.
CHEXLOCALIZE_NAMES = {"Effusion": "Pleural Effusion", "Lung Opacity": "Airspace Opacity"}

#: [0, 1] intensities -> torchxrayvision's [-1024, 1024]: (x - 0.5) / (1 / 2048).
XRV_MEAN = (0.5,)
XRV_STD = (1.0 / 2048.0,)


def _xrv():
    try:
        import torchxrayvision
    except ImportError as exc:
        raise ModelNotAvailableError(
            "torchxrayvision classifiers need the torchxrayvision package: "
            "pip install 'napari-samcam[xrv]'."
        ) from exc
    return torchxrayvision


def _weights_name(text: str) -> str:
    name = text.removeprefix("xrv:")
    if name not in XRV_WEIGHTS:
        raise InputError(
            f"classifier {text!r}: unknown torchxrayvision weights {name!r}; choose one of "
            f"{', '.join('xrv:' + w for w in XRV_WEIGHTS)}."
        )
    return name


def xrv_class_names(weights: str) -> list[str]:
    """The model's output names, CheXlocalize's where they differ (``""``: an unused output)."""
    labels = _xrv().models.model_urls[weights]["labels"]
    return [CHEXLOCALIZE_NAMES.get(label, label) for label in labels]


def build_xrv_model(weights: str):
    """The architecture of ``weights`` with random weights (nothing is downloaded)."""
    xrv = _xrv()
    n_classes = len(xrv.models.model_urls[weights]["labels"])
    if weights.startswith("densenet"):
        return xrv.models.DenseNet(weights=None, num_classes=n_classes)
    import torch
    import torchvision

    model = torchvision.models.resnet50(num_classes=n_classes, weights=None)
    model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def xrv_weights_file(
    weights: str, cache_dir: str | os.PathLike | None = None, *, download: bool = False
) -> Path:
    """torchxrayvision's weights file of ``weights``; with ``download``, fetched into its cache
    by torchxrayvision's downloader when missing.

    Raises
    ------
    ModelNotAvailableError
        The file is not cached, and ``download`` is False or the download fails.
    """
    xrv = _xrv()
    url = xrv.models.model_urls[weights]["weights_url"]
    folder = Path(cache_dir) if cache_dir is not None else Path(xrv.utils.get_cache_dir())
    local = folder.expanduser() / os.path.basename(url)
    if local.is_file():
        return local
    if not download:
        raise ModelNotAvailableError(
            f"torchxrayvision weights {weights!r} are not in {str(folder)!r}; pass download=True "
            f"to fetch {url} there, put the file at {str(local)!r}, or pass checkpoint= a "
            "state dict."
        )
    try:
        return Path(xrv.models.get_weights(weights, cache_dir=str(folder)))
    except Exception as exc:  # requests' connection errors, HTTP errors, a full disk
        raise ModelNotAvailableError(
            f"torchxrayvision weights {weights!r} are not in {str(folder)!r} and could not be "
            f"downloaded ({type(exc).__name__}: {exc}). Download {url} to {str(local)!r} on a "
            "machine with network access, or pass checkpoint= a state dict."
        ) from exc


def _safe_module_classes() -> list:
    import collections

    import torch

    xrv = _xrv()
    nn = torch.nn
    return [
        xrv.models.DenseNet,
        xrv.models._DenseBlock,
        xrv.models._DenseLayer,
        xrv.models._Transition,
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.MaxPool2d,
        nn.AvgPool2d,
        nn.Linear,
        nn.Sequential,
        nn.Dropout,
        collections.OrderedDict,
        set,
    ]


def _read_weights(path: Any, trust_checkpoint: bool) -> dict:
    """A state dict from a state-dict file or from torchxrayvision's pickled DenseNet (read
    weights-only, allowing its classes and torch's layers)."""
    import torch

    with torch.serialization.safe_globals(_safe_module_classes()):
        state = load_checkpoint(path, trust_checkpoint=trust_checkpoint)
    return {k: v for k, v in state.items() if k != "op_threshs"}


def _load(
    text: str,
    *,
    device: Any = None,
    checkpoint: Any = None,
    trust_checkpoint: bool = False,
    download: bool = False,
    **_options: Any,
) -> Classifier:
    weights = _weights_name(text)
    model = build_xrv_model(weights)
    if checkpoint is None:
        checkpoint = xrv_weights_file(weights, download=download)
    source = str(checkpoint)
    state = _read_weights(source, trust_checkpoint)
    load_state_strict(model, state, what=f"classifier {text!r} ({source})")
    if weights.startswith("densenet"):
        layer, size = model.features.norm5, (224, 224)
    else:
        layer, size = model.layer4, (512, 512)
    return Classifier(
        model=model,
        name=text,
        class_names=xrv_class_names(weights),
        input_size=size,
        channels=1,
        mean=XRV_MEAN,
        std=XRV_STD,
        target_layer=layer,
        multilabel=True,
        version=_file_version(source),
        source=source,
        center_crop=True,
    )


register(ClassifierSpec("xrv:", _load, prefix=True, names=tuple(f"xrv:{w}" for w in XRV_WEIGHTS)))
