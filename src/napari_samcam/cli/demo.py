"""``samcam demo``: the built-in lesion and shortcut detectors, scored on phantoms."""

from __future__ import annotations

import argparse

from .._folders import check_writable
from ..demo import run_demo
from ._common import add_device_argument, non_negative_int, positive_int, progress_bar


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="show a localization score catching a shortcut-learning classifier",
        description="Generate phantom radiographs with synthetic lesions (and the burned-in "
        "corner marker the shortcut detector relies on), explain both built-in classifiers "
        "with Grad-CAM, segment each lesion with LiteMedSAM prompted by the box annotation and "
        "by a box from the saliency map, and score every saliency map against the ground-truth "
        "mask and both SAM regions. Then run a real chest radiograph (pydicom-data "
        "RG1_UNCI.dcm) through Grad-CAM and SAM. Writes phantoms/, metrics.csv, regions.csv, "
        "summary.csv, summary.json, radiograph.csv and overlays/*.png into --out.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--n", type=positive_int, default=8, help="number of phantom images (default: %(default)s)"
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=2024, help="phantom seed (default: %(default)s)"
    )
    parser.add_argument(
        "--no-radiograph", action="store_true", help="skip the real chest radiograph"
    )
    parser.add_argument("--sam", default="litemedsam", help="SAM model (default: %(default)s)")
    add_device_argument(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier demo")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    check_writable(args.out, name="--out")  # before any model is loaded
    with progress_bar("demo", quiet=args.quiet) as progress:
        result = run_demo(
            args.out,
            n=args.n,
            seed=args.seed,
            sam=args.sam,
            radiograph=not args.no_radiograph,
            overwrite=args.overwrite,
            device=args.device,
            progress=progress,
        )
    print("\nWhere do the classifiers look? Mean over the phantoms (1 = all in the region):\n")
    print(f"  {'classifier':<19} {'region':<18} {'hit rate':>8} {'energy':>8} {'IoU':>8}")
    for row in result.table.to_dict("records"):
        print(
            f"  {row['classifier']:<19} {row['region_source']:<18} {row['hit']:8.2f} "
            f"{row['energy']:8.2f} {row['iou']:8.2f}"
        )
    print(
        "\nhit rate: share of images whose saliency maximum lies in the region; energy: share "
        "of the saliency inside it; IoU: overlap of the Otsu-binarized saliency with it."
    )
    print(
        f"\nwrote {result.out} ({len(result.metrics)} metric rows, overlays in "
        f"{result.out / 'overlays'}) in {result.seconds:.0f} s"
    )
    return 0
