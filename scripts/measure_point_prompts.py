"""Point prompts with the built-in LiteMedSAM on phantom lesions: mean Dice per prompt kind.

Usage::

    python scripts/measure_point_prompts.py --n 40 [--seed 11] [--json out.json]

For each of ``n`` phantom lesions (``napari_samcam.phantoms``: real radiograph backgrounds with
exact lesion masks and human-style box annotations) the lesion is segmented with

box          the annotation box (context zoom 2.5): the reference
centre       one click at the lesion pixel nearest its centroid
pixel        one click at a random lesion pixel
centre+neg   the centre click and a negative click just outside the annotation box
click+box    the centre click and the annotation box
native       the centre click given to the model as a point (what box-only models did before)

and the Dice with the lesion mask is recorded, with the encoder runs each prompt needed and
whether a negative click ended up inside the mask. Prints a table and, with ``--json``, every
case.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

KINDS = ("box", "centre", "pixel", "centre+neg", "click+box", "native")
QUICK = KINDS[:-1]


def dice(mask: np.ndarray, truth: np.ndarray) -> float:
    total = int(mask.sum()) + int(truth.sum())
    return 2.0 * int((mask & truth).sum()) / total if total else 1.0


def centre_pixel(mask: np.ndarray) -> tuple[int, int]:
    """The lesion pixel nearest the lesion's centroid."""
    rows, cols = np.nonzero(mask)
    r, c = rows.mean(), cols.mean()
    i = int(np.argmin((rows - r) ** 2 + (cols - c) ** 2))
    return int(rows[i]), int(cols[i])


def negative_click(case, centre) -> tuple[int, int]:
    """A point 4 px outside the annotation box, on the side nearest the lesion centre."""
    r0, c0, r1, c1 = case.box
    height, width = case.mask.shape
    options = [
        (r0 - 4, centre[1]),
        (r1 + 3, centre[1]),
        (centre[0], c0 - 4),
        (centre[0], c1 + 3),
    ]
    inside = [(r, c) for r, c in options if 0 <= r < height and 0 <= c < width]
    distance = [abs(r - centre[0]) + abs(c - centre[1]) for r, c in inside]
    return inside[int(np.argmin(distance))]


def measure(
    n: int, seed: int, context: float, kinds=KINDS, progress=print, partial=None
) -> list[dict]:
    from napari_samcam.phantoms import generate_phantoms
    from napari_samcam.sam_models import load_sam_model
    from napari_samcam.segment import Segmenter

    model = load_sam_model("litemedsam")
    segmenter = Segmenter(model, cache_size=64)
    native = Segmenter(dataclasses.replace(model, box_only=False), cache_size=4)
    cases = [c for c in generate_phantoms(2 * n + 4, seed=seed) if c.label][:n]
    rng = np.random.default_rng(seed)
    rows = []
    for case in cases:
        truth = case.mask
        centre = centre_pixel(truth)
        pixels = np.argwhere(truth)
        pixel = tuple(int(v) for v in pixels[rng.integers(len(pixels))])
        negative = negative_click(case, centre)
        prompts = {
            "box": (segmenter, {"boxes": [case.box]}),
            "centre": (segmenter, {"points": [centre]}),
            "pixel": (segmenter, {"points": [pixel]}),
            "centre+neg": (segmenter, {"points": [centre, negative], "point_labels": [1, 0]}),
            "click+box": (segmenter, {"points": [centre], "boxes": [case.box]}),
            "native": (native, {"points": [centre], "multimask": True}),
        }
        row = {
            "index": case.index,
            "background": case.background,
            "radius": round(float(case.lesion_radius), 1),
            "kind": case.lesion_kind,
        }
        for kind in kinds:
            seg, prompt = prompts[kind]
            before, start = seg.encoder_calls, time.perf_counter()
            (region,) = seg.segment(case.image, context=context, **prompt)
            row[kind] = round(dice(region.mask, truth), 4)
            row[kind + " encoder runs"] = seg.encoder_calls - before
            row[kind + " s"] = round(time.perf_counter() - start, 2)
            if kind == "centre+neg":
                row["negative inside"] = bool(region.mask[negative])
            if "points_to_box" in region.prompt:
                row[kind + " strategy"] = region.prompt["points_to_box"]["strategy"]
        rows.append(row)
        progress(
            f"{len(rows)}/{len(cases)} r={row['radius']:>5} {case.background:<9} "
            + " ".join(f"{k} {row[k]:.2f}" for k in kinds)
        )
        if partial:
            partial(rows)
    return rows


def summary(rows: list[dict], kinds=KINDS) -> list[dict]:
    out = []
    for kind in kinds:
        values = np.array([r[kind] for r in rows])
        runs = np.array([r[kind + " encoder runs"] for r in rows])
        out.append(
            {
                "prompt": kind,
                "mean Dice": round(float(values.mean()), 3),
                "median Dice": round(float(np.median(values)), 3),
                "Dice < 0.5": int((values < 0.5).sum()),
                "encoder runs (mean / max)": f"{runs.mean():.2f} / {runs.max()}",
            }
        )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=40, help="phantom lesions (default 40)")
    parser.add_argument("--seed", type=int, default=11, help="phantom series seed")
    parser.add_argument("--context", type=float, default=2.5, help="box zoom factor")
    parser.add_argument("--json", type=Path, help="write every case and the summary here")
    parser.add_argument(
        "--no-native", action="store_true", help="skip the native point prompt (saves a run)"
    )
    parser.add_argument("--kinds", help=f"comma-separated subset of {','.join(KINDS)}")
    args = parser.parse_args(argv)
    kinds = QUICK if args.no_native else KINDS
    if args.kinds:
        kinds = tuple(k for k in KINDS if k in args.kinds.split(","))
    start = time.perf_counter()

    def write(rows):
        if args.json:
            table = summary(rows, kinds)
            args.json.write_text(json.dumps({"summary": table, "cases": rows}, indent=1))

    rows = measure(args.n, args.seed, args.context, kinds, partial=write)
    table = summary(rows, kinds)
    negatives = sum(r.get("negative inside", False) for r in rows)
    print(f"\n{len(rows)} phantom lesions, seed {args.seed}, context {args.context}")
    print(f"{'prompt':<11} {'mean Dice':>9} {'median':>7} {'<0.5':>5}  encoder runs (mean / max)")
    for line in table:
        print(
            f"{line['prompt']:<11} {line['mean Dice']:>9.3f} {line['median Dice']:>7.3f} "
            f"{line['Dice < 0.5']:>5}  {line['encoder runs (mean / max)']}"
        )
    if "centre+neg" in kinds:
        print(f"negative click inside the mask: {negatives} of {len(rows)}")
    print(f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
