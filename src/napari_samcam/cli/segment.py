"""``samcam segment``: SAM masks from box, point or text prompts for one image."""

from __future__ import annotations

import argparse

from .._prompt_checks import check_boxes, check_points
from ..clip_regions import segment_text
from ..errors import PromptError
from ..images import read_image
from ..overlays import save_overlay
from ._common import (
    add_device_argument,
    add_sam_arguments,
    add_sam_preprocess_argument,
    box_arg,
    check_input_file,
    check_out,
    finite_float,
    non_negative_int,
    point_arg,
    positive_int,
    text_arg,
    write_json,
    zoom_factor,
)
from ._image import select_2d


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "segment",
        help="segment regions with SAM from box / point / text prompts",
        description="Segment regions with Segment Anything. Coordinates are (row, col) pixels; "
        "boxes are row0,col0,row1,col1 with the end exclusive. Writes mask_<i>.png, "
        "masks.tif (labels) and regions.json.",
    )
    parser.add_argument("image", help="image file (DICOM, NIfTI, PNG, TIFF, JPEG)")
    parser.add_argument(
        "--box", type=box_arg, action="append", default=[], help="r0,c0,r1,c1 (repeatable)"
    )
    parser.add_argument(
        "--point",
        type=point_arg,
        action="append",
        default=[],
        help="r,c positive point (repeatable)",
    )
    parser.add_argument(
        "--negative-point",
        type=point_arg,
        action="append",
        default=[],
        help="r,c negative point (repeatable)",
    )
    parser.add_argument("--text", type=text_arg, help="text prompt for CLIP-SAM, e.g. 'nodule'")
    parser.add_argument("--clip", help="CLIP model: a local folder or a hub id (with --text)")
    parser.add_argument(
        "--negative-text",
        type=text_arg,
        action="append",
        default=None,
        help="texts the region must not match (repeatable; default: 'background')",
    )
    parser.add_argument(
        "--top-k", type=positive_int, default=1, help="text: regions to keep (default 1)"
    )
    parser.add_argument("--threshold", type=finite_float, default=None, help="text: minimum score")
    parser.add_argument(
        "--proposals",
        default="auto",
        choices=["auto", "points", "boxes"],
        help="text: SAM proposals from a point grid, a box grid, or auto (boxes for box-only "
        "models such as LiteMedSAM)",
    )
    parser.add_argument(
        "--context",
        type=zoom_factor,
        default=None,
        help="zoom factor for box prompts: embed a crop of this many box sizes around each box",
    )
    parser.add_argument(
        "--slice", type=non_negative_int, default=None, help="slice index of a 3-D volume"
    )
    parser.add_argument(
        "--volume-from-box",
        action="store_true",
        help="segment the whole volume from one --box on the --slice, carried through the "
        "other slices by SAM 2 (--sam sam2.1_hiera_*); writes masks.tif (Z, H, W) and one "
        "region per slice",
    )
    add_sam_arguments(parser)
    add_sam_preprocess_argument(parser)
    add_device_argument(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import tifffile

    if not (args.box or args.point or args.negative_point or args.text):
        raise PromptError("samcam segment: give at least one --box, --point or --text prompt.")
    out = check_out(args.out, overwrite=args.overwrite, names=["masks.tif", "regions.json"])
    data = read_image(check_input_file(args.image))
    if args.volume_from_box:
        return _run_volume(args, data, out)
    image = select_2d(data, args.slice, args.image)
    check_boxes(args.box, image.shape[:2], name="--box")  # before the model loads
    check_points([*args.point, *args.negative_point], None, image.shape[:2], name="--point")
    from ..segment import load_segmenter  # loads torch: after every argument was checked

    segmenter = load_segmenter(args.sam, checkpoint=args.sam_checkpoint, device=args.device)
    if args.text:
        options = {"top_k": args.top_k, "threshold": args.threshold, "proposals": args.proposals}
        if args.negative_text is not None:
            options["negatives"] = tuple(args.negative_text)

        regions = segment_text(
            segmenter, image, args.text, clip=args.clip, window=data.window, **options
        )
    else:
        points = [*args.point, *args.negative_point]
        labels = [1] * len(args.point) + [0] * len(args.negative_point)
        regions = segmenter.segment(
            image,
            points=np.array(points) if points else None,
            point_labels=labels or None,
            boxes=np.array(args.box) if args.box else None,
            context=args.context,
            window=data.window,
            preprocess=args.sam_preprocess,
        )
    out.mkdir(parents=True, exist_ok=True)
    labels_image = np.zeros(image.shape[:2], dtype=np.uint16)
    import imageio.v3 as iio

    for i, region in enumerate(regions, start=1):
        labels_image[region.mask & (labels_image == 0)] = i
        iio.imwrite(out / f"mask_{i}.png", region.mask.astype(np.uint8) * 255)
    tmp = out / "masks.tmp.tif"
    tifffile.imwrite(tmp, labels_image)
    tmp.replace(out / "masks.tif")
    save_overlay(out / "overlay.png", image, regions=regions, boxes=args.box, window=data.window)
    write_json(
        out / "regions.json",
        {
            "image": str(args.image),
            "regions": [dict(label=i, **r.provenance()) for i, r in enumerate(regions, 1)],
        },
    )
    for i, region in enumerate(regions, start=1):
        print(f"region {i}: {region.source} score={region.score:.3f} area={region.area} px")
    print(f"wrote {out}")
    return 0


def _run_volume(args: argparse.Namespace, data, out) -> int:
    """``--volume-from-box``: one box on ``--slice`` carried through the volume."""
    import numpy as np
    import tifffile

    from ..segment import load_segmenter

    if len(args.box) != 1 or args.point or args.negative_point or args.text:
        raise PromptError("--volume-from-box: give exactly one --box (and no points or text).")
    key = select_2d(data, args.slice, args.image)  # a volume and a slice in it, or an error
    check_boxes(args.box, key.shape[:2], name="--box")  # before the model loads
    segmenter = load_segmenter(args.sam, checkpoint=args.sam_checkpoint, device=args.device)
    regions = segmenter.segment_volume(
        data.array, args.box[0], key_slice=args.slice, window=data.window
    )
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "masks.tmp.tif"
    stack = np.stack([r.mask for r in regions]).astype(np.uint16)
    tifffile.imwrite(tmp, stack, photometric="minisblack")
    tmp.replace(out / "masks.tif")
    write_json(
        out / "regions.json",
        {
            "image": str(args.image),
            "regions": [dict(label=1, **r.provenance()) for r in regions],
        },
    )
    for region in regions:
        print(f"slice {region.prompt['slice']}: {region.source} area={region.area} px")
    print(f"wrote {out}")
    return 0
