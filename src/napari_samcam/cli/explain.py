"""``samcam explain``: a classifier's saliency map for one image."""

from __future__ import annotations

import argparse

from ..images import read_image
from ..overlays import save_overlay
from ..saliency import explain
from ._common import (
    add_model_arguments,
    cam_method_arg,
    check_input_file,
    check_out,
    non_negative_int,
    write_json,
)
from ._image import select_2d


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "explain",
        help="compute a CAM saliency map for one image",
        description="Compute a CAM saliency map; writes saliency.tif (float32, image "
        "resolution), overlay.png and saliency.json (provenance).",
    )
    parser.add_argument("image", help="image file (DICOM, NIfTI, PNG, TIFF, JPEG)")
    add_model_arguments(parser)
    parser.add_argument(
        "--method",
        type=cam_method_arg,
        default="gradcam",
        help="CAM method (default: %(default)s)",
    )
    parser.add_argument("--target", help="class index or name (default: top class)")
    parser.add_argument("--layer", help="target layer's dotted name (default: automatic)")
    parser.add_argument(
        "--slice", type=non_negative_int, default=None, help="slice index of a 3-D volume"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser


def run(args: argparse.Namespace) -> int:
    import tifffile

    from ..classifiers import load_classifier

    names = ["saliency.tif", "overlay.png", "saliency.json"]
    out = check_out(args.out, overwrite=args.overwrite, names=names)
    data = read_image(check_input_file(args.image))
    image = select_2d(data, args.slice, args.image)
    classifier = load_classifier(
        args.model,
        checkpoint=args.checkpoint,
        trust_checkpoint=args.trust_checkpoint,
        target_layer=args.layer,
        device=args.device,
    )
    saliency = explain(
        image, classifier, method=args.method, target=args.target, window=data.window
    )
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "saliency.tmp.tif"
    tifffile.imwrite(tmp, saliency.map)
    tmp.replace(out / "saliency.tif")
    title = (
        f"{saliency.classifier} {saliency.method}: {saliency.class_name} "
        f"p={saliency.probability:.3f}"
    )
    save_overlay(
        out / "overlay.png", image, saliency=saliency.map, title=title, window=data.window
    )
    write_json(
        out / "saliency.json",
        {
            "image": str(args.image),
            "image_metadata": _plain(data.metadata),
            **saliency.provenance(),
        },
    )
    print(title)
    print(f"wrote {', '.join(str(out / n) for n in names)}")
    return 0


def _plain(metadata: dict) -> dict:
    return {
        k: v
        for k, v in metadata.items()
        if isinstance(v, (str, int, float, bool, tuple, list, type(None)))
    }
