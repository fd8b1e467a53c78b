"""``samcam evaluate``: localization scores of classifiers' saliency over a whole dataset."""

from __future__ import annotations

import argparse

from .._folders import check_writable
from ._common import (
    add_sam_arguments,
    add_sam_preprocess_argument,
    cam_method_arg,
    check_input_file,
    existing_file,
    finite_float,
    positive_int,
    progress_bar,
    text_arg,
    zoom_factor_or_zero,
)

_DESCRIPTION = """\
Score where classifiers look over a dataset. For every image of MANIFEST and every classifier x
CAM method, the saliency map is compared with regions from several sources (the ground-truth
mask, the box annotation, SAM prompted by the box, SAM prompted by the saliency's own boxes or
peak, SAM prompted by text) with every localization metric (IoU, Dice, pointing-game hit,
energy in the region, rank accuracy, top-k, AUROC, AUPRC, precision, recall, specificity).

Writes into --out: metrics.parquet / metrics.csv (one row per image x classifier x method x
region source x metric), summary.csv (mean with bootstrap 95% CI per class and overall),
agreement.csv (agreement of each region source with the ground truth: Pearson, Spearman, mean
absolute difference, Bland-Altman, Cohen's kappa for hits), sam_vs_box.csv, regions.csv and
region_summary.csv (each region's Dice / IoU with the ground-truth mask), comparison.csv
(every pair of classifiers and of CAM methods on the items they share: mean difference with a
paired-bootstrap CI, Wilcoxon signed-rank p-value with Holm correction over --holm-family,
family size per row),
summary.json, plots/*.svg and a self-contained report.html.

Results are stored per image under --out/parts as they finish: re-running the same command
resumes where it stopped. A folder holding results of another configuration is refused unless
--overwrite, which deletes them and starts afresh.
"""

