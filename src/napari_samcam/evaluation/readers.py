"""Several readers of one image: each reader a region source, and their agreement as yardstick.

When an item carries several readers' boxes (VinDr-CXR's three radiologists, phantoms with
simulated readers), the ``readers`` region source gives one region per reader,
``reader:<id>``: the union of that reader's boxes of the finding (empty when the reader did
not mark it). Scores against those regions answer the question a SAM-based score has to
pass: is a score computed against SAM's region closer to a score computed against one
reader's box than two readers' scores are to each other?

* :func:`reader_score_agreement`: per classifier x CAM method x metric x finding, the mean
  absolute difference (MAD) and Pearson r of the scores of every two readers of an item
  (``reader-vs-reader``; each pair counted in both orders for r, so r does not depend on which
  reader is called first), next to the same statistics between every other region source and
  each reader (``sam-box-vs-reader``, ``box-vs-reader``, ...). A reader who did not mark the
  finding has no score (there is no region to score against).
* :func:`reader_region_agreement`: the IoU of two readers' boxes of the same finding (the union
  of each reader's boxes; 0 when only one of them marked it), per finding.

Confidence intervals resample items (all pairs of an item together), percentile bootstrap.
"""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np

from ..errors import InputError
from ..segment import Region
from .report import html_table
from .summary import json_safe

__all__ = [
    "READER_PREFIX",
    "parse_readers_cell",
    "reader_region_agreement",
    "reader_regions",
    "reader_score_agreement",
    "source_rank",
]

#: Region sources of single readers are named ``reader:<id>``.
READER_PREFIX = "reader:"

SCORE_COLUMNS = ["classifier", "cam_method", "metric", "group", "comparison", "n_items"]
SCORE_COLUMNS += ["n_pairs", "mad", "mad_ci_low", "mad_ci_high"]
SCORE_COLUMNS += ["pearson", "pearson_ci_low", "pearson_ci_high"]
REGION_COLUMNS = ["group", "n_items", "n_pairs", "iou", "iou_ci_low", "iou_ci_high", "missed"]


def source_rank(sources: tuple, source: str) -> int:
    """Position of ``source`` among the configured ``sources`` (``reader:*`` at ``readers``)."""
    return sources.index("readers" if source.startswith(READER_PREFIX) else source)


def reader_regions(readers: dict | None, shape) -> list[Region]:
    """One region per reader of an item, ``reader:<id>``: its boxes filled, clipped."""
    regions = []
    for reader, boxes in (readers or {}).items():
        mask = np.zeros(tuple(int(v) for v in shape[:2]), dtype=bool)
        kept = []
        for r0, c0, r1, c1 in boxes:
            r0, c0 = max(int(r0), 0), max(int(c0), 0)
            r1, c1 = min(int(r1), mask.shape[0]), min(int(c1), mask.shape[1])
            if r1 > r0 and c1 > c0:
                mask[r0:r1, c0:c1] = True
                kept.append([r0, c0, r1, c1])
        prompt = {"annotation": "reader", "reader": str(reader), "boxes": kept}
        regions.append(Region(mask, f"{READER_PREFIX}{reader}", prompt))
    return regions


def parse_readers_cell(cell: str, where: str) -> dict | None:
    """A manifest's ``readers`` cell: JSON ``{"R1": [[r0, c0, r1, c1], ...], ...}``."""
    if not cell.strip():
        return None
    try:
        data = json.loads(cell)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}, column 'readers': not JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}, column 'readers': expected {{reader: [[r0, c0, r1, c1]]}}.")
    readers = {}
    for reader, boxes in data.items():
        if not isinstance(boxes, list):
            raise InputError(f"{where}, column 'readers', reader {reader!r}: a list of boxes.")
        checked = []
        for box in boxes:
            ok = isinstance(box, list) and len(box) == 4
            ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in box)
            if not ok or box[2] <= box[0] or box[3] <= box[1] or min(box) < 0:
                raise InputError(
                    f"{where}, column 'readers', reader {reader!r}: box {box!r} is not "
                    "[row0, col0, row1, col1] of non-negative integers with row1 > row0 and "
                    "col1 > col0."
                )
            checked.append(tuple(box))
        readers[str(reader)] = checked
    return readers


# --------------------------------------------------------------------------------------------
# Statistics with an item-level bootstrap
# --------------------------------------------------------------------------------------------


#: Per-item sums behind MAD and Pearson r: pairs, sum |x - y|, sum x, sum y, sum x^2, sum y^2,
#: sum xy.
_STATS = ["n", "absdiff", "sx", "sy", "sxx", "syy", "sxy"]


