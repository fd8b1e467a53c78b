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
file in its cache (``~/.torchxrayvision/models_data``). The architecture is always built here
with no weights and no cache folder: torchxrayvision's own loading code (which unpickles its
file fully, and downloads into any folder it is given) never runs. Its DenseNet files are
pickled modules: they are read with ``torch.load(weights_only=True)`` where every module class
the file names is read as a data record (:mod:`~napari_samcam.module_pickles`), never called,
and the tensors found are loaded into the built model; anything else needs
``trust_checkpoint=True``. With ``download=True`` and a pinned digest
(``xrv:densenet121-res224-all@SHA256``) a missing file is fetched into the cache and kept only
when its SHA-256 matches; torchxrayvision publishes no digests, so there is no download without
one. A missing file otherwise is a :class:`~napari_samcam.errors.ModelNotAvailableError` that
says where to put the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .classifier_specs import ClassifierSpec, register
from .classifiers import Classifier
from .errors import CheckpointError, InputError, ModelNotAvailableError
from .hashing import file_sha256, file_version
from .model_files import first_line
from .module_pickles import module_record_globals
from .torch_loading import load_checkpoint, load_state_strict

__all__ = [
    "PICKLED_MODULE_CLASSES",
    "XRV_WEIGHTS",
    "build_xrv_model",
    "split_pin",
    "xrv_class_names",
    "xrv_weights_file",
]

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")

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


def split_pin(text: str) -> tuple[str, str | None]:
    """``"xrv:WEIGHTS@SHA256"`` -> ``("xrv:WEIGHTS", "sha256")``; no ``@`` -> ``(text, None)``.

    Raises
    ------
    InputError
        The part after ``@`` is not a 64-digit hexadecimal SHA-256.
    """
    if "@" not in text:
        return text, None
    name, pin = text.split("@", 1)
    if not _SHA256.match(pin):
        raise InputError(
            f"classifier {text!r}: {pin!r} is not a SHA-256 digest; pin the weights file with "
            "its 64 hexadecimal digits ('xrv:WEIGHTS@' + sha256sum of the file)."
        )
    return name, pin.lower()


def xrv_weights_file(
    weights: str,
    cache_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    sha256: str | None = None,
) -> Path:
    """torchxrayvision's weights file of ``weights`` in its cache; with ``download`` and a
    pinned ``sha256``, fetched there when missing (kept only when its digest matches).

    torchxrayvision's own loading code is never called: it would unpickle the file fully.

    Raises
    ------
    ModelNotAvailableError
        The file is not cached, and ``download`` is False, no digest is pinned, or the
        download fails or does not match the digest.
    CheckpointError
        The cached file does not match the pinned digest.
    """
    xrv = _xrv()
    url = xrv.models.model_urls[weights]["weights_url"]
    folder = Path(cache_dir) if cache_dir is not None else Path(xrv.utils.get_cache_dir())
    local = folder.expanduser() / os.path.basename(url)
    if os.path.lexists(local):
        if sha256 is not None and file_sha256(local, "torchxrayvision weights") != sha256:
            raise CheckpointError(
                f"torchxrayvision weights file {str(local)!r} does not match the pinned SHA-256 "
                f"{sha256}; delete it and download it again."
            )
        return local
    if not download:
        raise ModelNotAvailableError(
            f"torchxrayvision weights {weights!r} are not in {str(folder)!r}; pass download=True "
            f"with the file's SHA-256 pinned ('xrv:{weights}@SHA256') to fetch {url} there, put "
            f"the file at {str(local)!r}, or pass checkpoint= a state dict."
        )
    if sha256 is None:
        raise ModelNotAvailableError(
            f"torchxrayvision weights {weights!r}: torchxrayvision publishes no digest of "
            f"{url}, so it is downloaded only when you pin one: 'xrv:{weights}@SHA256' with the "
            f"sha256sum of the file you checked. Or download it yourself to {str(local)!r}."
        )
    import torch.hub

    try:
        local.parent.mkdir(parents=True, exist_ok=True)
        # written to a temporary file, checked against the whole digest, then renamed
        torch.hub.download_url_to_file(url, str(local), hash_prefix=sha256, progress=False)
    except Exception as exc:  # no network, HTTP errors, a full disk, a digest mismatch
        raise ModelNotAvailableError(
            f"torchxrayvision weights {weights!r} are not in {str(folder)!r} and could not be "
            f"downloaded ({type(exc).__name__}: {first_line(exc)}). Download {url} to "
            f"{str(local)!r} on a machine with network access, or pass checkpoint= a state dict."
        ) from exc
    return local


#: Classes torchxrayvision's pickled DenseNets name; each is read as a data record
#: (:class:`~napari_samcam.module_pickles.ModuleRecord`), never called.
PICKLED_MODULE_CLASSES = (
    "torchxrayvision.models.DenseNet",
    "torchxrayvision.models._DenseBlock",
    "torchxrayvision.models._DenseLayer",
    "torchxrayvision.models._Transition",
    "torch.nn.modules.conv.Conv2d",
    "torch.nn.modules.batchnorm.BatchNorm2d",
    "torch.nn.modules.activation.ReLU",
    "torch.nn.modules.pooling.MaxPool2d",
    "torch.nn.modules.pooling.AvgPool2d",
    "torch.nn.modules.linear.Linear",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.dropout.Dropout",
)


def _read_weights(path: Any, trust_checkpoint: bool) -> dict:
    """A state dict from a state-dict file or from torchxrayvision's pickled DenseNet, read
    weights-only with its module classes as data records (nothing of torchxrayvision runs)."""
    import torch

    records = [*module_record_globals(PICKLED_MODULE_CLASSES), set]
    with torch.serialization.safe_globals(records):
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
    name, pin = split_pin(text)
    weights = _weights_name(name)
    model = build_xrv_model(weights)
    if checkpoint is None:
        checkpoint = xrv_weights_file(weights, download=download, sha256=pin)
    source = str(checkpoint)
    state = _read_weights(source, trust_checkpoint)
    load_state_strict(model, state, what=f"classifier {text!r} ({source})")
    if weights.startswith("densenet"):
        layer, size = model.features.norm5, (224, 224)
    else:
        layer, size = model.layer4, (512, 512)
    return Classifier(
        model=model,
        name=name,
        class_names=xrv_class_names(weights),
        input_size=size,
        channels=1,
        mean=XRV_MEAN,
        std=XRV_STD,
        target_layer=layer,
        multilabel=True,
        version=file_version(source),
        source=source,
        center_crop=True,
    )


register(ClassifierSpec("xrv:", _load, prefix=True, names=tuple(f"xrv:{w}" for w in XRV_WEIGHTS)))