_EPILOG = """\
manifests:
  CSV        columns image, [label], [class], [mask], [box_r0, box_c0, box_r1, box_c1]
             (paths relative to the CSV; boxes end-exclusive; the format of `samcam phantoms`)
  COCO JSON  images / annotations (bbox, polygon or RLE segmentation) / categories
  CheXlocalize ground-truth JSON  {img_id: {task: {size, counts}}}; images under --images
  datasets as distributed (plain, .gz or .zip), told from their columns; images under --images:
             NIH ChestX-ray14 BBox_List_2017.csv, RSNA Pneumonia stage_2_train_labels.csv,
             SIIM-ACR train-rle.csv, VinDr-CXR train.csv (add --regions ... readers for its
             three radiologists)

examples:
  samcam phantoms --n 200 --seed 0 --out phantoms
  samcam evaluate phantoms/manifest.csv --out results \\
      --model lesion-detector --model shortcut-detector
  samcam evaluate phantoms/manifest.csv --out results --scheduler tcp://10.0.0.5:8786
  samcam evaluate gt_segmentations_val.json --images valid --saliency gradcam_maps_val \
      --regions ground-truth --protocol chexlocalize --out chexlocalize
  samcam evaluate vindr/train.csv --images vindr/train --model xrv:densenet121-res224-all \
      --regions box sam-box readers --out vindr-results
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..region_sources import DEFAULT_REGION_SOURCES, REGION_SOURCES

    parser = subparsers.add_parser(
        "evaluate",
        help="score saliency localization over a dataset (CSV / COCO / CheXlocalize manifest)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "manifest",
        help="manifest file: .csv, COCO .json, CheXlocalize .json, or a dataset's "
        "annotation file (NIH, RSNA, SIIM, VinDr; see below)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="NAME",
        help="classifier (repeatable): lesion-detector, shortcut-detector, xrv:WEIGHTS "
        "(torchxrayvision, e.g. xrv:densenet121-res224-all), torchvision:ARCH / "
        "timm:ARCH with --checkpoint, a TorchScript or .pt2 file, hf:FOLDER_OR_ID "
        "(default: lesion-detector)",
    )
    parser.add_argument(
        "--saliency",
        metavar="DIR",
        help="score the saliency maps in DIR instead of computing them (no --model): .npy, "
        ".npz, .tif, .png, .nii[.gz] named <image>[_<class>].<ext>, or CheXlocalize's "
        "<img_id>_<task>_map.pkl",
    )
    parser.add_argument(
        "--trust-saliency",
        action="store_true",
        help="unpickle --saliency .pkl files without restriction (only for files you trust; "
        "CheXlocalize's maps do not need it)",
    )
    parser.add_argument(
        "--protocol",
        choices=["samcam", "chexlocalize"],
        default="samcam",
        help="metric definitions: samcam (default; NaN where a score is undefined) or "
        "chexlocalize (CheXlocalize's segmentation, first-maximum hit, iou and iou_true_pos, "
        "its bootstrap)",
    )
    parser.add_argument(
        "--checkpoint",
        type=existing_file,
        help="state dict for torchvision:/timm:/xrv: classifiers",
    )
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="trust the model file: open .pt2 (torch.export) and TorchScript files and "
        "checkpoints that need full unpickling, which can run code (only for files whose "
        "author you trust)",
    )
    parser.add_argument(
        "--method",
        type=cam_method_arg,
        action="append",
        default=None,
        metavar="METHOD",
        help="CAM method (repeatable; default: gradcam), e.g. gradcam, gradcam++, hirescam",
    )
    parser.add_argument(
        "--target",
        help="class to explain (index or name); default: the item's class when the classifier "
        "has it, else class 1 of a 2-class model, else the top class",
    )
    parser.add_argument(
        "--regions",
        nargs="+",
        default=list(DEFAULT_REGION_SOURCES),
        choices=list(REGION_SOURCES),
        metavar="SOURCE",
        help=f"region sources, from: {', '.join(REGION_SOURCES)} "
        f"(default: {' '.join(DEFAULT_REGION_SOURCES)})",
    )
    add_sam_arguments(parser)
    add_sam_preprocess_argument(parser)
    parser.add_argument(
        "--context",
        type=zoom_factor_or_zero,
        default=2.5,
        help="zoom factor of SAM box prompts: a crop this many box sizes wide is embedded per "
        "box (default: %(default)s; 0 embeds the whole image once)",
    )
    parser.add_argument(
        "--binarize",
        choices=["otsu", "fixed", "percentile"],
        default="otsu",
        help="saliency binarization for IoU-type metrics and saliency boxes (default: "
        "%(default)s, as CheXlocalize)",
    )
    parser.add_argument(
        "--threshold",
        type=finite_float,
        help="threshold in [0, 1] for --binarize fixed; percentage of pixels kept for "
        "--binarize percentile",
    )
    parser.add_argument(
        "--text", type=text_arg, help="text prompt of sam-text (default: the item's class)"
    )
    parser.add_argument("--clip", help="CLIP model of sam-text: a local folder or a hub id")
    parser.add_argument(
        "--images",
        help="folder image paths are relative to (default: the "
        "manifest's folder; CheXlocalize: the CheXpert image folder)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="address of a running dask.distributed scheduler (e.g. tcp://host:8786); the "
        "workers need napari-samcam installed",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="without --scheduler: N >= 2 starts a local Dask cluster of N worker processes "
        "(default: run in this process)",
    )
    parser.add_argument("--limit", type=positive_int, help="evaluate only the first N images")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument(
        "--bootstrap",
        type=positive_int,
        default=1000,
        help="bootstrap resamples (default: %(default)s)",
    )
    parser.add_argument(
        "--holm-family",
        choices=["run", "metric", "pair"],
        default="run",
        help="the comparisons Holm's correction adjusts together: run (every comparison of "
        "this run), metric (one metric across region sources and pairs) or pair (the pairs of "
        "one region source and metric only) (default: %(default)s)",
    )
    parser.add_argument(
        "--wilcoxon-zeros",
        choices=["wilcox", "pratt"],
        default="wilcox",
        help="Wilcoxon zero differences: wilcox drops them, pratt ranks them (default: "
        "%(default)s)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the SVG plots")
    parser.add_argument("--no-report", action="store_true", help="skip report.html")
    parser.add_argument(
        "--no-keep-arrays",
        action="store_true",
        help="do not keep per image the saliency maps and regions (parts/*.arrays.npz) the "
        "report's gallery and napari's reader draw items from",
    )
    parser.add_argument(
        "--gallery",
        type=int,
        default=3,
        metavar="N",
        help="report gallery: N items with the lowest and the highest IoU and energy per "
        "classifier x method x region source (0: none; default: %(default)s)",
    )
    parser.add_argument("--overwrite", action="store_true", help="delete earlier results first")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _target(text):
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def run(args: argparse.Namespace) -> int:
    check_input_file(args.manifest)  # these before torch and any model load
    if args.saliency:
        check_input_file(args.saliency)
    if args.images:
        check_input_file(args.images)
    check_writable(args.out, name="--out")
    from ..evaluate import evaluate

    with progress_bar("evaluate", quiet=args.quiet) as progress:
        result = evaluate(
            args.manifest,
            args.out,
            classifiers=args.model or (None if args.saliency else ["lesion-detector"]),
            saliency=args.saliency,
            trust_saliency=args.trust_saliency,
            protocol=args.protocol,
            sam_preprocess=args.sam_preprocess,
            methods=args.method or ["gradcam"],
            region_sources=args.regions,
            sam=args.sam,
            sam_checkpoint=args.sam_checkpoint,
            binarization=args.binarize,
            threshold=args.threshold,
            target=_target(args.target),
            context=args.context if args.context else None,
            text=args.text,
            clip=args.clip,
            image_root=args.images,
            limit=args.limit,
            scheduler=args.scheduler,
            n_workers=args.workers,
            overwrite=args.overwrite,
            progress=progress,
            device=args.device,
            checkpoint=args.checkpoint,
            trust_checkpoint=args.trust_checkpoint,
            plots=not args.no_plots,
            report=not args.no_report,
            keep_arrays=not args.no_keep_arrays,
            gallery=args.gallery,
            n_resamples=args.bootstrap,
            holm_family=args.holm_family,
            zero_method=args.wilcoxon_zeros,
        )
    print(
        f"{result.n_images} images: {result.n_computed} computed, {result.n_reused} reused "
        f"from an earlier run; {len(result.metrics)} metric values."
    )
    _print_headline(result)
    print(f"wrote {result.out} (report: {result.paths.get('report.html', '-')})")
    return 0


def _print_headline(result) -> None:
    summary = result.summary
    if len(summary) == 0:
        return
    overall = summary[(summary["group"] == "all") & summary["metric"].isin(["iou", "hit"])]
    if len(overall):
        print(f"\nmIoU and hit rate (mean [95% CI]; protocol {overall['protocol'].iloc[0]}):")
        for row in overall.itertuples(index=False):
            print(
                f"  {row.classifier:<20} {row.cam_method:<9} {row.region_source:<18} "
                f"{row.metric:<4} {row.mean:6.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}] "
                f"n={row.n}"
            )
    quality = result.region_summary
    if quality is not None and len(quality):
        shown = quality[quality["group"] == "all"]
        print("\nregions against the ground-truth mask (mean Dice [95% CI]):")
        for row in shown.itertuples(index=False):
            who = f" ({row.classifier})" if row.classifier else ""
            print(
                f"  {row.region_source + who:<40} Dice {row.dice:.3f} "
                f"[{row.dice_ci_low:.3f}, {row.dice_ci_high:.3f}] n={row.n}"
            )
    _warn_unreliable(result.regions)
    versus = result.sam_vs_box
    shown = versus[versus["metric"].isin(["iou", "energy"])] if len(versus) else versus
    if len(shown):
        print("\nagreement with ground-truth-mask scores (mean |difference|, Pearson r):")
        for row in shown.to_dict("records"):
            print(
                f"  {row['classifier']:<20} {row['cam_method']:<9} {row['metric']:<7} sam-box MAD "
                f"{row['mad_sam-box']:.3f} r={row['pearson_sam-box']:.3f} | box MAD "
                f"{row['mad_box']:.3f} r={row['pearson_box']:.3f}"
            )
    from ..evaluate.readers import reader_headline

    for line in reader_headline(result.reader_agreement):
        print(line)
    comparison = result.comparison
    if comparison is not None and len(comparison):
        shown = comparison[comparison["metric"].isin(["iou", "energy"])]
        if len(shown):
            print(
                "\npaired comparisons (mean difference a - b [95% CI], Holm-adjusted p over a "
                f"family of m tests, family {shown['holm_family'].iloc[0].split(':')[0]!r}):"
            )
        for row in shown.itertuples(index=False):
            within = row.cam_method or row.classifier
            print(
                f"  {row.a} vs {row.b} ({within}) {row.region_source:<14} {row.metric:<7} "
                f"{row.mean_diff:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}] "
                f"p={row.p_holm:.2g} (m={row.family_size}) n={row.n}: {row.conclusion}"
            )


def _warn_unreliable(regions) -> None:
    """Say how many SAM regions look unreliable (and where the trusted source fell back)."""
    if regions is None or not len(regions) or "region_unreliable" not in regions:
        return
    flagged = regions[regions["region_unreliable"].astype(bool)]
    for source, frame in flagged.groupby("region_source", sort=False):
        total = int((regions["region_source"] == source).sum())
        reasons = frame["region_reason"].astype(str).str.split(";").explode().str.strip()
        common = ", ".join(
            reasons.str.replace(r"[0-9.]+", "x", regex=True).value_counts().index[:3]
        )
        print(
            f"\nwarning: {len(frame)} of {total} {source} regions look unreliable ({common}); "
            "their scores are flagged in regions.csv (region_unreliable). The sam-trust region "
            "source checks each mask and falls back to the box."
        )
    trusted = regions[regions["region_source"] == "sam-trust"]
    if len(trusted):
        fell = trusted["region_action"].astype(str).str.contains("fell back").sum()
        print(f"\nsam-trust: {fell} of {len(trusted)} regions fell back to the box.")
