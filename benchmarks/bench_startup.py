"""Benchmark: how fast ``samcam --help`` and every ``samcam COMMAND --help`` answer.

Each runs in a fresh interpreter (medians of interleaved rounds); the baseline, timed in the same
rounds, is a fresh interpreter that only imports ``napari_samcam`` (the least any command costs).
The target is an absolute 1 s.

Usage::

    python benchmarks/bench_startup.py [--rounds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

TARGET_S = 1.0

_HELP = (
    "import sys; from napari_samcam.cli import main; sys.argv[0] = 'samcam'; main(sys.argv[1:])"
)
_BASELINE = "import napari_samcam"


def _seconds(code: str, *argv: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, check=False, timeout=300
    )
    return time.perf_counter() - start


def run(rounds: int = 5) -> dict:
    from napari_samcam.cli import SUBCOMMANDS

    cases = {"samcam --help": ["--help"]}
    cases.update({f"samcam {name} --help": [name, "--help"] for name in SUBCOMMANDS})
    times: dict[str, list[float]] = {name: [] for name in cases}
    baseline: list[float] = []
    _seconds(_HELP, "--help")  # bytecode written once, outside the rounds
    for _ in range(rounds):
        baseline.append(_seconds(_BASELINE))
        for name, argv in cases.items():
            times[name].append(_seconds(_HELP, *argv))
    medians = {name: statistics.median(values) for name, values in times.items()}
    worst = max(medians.values())
    base = statistics.median(baseline)
    return {
        "rounds": rounds,
        "median_s": medians,
        "worst_s": worst,
        "worst_command": max(medians, key=medians.get),
        "baseline_s": base,
        "ratio": worst / base,
        "target_s": TARGET_S,
        "target_met": worst <= TARGET_S,
    }


def print_result(result: dict) -> None:
    for name, seconds in result["median_s"].items():
        print(f"{name:28s} {seconds * 1000:6.0f} ms")
    print(
        f"worst {result['worst_command']}: {result['worst_s']:.2f} s; import napari_samcam "
        f"{result['baseline_s']:.2f} s; target <= {TARGET_S:.0f} s: "
        f"{'yes' if result['target_met'] else 'NO'}"
    )


def main(argv=None) -> int:
    from benchmarks._common import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    return report(run(args.rounds), print_result, args.json)


if __name__ == "__main__":
    sys.exit(main())
