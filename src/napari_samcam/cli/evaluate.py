"""``samcam evaluate``: localization scores of classifiers' saliency over a whole dataset."""

from __future__ import annotations

import argparse

from .._folders import check_writable
from ..evaluation_settings import SETTINGS, Setting
from . import _common
from ._common import check_input_file, progress_bar

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
    for entry in SETTINGS:
        if entry.flag is not None:
            _add_setting(parser, entry)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _add_setting(parser: argparse.ArgumentParser, entry: Setting) -> None:
    """The flag of one evaluation setting, as :data:`SETTINGS` declares it."""
    options: dict = {"dest": entry.name, "help": entry.help}
    if entry.action in ("store_true", "store_false"):
        options["action"] = entry.action
    else:
        default = entry.flag_default()
        if isinstance(default, tuple):
            default = list(default)
        options["default"] = default
        if default not in (None, False):
            shown = " ".join(default) if isinstance(default, list) else default
            options["help"] = f"{entry.help} (default: {shown})"
        if entry.action:
            options["action"] = entry.action
        if entry.arg_type:
            options["type"] = getattr(_common, entry.arg_type)
        if entry.nargs:
            options["nargs"] = entry.nargs
        options["metavar"] = entry.metavar or entry.flag.lstrip("-").upper()
        if entry.choices is not None:
            options["choices"] = list(entry.choices)
            if entry.metavar is None:
                del options["metavar"]
    # argparse formats help with %-placeholders
    options["help"] = options["help"].replace("%", "%%")
    parser.add_argument(entry.flag, **options)


def settings_from_args(args: argparse.Namespace) -> dict:
    """The keywords of :func:`~napari_samcam.evaluation.evaluate` the parsed flags give (a flag
    left at ``None`` leaves the setting to its default; ``--context 0`` gives ``None``)."""
    settings = {}
    for entry in SETTINGS:
        if entry.flag is None:
            continue
        value = getattr(args, entry.name)
        if value is None:
            continue
        if entry.from_cli == "zero_is_none" and value == 0:
            value = None
        elif entry.from_cli == "class":
            value = int(value) if value.lstrip("-").isdigit() else value
        settings[entry.name] = value
    return settings


def run(args: argparse.Namespace) -> int:
    check_input_file(args.manifest)  # these before torch and any model load
    if args.saliency:
        check_input_file(args.saliency)
    if args.image_root:
        check_input_file(args.image_root)
    check_writable(args.out, name="--out")
    from ..evaluation import evaluate

    with progress_bar("evaluate", quiet=args.quiet) as progress:
        result = evaluate(args.manifest, args.out, progress=progress, **settings_from_args(args))
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
    from ..evaluation.readers import reader_headline

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
