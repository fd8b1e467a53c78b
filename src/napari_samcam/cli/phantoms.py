"""``samcam phantoms``: write the phantom lesion benchmark (images, masks, manifest.csv)."""

from __future__ import annotations

import argparse

from .._folders import check_writable
from ..phantom_shapes import SHAPE_CLASSES
from ..phantoms import check_shapes, write_phantoms
from ._common import checked_with, fraction, non_negative_int, positive_int, progress_bar


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "phantoms",
        help="generate phantom radiographs with synthetic lesions and a manifest",
        description="Generate phantom images (real radiograph backgrounds from pydicom-data with "
        "synthetic lesions of known extent) into OUT: images/*.png, masks/*.png and "
        "manifest.csv (image, label, mask, box_r0, box_c0, box_r1, box_c1, ...; paths "
        "relative to the manifest). The same arguments always give the same images.",
    )
    parser.add_argument("--n", type=positive_int, required=True, help="number of images")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="random seed (default: %(default)s)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--size",
        type=positive_int,
        default=512,
        help="image side in pixels (default: %(default)s)",
    )
    parser.add_argument(
        "--positive-fraction",
        type=fraction,
        default=0.5,
        help="share of images with a lesion (default: %(default)s)",
    )
    parser.add_argument(
        "--marker",
        choices=["none", "correlated", "random", "always"],
        default="none",
        help="burned-in corner marker: none, correlated (on 97%% of positives, 3%% of "
        "negatives), random (half the images) or always (default: %(default)s)",
    )
    parser.add_argument(
        "--shapes",
        type=shape_list,
        default=None,
        help="lesion shape classes given to the positives in turn, comma-separated, or 'all' ("
        + ", ".join(SHAPE_CLASSES)
        + "); chest background only. Default: the original compact lesions",
    )
    parser.add_argument(
        "--readers",
        type=non_negative_int,
        default=0,
        help="box each lesion as N simulated readers would (jittered, loose, missed 10%% of "
        "the time) in a 'readers' column; evaluate with --regions ... readers (default: none)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing set")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    check_writable(args.out, name="--out")  # before any model is loaded
    with progress_bar("phantoms", quiet=args.quiet) as progress:
        manifest = write_phantoms(
            args.n,
            args.out,
            seed=args.seed,
            size=args.size,
            positive_fraction=args.positive_fraction,
            marker=None if args.marker == "none" else args.marker,
            shapes=args.shapes,
            overwrite=args.overwrite,
            progress=progress,
            readers=args.readers,
        )
    print(f"wrote {args.n} phantoms and {manifest}")
    return 0


def shape_list(text: str) -> tuple[str, ...]:
    """``--shapes``: comma-separated shape classes, or ``all``."""
    checked_with(check_shapes, text)
    return check_shapes(text)