def _item_bootstrap(stats: np.ndarray, statistic, n_resamples: int, seed: int) -> list:
    """``statistic`` of the summed per-item ``stats`` rows and its percentile 95 % CI, from
    resampling items (rows) with replacement: ``[estimate, low, high]`` per output."""
    estimate = np.atleast_1d(statistic(stats.sum(0)))
    rng = np.random.default_rng(seed)
    n = len(stats)
    block = max(1, min(n_resamples, 2_000_000 // max(n, 1)))
    draws = []
    for start in range(0, n_resamples, block):
        size = min(block, n_resamples - start)
        sums = stats[rng.integers(0, n, size=(size, n))].sum(axis=1)
        draws.append(np.atleast_2d(statistic(sums.T)))
    boot = np.concatenate(draws, axis=1)
    out = []
    for k, value in enumerate(estimate):
        values = boot[k][np.isfinite(boot[k])]
        defined = n > 1 and len(values) > 1
        low, high = np.percentile(values, [2.5, 97.5]) if defined else (math.nan, math.nan)
        out.append([float(value), float(low), float(high)])
    return out


def _mad_and_r(totals: np.ndarray) -> np.ndarray:
    n, absdiff, sx, sy, sxx, syy, sxy = totals[:7]
    with np.errstate(invalid="ignore", divide="ignore"):
        mad = absdiff / n
        r = (sxy - sx * sy / n) / np.sqrt((sxx - sx * sx / n) * (syy - sy * sy / n))
    return np.stack([mad, r])


def _between_readers(readers):
    """Per item, the sums of :data:`_STATS` over every ordered pair of two of its readers."""
    ordered = readers.sort_values(["item", "value"], kind="stable")
    by_item = ordered.groupby("item", sort=False)["value"]
    k = by_item.transform("size").to_numpy(dtype=np.float64)
    rank = by_item.cumcount().to_numpy(dtype=np.float64)
    value = ordered["value"].to_numpy(dtype=np.float64)
    # Sorted ascending, sum over i < j of v_j - v_i = sum_i v_i (2 rank_i - k + 1).
    frame = ordered.assign(gap=value * (2 * rank - k + 1), v=value, v2=value * value, k=k)
    sums = frame.groupby("item", sort=False).agg(
        k=("k", "first"), gap=("gap", "sum"), s=("v", "sum"), s2=("v2", "sum")
    )
    sums = sums[sums["k"] >= 2]
    k, s, s2 = sums["k"], sums["s"], sums["s2"]
    sx, sxx = (k - 1) * s, (k - 1) * s2
    return _stats_frame(sums.index, [k * (k - 1), 2 * sums["gap"], sx, sx, sxx, sxx, s * s - s2])


def _against_readers(readers, other):
    """Per item, the sums of :data:`_STATS` over the pairs (other source's score, a reader's)."""
    joined = readers.merge(other[["item", "value"]], on="item", suffixes=("", "_other"))
    x = joined["value_other"].to_numpy(dtype=np.float64)
    y = joined["value"].to_numpy(dtype=np.float64)
    frame = joined.assign(n=1.0, absdiff=np.abs(x - y), sx=x, sy=y, sxx=x * x, syy=y * y)
    frame = frame.assign(sxy=x * y)
    sums = frame.groupby("item", sort=False)[_STATS].sum()
    return _stats_frame(sums.index, [sums[c] for c in _STATS])


def _stats_frame(index, columns):
    """A per-item frame of :data:`_STATS` columns."""
    import pandas as pd

    return pd.DataFrame(
        {
            name: np.asarray(col, dtype=np.float64)
            for name, col in zip(_STATS, columns, strict=True)
        },
        index=index,
    )


def reader_score_agreement(metrics, *, n_resamples: int = 1000, seed: int = 0):
    """Inter-reader agreement of the scores, next to every other source's agreement with the
    readers (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        Columns ``classifier, cam_method, metric, group, comparison, n_items, n_pairs, mad,
        mad_ci_low, mad_ci_high, pearson, pearson_ci_low, pearson_ci_high``; ``group`` is
        ``all`` or a finding, ``comparison`` ``reader-vs-reader`` or ``<source>-vs-reader``.
        Empty without ``reader:*`` rows.
    """
    import pandas as pd

    if metrics is None or len(metrics) == 0:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    defined = metrics[np.isfinite(metrics["value"].to_numpy(dtype=np.float64))]
    is_reader = defined["region_source"].str.startswith(READER_PREFIX)
    readers = defined[is_reader & (defined["region_area"] > 0)]
    if len(readers) == 0:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    keys = ["classifier", "cam_method", "metric"]
    other_groups = dict(iter(defined[~is_reader].groupby(keys, sort=False)))
    rows = []
    for key, group in readers.groupby(keys, sort=False):
        group = group[["item", "value", "class"]]
        classes = group.drop_duplicates("item").set_index("item")["class"]
        comparisons = {"reader-vs-reader": _between_readers(group)}
        other = other_groups.get(key)
        if other is not None:
            for source, frame in other.groupby("region_source", sort=False):
                comparisons[f"{source}-vs-reader"] = _against_readers(group, frame)
        for name, stats in comparisons.items():
            item_class = classes.reindex(stats.index).to_numpy()
            for label in ["all", *sorted(set(item_class) - {""})]:  # no class: "all" only
                chosen = stats.to_numpy() if label == "all" else stats[item_class == label]
                chosen = np.asarray(chosen, dtype=np.float64)
                if not len(chosen):
                    continue
                mad, r = _item_bootstrap(chosen, _mad_and_r, n_resamples, seed)
                n_pairs = int(chosen[:, 0].sum())
                if name == "reader-vs-reader":
                    n_pairs //= 2  # counted in both orders for r
                rows.append([*key, label, name, len(chosen), n_pairs, *mad, *r])
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def _box_union_iou(a: list, b: list) -> float:
    if not a and not b:
        return math.nan
    if not a or not b:
        return 0.0
    boxes = np.array(a + b, dtype=np.int64)
    r0, c0 = boxes[:, 0].min(), boxes[:, 1].min()
    shape = (int(boxes[:, 2].max() - r0), int(boxes[:, 3].max() - c0))
    masks = []
    for group in (a, b):
        mask = np.zeros(shape, dtype=bool)
        for br0, bc0, br1, bc1 in group:
            mask[br0 - r0 : br1 - r0, bc0 - c0 : bc1 - c0] = True
        masks.append(mask)
    inter = np.count_nonzero(masks[0] & masks[1])
    return inter / np.count_nonzero(masks[0] | masks[1])


def reader_region_agreement(regions, *, n_resamples: int = 1000, seed: int = 0):
    """IoU of every two readers' boxes of the same finding on the same image.

    Returns
    -------
    pandas.DataFrame
        Columns ``group, n_items, n_pairs, iou, iou_ci_low, iou_ci_high, missed``: mean IoU over
        reader pairs (one of whom marked the finding) with a bootstrap CI over items, and
        ``missed``, the share of those pairs where one reader did not mark it. Empty without
        ``reader:*`` regions.
    """
    import pandas as pd

    if regions is None or len(regions) == 0:
        return pd.DataFrame(columns=REGION_COLUMNS)
    chosen = regions[regions["region_source"].str.startswith(READER_PREFIX)]
    chosen = chosen[chosen["classifier"] == ""]
    per_item = []
    for _, group in chosen.groupby("item", sort=False):
        boxes = [[tuple(b) for b in json.loads(p)["boxes"]] for p in group["prompt"]]
        ious = [_box_union_iou(a, b) for a, b in combinations(boxes, 2)]
        ious = [v for v in ious if not math.isnan(v)]
        if ious:
            per_item.append((group["class"].iloc[0], ious))
    rows = []
    for label in ["all", *sorted({c for c, _ in per_item} - {""})]:
        kept = [ious for c, ious in per_item if label == "all" or c == label]
        if not kept:
            continue
        stats = np.array([[len(v), float(np.sum(v))] for v in kept])
        [(iou, low, high)] = _item_bootstrap(stats, lambda t: t[1] / t[0], n_resamples, seed)
        flat = np.concatenate([np.asarray(v) for v in kept])
        rows.append([label, len(kept), len(flat), iou, low, high, float(np.mean(flat == 0.0))])
    return pd.DataFrame(rows, columns=REGION_COLUMNS)


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def reader_record(scores, regions) -> dict:
    """The inter-reader tables for ``summary.json`` (nothing without readers)."""
    if scores is None or len(scores) == 0:
        return {}
    return json_safe(
        {
            "reader_agreement": scores.to_dict("records"),
            "reader_regions": regions.to_dict("records"),
        }
    )


def reader_html(scores, regions) -> str:
    """The report's section on the readers' own agreement ("" without readers)."""
    if scores is None or len(scores) == 0:
        return ""
    return "\n".join(
        [
            "<h2>Readers' own agreement</h2>",
            "<p class='note'>Scores against each reader's boxes: mean absolute difference "
            "(MAD) and Pearson r between every two readers of an item "
            "(<code>reader-vs-reader</code>), beside the same between each other region source "
            "and each reader (<code>sam-box-vs-reader</code>, ...). A SAM score is as close to "
            "a reader's as readers are to each other when its MAD is not larger. 95 % CIs "
            "resample items.</p>",
            html_table(scores),
            "<p class='note'>Regions: IoU of two readers' boxes of the same finding (0 when "
            "only one marked it; <code>missed</code>: the share of such pairs).</p>",
            html_table(regions),
        ]
    )


def reader_headline(scores, metrics=("iou", "energy")) -> list[str]:
    """CLI lines: reader-vs-reader beside SAM-vs-reader, overall, per classifier and method."""
    if scores is None or len(scores) == 0:
        return []
    shown = scores[(scores["group"] == "all") & scores["metric"].isin(metrics)]
    lines = ["", "readers' own agreement (MAD [95% CI], Pearson r; all findings):"]
    for row in shown.itertuples(index=False):
        lines.append(
            f"  {row.classifier:<20} {row.cam_method:<9} {row.metric:<7} "
            f"{row.comparison:<28} MAD {row.mad:.3f} [{row.mad_ci_low:.3f}, "
            f"{row.mad_ci_high:.3f}] r={row.pearson:.3f} pairs={row.n_pairs}"
        )
    return lines
