"""Measure SAM's box-prompted regions, the box and the ``sam-trust`` source against the truth.

Three steps::

    # 1. every candidate mask of every positive phantom, with its signals, Dice and scores
    python scripts/measure_region_trust.py dump --seed 101 --n 72 --out trust-101.csv.gz
    # 2. the per-shape-class table of a rule (the defaults, or --rule k=v,...) on a dump
    python scripts/measure_region_trust.py table trust-101.csv.gz [--rule min_span=0.5,...]
    # held-out seeds with the default rule (and sam-box with contrast pre-processing)
    python scripts/measure_region_trust.py heldout --seeds 202 303 --n 60 --out heldout.csv
    python scripts/measure_region_trust.py table heldout.csv
    # 3. CheXlocalize's sample (folder with gt_segmentations_val.json and valid/)
    python scripts/measure_region_trust.py chexlocalize path/to/cheXlocalize/sample

A dump holds, per positive phantom, one row per candidate (SAM's single and multimask outputs at
the default zoom and at the re-prompt zoom) plus rows for the box and the ground truth: its
signals, its Dice with the truth and its scores against the built-in lesion detector's Grad-CAM
map, so a rule is judged on a dump without running SAM again. The score agreement of a region
source is the mean absolute difference between its scores and the ground truth's scores on the
same map (MAD), per metric.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ("iou", "energy")


def _markdown(frame: pd.DataFrame, index: bool = True) -> str:
    """A Markdown table (pandas' own needs the optional tabulate package)."""
    frame = frame.reset_index() if index else frame
    names = [" ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in frame.columns]

    def cell(value) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.count_nonzero(a & b)) / total if total else float("nan")


def _rows_for_case(case, segmenter, saliency_map, rule) -> list[dict]:
    from napari_samcam.metrics import localization_metrics
    from napari_samcam.region_trust import mask_signals
    from napari_samcam.segment import embedding_key
    from napari_samcam.trusted_box import box_candidates

    key = embedding_key(case.image)
    box = np.array(case.box, dtype=np.float64)
    candidates = box_candidates(segmenter, case.image, box, context=2.5, key=key)
    candidates += box_candidates(
        segmenter, case.image, box, context=rule.reprompt_context, key=key
    )
    box_mask = np.zeros_like(case.mask)
    r0, c0, r1, c1 = case.box
    box_mask[r0:r1, c0:c1] = True
    masks = [case.mask, box_mask] + [c.mask for c in candidates]
    scores = localization_metrics(saliency_map, masks)
    base = {"index": case.index, "shape": case.lesion_kind, "truth_area": int(case.mask.sum())}
    rows = []
    for i, values in enumerate(scores):
        row = dict(base, **{m: float(values[m]) for m in METRICS})
        row["dice"] = _dice(masks[i], case.mask)
        if i < 2:
            row.update(kind=("truth", "box")[i], output=-1, context=np.nan, iou_pred=np.nan)
            row.update(stability=np.nan, **mask_signals(masks[i], case.box))
        else:
            c = candidates[i - 2]
            row.update(kind="sam", output=c.output, context=c.context, iou_pred=c.iou)
            row.update(stability=c.stability, **c.signals)
        rows.append(row)
    return rows


def dump(args) -> int:
    from napari_samcam.classifiers import load_classifier
    from napari_samcam.phantoms import generate_phantoms
    from napari_samcam.region_trust import TrustRule
    from napari_samcam.saliency import explain
    from napari_samcam.segment import load_segmenter

    cases = generate_phantoms(args.n, seed=args.seed, positive_fraction=1.0, shapes="all")
    segmenter = load_segmenter("litemedsam")
    classifier = load_classifier("lesion-detector")
    rule = TrustRule()
    rows = []
    for case in cases:
        saliency = explain(case.image, classifier, target=1)
        rows += _rows_for_case(case, segmenter, saliency.map, rule)
        print(f"{case.index + 1}/{len(cases)} {case.lesion_kind}", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    table.insert(0, "seed", args.seed)
    table.to_csv(args.out, index=False)
    return 0


PREPROCESS = ("clahe", "gamma:0.5")


def heldout(args) -> int:
    """Per positive phantom of each seed: truth, box, sam-box (also with each contrast
    pre-processing) and sam-trust with the default rule, as the rows :func:`summarise` reads."""
    from napari_samcam.classifiers import load_classifier
    from napari_samcam.metrics import localization_metrics
    from napari_samcam.phantoms import generate_phantoms
    from napari_samcam.saliency import explain
    from napari_samcam.segment import embedding_key, load_segmenter
    from napari_samcam.trusted_box import trusted_box_region

    segmenter = load_segmenter("litemedsam")
    classifier = load_classifier("lesion-detector")
    rows = []
    for seed in args.seeds:
        cases = generate_phantoms(args.n, seed=seed, positive_fraction=1.0, shapes="all")
        for case in cases[args.skip :]:
            key = embedding_key(case.image)
            box = np.zeros_like(case.mask)
            r0, c0, r1, c1 = case.box
            box[r0:r1, c0:c1] = True
            trust = trusted_box_region(segmenter, case.image, [case.box], key=key)
            regions = {"truth": case.mask, "box": box, "sam-trust": trust.mask}
            for option in (None, *PREPROCESS):
                (sam,) = segmenter.segment(
                    case.image, boxes=[case.box], context=2.5, key=key, preprocess=option
                )
                regions["sam-box" + ("" if option is None else f"+{option}")] = sam.mask
            saliency = explain(case.image, classifier, target=1)
            scores = localization_metrics(saliency.map, list(regions.values()))
            action = "; ".join(t["action"] for t in trust.prompt["trust"])
            for (name, mask), values in zip(regions.items(), scores, strict=True):
                rows.append(
                    {
                        "seed": seed,
                        "index": f"{seed}:{case.index}",
                        "shape": case.lesion_kind,
                        "source": name,
                        "action": action if name == "sam-trust" else "",
                        "dice": _dice(mask, case.mask),
                        **{m: float(values[m]) for m in METRICS},
                    }
                )
            pd.DataFrame(rows).to_csv(args.out, index=False)  # finished items survive a crash
            print(f"seed {seed}: {case.index + 1}/{args.n}", file=sys.stderr, flush=True)
    return 0


def _parse_rule(text: str | None):
    from napari_samcam.region_trust import TrustRule

    rule = TrustRule()
    if not text:
        return rule
    names = {f.name for f in fields(TrustRule)}
    changes = {}
    for part in text.split(","):
        name, value = part.split("=")
        if name not in names:
            raise SystemExit(f"--rule: unknown threshold {name!r}; choose from {sorted(names)}")
        changes[name] = float(value)
    return replace(rule, **changes)


def apply_rule(dump_table: pd.DataFrame, rule) -> pd.DataFrame:
    """Per case: the truth, box, sam-box (single output, default zoom) and sam-trust rows."""
    from napari_samcam.region_trust import Candidate, decide

    out = []
    for _, case in dump_table.groupby("index", sort=True):
        truth = case[case.kind == "truth"].iloc[0]
        box = case[case.kind == "box"].iloc[0]
        sam = case[case.kind == "sam"]
        first_context = sam.context.iloc[0]

        def as_candidates(rows):
            return [
                Candidate(
                    mask=None,
                    output=int(r.output),
                    iou=r.iou_pred,
                    stability=r.stability,
                    context=r.context,
                    signals={k: r[k] for k in ("area", "box_fill", "box_span", "outside")},
                )
                for _, r in rows.iterrows()
            ]

        first = sam[sam.context == first_context]
        decision = decide(as_candidates(first), rule)
        chosen_rows = first
        action = decision.action
        if decision.choice is None and rule.reprompt_context is not None:
            decision = decide(as_candidates(sam), rule)
            chosen_rows = sam
            action = decision.action if decision.choice is not None else "box"
        trust = box if decision.choice is None else chosen_rows.iloc[decision.choice]
        for name, row in (("truth", truth), ("box", box), ("sam-box", first.iloc[0])):
            out.append(
                {
                    "index": truth["index"],
                    "shape": truth["shape"],
                    "source": name,
                    "action": "",
                    **{m: row[m] for m in (*METRICS, "dice")},
                }
            )
        out.append(
            {
                "index": truth["index"],
                "shape": truth["shape"],
                "source": "sam-trust",
                "action": action,
                **{m: trust[m] for m in (*METRICS, "dice")},
            }
        )
    return pd.DataFrame(out)


def summarise(per_case: pd.DataFrame) -> pd.DataFrame:
    """Per shape class and source: mean Dice and the MAD of each metric to the truth's score."""
    truth = per_case[per_case.source == "truth"].set_index("index")
    rows = []
    for (shape, source), group in per_case[per_case.source != "truth"].groupby(
        ["shape", "source"]
    ):
        g = group.set_index("index")
        row = {"shape": shape, "source": source, "n": len(g), "dice": g.dice.mean()}
        for m in METRICS:
            row[f"mad_{m}"] = (g[m] - truth.loc[g.index, m]).abs().mean()
        if source == "sam-trust":
            row["kept"] = (g.action == "kept").mean()
            row["box"] = (g.action == "box").mean()
        rows.append(row)
    return pd.DataFrame(rows)


def _paired_intervals(per_case: pd.DataFrame, a: str, b: str) -> pd.Series:
    """Per shape: mean paired Dice difference ``a - b`` with its bootstrap 95 % CI (1000
    resamples, seed 0), as text."""
    from napari_samcam.agreement import bootstrap_ci

    wide = per_case.pivot_table(index=["shape", "index"], columns="source", values="dice")
    out = {}
    for shape, frame in wide.groupby(level="shape"):
        ci = bootstrap_ci((frame[a] - frame[b]).to_numpy(), n_resamples=1000, seed=0)
        out[shape] = f"{ci.estimate:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]"
    return pd.Series(out)


def table(args) -> int:
    rule = _parse_rule(args.rule)
    data = pd.concat([pd.read_csv(p) for p in args.dumps])
    if "source" in data:  # a held-out run: sam-trust already decided with the default rule
        rule = _parse_rule(None)
        per_case = data[data["source"].isin(["truth", "box", "sam-box", "sam-trust"])].copy()
        per_case["action"] = per_case["action"].fillna("").replace({"fell back to the box": "box"})
    else:
        data["index"] = data["seed"].astype(str) + ":" + data["index"].astype(str)
        per_case = apply_rule(data, rule)
    summary = summarise(per_case)
    wide = summary.pivot(index="shape", columns="source")
    cols = []
    for value in ("dice", "mad_iou", "mad_energy"):
        for source in ("sam-box", "box", "sam-trust"):
            cols.append((value, source))
    print(f"rule: {rule}")
    print(f"n per class: {summary.groupby('shape').n.first().to_dict()}")
    print(_markdown(wide[cols]))
    trust = summary[summary.source == "sam-trust"].set_index("shape")[["kept", "box"]]
    trust["Dice sam-trust − box [95 % CI]"] = _paired_intervals(per_case, "sam-trust", "box")
    trust["Dice sam-trust − sam-box [95 % CI]"] = _paired_intervals(
        per_case, "sam-trust", "sam-box"
    )
    print(_markdown(trust))
    ok_dice = (wide[("dice", "sam-trust")] >= wide[("dice", "box")] - 1e-12).all()
    ok_mad = all(
        (wide[(f"mad_{m}", "sam-trust")] <= wide[(f"mad_{m}", "box")] + 1e-12).all()
        for m in METRICS
    )
    print(f"Dice >= box in every class: {ok_dice}; MAD <= box in every class: {ok_mad}")
    return 0


def chexlocalize(args) -> int:
    import json

    import imageio.v3 as iio
    from scipy import ndimage

    from napari_samcam.evaluation.manifests import decode_rle
    from napari_samcam.segment import embedding_key, load_segmenter
    from napari_samcam.trusted_box import trusted_box_region

    root = Path(args.sample)
    truths = json.loads((root / "gt_segmentations_val.json").read_text())
    segmenter = load_segmenter("litemedsam")
    rule = _parse_rule(args.rule)
    rows = []
    for img_id, tasks in sorted(truths.items()):
        patient, study, view = img_id.split("_", 2)
        image = np.asarray(iio.imread(root / "valid" / patient / study / f"{view}.jpg"))
        key = embedding_key(image)
        for task, rle in sorted(tasks.items()):
            truth = decode_rle(rle)
            if not truth.any():
                continue
            labels, _ = ndimage.label(truth)
            boxes = [(r.start, c.start, r.stop, c.stop) for r, c in ndimage.find_objects(labels)]
            sam = segmenter.segment(image, boxes=np.array(boxes), context=2.5, key=key)
            sam_mask = np.logical_or.reduce([r.mask for r in sam])
            trusted = trusted_box_region(segmenter, image, boxes, rule=rule, key=key)
            box_mask = np.zeros_like(truth)
            for r0, c0, r1, c1 in boxes:
                box_mask[r0:r1, c0:c1] = True
            row = {"finding": task, "boxes": len(boxes)}
            for name, mask in (
                ("sam-box", sam_mask),
                ("sam-trust", trusted.mask),
                ("box", box_mask),
            ):
                row[f"{name} Dice"] = _dice(mask, truth)
                row[f"{name} area/truth"] = mask.sum() / truth.sum()
            row["sam-trust action"] = "; ".join(t["action"] for t in trusted.prompt["trust"])
            row["reason"] = "; ".join(t["reason"] for t in trusted.prompt["trust"])
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    frame = pd.DataFrame(rows)
    print(_markdown(frame, index=False))
    means = frame[[c for c in frame if c.endswith("Dice")]].mean()
    print("mean Dice:", means.round(3).to_dict())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dump")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("heldout")
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--skip", type=int, default=0, help="start at this case of each seed")
    p = sub.add_parser("table")
    p.add_argument("dumps", nargs="+")
    p.add_argument("--rule")
    p = sub.add_parser("chexlocalize")
    p.add_argument("sample")
    p.add_argument("--rule")
    args = parser.parse_args(argv)
    commands = {"dump": dump, "heldout": heldout, "table": table, "chexlocalize": chexlocalize}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
