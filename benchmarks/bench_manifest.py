"""Benchmark: reading a manifest whose rows repeat one image, and how it scales.

A manifest of N identical rows (the hostile case: every row after the first is a repeat to
check) is read with :func:`napari_samcam.evaluation.manifests.load_manifest`; the baseline,
timed in the same interleaved rounds, is Python's ``csv.DictReader`` reading the same file into
a list (the least any CSV manifest reader does). Reported: seconds, the ratio to the baseline at
each N, and the per-row growth from the smallest to the largest N (1.0: linear time).

Usage::

    python benchmarks/bench_manifest.py [--rows 20000 200000] [--rounds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import ensure_importable, interleaved, report
else:
    from ._common import ensure_importable, interleaved, report

ensure_importable()


def _write(folder: Path, n: int) -> Path:
    import imageio.v3 as iio
    import numpy as np

    iio.imwrite(folder / "img.png", np.zeros((8, 8), np.uint8))
    path = folder / f"repeated-{n}.csv"
    path.write_text("image,label\n" + "img.png,1\n" * n)
    return path


def _plain_csv(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as handle:
        return len(list(csv.DictReader(handle)))


def run(rows=(20000, 200000), rounds: int = 3) -> dict:
    from napari_samcam.evaluation.manifests import load_manifest

    result: dict = {"rows": list(rows), "rounds": rounds, "cases": []}
    with tempfile.TemporaryDirectory() as folder:
        for n in rows:
            path = _write(Path(folder), n)

            def ours(path=path):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    assert len(load_manifest(path)) == 1

            times = interleaved(
                {"ours": ours, "csv": lambda path=path: _plain_csv(path)}, rounds, warmup=0
            )
            seconds, baseline = statistics.median(times["ours"]), statistics.median(times["csv"])
            result["cases"].append(
                {
                    "rows": n,
                    "seconds": seconds,
                    "csv_seconds": baseline,
                    "ratio": seconds / baseline,
                }
            )
    first, last = result["cases"][0], result["cases"][-1]
    result["per_row_growth"] = (last["seconds"] / last["rows"]) / (
        first["seconds"] / first["rows"]
    )
    return result


def _print(result: dict) -> None:
    for case in result["cases"]:
        print(
            f"{case['rows']:>8} repeated rows: load_manifest {case['seconds']:.2f} s, "
            f"csv.DictReader {case['csv_seconds']:.3f} s, ratio {case['ratio']:.1f}x"
        )
    print(f"per-row time, largest / smallest N: {result['per_row_growth']:.2f} (1.0 = linear)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    return report(run(tuple(args.rows), args.rounds), _print, args.json)


if __name__ == "__main__":
    sys.exit(main())
