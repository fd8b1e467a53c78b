"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import InputError, OutputExistsError


def int_tuple(text: str, n: int, what: str) -> tuple[int, ...]:
    """Parse ``"a,b,c"`` into ``n`` integers, with an error naming ``what``."""
    try:
        values = tuple(int(round(float(v))) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected {n} comma-separated numbers")
    return values


def box_arg(text: str) -> tuple[int, ...]:
    """``r0,c0,r1,c1`` -> box (end exclusive)."""
    return int_tuple(text, 4, "box")


def point_arg(text: str) -> tuple[int, ...]:
    """``r,c`` -> point."""
    return int_tuple(text, 2, "point")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Classifier options shared by explain, evaluate and demo."""
    parser.add_argument(
        "--model",
        default="lesion-detector",
        help="classifier: a built-in name (lesion-detector, shortcut-detector), "
        "torchvision:ARCH / timm:ARCH with --checkpoint, a .pt2 or TorchScript file (with "
        "--trust-checkpoint), or hf:FOLDER_OR_ID[@REVISION] "
        "(default: %(default)s)",
    )
    parser.add_argument("--checkpoint", help="state dict for torchvision:/timm: architectures")
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="trust the model file: open .pt2 (torch.export) and TorchScript files and "
        "checkpoints that need full unpickling, which can run code (only for files whose "
        "author you trust)",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def add_sam_arguments(parser: argparse.ArgumentParser) -> None:
    """SAM options shared by segment, evaluate and demo."""
    parser.add_argument(
        "--sam",
        default="litemedsam",
        help="SAM model: litemedsam (built-in), vit_b, vit_l, "
        "vit_h, mobile_sam (default: %(default)s)",
    )
    parser.add_argument("--sam-checkpoint", help="checkpoint file for vit_b/l/h or mobile_sam")


def check_out(out: str | Path, *, overwrite: bool, names: list[str]) -> Path:
    """Refuse to replace any of ``names`` in ``out`` unless ``overwrite``; create nothing yet.

    Commands call this before any work and create the folder only when results are ready, so
    bad input leaves nothing behind.
    """
    out = Path(out)
    existing = [n for n in names if (out / n).exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"output folder {str(out)!r} already holds {', '.join(existing)}; choose another "
            "--out or pass --overwrite."
        )
    return out


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable))
    tmp.replace(path)


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


def prepare_out(out: str | Path, *, overwrite: bool, names: list[str]) -> Path:
    """:func:`check_out`, then create the folder (for commands that write as they go)."""
    out = check_out(out, overwrite=overwrite, names=names)
    out.mkdir(parents=True, exist_ok=True)
    return out


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
