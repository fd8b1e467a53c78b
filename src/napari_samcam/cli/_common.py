"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._folders import atomic_path, check_writable
from .._prompt_checks import check_boxes, check_points
from ..devices import check_device
from ..errors import InputError, OutputExistsError, PromptError
from ..saliency import CAM_METHODS, cam_method_key
from ..sam_models import SAM_MODELS
from ..sam_preprocess import parse_preprocess


def _coordinates(text: str, n: int, what: str, check) -> tuple[int, ...]:
    """Parse ``"a,b,..."`` into ``n`` pixel coordinates checked by ``check``."""
    cells = text.split(",")
    try:
        values = [float(v) for v in cells]
    except ValueError:
        values = []
    if len(values) != n:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected {n} comma-separated numbers")
    try:
        checked = check([values], name=what)
    except PromptError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace(f"{what}[0] = ", f"{what} ")) from None
    return tuple(int(v) for v in checked.round()[0])


def box_arg(text: str) -> tuple[int, ...]:
    """``r0,c0,r1,c1`` -> box (end exclusive)."""
    return _coordinates(text, 4, "box", check_boxes)


def point_arg(text: str) -> tuple[int, ...]:
    """``r,c`` -> point."""
    return _coordinates(text, 2, "point", lambda v, name: check_points(v, name=name)[0])


def _number(text: str, kind: type, condition, expected: str):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value != value or not condition(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {expected}")
    return value


def positive_int(text: str) -> int:
    """An int >= 1."""
    return _number(text, int, lambda v: v >= 1, "a positive whole number, e.g. 1000")


def non_negative_int(text: str) -> int:
    """An int >= 0."""
    return _number(text, int, lambda v: v >= 0, "a whole number >= 0")


def fraction(text: str) -> float:
    """A float in [0, 1]."""
    return _number(text, float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1], e.g. 0.5")


def finite_float(text: str) -> float:
    """Any finite float."""
    return _number(text, float, math.isfinite, "a finite number")


def zoom_factor(text: str) -> float:
    """A box-prompt zoom factor: >= 1."""
    return _number(text, float, lambda v: math.isfinite(v) and v >= 1.0, "a number >= 1, e.g. 2.5")


def zoom_factor_or_zero(text: str) -> float:
    """A box-prompt zoom factor (>= 1), or 0 for none."""
    return _number(
        text,
        float,
        lambda v: v == 0 or (math.isfinite(v) and v >= 1.0),
        "0 or a number >= 1, e.g. 2.5",
    )


def text_arg(text: str) -> str:
    """A non-empty text."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty text; pass a word such as 'nodule'")
    return text


def checked_with(check, text: str) -> str:
    """``text`` if ``check(text)`` passes; its InputError as argparse's error otherwise."""
    try:
        check(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def device_arg(text: str) -> str:
    """A torch device present on this machine (cpu, cuda[:N], mps)."""
    return checked_with(check_device, text)


def cam_method_arg(text: str) -> str:
    """A CAM method name of :data:`napari_samcam.saliency.CAM_METHODS`."""
    if cam_method_key(text) not in {cam_method_key(m) for m in CAM_METHODS}:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a CAM method; choose from {', '.join(CAM_METHODS)}"
        )
    return text


def existing_file(text: str) -> str:
    """A path that exists."""
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text!r} does not exist or is not a file")
    return text


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Classifier options shared by explain, evaluate and demo."""
    parser.add_argument(
        "--model",
        default="lesion-detector",
        help="classifier: a built-in name (lesion-detector, shortcut-detector), "
        "xrv:WEIGHTS (torchxrayvision, e.g. xrv:densenet121-res224-all), torchvision:ARCH / "
        "timm:ARCH with --checkpoint, a .pt2 or TorchScript file (with --trust-checkpoint), or "
        "hf:FOLDER_OR_ID[@REVISION] "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--checkpoint",
        type=existing_file,
        help="state dict for torchvision:/timm:/xrv: architectures",
    )
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="trust the model file: open .pt2 (torch.export) and TorchScript files and "
        "checkpoints that need full unpickling, which can run code (only for files whose "
        "author you trust)",
    )
    add_device_argument(parser)


def add_sam_arguments(parser: argparse.ArgumentParser) -> None:
    """SAM options shared by segment, evaluate and demo."""
    parser.add_argument(
        "--sam",
        default="litemedsam",
        help=f"SAM model: {', '.join(SAM_MODELS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--sam-checkpoint",
        type=existing_file,
        help="checkpoint file of the --sam model (every model but litemedsam needs one)",
    )


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``, checked against the devices of this machine."""
    parser.add_argument(
        "--device",
        type=device_arg,
        help="cpu, cuda, cuda:1, mps ... (default: cuda if available)",
    )


def sam_preprocess_arg(text: str) -> str:
    return checked_with(parse_preprocess, text)


def add_sam_preprocess_argument(parser: argparse.ArgumentParser) -> None:
    """``--sam-preprocess``, for the commands that prompt SAM."""
    parser.add_argument(
        "--sam-preprocess",
        type=sam_preprocess_arg,
        metavar="NAME",
        help="contrast pre-processing of the image SAM sees: clahe, clahe:CLIP, gamma:G, or "
        "steps joined by + (e.g. clahe+gamma:0.8); default: none",
    )


def check_out(out: str | Path, *, overwrite: bool, names: list[str]) -> Path:
    """Refuse to replace any of ``names`` in ``out`` unless ``overwrite``, or an ``out`` that
    cannot be written; create nothing yet.

    Commands call this before any work and create the folder only when results are ready, so
    bad input leaves nothing behind.
    """
    out = check_writable(out, name="--out")
    existing = [n for n in names if (out / n).exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"output folder {str(out)!r} already holds {', '.join(existing)}; choose another "
            "--out or pass --overwrite."
        )
    return out


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_jsonable), encoding="utf-8")


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def check_input_file(path: str) -> Path:
    """An existing input path, or an error naming it."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"input {path!r} does not exist; check the path.")
    return p


@contextmanager
def progress_bar(desc: str, *, quiet: bool = False):
    """A ``progress(done, total)`` callback drawing a tqdm bar (with ETA), closed on exit."""
    from tqdm import tqdm

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:
            bar = tqdm(total=total, unit="image", desc=desc, dynamic_ncols=True)
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()
