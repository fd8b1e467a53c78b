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
    items: dict[tuple, dict] = {}
    figures: dict[str, dict] = {}
    for (ours, _, prefix), folder in zip(PAIRS, folders, strict=True):
        theirs = pd.read_csv(folder / f"{prefix}_results_per_cxr.csv").set_index("img_id")
        for row in metrics[metrics["metric"] == ours].to_dict("records"):
            reference = float(theirs.loc[row["image_id"], row["class"]])
            same = _same(float(row["value"]), reference, 1e-12)
            differences += not same
            cell = f"{_text(row['value'], 4)} / {_text(reference, 4)}{'' if same else ' DIFFERS'}"
            items.setdefault((row["image_id"], row["class"]), {})[ours] = cell
        theirs = pd.read_csv(folder / f"{prefix}_summary_results.csv").set_index("name")
        rows = summary[(summary["metric"] == ours) & summary["group"].str.startswith("class=")]
        for row in rows.to_dict("records"):
            task = row["group"].split("=", 1)[1]
            mine = [round(float(row[f]), 3) for f in ("mean", "ci_low", "ci_high")]
            reference = [float(theirs.loc[task, c]) for c in ("mean", "lower", "upper")]
            same = all(_same(a, b, 1e-9) for a, b in zip(mine, reference, strict=True))
            differences += 3 - sum(_same(a, b, 1e-9) for a, b in zip(mine, reference, strict=True))
            text = [f"{_text(v, 3)}" for v in mine]
            ref = [f"{_text(v, 3)}" for v in reference]
            cell = f"{text[0]} [{text[1]}, {text[2]}] / {ref[0]} [{ref[1]}, {ref[2]}]"
            figures.setdefault(task, {})[ours] = cell + ("" if same else " DIFFERS")
    names = [p[0] for p in PAIRS]
    print("Per item (samcam / CheXlocalize):\n")
    print("| image | task | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for (image, task), cells in sorted(items.items()):
        print(f"| {image} | {task} | " + " | ".join(cells.get(n, "") for n in names) + " |")
    print("\nSummary, mean [95 % CI] (samcam rounded to 3 decimals / CheXlocalize):\n")
    print("| task | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for task, cells in sorted(figures.items()):
        print(f"| {task} | " + " | ".join(cells.get(n, "") for n in names) + " |")
    print(f"\n{differences} differences")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
