"""Tests of napari_samcam.metrics: hand-worked values, degenerate inputs, bad inputs, and the
combined call against the single-metric functions."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from napari_samcam.errors import InputError
from napari_samcam.metrics import (
    METRIC_NAMES,
    DegenerateInputWarning,
    binarize,
    dice,
    energy_pointing_game,
    iou,
    localization_metrics,
    pixel_precision,
    pixel_recall,
    pixel_specificity,
    pointing_game,
    relevance_rank_accuracy,
    saliency_auprc,
    saliency_auroc,
    top_k_intersection,
    tune_thresholds,
)

# A 4x4 ramp s = 0..15 in C order and a region on its bottom-right 2x2 block {10, 11, 14, 15}:
#
#    0  1  2  3
#    4  5  6  7
#    8  9 [10 11]
#   12 13 [14 15]
RAMP = np.arange(16, dtype=float).reshape(4, 4)
CORNER = np.zeros((4, 4), dtype=bool)
CORNER[2:, 2:] = True


# ---------------------------------------------------------------------------------------------
# Hand-computed values
# ---------------------------------------------------------------------------------------------


def test_pointing_game_ramp():
    # The maximum 15 sits in the region.
    assert pointing_game(RAMP, CORNER) == 1.0
    assert pointing_game(RAMP, ~CORNER) == 0.0


def test_energy_ramp():
    # (10 + 11 + 14 + 15) / (0 + 1 + ... + 15) = 50 / 120
    assert energy_pointing_game(RAMP, CORNER) == pytest.approx(50 / 120)


def test_energy_clips_negative_values():
    # s+ = [0, 2, 3, 0]; region = top row -> 2 / 5
    s = np.array([[-1.0, 2.0], [3.0, 0.0]])
    r = np.array([[1, 1], [0, 0]])
    assert energy_pointing_game(s, r) == pytest.approx(0.4)


def test_rank_accuracy_ramp():
    # K = 4; the top four are 15, 14, 13, 12, of which 15 and 14 are in the region -> 2/4.
    assert relevance_rank_accuracy(RAMP, CORNER) == pytest.approx(0.5)


def test_rank_accuracy_shares_ties_evenly():
    # Region {(0,0), (1,0), (3,3)}, K = 3. Top: 3 (in), 2 (out), then one of the three pixels
    # tied at 1 -- (1,0) in, (1,1) and (2,2) out -- worth 1/3 on average: (1 + 1/3) / 3 = 4/9.
    s = np.zeros((4, 4))
    s[0, 0], s[0, 1] = 3, 2
    s[1, 0] = s[1, 1] = s[2, 2] = 1
    r = np.zeros((4, 4), dtype=bool)
    r[0, 0] = r[1, 0] = r[3, 3] = True
    assert relevance_rank_accuracy(s, r) == pytest.approx(4 / 9)


def test_top_k_ramp():
    assert top_k_intersection(RAMP, CORNER, k=2) == pytest.approx(1.0)  # 15, 14
    assert top_k_intersection(RAMP, CORNER, k=3) == pytest.approx(2 / 3)  # 15, 14, 13
    # A float is a fraction of the 16 pixels, rounded up: 0.2 * 16 = 3.2 -> 4 pixels.
    assert top_k_intersection(RAMP, CORNER, k=0.2) == pytest.approx(0.5)
    assert top_k_intersection(RAMP, CORNER, k=1.0) == pytest.approx(4 / 16)


def test_top_k_ties_match_enumeration_of_orders():
    # Average over every order of the pixels (a uniform tie-break) of the top-k share.
    s = np.array([[2.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    r = np.array([[0, 1, 0], [0, 0, 1]], dtype=bool)
    flat_s, flat_r = s.ravel(), r.ravel()
    for k in range(1, 7):
        shares = []
        for perm in itertools.permutations(range(6)):
            order = np.lexsort((np.array(perm), -flat_s))
            shares.append(flat_r[order[:k]].mean())
        assert top_k_intersection(s, r, k=k) == pytest.approx(np.mean(shares)), k


def test_auroc_ramp():
    # Region values 10, 11 beat 10 background values each, 14, 15 beat all 12: 44 / 48.
    assert saliency_auroc(RAMP, CORNER) == pytest.approx(44 / 48)


def test_auroc_counts_ties_as_half():
    # Region value 1 against background 1, 0, 1: 0.5 + 1 + 0.5 = 2 of 3 pairs.
    s = np.array([[1.0, 1.0], [0.0, 1.0]])
    r = np.array([[1, 0], [0, 0]], dtype=bool)
    assert saliency_auroc(s, r) == pytest.approx(2 / 3)
    # One threshold at 1: precision 1/3, recall 0 -> 1.
    assert saliency_auprc(s, r) == pytest.approx(1 / 3)


def test_auprc_ramp():
    # Descending: 15 P, 14 P, 13 N, 12 N, 11 P, 10 P -> precisions 1, 1, 3/5, 4/6 at the hits.
    assert saliency_auprc(RAMP, CORNER) == pytest.approx((1 + 1 + 3 / 5 + 4 / 6) / 4)


def test_fixed_threshold_overlap_ramp():
    # Normalised map v / 15 >= 0.55 <=> v >= 8.25: B = {9, ..., 15}, 7 pixels, TP = 4, FP = 3.
    opts = {"method": "fixed", "threshold": 0.55}
    assert binarize(RAMP, **opts).sum() == 7
    assert iou(RAMP, CORNER, **opts) == pytest.approx(4 / 7)
    assert dice(RAMP, CORNER, **opts) == pytest.approx(8 / 11)
    assert pixel_precision(RAMP, CORNER, **opts) == pytest.approx(4 / 7)
    assert pixel_recall(RAMP, CORNER, **opts) == pytest.approx(1.0)
    assert pixel_specificity(RAMP, CORNER, **opts) == pytest.approx(9 / 12)


def test_otsu_overlap_ramp():
    # 8-bit levels 17 v are uniform over 16 values, so Otsu splits them in the middle and keeps
    # v >= 8 (the bottom two rows): TP = 4, |B| = 8, FP = 4.
    mask = binarize(RAMP)
    np.testing.assert_array_equal(mask, RAMP >= 8)
    assert iou(RAMP, CORNER) == pytest.approx(0.5)
    assert dice(RAMP, CORNER) == pytest.approx(2 / 3)
    assert pixel_precision(RAMP, CORNER) == pytest.approx(0.5)
    assert pixel_specificity(RAMP, CORNER) == pytest.approx(8 / 12)


def test_percentile_ramp():
    # Top 25 % of 16 pixels = 4 pixels: 12..15; TP = 2, union = 6.
    np.testing.assert_array_equal(binarize(RAMP, method="percentile", percentile=25), RAMP >= 12)
    assert iou(RAMP, CORNER, method="percentile", percentile=25) == pytest.approx(2 / 6)


def test_percentile_keeps_ties():
    s = np.array([[3.0, 1.0], [1.0, 0.0]])
    # Two pixels asked, but the second value 1 is shared by two pixels: three kept.
    assert binarize(s, method="percentile", percentile=50).sum() == 3


def test_bool_mask_is_used_as_is():
    b = np.zeros((4, 4), dtype=bool)
    b[3, :] = True  # 12..15, TP = 2, union = 6
    assert iou(b, CORNER) == pytest.approx(2 / 6)
    assert dice(b, CORNER, method="fixed", threshold=0.9) == pytest.approx(4 / 8)


def test_region_as_zero_one_numbers():
    assert saliency_auroc(RAMP, CORNER.astype(np.uint8)) == saliency_auroc(RAMP, CORNER)
    assert saliency_auroc(RAMP, CORNER.astype(float)) == saliency_auroc(RAMP, CORNER)


def test_empty_region_with_prediction_gives_zero_overlap():
    empty = np.zeros((4, 4), dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert iou(RAMP, empty) == 0.0
        assert dice(RAMP, empty) == 0.0
        assert pixel_precision(RAMP, empty) == 0.0
        assert pixel_specificity(RAMP, empty) == pytest.approx(8 / 16)


# ---------------------------------------------------------------------------------------------
# Pointing game tolerance and ties
# ---------------------------------------------------------------------------------------------


def test_pointing_game_tolerance():
    s = np.zeros((5, 5))
    s[0, 0] = 1.0
    r = np.zeros((5, 5), dtype=bool)
    r[0, 3] = True  # 3 px to the right
    assert pointing_game(s, r) == 0.0
    assert pointing_game(s, r, tolerance=2.9) == 0.0
    assert pointing_game(s, r, tolerance=3) == 1.0
    r = np.zeros((5, 5), dtype=bool)
    r[2, 2] = True  # sqrt(8) = 2.83 px away
    assert pointing_game(s, r, tolerance=2.8) == 0.0
    assert pointing_game(s, r, tolerance=2.9) == 1.0


def test_pointing_game_tied_maxima_any_counts():
    s = np.zeros((4, 4))
    s[0, 0] = s[3, 3] = 5.0
    r = np.zeros((4, 4), dtype=bool)
    r[3, 3] = True
    assert pointing_game(s, r) == 1.0
    r[3, 3], r[1, 1] = False, True
    assert pointing_game(s, r) == 0.0
    assert pointing_game(s, r, tolerance=1.5) == 1.0


# ---------------------------------------------------------------------------------------------
# Otsu and hole filling against independent computations
# ---------------------------------------------------------------------------------------------


def _reference_otsu(s, fill=True):
    norm = (s - s.min()) / (s.max() - s.min())
    u8 = (255 * norm).astype(np.uint8)
    mask = u8 > threshold_otsu(u8)
    return ndi.binary_fill_holes(mask) if fill else mask


@pytest.mark.parametrize("seed", range(6))
def test_otsu_matches_skimage(seed):
    rng = np.random.default_rng(seed)
    s = ndi.gaussian_filter(rng.standard_normal((64, 80)), 3 + seed)
    np.testing.assert_array_equal(binarize(s), _reference_otsu(s))
    np.testing.assert_array_equal(binarize(s, fill_holes=False), _reference_otsu(s, fill=False))


def test_otsu_fills_the_hole_of_a_ring():
    yy, xx = np.mgrid[:41, :41]
    d = np.hypot(yy - 20, xx - 20)
    s = np.exp(-((d - 10) ** 2) / 8)  # bright ring of radius 10, dark centre
    filled = binarize(s)
    assert filled[20, 20]
    assert not binarize(s, fill_holes=False)[20, 20]
    np.testing.assert_array_equal(filled, _reference_otsu(s))
    np.testing.assert_array_equal(filled, d <= d[_reference_otsu(s, fill=False)].max())


@pytest.mark.parametrize("density", [0.3, 0.5, 0.7])
def test_fill_holes_matches_scipy(density):
    rng = np.random.default_rng(int(density * 10))
    for _ in range(5):
        s = rng.random((30, 37))
        s[0, 0], s[-1, -1] = 0.0, 1.0  # fix the range so norm == s
        mask = binarize(s, method="fixed", threshold=1 - density, fill_holes=True)
        np.testing.assert_array_equal(mask, ndi.binary_fill_holes(s >= 1 - density))


# ---------------------------------------------------------------------------------------------
# Rank metrics against brute force
# ---------------------------------------------------------------------------------------------


def _brute_auroc(s, r):
    p, n = s[r], s[~r]
    diff = p[:, None] - n[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def _brute_ap(s, r):
    total = r.sum()
    ap, recall_before = 0.0, 0.0
    for t in np.unique(s)[::-1]:
        picked = s >= t
        tp = (picked & r).sum()
        recall = tp / total
        ap += (recall - recall_before) * tp / picked.sum()
        recall_before = recall
    return ap


@pytest.mark.parametrize("seed", range(8))
def test_auroc_auprc_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 4 + seed, size=(7, 9)).astype(float)
    r = rng.random((7, 9)) < 0.35
    assert saliency_auroc(s, r) == pytest.approx(_brute_auroc(s, r), abs=1e-12)
    assert saliency_auprc(s, r) == pytest.approx(_brute_ap(s, r), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_auprc_matches_sklearn(seed):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    for s in (rng.random((20, 25)), rng.integers(0, 5, (20, 25)).astype(float)):
        r = rng.random((20, 25)) < 0.2
        ap = skm.average_precision_score(r.ravel(), s.ravel())
        auc = skm.roc_auc_score(r.ravel(), s.ravel())
        assert saliency_auprc(s, r) == pytest.approx(ap, abs=1e-12)
        assert saliency_auroc(s, r) == pytest.approx(auc, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# localization_metrics == the single functions
# ---------------------------------------------------------------------------------------------


def _single(s, r, method="otsu", threshold=None, percentile=None, fill_holes=None, tol=0, k=0.05):
    b = {
        "method": method,
        "threshold": threshold,
        "percentile": percentile,
        "fill_holes": fill_holes,
    }
    return {
        "iou": iou(s, r, **b),
        "dice": dice(s, r, **b),
        "hit": pointing_game(s, r, tolerance=tol),
        "energy": energy_pointing_game(s, r),
        "rank_accuracy": relevance_rank_accuracy(s, r),
        "top_k": top_k_intersection(s, r, k=k),
        "auroc": saliency_auroc(s, r),
        "auprc": saliency_auprc(s, r),
        "precision": pixel_precision(s, r, **b),
        "recall": pixel_recall(s, r, **b),
        "specificity": pixel_specificity(s, r, **b),
    }


CASES = [
    {},
    {"method": "fixed", "threshold": 0.4},
    {"method": "fixed", "threshold": 0.7, "fill_holes": True},
    {"method": "percentile", "percentile": 12.5, "k": 17},
    {"tol": 4.5, "k": 0.3},
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", ["smooth", "ties", "relu", "bool"])
def test_localization_metrics_equals_single_functions(case, kind):
    rng = np.random.default_rng(len(kind) * 7 + len(case))
    s = ndi.gaussian_filter(rng.standard_normal((48, 56)), 4)
    if kind == "ties":
        s = np.round(s * 20)
    elif kind == "relu":
        s = np.maximum(s, 0)
    elif kind == "bool":
        s = s > 0.1
    yy, xx = np.mgrid[:48, :56]
    r = (yy - 20) ** 2 + (xx - 30) ** 2 < 12**2
    opts = dict(case)
    tol, k = opts.pop("tol", 0), opts.pop("k", 0.05)
    combined = localization_metrics(s, r, tolerance=tol, k=k, **opts)
    assert tuple(combined) == METRIC_NAMES
    single = _single(s, r, tol=tol, k=k, **opts)
    for name in METRIC_NAMES:
        assert combined[name] == single[name] or (
            math.isnan(combined[name]) and math.isnan(single[name])
        ), name
        assert isinstance(combined[name], float)


def test_localization_metrics_float32_matches_float64_ranks():
    rng = np.random.default_rng(3)
    s = ndi.gaussian_filter(rng.standard_normal((40, 40)), 3).astype(np.float32)
    r = rng.random((40, 40)) < 0.3
    a = localization_metrics(s, r)
    assert a["auroc"] == pytest.approx(_brute_auroc(s, r), abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Degenerate inputs: NaN and a warning that says why
# ---------------------------------------------------------------------------------------------

EMPTY = np.zeros((4, 4), dtype=bool)
FULL = np.ones((4, 4), dtype=bool)
CONSTANT = np.full((4, 4), 0.0)


@pytest.mark.parametrize(
    "fn",
    [
        pointing_game,
        energy_pointing_game,
        relevance_rank_accuracy,
        top_k_intersection,
        saliency_auroc,
        saliency_auprc,
        pixel_recall,
    ],
)
def test_empty_region_is_nan(fn):
    with pytest.warns(DegenerateInputWarning, match="region is empty"):
        assert math.isnan(fn(RAMP, EMPTY))


@pytest.mark.parametrize("fn", [saliency_auroc, saliency_auprc, pixel_specificity])
def test_full_region_is_nan(fn):
    with pytest.warns(DegenerateInputWarning, match="covers the whole image"):
        assert math.isnan(fn(RAMP, FULL))


@pytest.mark.parametrize(
    "fn",
    [
        iou,
        dice,
        pointing_game,
        energy_pointing_game,
        relevance_rank_accuracy,
        top_k_intersection,
        saliency_auroc,
        saliency_auprc,
        pixel_precision,
        pixel_recall,
        pixel_specificity,
    ],
)
@pytest.mark.parametrize("value", [0.0, 0.7])
def test_constant_map_is_nan(fn, value):
    with pytest.warns(DegenerateInputWarning, match="constant"):
        assert math.isnan(fn(np.full((4, 4), value), CORNER))


def test_constant_map_binarizes_to_nothing():
    with pytest.warns(DegenerateInputWarning, match="constant"):
        mask = binarize(CONSTANT)
    assert mask.dtype == bool and not mask.any()


def test_energy_without_positive_mass_is_nan():
    with pytest.warns(DegenerateInputWarning, match="no positive value"):
        assert math.isnan(energy_pointing_game(-RAMP, CORNER))


def test_both_empty_overlap_is_nan():
    with pytest.warns(DegenerateInputWarning, match="both"):
        assert math.isnan(iou(EMPTY, EMPTY))
    with pytest.warns(DegenerateInputWarning, match="both"):
        assert math.isnan(dice(EMPTY, EMPTY))
    with pytest.warns(DegenerateInputWarning, match="binarized saliency map is empty"):
        assert math.isnan(pixel_precision(EMPTY, CORNER))


def test_localization_metrics_warns_once_per_reason():
    with pytest.warns(DegenerateInputWarning) as record:
        out = localization_metrics(CONSTANT, CORNER)
    assert len(record) == 1
    assert "constant" in str(record[0].message)
    assert all(math.isnan(v) for v in out.values())
    with pytest.warns(DegenerateInputWarning) as record:
        out = localization_metrics(RAMP, FULL)
    assert len(record) == 1
    assert "auroc, auprc, specificity" in str(record[0].message)
    assert out["rank_accuracy"] == 1.0 and out["hit"] == 1.0


def test_degenerate_warning_points_at_caller():
    with pytest.warns(DegenerateInputWarning) as record:
        saliency_auroc(RAMP, EMPTY)
    assert record[0].filename == __file__


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("saliency", "region", "match"),
    [
        (np.zeros((2, 4, 4)), CORNER, "saliency must be a 2-D map"),
        (np.zeros(16), CORNER, "saliency must be a 2-D map"),
        (np.zeros((0, 4)), np.zeros((0, 4), bool), "saliency is empty"),
        (np.where(CORNER, np.nan, 1.0), CORNER, "saliency has 4 non-finite"),
        (np.where(CORNER, np.inf, 1.0), CORNER, "saliency has 4 non-finite"),
        (np.full((4, 4), "a"), CORNER, "saliency must be a real-valued"),
        (RAMP, np.zeros((4, 5), bool), r"region has shape \(4, 5\)"),
        (RAMP, CORNER * 255, "region must be a binary mask"),
        (RAMP, np.where(CORNER, np.nan, 0), "region must be a binary mask"),
        (RAMP, np.full((4, 4), "x"), "region must be a boolean mask"),
    ],
)
def test_bad_arrays_raise(saliency, region, match):
    with pytest.raises(InputError, match=match):
        saliency_auroc(saliency, region)
    with pytest.raises(InputError, match=match):
        localization_metrics(saliency, region)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "mean"}, "method must be one of"),
        ({"method": "fixed"}, "threshold is required"),
        ({"method": "fixed", "threshold": 1.5}, r"threshold must lie in \[0, 1\]"),
        ({"method": "fixed", "threshold": "0.5"}, "threshold must be a real number"),
        ({"threshold": 0.5}, "threshold is only used with method='fixed'"),
        ({"method": "percentile"}, "percentile is required"),
        ({"method": "percentile", "percentile": 0}, r"percentile must lie in \(0, 100\]"),
        ({"percentile": 10}, "percentile is only used"),
        ({"fill_holes": "yes"}, "fill_holes must be"),
    ],
)
def test_bad_binarize_options_raise(kwargs, match):
    with pytest.raises(InputError, match=match):
        binarize(RAMP, **kwargs)
    with pytest.raises(InputError, match=match):
        iou(RAMP, CORNER, **kwargs)


@pytest.mark.parametrize(
    ("k", "match"),
    [
        (0, r"k=0 pixels is outside \[1, 16\]"),
        (17, r"k=17 pixels is outside"),
        (1.5, r"k as a float .* must lie in \(0, 1\]"),
        (0.0, r"k as a float"),
        (True, "k must be an int"),
        ("3", "k must be an int"),
    ],
)
def test_bad_k_raises(k, match):
    with pytest.raises(InputError, match=match):
        top_k_intersection(RAMP, CORNER, k=k)


@pytest.mark.parametrize("tol", [-1, math.nan, "1"])
def test_bad_tolerance_raises(tol):
    with pytest.raises(InputError, match="tolerance"):
        pointing_game(RAMP, CORNER, tolerance=tol)


def test_input_error_is_a_value_error():
    with pytest.raises(ValueError, match="region"):
        iou(RAMP, np.zeros((3, 3), bool))


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        iou(RAMP, CORNER, "fixed")  # type: ignore[misc]
    with pytest.raises(TypeError):
        top_k_intersection(RAMP, CORNER, 3)  # type: ignore[misc]


def test_integer_and_float32_maps():
    assert saliency_auroc(RAMP.astype(np.uint8), CORNER) == pytest.approx(44 / 48)
    assert saliency_auroc(RAMP.astype(np.float16), CORNER) == pytest.approx(44 / 48)
    assert energy_pointing_game(RAMP.astype(np.int16), CORNER) == pytest.approx(50 / 120)


# ---------------------------------------------------------------------------------------------
# tune_thresholds
# ---------------------------------------------------------------------------------------------


def _ramp_image(first_col):
    # 4x10 map whose normalised value is col / 9; the region is columns >= first_col.
    s = np.tile(np.arange(10, dtype=float), (4, 1))
    r = np.zeros((4, 10), dtype=bool)
    r[:, first_col:] = True
    return s, r


def test_tune_thresholds_finds_the_best_threshold_per_class():
    sa, ra = _ramp_image(6)  # t in (5/9, 6/9] selects exactly columns 6..9
    sb, rb = _ramp_image(3)  # t in (2/9, 3/9] selects exactly columns 3..9
    cands = [0.3, 0.5, 0.6, 0.7, 0.9]
    out = tune_thresholds([sa, sb, sa], [ra, rb, ra], ["a", "b", "a"], candidates=cands)
    assert out == {"a": 0.6, "b": 0.3}
    filled = tune_thresholds(
        [sa, sb, sa], [ra, rb, ra], ["a", "b", "a"], candidates=cands, fill_holes=True
    )
    assert filled == out


def test_tune_thresholds_matches_iou_brute_force():
    rng = np.random.default_rng(5)
    sal = [ndi.gaussian_filter(rng.standard_normal((24, 24)), 2) for _ in range(6)]
    reg = [s > rng.uniform(0, 0.3) for s in sal]
    cls = ["x", "y"] * 3
    cands = np.linspace(0, 1, 11)
    out = tune_thresholds(np.stack(sal), np.stack(reg), cls, candidates=cands)
    for c in ("x", "y"):
        means = [
            np.nanmean(
                [
                    iou(s, r, method="fixed", threshold=t)
                    for s, r, k in zip(sal, reg, cls, strict=True)
                    if k == c
                ]
            )
            for t in cands
        ]
        assert out[c] == cands[int(np.argmax(means))]


def test_tune_thresholds_tie_goes_to_the_smallest():
    s, r = _ramp_image(6)
    assert tune_thresholds([s], [r], [0], candidates=[0.6, 0.58]) == {0: 0.58}


def test_tune_thresholds_degenerate():
    s, r = _ramp_image(6)
    with pytest.warns(DegenerateInputWarning, match="constant"):
        out = tune_thresholds([s, np.zeros((4, 10))], [r, r], ["a", "a"])
    assert not math.isnan(out["a"])
    with pytest.warns(DegenerateInputWarning) as record:
        out = tune_thresholds([s, np.ones((4, 10))], [r, r], ["a", "b"], candidates=[0.6, 1.0])
    assert out["a"] == 0.6
    assert math.isnan(out["b"])
    assert any("no image of class 'b'" in str(w.message) for w in record)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([RAMP], [CORNER, CORNER], ["a"]), {}, "one entry per image"),
        (([], [], []), {}, "saliencies is empty"),
        (([RAMP], [CORNER], ["a"]), {"candidates": [0.5, 1.2]}, "candidates"),
        (([RAMP], [CORNER], [["a"]]), {}, r"classes\[0\] must be hashable"),
        (([RAMP, RAMP], [CORNER, CORNER[:2]], ["a", "a"]), {}, r"regions\[1\] has shape"),
        (([RAMP, RAMP[None]], [CORNER, CORNER], ["a", "a"]), {}, r"saliencies\[1\] must be"),
    ],
)
def test_tune_thresholds_bad_input(args, kwargs, match):
    with pytest.raises(InputError, match=match):
        tune_thresholds(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Several regions against one map: the map's work is done once
# ---------------------------------------------------------------------------------------------


def _map_and_regions(seed=0, shape=(40, 44)):
    rng = np.random.default_rng(seed)
    s = np.round(ndi.gaussian_filter(rng.standard_normal(shape), 3) * 30).astype(np.float32)
    yy, xx = np.indices(shape)
    regions = [
        (yy - 20) ** 2 + (xx - 30) ** 2 < 8**2,
        rng.random(shape) < 0.8,
        np.zeros(shape, dtype=bool),
        (xx > 10) & (yy < 25),
    ]
    return s, regions


def test_several_regions_in_one_call_equal_one_call_each():
    s, regions = _map_and_regions()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateInputWarning)
        alone = [localization_metrics(s, r, k=30) for r in regions]
        as_list = localization_metrics(s, regions, k=30)
        as_stack = localization_metrics(s, np.stack(regions), k=30)
    assert isinstance(as_list, list) and len(as_list) == len(regions)
    for a, b, c in zip(alone, as_list, as_stack, strict=True):
        assert list(a) == list(b) == list(c) == list(METRIC_NAMES)
        for name in METRIC_NAMES:
            assert a[name] == b[name] == c[name] or (math.isnan(a[name]) and math.isnan(c[name]))
    assert localization_metrics(s, []) == []
    assert as_list[0]["auroc"] == pytest.approx(_brute_auroc(s, regions[0]), abs=1e-12)
    assert as_list[3]["auprc"] == pytest.approx(_brute_ap(s, regions[3]), abs=1e-12)


def test_one_sort_and_one_binarization_per_map(monkeypatch):
    import napari_samcam.metrics as metrics
    from napari_samcam.metrics import _prepared
    from napari_samcam.metrics._sorted_map import SortedMap

    calls = {"sort": 0, "otsu": 0}
    real_sort, real_otsu = SortedMap.__init__, _prepared.otsu_level_of_histogram

    def sort(self, flat):
        calls["sort"] += 1
        real_sort(self, flat)

    def otsu(hist):
        calls["otsu"] += 1
        return real_otsu(hist)

    monkeypatch.setattr(SortedMap, "__init__", sort)
    monkeypatch.setattr(_prepared, "otsu_level_of_histogram", otsu)
    s, regions = _map_and_regions(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateInputWarning)
        localization_metrics(s, regions)
        assert calls == {"sort": 1, "otsu": 1}
        prepared = metrics.prepare_map(s)
        for r in regions:
            localization_metrics(prepared, r)
            saliency_auroc(prepared, r)
    assert calls == {"sort": 2, "otsu": 2}


def test_prepared_map_gives_the_same_values_as_the_array():
    from napari_samcam.metrics import PreparedMap, prepare_map

    s, regions = _map_and_regions(2)
    prepared = prepare_map(s)
    assert isinstance(prepared, PreparedMap) and prepare_map(prepared) is prepared
    for fn in (saliency_auroc, saliency_auprc, relevance_rank_accuracy, iou, pixel_recall):
        assert fn(prepared, regions[0]) == fn(s, regions[0])
    assert top_k_intersection(prepared, regions[3], k=17) == top_k_intersection(
        s, regions[3], k=17
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "options",
    [{}, {"method": "fixed", "threshold": 0.5}, {"method": "fixed", "threshold": 0.0}],
)
def test_binarizing_from_the_sorted_values_equals_binarize(seed, options):
    from napari_samcam.metrics import prepare_map

    rng = np.random.default_rng(seed)
    s = np.round(ndi.gaussian_filter(rng.standard_normal((50, 45)), 2) * (4 + 40 * seed))
    if seed % 2:
        s = s.astype(np.float32)
    prepared = prepare_map(s)
    prepared.order  # noqa: B018 - the sorted values are there, so binarizing uses them
    expected = binarize(s, **options)
    np.testing.assert_array_equal(prepared.binarize(**options), expected)
    # the shared mask gives saliency prompts the same boxes as binarizing again
    from napari_samcam.box_prompts import saliency_boxes

    np.testing.assert_array_equal(
        saliency_boxes(s, max_boxes=3, binary=prepared.binarize(**options), **options),
        saliency_boxes(s, max_boxes=3, **options),
    )


def test_degenerate_warning_names_the_region_of_several():
    s, regions = _map_and_regions()
    with pytest.warns(DegenerateInputWarning, match=r"region\[2\]: .*the region is empty"):
        localization_metrics(s, regions)


def test_bad_region_of_several_is_named():
    s, regions = _map_and_regions()
    with pytest.raises(InputError, match=r"region\[1\] has shape"):
        localization_metrics(s, [regions[0], regions[1][:5]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_path_equals_numpy_path(dtype):
    """The torch sort (CPU tensors here; CUDA tensors take the same code) gives equal values."""
    import torch
    import torch.nn.functional as F

    from napari_samcam.metrics import prepare_map
    from napari_samcam.metrics._sorted_map_torch import TorchSortedMap

    rng = np.random.default_rng(5)
    small = torch.from_numpy(rng.random((1, 1, 6, 5)))
    s = F.interpolate(small, size=(70, 66), mode="bilinear")[0, 0].to(getattr(torch, dtype))
    s[:10] = 0.25  # a large tie
    _, regions = _map_and_regions(3, (70, 66))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateInputWarning)
        expected = localization_metrics(s.numpy(), regions, k=0.2)
        from_tensor = prepare_map(s)
        on_device = prepare_map(s.numpy(), device="cpu")
        got = [localization_metrics(p, regions, k=0.2) for p in (from_tensor, on_device)]
    assert isinstance(from_tensor.order, TorchSortedMap)
    assert isinstance(on_device.order, TorchSortedMap)
    for values in got:
        for a, b in zip(expected, values, strict=True):
            for name in METRIC_NAMES:
                assert a[name] == b[name] or (math.isnan(a[name]) and math.isnan(b[name])), name


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
def test_parallel_sort_equals_np_sort(workers):
    from napari_samcam.metrics import _sorted_map

    rng = np.random.default_rng(workers)
    # ties, signed zeros, a constant stretch and a size that does not split evenly
    flat = np.concatenate(
        [
            rng.normal(size=700_001).astype(np.float32),
            np.zeros(1000, np.float32),
            -np.zeros(1000, np.float32),
            np.round(rng.random(400_000), 2).astype(np.float32),
        ]
    )
    assert flat.size >= _sorted_map.PARALLEL_SORT_MIN
    got = _sorted_map.sort_values(flat, workers)
    np.testing.assert_array_equal(got, np.sort(flat))
    assert got is not flat and not np.shares_memory(got, flat)


def test_metrics_of_a_large_map_do_not_depend_on_the_sort_workers(monkeypatch):
    from napari_samcam import _threads, metrics
    from napari_samcam.metrics import _sorted_map

    rng = np.random.default_rng(5)
    saliency = np.kron(rng.random((16, 16)), np.ones((80, 80))).astype(np.float32)  # ties
    saliency += rng.normal(scale=1e-3, size=saliency.shape).astype(np.float32)
    region = np.zeros(saliency.shape, bool)
    region[300:700, 200:900] = True
    assert saliency.size >= _sorted_map.PARALLEL_SORT_MIN
    monkeypatch.setattr(_sorted_map, "PARALLEL_SORT_MIN", saliency.size + 1)
    serial = metrics.localization_metrics(saliency, region)
    monkeypatch.setattr(_sorted_map, "PARALLEL_SORT_MIN", 1)
    monkeypatch.setattr(_threads, "idle_cpus", lambda: 3)  # three parts on any machine
    parallel = metrics.localization_metrics(saliency, region)
    assert serial == parallel


def test_parallel_sort_uses_the_cpus_the_load_leaves_idle(monkeypatch):
    from napari_samcam import _threads

    monkeypatch.setattr(_threads, "usable_cpus", lambda: 4)
    monkeypatch.setattr(_threads.os, "getloadavg", lambda: (1.2, 0.0, 0.0))  # the caller
    assert _threads.idle_cpus() == 4
    monkeypatch.setattr(_threads.os, "getloadavg", lambda: (3.6, 0.0, 0.0))
    assert _threads.idle_cpus() == 1
    monkeypatch.setattr(_threads.os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert _threads.idle_cpus() == 1


def test_auroc_of_a_large_region_does_not_overflow():
    # 120,000 region pixels of 160,000: the rank sum (~1.5e10) does not fit 32 bits.
    rng = np.random.default_rng(0)
    saliency = rng.random((400, 400)).astype(np.float32)
    saliency[:300] += 0.5
    region = np.zeros((400, 400), dtype=bool)
    region[:300] = True
    from scipy.stats import rankdata

    ranks = rankdata(saliency.ravel())  # mid-ranks of ties, independently of the metric
    n_pos, n_neg = int(region.sum()), int((~region).sum())
    expected = (ranks[region.ravel()].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    assert saliency_auroc(saliency, region) == pytest.approx(expected, rel=1e-9)
    assert 0.8 < expected < 0.95


def test_every_metric_definition_names_its_reference():
    """The definitions module's table gives each key of METRIC_NAMES a reference to check."""
    from napari_samcam.metrics import definitions

    table = definitions.__doc__.split("=====", 1)[1]
    for name in METRIC_NAMES:
        assert f"(``{name}``)" in table, name
    for script in (
        "eval.py:calculate_iou",
        "eval.py:get_hit_rates",
        "precision_recall_specificity",
    ):
        assert script in table


@pytest.mark.parametrize(
    ("fn", "formula"),
    [
        (iou, "|B ∩ R| / |B ∪ R|"),
        (dice, "2 |B ∩ R| / (|B| + |R|)"),
        (pixel_precision, "|B ∩ R| / |B|"),
        (pixel_recall, "|B ∩ R| / |R|"),
        (pixel_specificity, "|~B ∩ ~R| / |~R|"),
    ],
)
def test_overlap_metrics_from_one_table_read_like_written_functions(fn, formula):
    import inspect

    assert fn.__module__ == "napari_samcam.metrics.definitions"
    assert formula in fn.__doc__ and "Parameters" in fn.__doc__
    params = inspect.signature(fn).parameters
    assert list(params) == [
        "saliency",
        "region",
        "method",
        "threshold",
        "percentile",
        "fill_holes",
    ]
    assert all(params[p].kind is inspect.Parameter.KEYWORD_ONLY for p in list(params)[2:])
