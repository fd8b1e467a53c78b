"""Dataset summaries of the tidy metrics table.

* :func:`summarize`: per classifier x CAM method x region source x metric, the mean with its
  percentile-bootstrap 95 % CI (1000 resamples by default), over all items and per class. The
  rows of ``iou`` and ``hit`` are CheXlocalize's mIoU and hit rate: means over the items where
  the metric is defined (``hit`` is undefined, NaN, without a finding; ``iou`` is 0 on an item
  without a finding whenever the binarized map is non-empty, as in CheXlocalize).
* :func:`agreement_table`: for every region source other than the reference (``ground-truth``)
  and every metric, the agreement of its per-item scores with the reference's: Pearson,
  Spearman, mean absolute difference, Bland-Altman bias and limits, and Cohen's kappa for hits.
* :func:`sam_vs_box`: does SAM prompted by the box annotation agree better with the ground
  truth than the raw box does?
* :func:`region_summary`: how well each region source matches the ground-truth mask itself
  (mean Dice and IoU with bootstrap CIs), e.g. LiteMedSAM prompted by the box annotation.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any

import numpy as np

__all__ = [
    "agreement_table",
    "group_column",
    "region_summary",
    "sam_vs_box",
    "summarize",
    "summary_record",
]

KEYS = ["classifier", "cam_method", "region_source", "metric"]
SUMMARY_COLUMNS = [*KEYS, "group", "n", "mean", "ci_low", "ci_high", "std", "median", "protocol"]
AGREEMENT_STATS = [
    "n",
    "n_dropped",
    "pearson_r",
    "pearson_p",
    "spearman_r",
    "spearman_p",
    "mean_abs_diff",
    "bias",
    "sd_diff",
    "loa_low",
    "loa_high",
    "kappa",
]
AGREEMENT_COLUMNS = ["classifier", "cam_method", "metric", "region_source", "reference"]
AGREEMENT_COLUMNS += AGREEMENT_STATS


@contextlib.contextmanager
def _quiet():
    """Silence the NaN / degenerate-input warnings of the statistics (counts say it all)."""
    from ..agreement import NaNDroppedWarning
    from ..metrics import DegenerateInputWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NaNDroppedWarning)
        warnings.simplefilter("ignore", DegenerateInputWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def group_column(metrics) -> str | None:
    """The column per-class summaries group by: ``class`` if filled, else ``label``."""
    for column in ("class", "label"):
        if column in metrics and (metrics[column].astype(str) != "").any():
            return column
    return None


def _metric_order(metrics) -> dict:
    from ..metrics import METRIC_NAMES

    order = {name: i for i, name in enumerate(METRIC_NAMES)}
    for name in metrics["metric"].unique():
        order.setdefault(name, len(order))
    return order


def summarize(
    metrics,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    protocol: Any = None,
) -> Any:
    """Mean and bootstrap CI of every metric, overall (``group == "all"``) and per class.

    Parameters
    ----------
    metrics : pandas.DataFrame
        The tidy table of :func:`~napari_samcam.evaluation.evaluate`.
    n_resamples, seed, confidence
        Passed to the protocol's bootstrap (``samcam``:
        :func:`napari_samcam.agreement.bootstrap_ci`; ``chexlocalize``:
        :func:`napari_samcam.chexlocalize.bootstrap`, always at 95 %).
    protocol : str, optional
        :mod:`napari_samcam.metric_protocols` name; default: the table's ``protocol`` column, else
        ``samcam``. Under ``chexlocalize`` each group's rows are resampled in image-id order
        with their NaNs, and ``mean`` is the mean of the resampled means, as CheXlocalize's
        ``eval.py`` reports it.

    Returns
    -------
    pandas.DataFrame
        Columns ``classifier, cam_method, region_source, metric, group, n, mean, ci_low,
        ci_high, std, median, protocol``; ``group`` is ``"all"`` or ``"<column>=<value>"``
        (``class`` or ``label``); ``n`` counts the items where the metric is defined.
    """
    import pandas as pd

    from ..metric_protocols import get_protocol

    if len(metrics) == 0:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    if protocol is None:
        named = set(metrics["protocol"]) if "protocol" in metrics else set()
        protocol = named.pop() if len(named) == 1 else "samcam"
    protocol = get_protocol(protocol)
    if protocol.name == "chexlocalize" and "image_id" in metrics:
        metrics = metrics.sort_values(["image_id", "item"], kind="stable")
    by = group_column(metrics)
    order = _metric_order(metrics)
    sources = list(dict.fromkeys(metrics["region_source"]))
    records = []
    with _quiet():
        for keys, frame in metrics.groupby(KEYS, sort=False):
            subsets = [("all", frame)]
            if by is not None:
                for value, sub in frame.groupby(by, sort=True):
                    subsets.append((f"{by}={value}", sub))
            for group, sub in subsets:
                values = sub["value"].to_numpy(dtype=np.float64)
                defined = values[~np.isnan(values)]
                mean, low, high, _ = protocol.interval(
                    values, n_resamples=n_resamples, seed=seed, confidence=confidence
                )
                std = float(np.std(defined, ddof=1)) if defined.size > 1 else math.nan
                median = float(np.median(defined)) if defined.size else math.nan
                records.append(
                    dict(
                        zip(KEYS, keys, strict=True),
                        group=group,
                        n=int(defined.size),
                        mean=mean,
                        ci_low=low,
                        ci_high=high,
                        std=std,
                        median=median,
                        protocol=protocol.name,
                    )
                )
    table = pd.DataFrame(records, columns=SUMMARY_COLUMNS)
    table["_m"] = table["metric"].map(order)
    table["_s"] = table["region_source"].map({s: i for i, s in enumerate(sources)})
    table["_g"] = (table["group"] != "all").astype(int)
    table = table.sort_values(
        ["classifier", "cam_method", "_m", "_s", "_g", "group"], kind="stable"
    )
    return table.drop(columns=["_m", "_s", "_g"]).reset_index(drop=True)


def paired_score_tables(metrics) -> dict:
    """Per ``(classifier, cam_method, metric)``: its per-item scores, one column per region
    source that has rows for it (items and explained classes as rows), from one reshape."""
    if len(metrics) == 0:
        return {}
    keys = ["classifier", "cam_method", "metric"]
    wide = metrics.groupby([*keys, "item", "target_class", "region_source"], sort=False)[
        "value"
    ].mean()
    wide = wide.unstack("region_source")
    present = metrics.groupby(keys, sort=False)["region_source"].unique()
    return {
        key: table.droplevel([0, 1, 2])[list(present[key])]
        for key, table in wide.groupby(level=[0, 1, 2], sort=False)
    }


def paired_scores(metrics, metric: str, classifier: str, cam_method: str):
    """Per-item scores of one metric, one column per region source (items as rows)."""
    import pandas as pd

    sub = metrics[
        (metrics["metric"] == metric)
        & (metrics["classifier"] == classifier)
        & (metrics["cam_method"] == cam_method)
    ]
    return paired_score_tables(sub).get((classifier, cam_method, metric), pd.DataFrame())


def agreement_table(metrics, *, reference: str = "ground-truth") -> Any:
    """Agreement of every region source with ``reference``, per classifier x method x metric.

    Scores are paired by manifest item (and explained class); a pair where either is NaN is
    dropped (``n_dropped``). ``kappa`` (Cohen's) is filled for the binary ``hit`` metric only.

    Returns
    -------
    pandas.DataFrame
        Columns ``classifier, cam_method, metric, region_source, reference`` and the statistics
        of :func:`napari_samcam.agreement.agreement` plus ``kappa``. Empty when the table has
        no ``reference`` rows.
    """
    import pandas as pd

    from ..agreement import agreement, cohen_kappa

    if len(metrics) == 0 or reference not in set(metrics["region_source"]):
        return pd.DataFrame(columns=AGREEMENT_COLUMNS)
    order = _metric_order(metrics)
    sources = [s for s in dict.fromkeys(metrics["region_source"]) if s != reference]
    records = []
    with _quiet():
        combos = metrics[["classifier", "cam_method", "metric"]].drop_duplicates()
        combos = combos.assign(_m=combos["metric"].map(order))
        combos = combos.sort_values(["classifier", "cam_method", "_m"], kind="stable")
        tables = paired_score_tables(metrics)
        for classifier, cam_method, metric in combos[
            ["classifier", "cam_method", "metric"]
        ].itertuples(index=False):
            table = tables[(classifier, cam_method, metric)]
            for source in sources:
                if source not in table:
                    continue
                a = table[source].to_numpy(dtype=np.float64)
                b = table[reference].to_numpy(dtype=np.float64)
                stats = agreement(a, b)
                kappa = math.nan
                if metric == "hit":
                    kappa = cohen_kappa(a, b)
                records.append(
                    {
                        "classifier": classifier,
                        "cam_method": cam_method,
                        "metric": metric,
                        "region_source": source,
                        "reference": reference,
                        **{k: stats.get(k, math.nan) for k in AGREEMENT_STATS if k != "kappa"},
                        "kappa": kappa,
                    }
                )
    return pd.DataFrame(records, columns=AGREEMENT_COLUMNS)


def sam_vs_box(agreement, *, candidate: str = "sam-box", baseline: str = "box") -> Any:
    """Side by side: how close ``candidate``-based and ``baseline``-based scores are to the truth.

    Returns
    -------
    pandas.DataFrame
        Per classifier x method x metric: ``n``, ``mad_<candidate>``, ``mad_<baseline>``,
        ``mad_ratio`` (candidate / baseline: below 1 means the candidate is closer),
        ``pearson_*``, ``bias_*`` and ``closer`` (True when the candidate's mean absolute
        difference is smaller).
    """
    import pandas as pd

    columns = ["classifier", "cam_method", "metric", "n"]
    stats = ["mad", "pearson", "spearman", "bias", "loa_low", "loa_high", "kappa"]
    names = [f"{s}_{w}" for s in stats for w in (candidate, baseline)]
    columns += [*names, "mad_ratio", "closer"]
    if len(agreement) == 0:
        return pd.DataFrame(columns=columns)
    source_map = {
        "mad": "mean_abs_diff",
        "pearson": "pearson_r",
        "spearman": "spearman_r",
        "bias": "bias",
        "loa_low": "loa_low",
        "loa_high": "loa_high",
        "kappa": "kappa",
    }
    records = []
    keys = ["classifier", "cam_method", "metric"]
    for key, frame in agreement.groupby(keys, sort=False):
        rows = {r["region_source"]: r for r in frame.to_dict("records")}
        if candidate not in rows or baseline not in rows:
            continue
        record = dict(zip(keys, key, strict=True))
        record["n"] = int(rows[candidate]["n"])
        for stat, column in source_map.items():
            for which in (candidate, baseline):
                record[f"{stat}_{which}"] = rows[which][column]
        mad_c, mad_b = record[f"mad_{candidate}"], record[f"mad_{baseline}"]
        record["mad_ratio"] = mad_c / mad_b if mad_b and not math.isnan(mad_b) else math.nan
        record["closer"] = bool(mad_c < mad_b) if not math.isnan(mad_c + mad_b) else None
        records.append(record)
    return pd.DataFrame(records, columns=columns)


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summary_record(info: dict, summary, agreement, versus, regions=None, comparison=None) -> dict:
    """Everything :func:`summarize` & co. computed, JSON-ready (NaN written as ``null``)."""
    record = {
        **info,
        "summary": summary.to_dict("records"),
        "agreement": agreement.to_dict("records"),
        "sam_vs_box": versus.to_dict("records"),
    }
    if regions is not None:
        record["regions"] = regions.to_dict("records")
    if comparison is not None:
        record["comparison"] = comparison.to_dict("records")
    return json_safe(record)


REGION_SUMMARY_COLUMNS = ["region_source", "classifier", "cam_method", "group", "n"]
REGION_SUMMARY_COLUMNS += ["dice", "dice_ci_low", "dice_ci_high", "iou", "iou_ci_low"]
REGION_SUMMARY_COLUMNS += ["iou_ci_high", "area_ratio", "unreliable", "fell_back"]


def region_summary(regions, *, n_resamples: int = 1000, seed: int = 0) -> Any:
    """Mean Dice and IoU of each region source with the ground-truth mask.

    Only items with a non-empty ground truth count (Dice with an empty truth is 0 or
    undefined). ``area_ratio`` is the median of region area / truth area. ``unreliable`` is the
    share of regions flagged by :func:`napari_samcam.region_trust.quality_of_region` and
    ``fell_back`` the share of regions for which the ``sam-trust`` source used a box.

    Returns
    -------
    pandas.DataFrame
        Columns ``region_source, classifier, cam_method, group, n, dice, dice_ci_low,
        dice_ci_high, iou, iou_ci_low, iou_ci_high, area_ratio``; ``classifier`` and
        ``cam_method`` are empty for annotation-based sources.
    """
    import pandas as pd

    from ..agreement import bootstrap_ci

    if regions is None or len(regions) == 0:
        return pd.DataFrame(columns=REGION_SUMMARY_COLUMNS)
    positive = regions[regions["truth_area"] > 0]
    by = group_column(positive) if len(positive) else None
    records = []
    with _quiet():
        keys = ["region_source", "classifier", "cam_method"]
        for key, frame in positive.groupby(keys, sort=False):
            subsets = [("all", frame)]
            if by is not None and frame[by].nunique() > 1:
                subsets += [(f"{by}={v}", sub) for v, sub in frame.groupby(by, sort=True)]
            for group, sub in subsets:
                record = dict(zip(keys, key, strict=True), group=group)
                for column in ("dice", "iou"):
                    values = sub[column].to_numpy(dtype=np.float64)
                    values = values[~np.isnan(values)]
                    ci = bootstrap_ci(values, n_resamples=n_resamples, seed=seed)
                    record[column] = ci.estimate
                    record[f"{column}_ci_low"] = ci.low
                    record[f"{column}_ci_high"] = ci.high
                    record["n"] = int(values.size)
                ratio = sub["region_area"] / sub["truth_area"]
                record["area_ratio"] = float(ratio.median())
                record.update(_trust_shares(sub))
                records.append(record)
    return pd.DataFrame(records, columns=REGION_SUMMARY_COLUMNS)


def _trust_shares(regions) -> dict:
    """Shares of flagged regions and of ``sam-trust`` box fallbacks (NaN without the columns)."""
    if "region_unreliable" not in regions:
        return {"unreliable": float("nan"), "fell_back": float("nan")}
    actions = regions["region_action"].astype(str)
    return {
        "unreliable": float(regions["region_unreliable"].astype(bool).mean()),
        "fell_back": float(actions.str.contains("fell back to the box").mean()),
    }
