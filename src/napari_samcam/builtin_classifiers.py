"""Two small CNNs trained on the phantom lesion benchmark, shipped with the package.

* ``lesion-detector`` learned to find the synthetic lesions; its Grad-CAM lands on them.
* ``shortcut-detector`` was trained where a burned-in corner marker accompanied almost every
  positive image and faint lesions: it scores well on data with the same bias, but looks at the
  marker, not the lesion. It exists to show what a localization score catches.

Both take one 256x256 grayscale channel (intensities in ``[0, 1]``, then normalised with the
mean/std in their metadata) and return two logits: ``["no lesion", "lesion"]``. They are
demonstration models trained on synthetic data, not for clinical use. See
``docs/model_cards/`` for data, training command and held-out metrics.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

import torch
from torch import nn

from .classifier_specs import ClassifierSpec, register
from .classifiers import Classifier
from .errors import CheckpointError, InputError

__all__ = [
    "BUILTIN_CLASSIFIERS",
    "PhantomCNN",
    "builtin_metadata",
    "load_builtin_classifier",
]

#: Built-in classifier names -> one-line description.
BUILTIN_CLASSIFIERS: dict[str, str] = {
    "lesion-detector": (
        "Small CNN that detects synthetic lesions in phantom radiographs; its Grad-CAM lands on "
        "the lesion (demonstration only)."
    ),
    "shortcut-detector": (
        "Small CNN trained with a burned-in corner marker correlated with the label; it scores "
        "well on biased data but looks at the marker, not the lesion (demonstration only)."
    ),
}

CLASS_NAMES = ["no lesion", "lesion"]
#: The class a localization check of the built-ins is about: where is the lesion evidence?
FINDING_CLASS = "lesion"
DEFAULT_WIDTHS = (16, 24, 48, 64, 64)


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(
            cin, cout, k, stride=stride, padding=dilation * (k // 2), dilation=dilation, bias=False
        ),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class PhantomCNN(nn.Module):
    """The architecture of the built-in classifiers.

    Five conv stages (BatchNorm, ReLU; the last two dilated for context), a 1x1 conv that turns
    the last stage into a map of lesion evidence ``s``, and log-sum-exp pooling of that map (a
    smooth maximum: a lesion covers a few percent of the image at most, and plain averaging
    would dilute it) plus a learned offset into one score ``z``. The logits are ``(-z/2, z/2)``
    for ``("no lesion", "lesion")``, so ``P(lesion) = sigmoid(z)``. A ``(N, 1, 256, 256)``
    input gives a 32x32 map at ``stage5``, the default Grad-CAM layer; Grad-CAM of "lesion"
    there is the evidence map without its bias.

    Parameters
    ----------
    widths : tuple of 5 int
        Channels of the five conv stages.
    sharpness : float
        ``r`` of the pooling ``z = log(mean(exp(r * s))) / r``; ``r -> 0`` is average pooling,
        large ``r`` the maximum.
    """

    def __init__(self, widths: tuple[int, ...] = DEFAULT_WIDTHS, sharpness: float = 1.0) -> None:
        super().__init__()
        if len(widths) != 5:
            raise InputError(f"widths={widths!r}: pass five channel counts, one per stage.")
        if not sharpness > 0:
            raise InputError(f"sharpness={sharpness!r}: pass a positive number.")
        w1, w2, w3, w4, w5 = (int(w) for w in widths)
        self.sharpness = float(sharpness)
        self.stage1 = nn.Sequential(*_conv(1, w1, k=5, stride=2), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(*_conv(w1, w2))
        self.stage3 = nn.Sequential(*_conv(w2, w3), nn.MaxPool2d(2))
        self.stage4 = nn.Sequential(*_conv(w3, w4, dilation=2))
        self.stage5 = nn.Sequential(*_conv(w4, w5, dilation=2))
        self.head = nn.Conv2d(w5, 1, kernel_size=1)
        self.offset = nn.Parameter(torch.zeros(()))
        # Start from "lesions are rare per location, images are 50/50": evidence about -4 with
        # an offset of +4 keeps the first steps from spending themselves on the bias.
        with torch.no_grad():
            self.head.bias.fill_(-4.0)
            self.offset.fill_(4.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``stage5`` feature map ``(N, C, H/8, W/8)``."""
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4, self.stage5):
            x = stage(x)
        return x

    def evidence(self, x: torch.Tensor) -> torch.Tensor:
        """The per-location lesion evidence (logits) ``(N, 1, H/8, W/8)``."""
        return self.head(self.features(x))

    def pool(self, evidence: torch.Tensor) -> torch.Tensor:
        """Log-sum-exp pooling of an evidence map, plus the offset: one score per image."""
        flat = evidence.flatten(1) * self.sharpness
        pooled = (torch.logsumexp(flat, dim=1) - math.log(flat.shape[1])) / self.sharpness
        return pooled + self.offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.pool(self.evidence(x))
        return torch.stack([-0.5 * z, 0.5 * z], dim=1)


