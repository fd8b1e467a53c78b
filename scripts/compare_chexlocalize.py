"""Side by side: ``samcam evaluate --protocol chexlocalize`` against CheXlocalize's own scripts.

Usage::

    python scripts/compare_chexlocalize.py SAMCAM_OUT IOU_TP_DIR IOU_ALL_DIR HIT_DIR

``SAMCAM_OUT`` is an evaluate output folder made with ``--protocol chexlocalize --regions
ground-truth``; the three others are ``--save_dir`` folders of CheXlocalize's ``eval.py``
(``--metric iou --true_pos_only True``, ``--metric iou --true_pos_only False``,
``--metric hitmiss``). Prints a Markdown table per item and per summary figure, and exits 1 if
any figure differs (per item to 1e-12; summaries to CheXlocalize's 3 printed decimals).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

PAIRS = (("iou_true_pos", "IOU_TP", "iou"), ("iou", "IOU_ALL", "iou"), ("hit", "HIT", "hitmiss"))


def _same(a: float, b: float, tolerance: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tolerance


def _text(value: float, digits: int) -> str:
    return "NaN" if math.isnan(value) else f"{value:.{digits}f}"


def main(argv: list[str]) -> int:
    out, *folders = (Path(a) for a in argv)
    metrics = pd.read_csv(out / "metrics.csv")
    summary = pd.read_csv(out / "summary.csv")
    metrics = metrics[metrics["region_source"] == "ground-truth"]
    summary = summary[summary["region_source"] == "ground-truth"]
    differences = 0
    print("| metric | image | task | samcam | CheXlocalize | same |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (ours, _, prefix), folder in zip(PAIRS, folders, strict=True):
        theirs = pd.read_csv(folder / f"{prefix}_results_per_cxr.csv").set_index("img_id")
        rows = metrics[metrics["metric"] == ours]
        for row in rows.to_dict("records"):
            reference = float(theirs.loc[row["image_id"], row["class"]])
            same = _same(float(row["value"]), reference, 1e-12)
            differences += not same
            print(
                f"| {ours} | {row['image_id']} | {row['class']} | {_text(row['value'], 6)} | "
                f"{_text(reference, 6)} | {'yes' if same else 'NO'} |"
            )
    print()
    print("| metric | task | figure | samcam | CheXlocalize | same |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (ours, _, prefix), folder in zip(PAIRS, folders, strict=True):
        theirs = pd.read_csv(folder / f"{prefix}_summary_results.csv").set_index("name")
        rows = summary[(summary["metric"] == ours) & summary["group"].str.startswith("class=")]
        for row in rows.itertuples(index=False):
            task = row.group.split("=", 1)[1]
            for figure, column in (("mean", "mean"), ("ci_low", "lower"), ("ci_high", "upper")):
                value = round(float(getattr(row, figure)), 3)
                reference = float(theirs.loc[task, column])
                same = _same(value, reference, 1e-9)
                differences += not same
                print(
                    f"| {ours} | {task} | {figure} | {_text(value, 3)} | {_text(reference, 3)} | "
                    f"{'yes' if same else 'NO'} |"
                )
    print(f"\n{differences} differences")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
