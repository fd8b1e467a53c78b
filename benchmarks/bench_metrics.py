"""Benchmark: all localization metrics of one 1024 x 1024 pair in one call.

Times :func:`napari_samcam.metrics.localization_metrics` against a straightforward reference
written below (every metric computed on its own, the obvious way: one binarization per overlap
metric, one argsort per rank metric, an sklearn-style ROC / precision-recall curve), measured in
the same run, and checks that both give the same values within 1e-6.

Usage::

    python benchmarks/bench_metrics.py [--repeats N] [--json PATH]

:func:`run` returns the figures as a dict for a suite-level runner.
"""

from __future__ import annotations

import argparse
import json
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

try:
    from napari_samcam.metrics import METRIC_NAMES, localization_metrics
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from napari_samcam.metrics import METRIC_NAMES, localization_metrics

SHAPE = (1024, 1024)
TARGET_MS = 50.0
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


def run(repeats=11, shape=SHAPE, seed=0):
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="timed runs per implementation")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    result = run(repeats=args.repeats)
    _print(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