def _weights_dir():
    return resources.files("napari_samcam") / "weights"


def _check_name(name: str) -> None:
    if name not in BUILTIN_CLASSIFIERS:
        raise InputError(
            f"built-in classifier {name!r} does not exist; choose one of "
            f"{', '.join(BUILTIN_CLASSIFIERS)}."
        )


def builtin_metadata(name: str) -> dict[str, Any]:
    """The JSON metadata shipped with a built-in classifier's weights.

    Holds the architecture, input size, mean/std, class names, training seed and command,
    held-out metrics and the version.
    """
    _check_name(name)
    meta_file = _weights_dir() / f"{name}.json"
    if not meta_file.is_file():
        raise CheckpointError(
            f"built-in classifier {name!r}: metadata file {name}.json is missing from the "
            "installed package; reinstall napari-samcam."
        )
    return json.loads(meta_file.read_text(encoding="utf-8"))


def load_builtin_classifier(name: str, device: Any = "cpu"):
    """Load a built-in classifier shipped with the package.

    Parameters
    ----------
    name : str
        ``"lesion-detector"`` or ``"shortcut-detector"`` (see :data:`BUILTIN_CLASSIFIERS`).
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    napari_samcam.classifiers.Classifier
        In eval mode, with class names ``["no lesion", "lesion"]`` and finding class
        ``"lesion"``, 1 channel, its input size and mean/std, ``target_layer`` = the last conv
        stage, ``version`` from the metadata.

    Raises
    ------
    InputError
        Unknown name.
    CheckpointError
        The weights or metadata are missing or do not fit the architecture.
    """
    meta = builtin_metadata(name)
    arch = meta.get("architecture", {})
    model = PhantomCNN(
        widths=tuple(arch.get("widths", DEFAULT_WIDTHS)),
        sharpness=float(arch.get("sharpness", 1.0)),
    )
    weights = _weights_dir() / f"{name}.pt"
    if not weights.is_file():
        raise CheckpointError(
            f"built-in classifier {name!r}: weights file {name}.pt is missing from the installed "
            "package; reinstall napari-samcam."
        )
    with resources.as_file(weights) as path:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(
                f"built-in classifier {name!r}: {name}.pt could not be loaded ({exc}); "
                "reinstall napari-samcam."
            ) from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"built-in classifier {name!r}: weights do not fit the architecture ({exc})."
        ) from exc
    device = torch.device(device) if device is not None else torch.device("cpu")
    model.to(device).eval()
    channels = int(meta.get("channels", 1))
    return Classifier(
        model=model,
        name=name,
        class_names=list(meta.get("class_names", CLASS_NAMES)),
        input_size=tuple(int(v) for v in meta.get("input_size", (256, 256))),
        channels=channels,
        mean=tuple(float(v) for v in meta.get("mean", (0.5,) * channels)),
        std=tuple(float(v) for v in meta.get("std", (0.25,) * channels)),
        target_layer=model.stage5,
        version=str(meta.get("version", "")),
        source=f"napari_samcam/weights/{name}.pt",
        finding_class=meta.get("finding_class", FINDING_CLASS),
    )


def _version(name: str) -> str:
    try:
        return str(builtin_metadata(name).get("version", ""))
    except Exception:  # missing metadata is reported when the model loads
        return "?"


def _load(name: str, *, device: Any = None, **_options: Any) -> Classifier:
    return load_builtin_classifier(name, device=device)


for _name in BUILTIN_CLASSIFIERS:
    register(ClassifierSpec(_name, _load, _version))
