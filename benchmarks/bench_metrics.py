"""Benchmark: all localization metrics, at 1024 x 1024 and at CheXlocalize's image size.

1. One 1024 x 1024 pair: :func:`napari_samcam.metrics.localization_metrics` against a
   straightforward reference written below (every metric computed on its own, the obvious way:
   one binarization per overlap metric, one argsort per rank metric, an sklearn-style ROC /
   precision-recall curve), measured in the same run; both must agree within 1e-6.
2. CheXlocalize-size work: a 2320 x 2828 image, 10 Grad-CAM-like maps (16 x 16 noise upsampled
   bilinearly) x 4 regions (a lesion, its box annotation, a SAM-like mask of the lesion, and the
   strongest component of the Otsu-binarized map, as ``sam-saliency-box`` gives). The metrics'
   time is a ratio to one ``np.sort`` of a map's 6.6 M values, timed in the same interleaved
   rounds: one map and one region (target <= 1.5x), one map and 4 regions (target <= 2x), and
   all 10 maps x 4 regions against 10 sorts.

Usage::

    python benchmarks/bench_metrics.py [--repeats N] [--rounds N] [--json PATH]

:func:`run` returns the figures as a dict for a suite-level runner.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import ensure_importable
else:
    from ._common import ensure_importable

ensure_importable()

from napari_samcam.metrics import METRIC_NAMES, localization_metrics  # noqa: E402

SHAPE = (1024, 1024)
TARGET_MS = 50.0
CHEXLOCALIZE_SHAPE = (2320, 2828)
TARGET_ONE_REGION = 1.5
TARGET_FOUR_REGIONS = 2.0
TOLERANCE = 1e-6
TOP_K = 0.05


def make_pair(shape=SHAPE, seed=0):
    """Smooth random saliency (Gaussian-filtered noise) and a disk region off its centre."""
    rng = np.random.default_rng(seed)
    saliency = ndi.gaussian_filter(rng.standard_normal(shape), sigma=shape[0] / 40)
    yy, xx = np.indices(shape)
    cy, cx, radius = 0.45 * shape[0], 0.55 * shape[1], 0.2 * min(shape)
    region = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    return saliency, region


# ---------------------------------------------------------------------------------------------
# Reference: each metric on its own, the obvious way
# ---------------------------------------------------------------------------------------------


def _ref_binarize(s):
    norm = (s - s.min()) / (s.max() - s.min())
    u8 = (255 * norm).astype(np.uint8)
    return ndi.binary_fill_holes(u8 > threshold_otsu(u8))


def _ref_iou(s, r):
    b = _ref_binarize(s)
    return (b & r).sum() / (b | r).sum()


def _ref_dice(s, r):
    b = _ref_binarize(s)
    return 2 * (b & r).sum() / (b.sum() + r.sum())


def _ref_precision(s, r):
    b = _ref_binarize(s)
    return (b & r).sum() / b.sum()


def _ref_recall(s, r):
    b = _ref_binarize(s)
    return (b & r).sum() / r.sum()


def _ref_specificity(s, r):
    b = _ref_binarize(s)
    return (~b & ~r).sum() / (~r).sum()


def _ref_hit(s, r):
    return float(r.ravel()[np.argmax(s)])


def _ref_energy(s, r):
    pos = np.clip(s, 0, None)
    return (pos * r).sum() / pos.sum()


def _ref_top_share(s, r, k):
    order = np.argsort(-s.ravel())
    return r.ravel()[order[:k]].mean()


def _ref_rank_accuracy(s, r):
    return _ref_top_share(s, r, int(r.sum()))


def _ref_top_k(s, r):
    return _ref_top_share(s, r, int(np.ceil(TOP_K * s.size)))


def _ref_curve(s, r):
    """Cumulative (tp, fp) at each distinct score, descending, as sklearn builds its curves."""
    score, y = s.ravel(), r.ravel()
    order = np.argsort(score, kind="mergesort")[::-1]
    score, y = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(score)), y.size - 1]
    tps = np.cumsum(y)[last]
    fps = 1 + last - tps
    return tps, fps


def _ref_auroc(s, r):
    tps, fps = _ref_curve(s, r)
    tpr = np.r_[0, tps] / tps[-1]
    fpr = np.r_[0, fps] / fps[-1]
    return np.trapezoid(tpr, fpr)


def _ref_auprc(s, r):
    tps, fps = _ref_curve(s, r)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return np.sum(np.diff(np.r_[0, recall]) * precision)


REFERENCE = {
    "iou": _ref_iou,
    "dice": _ref_dice,
    "hit": _ref_hit,
    "energy": _ref_energy,
    "rank_accuracy": _ref_rank_accuracy,
    "top_k": _ref_top_k,
    "auroc": _ref_auroc,
    "auprc": _ref_auprc,
    "precision": _ref_precision,
    "recall": _ref_recall,
    "specificity": _ref_specificity,
}


def reference_metrics(saliency, region):
    return {name: float(REFERENCE[name](saliency, region)) for name in METRIC_NAMES}


# ---------------------------------------------------------------------------------------------


def _median_ms(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def run(repeats=11, shape=SHAPE, seed=0, rounds=5):
    """Time both implementations on one pair, then the CheXlocalize-size work."""
    result = run_pair(repeats, shape, seed)
    result["chexlocalize"] = run_chexlocalize(rounds)
    return result


def run_pair(repeats=11, shape=SHAPE, seed=0):
    """Time both implementations on one pair; return figures and the agreement check."""
    saliency, region = make_pair(shape, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the benchmark pair must not be degenerate
        fast = localization_metrics(saliency, region, k=TOP_K)
    ref = reference_metrics(saliency, region)
    diffs = {name: abs(fast[name] - ref[name]) for name in METRIC_NAMES}
    fast_ms = _median_ms(lambda: localization_metrics(saliency, region, k=TOP_K), repeats)
    ref_ms = _median_ms(lambda: reference_metrics(saliency, region), repeats)
    return {
        "shape": list(shape),
        "repeats": repeats,
        "localization_metrics_ms": fast_ms,
        "reference_ms": ref_ms,
        "speedup": ref_ms / fast_ms,
        "target_ms": TARGET_MS,
        "target_met": fast_ms < TARGET_MS,
        "max_abs_diff": max(diffs.values()),
        "agree": all(d <= TOLERANCE for d in diffs.values()),
        "values": fast,
        "abs_diff": diffs,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def chexlocalize_maps(n_maps=10, shape=CHEXLOCALIZE_SHAPE, seed=0):
    """``n_maps`` Grad-CAM-like float32 maps: 16 x 16 noise upsampled bilinearly to ``shape``."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    small = torch.from_numpy(rng.random((n_maps, 1, 16, 16), dtype=np.float32))
    big = F.interpolate(small, size=shape, mode="bilinear", align_corners=False)[:, 0]
    return [np.ascontiguousarray(m) for m in big.numpy()]


