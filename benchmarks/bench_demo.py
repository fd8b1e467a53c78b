"""Benchmark: peak resident memory of ``samcam demo``, run as a subprocess.

The demo runs in a child of a small wrapper process, and the wrapper reads
``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` after it: the peak RSS of the demo alone,
whatever else this benchmark process has run.

Usage::

    python benchmarks/bench_demo.py [--n N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_GB = 2.0

_WRAPPER = r"""
import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - start
kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
tail = (proc.stderr or proc.stdout).strip()[-600:]
print("RESULT" + json.dumps({"rc": proc.returncode, "maxrss_kib": kib, "wall_s": wall,
                             "tail": tail}))
"""


def samcam_command() -> list[str]:
    """``samcam`` as ``python -m napari_samcam.cli`` when the entry point is not installed."""
    import shutil

    exe = shutil.which("samcam")
    if exe:
        return [exe]
    return [
        sys.executable,
        "-c",
        "import sys; from napari_samcam.cli import main; sys.exit(main())",
    ]


def run(n: int = 8, device: str = "auto", extra: list[str] | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="samcam-bench-demo-") as tmp:
        command = [*samcam_command(), "demo", "--out", str(Path(tmp) / "demo"), "--quiet"]
        command += ["--n", str(n)]
        if device != "auto":
            command += ["--device", device]
        command += list(extra or [])
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", _WRAPPER, *command], capture_output=True, text=True, check=False
        )
        elapsed = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    if not lines:
        return {"error": (proc.stderr or proc.stdout)[-800:], "wall_s": elapsed}
    info = json.loads(lines[-1][len("RESULT") :])
    peak_gb = info["maxrss_kib"] * 1024 / 1e9
    ok = info["rc"] == 0
    return {
        "command": " ".join(["samcam", *command[command.index("demo") :]]),
        "returncode": info["rc"],
        "completed": ok,
        "peak_rss_gb": peak_gb,
        "wall_s": info["wall_s"],
        "target_gb": TARGET_GB,
        "target_met": (peak_gb <= TARGET_GB) if ok else None,
        "output_tail": "" if ok else info["tail"],
    }


def print_result(result: dict) -> None:
    if "error" in result:
        print(f"samcam demo: could not run: {result['error']}")
        return
    state = "completed" if result["completed"] else f"FAILED (exit {result['returncode']})"
    print(
        f"samcam demo {state} in {result['wall_s']:.1f} s, peak RSS "
        f"{result['peak_rss_gb']:.2f} GB (target <= {result['target_gb']:.0f} GB)"
    )
    if not result["completed"]:
        print(f"  {result['output_tail'].splitlines()[-1] if result['output_tail'] else ''}")


def main(argv=None) -> int:
    from benchmarks._common import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="phantom images (samcam demo --n)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args.n, args.device)
    return report(result, print_result, args.json)


if __name__ == "__main__":
    sys.exit(main())
