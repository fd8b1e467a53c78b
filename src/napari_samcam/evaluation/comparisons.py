"""Paired comparisons of classifiers and CAM methods on the items they share.

"Does HiResCAM localize better than Grad-CAM on my data?" is a question about differences on the
same images, so the scores are paired by manifest item: for every pair of classifiers (same CAM
method) and every pair of CAM methods of one classifier, per region source and metric,
:func:`comparison_table` gives the mean difference with a paired-bootstrap CI and a Wilcoxon
signed-rank p-value, Holm-adjusted within a family of tests (:data:`HOLM_FAMILIES`).

A Holm family is the set of tests a reader draws conclusions from together; the correction
controls the chance of any false "a > b" among them. ``"run"`` (default): every comparison of
one run (all pairs, region sources and metrics). ``"metric"``: one metric across region sources
and pairs. ``"pair"``: one region source and metric of one kind and fixed classifier or method,
i.e. only the pairs among three or more classifiers or methods (with two of each, every such
family holds one test and Holm changes nothing). ``family_size`` gives the number of tests in
each row's family.

The same comparison is made once per region source, which answers the question of Kellener et
al. (2023) asked of comparisons: would the conclusion about A vs B change if the region came
from SAM instead of the hand-drawn mask? ``agrees_with_reference`` says so row by row.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["COMPARISON_COLUMNS", "HOLM_FAMILIES", "comparison_table"]

#: Holm family name -> the columns whose values define one family (none: the whole run).
HOLM_FAMILIES: dict[str, tuple[str, ...]] = {
    "run": (),
    "metric": ("metric",),
    "pair": ("kind", "classifier", "cam_method", "region_source", "metric"),
}

COMPARISON_COLUMNS = [
    "kind",
    "classifier",
    "cam_method",
    "a",
    "b",
    "region_source",
    "metric",
    "n",
    "mean_a",
    "mean_b",
    "mean_diff",
    "ci_low",
    "ci_high",
    "n_zero",
    "zero_method",
    "p_value",
    "p_holm",
    "holm_family",
    "family_size",
    "conclusion",
    "agrees_with_reference",
]


def _conclusion(diff: float, p_holm: float, alpha: float) -> str:
    if np.isnan(p_holm):
        return "undetermined"
    if p_holm >= alpha:
        return "no difference"
    return "a > b" if diff > 0 else "a < b"


def _pairs(metrics, kind: str):
    """(fixed key values, a, b, scores of a, scores of b) for each pair of the ``kind`` column,
    per region source and metric, paired by item (items either lacks are left out)."""
    fixed = "cam_method" if kind == "classifier" else "classifier"
    wide = metrics.groupby([fixed, "region_source", "metric", "item", kind], sort=False)[
        "value"
    ].mean()
    wide = wide.unstack(kind)
    for key, table in wide.groupby(level=[0, 1, 2], sort=False):
        present = [c for c in table.columns if table[c].notna().any()]
        for a, b in itertools.combinations(present, 2):
            shared = table[[a, b]].dropna(how="any")
            yield key, a, b, shared[a].to_numpy(), shared[b].to_numpy()


def comparison_table(
    metrics,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    alpha: float = 0.05,
    reference: str = "ground-truth",
    holm_family: str = "run",
    zero_method: str = "wilcox",
) -> Any:
    """Every pair of classifiers and of CAM methods, compared on the items they share.

    For classifiers ``A`` and ``B`` explained with the same CAM method (``kind ==
    "classifier"``), and for CAM methods ``A`` and ``B`` of the same classifier (``kind ==
    "cam_method"``), per region source and metric: the scores of the items both have a value
    for (several rows of one item, e.g. several regions of one source, are averaged first),
    their means, the mean difference ``A - B`` with its paired-bootstrap CI and the two-sided
    Wilcoxon signed-rank p-value (:func:`napari_samcam.agreement.paired_difference`).

    ``p_holm`` is Holm-adjusted within each family of ``holm_family`` (:data:`HOLM_FAMILIES`);
    ``holm_family`` names a row's family and ``family_size`` counts its tests (rows with a
    p-value). ``n_zero`` counts the pairs whose difference is exactly 0 and ``zero_method``
    says how the Wilcoxon test treated them. ``conclusion`` is ``"a > b"`` or ``"a < b"`` where
    ``p_holm < alpha``, ``"no difference"`` otherwise and ``"undetermined"`` without a test.
    ``agrees_with_reference`` compares it with the conclusion of the same comparison scored
    against ``reference`` regions (``None`` for the reference's own rows or when it is absent).

    Parameters
    ----------
    metrics : pandas.DataFrame
        The tidy table of :func:`~napari_samcam.evaluation.evaluate`.
    n_resamples, seed, confidence
        Passed to :func:`napari_samcam.agreement.bootstrap_ci`.
    alpha : float, optional
        Family-wise error rate of the conclusions (default 0.05).
    reference : str, optional
        The region source the conclusions are checked against (default ``"ground-truth"``).
    holm_family : {"run", "metric", "pair"}
        Which tests are Holm-adjusted together (see the module docstring); default ``"run"``.
    zero_method : {"wilcox", "pratt"}
        Wilcoxon zero handling (:func:`napari_samcam.agreement.paired_difference`).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COMPARISON_COLUMNS`, one row per pair, region source and metric. For
        classifier pairs ``a`` and ``b`` are classifiers, ``cam_method`` is the shared method
        and ``classifier`` is ``""``; for method pairs ``a`` and ``b`` are CAM methods,
        ``classifier`` is the shared classifier and ``cam_method`` is ``""``.
    """
    import pandas as pd

    from ..agreement import holm, paired_difference

    if not 0.0 < float(alpha) < 1.0:
        raise InputError(f"alpha must lie in (0, 1), e.g. 0.05; got {alpha!r}.")
    if holm_family not in HOLM_FAMILIES:
        raise InputError(
            f"holm_family={holm_family!r}: pass one of {', '.join(HOLM_FAMILIES)} (the set of "
            "comparisons Holm's correction treats as one family)."
        )
    records = []
    if len(metrics):
        for kind in ("classifier", "cam_method"):
            for (fixed, source, metric), a, b, xa, xb in _pairs(metrics, kind):
                result = paired_difference(
                    xa,
                    xb,
                    n_resamples=n_resamples,
                    seed=seed,
                    confidence=confidence,
                    zero_method=zero_method,
                )
                records.append(
                    {
                        "kind": kind,
                        "classifier": "" if kind == "classifier" else fixed,
                        "cam_method": fixed if kind == "classifier" else "",
                        "a": a,
                        "b": b,
                        "region_source": source,
                        "metric": metric,
                        "n": result.n,
                        "mean_a": result.mean_a,
                        "mean_b": result.mean_b,
                        "mean_diff": result.mean_diff,
                        "ci_low": result.ci_low,
                        "ci_high": result.ci_high,
                        "n_zero": int(np.count_nonzero(xa == xb)),
                        "zero_method": zero_method,
                        "p_value": result.p_value,
                    }
                )
    table = pd.DataFrame(records, columns=COMPARISON_COLUMNS)
    if not len(table):
        return table
    _adjust(table, holm_family, holm)
    table["conclusion"] = [
        _conclusion(d, p, alpha) for d, p in zip(table["mean_diff"], table["p_holm"], strict=True)
    ]
    pair = ["kind", "classifier", "cam_method", "a", "b", "metric"]
    ref = table[table["region_source"] == reference].set_index(pair)["conclusion"]
    agrees = []
    for row in table.itertuples(index=False):
        key = tuple(getattr(row, c) for c in pair)
        if row.region_source == reference or key not in ref.index:
            agrees.append(None)
        else:
            agrees.append(bool(ref.loc[key] == row.conclusion))
    table["agrees_with_reference"] = pd.Series(agrees, dtype=object)
    return table


def _adjust(table, holm_family: str, holm) -> None:
    """Fill ``p_holm``, ``holm_family`` and ``family_size`` of ``table`` in place."""
    columns = list(HOLM_FAMILIES[holm_family])
    if not columns:
        keys = [holm_family] * len(table)
    else:
        keys = [
            holm_family + ":" + "|".join(f"{v}" for v in values if v != "")
            for values in table[columns].itertuples(index=False)
        ]
    table["holm_family"] = keys
    grouped = table.groupby("holm_family", sort=False)["p_value"]
    table["p_holm"] = grouped.transform(lambda p: holm(p.to_numpy(dtype=np.float64)))
    table["family_size"] = grouped.transform("count").astype(int)
