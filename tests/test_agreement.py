"""Tests of napari_samcam.agreement."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from napari_samcam import agreement as agreement_module
from napari_samcam.agreement import (
    BootstrapCI,
    NaNDroppedWarning,
    agreement,
    bootstrap_ci,
    cohen_kappa,
)
from napari_samcam.errors import InputError
from napari_samcam.metrics import DegenerateInputWarning

A = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
B = np.array([2.0, 2.0, 4.0, 4.0, 6.0])


# ---------------------------------------------------------------------------------------------
# agreement
# ---------------------------------------------------------------------------------------------


def test_agreement_correlations_match_scipy():
    rng = np.random.default_rng(0)
    a = rng.random(30)
    b = a + 0.3 * rng.random(30)
    out = agreement(a, b)
    assert out["pearson_r"] == pytest.approx(stats.pearsonr(a, b).statistic)
    assert out["pearson_p"] == pytest.approx(stats.pearsonr(a, b).pvalue)
    assert out["spearman_r"] == pytest.approx(stats.spearmanr(a, b).statistic)
    assert out["spearman_p"] == pytest.approx(stats.spearmanr(a, b).pvalue)
    assert out["n"] == 30 and out["n_dropped"] == 0


def test_bland_altman_by_hand():
    # d = a - b = [-1, 0, -1, 0, -1]: bias -0.6, |d| mean 0.6, deviations -0.4, 0.6, -0.4, 0.6,
    # -0.4 -> sum of squares 1.2, sample variance 1.2 / 4 = 0.3.
    out = agreement(A, B)
    sd = math.sqrt(0.3)
    assert out["bias"] == pytest.approx(-0.6)
    assert out["mean_abs_diff"] == pytest.approx(0.6)
    assert out["sd_diff"] == pytest.approx(sd)
    assert out["loa_low"] == pytest.approx(-0.6 - 1.96 * sd)
    assert out["loa_high"] == pytest.approx(-0.6 + 1.96 * sd)


def test_agreement_drops_nan_pairs_and_counts_them():
    a = np.append(A, [np.nan, 1.0, np.nan])
    b = np.append(B, [3.0, np.nan, np.nan])
    out = agreement(a, b)
    assert out["n"] == 5 and out["n_dropped"] == 3
    assert out == pytest.approx(agreement(A, B) | {"n_dropped": 3})


def test_agreement_accepts_lists_and_series():
    pd = pytest.importorskip("pandas")
    a = pd.Series([1.0, 2.0, None, 4.0, 5.0], dtype="Float64")
    out = agreement(a, [2.0, 2.0, 4.0, 4.0, 6.0])
    assert out["n"] == 4 and out["n_dropped"] == 1


def test_agreement_constant_side_has_nan_correlations():
    with pytest.warns(DegenerateInputWarning, match="b is constant"):
        out = agreement(A, np.ones(5))
    assert math.isnan(out["pearson_r"]) and math.isnan(out["spearman_r"])
    assert out["bias"] == pytest.approx(2.0)


def test_agreement_too_few_pairs():
    with pytest.warns(DegenerateInputWarning, match="only one pair"):
        out = agreement([1.0, np.nan], [2.0, 3.0])
    assert out["bias"] == -1.0 and math.isnan(out["loa_low"]) and out["n"] == 1
    with pytest.warns(DegenerateInputWarning, match="no pair"):
        out = agreement([np.nan], [2.0])
    assert out["n"] == 0 and out["n_dropped"] == 1 and math.isnan(out["bias"])


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ([1.0, 2.0], [1.0, 2.0, 3.0], "a and b must hold one score per image"),
        ([[1.0, 2.0]], [[1.0, 2.0]], "a must be 1-D"),
        ([1.0, np.inf], [1.0, 2.0], r"a has infinite values \(at positions \[1\]\)"),
        ([1.0, 2.0], ["x", "y"], "b must be a 1-D sequence of numbers"),
    ],
)
def test_agreement_bad_input(a, b, match):
    with pytest.raises(InputError, match=match):
        agreement(a, b)


# ---------------------------------------------------------------------------------------------
# cohen_kappa
# ---------------------------------------------------------------------------------------------


def _hits_from_table(n11, n10, n01, n00):
    a = [1] * n11 + [1] * n10 + [0] * n01 + [0] * n00
    b = [1] * n11 + [0] * n10 + [1] * n01 + [0] * n00
    return np.array(a), np.array(b)


def test_kappa_by_hand():
    # n11 = 20, n10 = 5, n01 = 10, n00 = 15 (n = 50): p_o = 35 / 50 = 0.7; a has 25 hits, b 30:
    # p_e = (25 * 30 + 25 * 20) / 2500 = 0.5, kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    a, b = _hits_from_table(20, 5, 10, 15)
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    # Symmetric table 4, 1, 1, 4: p_o = 0.8, p_e = 0.5 -> 0.6.
    a, b = _hits_from_table(4, 1, 1, 4)
    assert cohen_kappa(a.astype(bool), b.astype(float)) == pytest.approx(0.6)
    assert cohen_kappa(a, a) == 1.0


def test_kappa_matches_sklearn():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    a = rng.random(40) < 0.5
    b = np.where(rng.random(40) < 0.8, a, ~a)
    assert cohen_kappa(a, b) == pytest.approx(skm.cohen_kappa_score(a, b))


def test_kappa_opposite_constants_is_zero():
    # p_o = 0, p_e = 0 -> 0, defined.
    assert cohen_kappa([1, 1, 1], [0, 0, 0]) == 0.0


def test_kappa_undefined_when_both_constant_and_equal():
    with pytest.warns(DegenerateInputWarning, match="chance agreement is 1"):
        assert math.isnan(cohen_kappa([1, 1, 1], [1, 1, 1]))
    with pytest.warns(DegenerateInputWarning, match="no pair"):
        assert math.isnan(cohen_kappa([], []))


def test_kappa_drops_nan_with_a_count():
    a, b = _hits_from_table(4, 1, 1, 4)
    with pytest.warns(NaNDroppedWarning, match="dropped 2 pair"):
        k = cohen_kappa(np.append(a, [np.nan, 1]), np.append(b, [0, np.nan]))
    assert k == pytest.approx(0.6)


def test_kappa_rejects_non_binary():
    with pytest.raises(InputError, match=r"hits_b must hold binary hits .* \[0\.5\]"):
        cohen_kappa([1, 0, 1], [1, 0.5, 1])
    with pytest.raises(InputError, match="hits_a and hits_b"):
        cohen_kappa([1, 0, 1], [1, 0])


# ---------------------------------------------------------------------------------------------
# bootstrap_ci
# ---------------------------------------------------------------------------------------------


def test_bootstrap_contains_estimate_and_is_deterministic():
    rng = np.random.default_rng(2)
    values = rng.random(200)
    ci = bootstrap_ci(values)
    assert isinstance(ci, BootstrapCI)
    est, low, high = ci
    assert est == pytest.approx(values.mean())
    assert low < est < high
    assert bootstrap_ci(values) == ci
    assert bootstrap_ci(values, seed=1) != ci
    # Roughly the normal-theory interval of a mean of 200 uniforms.
    half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert high - low == pytest.approx(2 * half, rel=0.2)


def test_bootstrap_confidence_widens_interval():
    values = np.random.default_rng(3).random(50)
    _, lo90, hi90 = bootstrap_ci(values, confidence=0.9)
    _, lo99, hi99 = bootstrap_ci(values, confidence=0.99)
    assert lo99 < lo90 and hi90 < hi99


def test_bootstrap_statistic_without_axis_matches_vectorised():
    values = np.random.default_rng(4).random(30)
    fast = bootstrap_ci(values, statistic=np.mean, n_resamples=200)
    slow = bootstrap_ci(values, statistic=lambda v: float(np.mean(v)), n_resamples=200)
    assert fast == pytest.approx(slow)
    med = bootstrap_ci(values, statistic=np.median, n_resamples=200)
    assert med.low <= med.estimate <= med.high


def test_bootstrap_chunking_does_not_change_the_result(monkeypatch):
    values = np.random.default_rng(5).random(100)
    whole = bootstrap_ci(values, n_resamples=300)
    monkeypatch.setattr(agreement_module, "_CHUNK", 1000)  # 10 resamples per chunk
    assert bootstrap_ci(values, n_resamples=300) == whole


def test_bootstrap_drops_nan():
    values = np.array([0.2, np.nan, 0.4, 0.6, np.nan])
    with pytest.warns(NaNDroppedWarning, match="dropped 2 NaN"):
        est, low, high = bootstrap_ci(values)
    assert est == pytest.approx(0.4)
    assert 0.2 <= low <= est <= high <= 0.6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NaNDroppedWarning)
        with pytest.warns(DegenerateInputWarning, match="no defined value"):
            assert all(math.isnan(v) for v in bootstrap_ci([np.nan]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_resamples": 0}, "n_resamples must be a positive int"),
        ({"n_resamples": 10.5}, "n_resamples must be a positive int"),
        ({"confidence": 1.0}, r"confidence must lie in \(0, 1\)"),
        ({"confidence": 95}, r"confidence must lie in \(0, 1\)"),
        ({"confidence": "high"}, "confidence must be a number"),
        ({"statistic": "mean"}, "statistic must be callable"),
    ],
)
def test_bootstrap_bad_options(kwargs, match):
    with pytest.raises(InputError, match=match):
        bootstrap_ci([0.1, 0.2, 0.3], **kwargs)