def chexlocalize_regions(saliency, seed=0):
    """A lesion, its box annotation, a SAM-like mask of it, and the map's strongest component."""
    from napari_samcam.metrics import binarize

    rng = np.random.default_rng(seed)
    h, w = saliency.shape
    yy, xx = np.ogrid[:h, :w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.25, 0.75) * w
    ry, rx = rng.uniform(0.05, 0.1) * h, rng.uniform(0.05, 0.1) * w
    lesion = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    rows, cols = np.flatnonzero(lesion.any(1)), np.flatnonzero(lesion.any(0))
    box = np.zeros_like(lesion)
    box[rows[0] - 20 : rows[-1] + 20, cols[0] - 20 : cols[-1] + 20] = True
    sam_like = ((yy - cy - 9) / (1.1 * ry)) ** 2 + ((xx - cx + 7) / (0.95 * rx)) ** 2 < 1
    labels, count = ndi.label(binarize(saliency))
    index = np.arange(1, count + 1)
    strongest = labels == index[np.argmax(ndi.sum_labels(saliency, labels, index))]
    return [lesion, box, sam_like, strongest]


def run_chexlocalize(rounds=5, n_maps=10, shape=CHEXLOCALIZE_SHAPE):
    """Metrics of 10 maps x 4 regions at CheXlocalize's size, as ratios to np.sort of a map."""
    from benchmarks._common import interleaved, summary

    maps = chexlocalize_maps(n_maps, shape)
    regions = [chexlocalize_regions(m, seed=i) for i, m in enumerate(maps)]
    first, first_regions = maps[0], regions[0]

    def all_maps():
        for m, r in zip(maps, regions, strict=True):
            localization_metrics(m, r)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no degenerate pair here
        all_maps()
        candidates = {
            "np.sort of one map": lambda: np.sort(first, axis=None),
            "1 map x 1 region": lambda: localization_metrics(first, first_regions[0]),
            "1 map x 4 regions": lambda: localization_metrics(first, first_regions),
        }
        times = interleaved(candidates, rounds)
        whole = interleaved(
            {"10 np.sorts": lambda: [np.sort(m, axis=None) for m in maps], "10 x 4": all_maps},
            max(1, rounds // 2),
        )
    figures = {name: summary(t) for name, t in {**times, **whole}.items()}
    sort_ms = figures["np.sort of one map"]["median_ms"]
    one = figures["1 map x 1 region"]["median_ms"] / sort_ms
    four = figures["1 map x 4 regions"]["median_ms"] / sort_ms
    return {
        "shape": list(shape),
        "rounds": rounds,
        "n_maps": n_maps,
        "region_fractions": [float(r.mean()) for r in first_regions],
        "distinct_values_first_map": int(np.unique(first).size),
        "figures": figures,
        "sort_ms": sort_ms,
        "one_region_ratio": one,
        "four_regions_ratio": four,
        "all_maps_ratio": figures["10 x 4"]["median_ms"] / figures["10 np.sorts"]["median_ms"],
        "target_one_region": TARGET_ONE_REGION,
        "target_four_regions": TARGET_FOUR_REGIONS,
        "target_met_one_region": one <= TARGET_ONE_REGION,
        "target_met_four_regions": four <= TARGET_FOUR_REGIONS,
    }


def _print(result):
    print(
        f"all metrics of one {result['shape'][0]}x{result['shape'][1]} pair, "
        f"median of {result['repeats']} runs"
    )
    print(f"{'implementation':<24}{'ms':>10}")
    print(f"{'localization_metrics':<24}{result['localization_metrics_ms']:>10.1f}")
    print(f"{'reference':<24}{result['reference_ms']:>10.1f}")
    print(f"speed-up: {result['speedup']:.1f}x")
    verdict = "met" if result["target_met"] else "MISSED"
    print(f"target {result['target_ms']:.0f} ms: {verdict}")
    print(f"{'metric':<16}{'value':>12}{'|diff|':>12}")
    for name in METRIC_NAMES:
        print(f"{name:<16}{result['values'][name]:>12.6f}{result['abs_diff'][name]:>12.1e}")
    status = "agree" if result["agree"] else "DISAGREE"
    print(
        f"reference and fast {status} (max |diff| {result['max_abs_diff']:.1e}, "
        f"tolerance {TOLERANCE:g})"
    )
    chex = result.get("chexlocalize")
    if chex:
        shape = "x".join(map(str, chex["shape"]))
        print(f"\nCheXlocalize size {shape}, median of {chex['rounds']} interleaved rounds")
        for name, fig in chex["figures"].items():
            print(f"{name:<24}{fig['median_ms']:>10.1f} ms")
        print(
            f"1 region {chex['one_region_ratio']:.2f}x np.sort (target <= {TARGET_ONE_REGION}x), "
            f"4 regions {chex['four_regions_ratio']:.2f}x (target <= {TARGET_FOUR_REGIONS}x), "
            f"10 maps x 4 regions {chex['all_maps_ratio']:.2f}x 10 sorts"
        )


def main(argv=None):
    from benchmarks._common import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="timed runs per implementation")
    parser.add_argument("--rounds", type=int, default=5, help="rounds at CheXlocalize size")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    result = run(repeats=args.repeats, rounds=args.rounds)
    report(result, _print, args.json)
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
