"""Agreement between two sources of per-image localization scores.

Typical use: score the same Grad-CAM maps once against ground-truth regions and once against
Segment Anything regions, then ask how far the two sets of scores agree (Kellener et al. 2023).

* :func:`agreement`: Pearson and Spearman correlation, mean absolute difference and the
  Bland-Altman bias with its 95 % limits of agreement, for continuous scores (IoU, energy, ...);
* :func:`cohen_kappa`: chance-corrected agreement of binary scores (pointing-game hits);
* :func:`bootstrap_ci`: percentile bootstrap confidence interval of a summary statistic, as
  CheXlocalize reports its mean IoU and hit rate;
* :func:`paired_difference`: is ``a`` better than ``b`` on the same images? The mean paired
  difference with its paired-bootstrap CI and the Wilcoxon signed-rank p-value;
* :func:`holm`: Holm's step-down adjustment of a family of p-values.

Scores come paired by position (image ``i`` of ``a`` goes with image ``i`` of ``b``). A pair
where either score is NaN (an undefined metric, e.g. an image without a finding) is dropped;
:func:`agreement` reports how many in ``"n_dropped"``, the other two say it in a
:class:`NaNDroppedWarning`.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from .errors import InputError
from .metrics import DegenerateInputWarning

__all__ = [
    "WILCOXON_ZERO_METHODS",
    "BootstrapCI",
    "NaNDroppedWarning",
    "PairedDifference",
    "agreement",
    "bootstrap_ci",
    "cohen_kappa",
    "holm",
    "paired_difference",
]

#: z value of the Bland-Altman 95 % limits of agreement.
_LOA_Z = 1.96

#: At most this many resampled values are held in memory at once by :func:`bootstrap_ci`.
_CHUNK = 1 << 22


class NaNDroppedWarning(UserWarning):
    """Some inputs were NaN and were left out of the computation."""


class BootstrapCI(NamedTuple):
    """Result of :func:`bootstrap_ci`; unpacks as ``estimate, low, high``."""

    estimate: float
    low: float
    high: float


class PairedDifference(NamedTuple):
    """Result of :func:`paired_difference`."""

    n: int
    n_dropped: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float


def _as_scores(values: Any, name: str) -> np.ndarray:
    if hasattr(values, "to_numpy"):  # pandas Series, including nullable dtypes with pd.NA
        try:
            values = values.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name} must hold numbers (or NaN); {exc}.") from exc
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{name} must be a 1-D sequence of numbers (NaN for a missing score); {exc}."
        ) from exc
    if arr.ndim != 1:
        raise InputError(
            f"{name} must be 1-D, one score per image; got shape {arr.shape}. "
            f"Flatten it first, e.g. np.ravel({name})."
        )
    if np.isinf(arr).any():
        where = np.flatnonzero(np.isinf(arr))[:5].tolist()
        raise InputError(
            f"{name} has infinite values (at positions {where}); scores must be finite, or NaN "
            "for a missing score."
        )
    return arr


def _paired(a: Any, b: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, int]:
    x, y = _as_scores(a, names[0]), _as_scores(b, names[1])
    if x.shape != y.shape:
        raise InputError(
            f"{names[0]} and {names[1]} must hold one score per image, paired by position; got "
            f"lengths {x.size} and {y.size}."
        )
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep], int(keep.size - np.count_nonzero(keep))


def _degenerate(message: str) -> None:
    warnings.warn(message, DegenerateInputWarning, stacklevel=3)


def agreement(a: Any, b: Any) -> dict[str, float]:
    """Agreement between two paired sets of per-image scores.

    With ``d_i = a_i - b_i`` over the ``n`` pairs where both are defined:

    * ``pearson_r``, ``pearson_p``: Pearson correlation and its two-sided p-value
      (:func:`scipy.stats.pearsonr`);
    * ``spearman_r``, ``spearman_p``: Spearman rank correlation (:func:`scipy.stats.spearmanr`);
    * ``mean_abs_diff`` = ``mean |d_i|``;
    * ``bias`` = ``mean d_i`` (positive: ``a`` scores higher than ``b``);
    * ``sd_diff`` = sample standard deviation of ``d_i`` (``ddof=1``);
    * ``loa_low``, ``loa_high`` = ``bias -/+ 1.96 sd_diff``, the Bland-Altman 95 % limits of
      agreement;
    * ``n`` = pairs used, ``n_dropped`` = pairs dropped because either score was NaN.

    Parameters
    ----------
    a, b : 1-D array_like of float
        Scores of the same images from two region sources, paired by position (a pandas Series
        is taken in order, not aligned on its index). NaN marks a missing score.

    Returns
    -------
    dict
        The keys above. Correlations are NaN (with a warning) when ``n < 2`` or either side is
        constant; ``sd_diff`` and the limits are NaN when ``n < 2``; everything but the counts
        is NaN when ``n = 0``.

    Raises
    ------
    InputError
        The inputs are not 1-D numeric, hold infinite values or differ in length.
    """
    x, y, dropped = _paired(a, b, ("a", "b"))
    n = x.size
    out = {
        "n": n,
        "n_dropped": dropped,
        "pearson_r": math.nan,
        "pearson_p": math.nan,
        "spearman_r": math.nan,
        "spearman_p": math.nan,
        "mean_abs_diff": math.nan,
        "bias": math.nan,
        "sd_diff": math.nan,
        "loa_low": math.nan,
        "loa_high": math.nan,
    }
    if n == 0:
        _degenerate(
            f"agreement: no pair of scores is defined in both a and b ({dropped} dropped for "
            "NaN); every statistic is NaN."
        )
        return out
    d = x - y
    out["mean_abs_diff"] = float(np.mean(np.abs(d)))
    out["bias"] = float(np.mean(d))
    if n < 2:
        _degenerate(
            "agreement: only one pair of scores; correlations and limits of agreement need at "
            "least two and are NaN."
        )
        return out
    sd = float(np.std(d, ddof=1))
    out["sd_diff"] = sd
    out["loa_low"] = out["bias"] - _LOA_Z * sd
    out["loa_high"] = out["bias"] + _LOA_Z * sd
    constant = [name for name, v in (("a", x), ("b", y)) if np.all(v == v[0])]
    if constant:
        _degenerate(
            f"agreement: {' and '.join(constant)} {'is' if len(constant) == 1 else 'are'} "
            "constant over the paired images, so correlations are undefined; they are NaN."
        )
        return out
    pearson = stats.pearsonr(x, y)
    spearman = stats.spearmanr(x, y)
    out["pearson_r"] = float(pearson.statistic)
    out["pearson_p"] = float(pearson.pvalue)
    out["spearman_r"] = float(spearman.statistic)
    out["spearman_p"] = float(spearman.pvalue)
    return out


def cohen_kappa(hits_a: Any, hits_b: Any) -> float:
    """Cohen's kappa of two paired sets of binary scores (e.g. pointing-game hits).

    ``kappa = (p_o - p_e) / (1 - p_e)`` with observed agreement
    ``p_o = (n_11 + n_00) / n`` and chance agreement
    ``p_e = (n_1. n_.1 + n_0. n_.0) / n^2`` from the 2 x 2 table of the ``n`` pairs where both
    are defined (``n_1.`` hits of ``a``, ``n_.1`` hits of ``b``, ...). 1 is perfect agreement, 0
    chance level.

    Parameters
    ----------
    hits_a, hits_b : 1-D array_like
        0/1 or bool per image, NaN for an undefined score, paired by position.

    Returns
    -------
    float
        NaN with a warning when no pair is defined, or when ``p_e = 1`` (both sources give the
        same constant answer on every image, so agreement beyond chance is undefined). Pairs
        with a NaN are dropped with a :class:`NaNDroppedWarning`.

    Raises
    ------
    InputError
        A value other than 0, 1 or NaN, or the inputs differ in length.
    """
    x, y, dropped = _paired(hits_a, hits_b, ("hits_a", "hits_b"))
    for name, v in (("hits_a", x), ("hits_b", y)):
        bad = (v != 0) & (v != 1)
        if bad.any():
            raise InputError(
                f"{name} must hold binary hits (0/1 or bool, NaN when undefined); it also holds "
                f"{np.unique(v[bad])[:3].tolist()}. Threshold continuous scores first."
            )
    if dropped:
        warnings.warn(
            f"cohen_kappa: dropped {dropped} pair(s) where either hit is NaN; "
            f"{x.size} pair(s) remain.",
            NaNDroppedWarning,
            stacklevel=2,
        )
    n = x.size
    if n == 0:
        _degenerate("cohen_kappa: no pair of hits is defined in both inputs; returning NaN.")
        return math.nan
    a1, b1 = int(np.count_nonzero(x)), int(np.count_nonzero(y))
    agree = int(np.count_nonzero(x == y))
    chance = a1 * b1 + (n - a1) * (n - b1)  # n^2 p_e
    if chance == n * n:
        _degenerate(
            "cohen_kappa: both inputs give the same answer on every image, so chance agreement "
            "is 1 and kappa is undefined; returning NaN."
        )
        return math.nan
    return (n * agree - chance) / (n * n - chance)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be a positive int; got {value!r}.")
    if value < 1:
        raise InputError(f"{name} must be a positive int; got {value!r}.")
    return int(value)


def _apply(statistic: Callable[..., Any], samples: np.ndarray) -> np.ndarray:
    """``statistic`` of each row, vectorised when it takes ``axis``."""
    try:
        out = np.asarray(statistic(samples, axis=1), dtype=np.float64)
    except TypeError:
        out = None
    if out is None or out.shape != (samples.shape[0],):
        out = np.array([statistic(row) for row in samples], dtype=np.float64)
    return out


def bootstrap_ci(
    values: Any,
    *,
    statistic: Callable[..., Any] = np.nanmean,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = 0,
) -> BootstrapCI:
    """Percentile bootstrap confidence interval of ``statistic(values)``.

    The ``n`` defined values are resampled with replacement ``n_resamples`` times (all at once,
    in memory-bounded chunks); with ``T_b`` the statistic of resample ``b`` and
    ``alpha = 1 - confidence``, the interval is the ``alpha / 2`` and ``1 - alpha / 2``
    percentiles of ``T_1 ... T_B`` (linear interpolation, :func:`numpy.percentile`). The
    estimate is ``statistic`` of the original values.

    Parameters
    ----------
    values : 1-D array_like of float
        Per-image scores; NaN values are dropped first (with a :class:`NaNDroppedWarning`).
    statistic : callable, optional
        Summary of a 1-D sample, default :func:`numpy.nanmean`. It is called with ``axis=1``
        on a 2-D block of resamples when it accepts ``axis`` (NumPy reductions do), else once
        per resample.
    n_resamples : int, optional
        Number of bootstrap resamples (default 1000).
    confidence : float, optional
        Coverage of the interval, in (0, 1) (default 0.95).
    seed : int, numpy.random.Generator or None, optional
        Seed of the resampling; the same seed gives the same interval (default 0).

    Returns
    -------
    BootstrapCI
        ``(estimate, low, high)``; all NaN with a warning when no value is defined.

    Raises
    ------
    InputError
        ``values`` is not 1-D numeric or holds infinities, ``n_resamples`` is not a positive
        int, ``confidence`` is outside (0, 1) or ``statistic`` is not callable.
    """
    x = _as_scores(values, "values")
    if not callable(statistic):
        raise InputError(f"statistic must be callable, e.g. np.nanmean; got {statistic!r}.")
    n_resamples = _positive_int(n_resamples, "n_resamples")
    if isinstance(confidence, bool | np.bool_) or not isinstance(confidence, numbers.Real):
        raise InputError(f"confidence must be a number in (0, 1), e.g. 0.95; got {confidence!r}.")
    if not 0.0 < float(confidence) < 1.0:
        raise InputError(f"confidence must lie in (0, 1), e.g. 0.95; got {confidence!r}.")
    keep = ~np.isnan(x)
    dropped = int(x.size - np.count_nonzero(keep))
    x = x[keep]
    if dropped:
        warnings.warn(
            f"bootstrap_ci: dropped {dropped} NaN value(s); {x.size} remain.",
            NaNDroppedWarning,
            stacklevel=2,
        )
    if x.size == 0:
        _degenerate("bootstrap_ci: no defined value to resample; returning NaN.")
        return BootstrapCI(math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    n = x.size
    rows = max(1, _CHUNK // n)
    boot = np.empty(n_resamples)
    for start in range(0, n_resamples, rows):
        stop = min(start + rows, n_resamples)
        boot[start:stop] = _apply(statistic, x[rng.integers(0, n, size=(stop - start, n))])
    alpha = 1.0 - float(confidence)
    low, high = np.percentile(boot, [100.0 * alpha / 2, 100.0 * (1 - alpha / 2)])
    return BootstrapCI(float(statistic(x)), float(low), float(high))


def paired_difference(
    a: Any,
    b: Any,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = 0,
    zero_method: str = "wilcox",
) -> PairedDifference:
    """Mean paired difference ``a - b`` with a paired-bootstrap CI and a Wilcoxon p-value.

    With ``d_i = a_i - b_i`` over the ``n`` images where both scores are defined:

    * ``mean_diff`` = ``mean d_i``; ``ci_low``, ``ci_high``: the percentile bootstrap interval
      of :func:`bootstrap_ci` over the ``d_i`` (images are resampled, so each resample keeps
      the pairing);
    * ``p_value``: two-sided Wilcoxon signed-rank test of ``d`` symmetric about 0
      (:func:`scipy.stats.wilcoxon`; exact distribution for small ``n`` without ties or
      zeros, normal approximation otherwise). Zero differences are handled by
      ``zero_method``: ``"wilcox"`` (default) drops them before ranking, as Wilcoxon did;
      ``"pratt"`` ranks them with the others and then drops their ranks, which keeps their
      weight in the ranks of the rest (the p-values of the two differ by about 2x on a few
      dozen pairs with a handful of zeros). It is 1.0 when every difference is 0 (nothing
      suggests a difference) and NaN when ``n = 0``.

    Parameters
    ----------
    a, b : 1-D array_like of float
        Scores of the same images under two conditions (two classifiers, two CAM methods),
        paired by position; NaN marks a missing score and drops the pair.
    n_resamples, confidence, seed
        As in :func:`bootstrap_ci`.
    zero_method : {"wilcox", "pratt"}
        How the Wilcoxon test treats zero differences (see above).

    Returns
    -------
    PairedDifference
        ``n, n_dropped, mean_a, mean_b, mean_diff, ci_low, ci_high, p_value``; every float is
        NaN when ``n = 0``.

    Raises
    ------
    InputError
        The inputs are not 1-D numeric, hold infinite values or differ in length.
    """
    if zero_method not in WILCOXON_ZERO_METHODS:
        raise InputError(
            f"zero_method={zero_method!r}: pass one of {', '.join(WILCOXON_ZERO_METHODS)}."
        )
    x, y, dropped = _paired(a, b, ("a", "b"))
    n = int(x.size)
    if n == 0:
        return PairedDifference(0, dropped, *([math.nan] * 6))
    d = x - y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateInputWarning)
        ci = bootstrap_ci(d, n_resamples=n_resamples, confidence=confidence, seed=seed)
    if not np.any(d):
        p = 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # scipy's small-sample notes
            p = float(stats.wilcoxon(d, zero_method=zero_method).pvalue)
    return PairedDifference(
        n, dropped, float(x.mean()), float(y.mean()), ci.estimate, ci.low, ci.high, p
    )


#: Wilcoxon zero handlings :func:`paired_difference` offers (scipy's ``zero_method``).
WILCOXON_ZERO_METHODS = ("wilcox", "pratt")


def holm(p_values: Any) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries left out and kept NaN).

    With the ``m`` defined p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted value of
    ``p_(i)`` is ``max_{j <= i} min(1, (m - j + 1) p_(j))``. Rejecting where the adjusted value
    is below ``alpha`` controls the family-wise error rate at ``alpha``.

    Parameters
    ----------
    p_values : 1-D array_like of float
        The family, in any order.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values in the input's order.

    Raises
    ------
    InputError
        ``p_values`` is not 1-D numeric, or holds values outside [0, 1].
    """
    p = _as_scores(p_values, "p_values")
    defined = ~np.isnan(p)
    if np.any((p[defined] < 0) | (p[defined] > 1)):
        raise InputError("p_values must lie in [0, 1] (NaN for a test that was not run).")
    out = np.full_like(p, np.nan)
    index = np.flatnonzero(defined)
    m = index.size
    if m == 0:
        return out
    order = index[np.argsort(p[index], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out
