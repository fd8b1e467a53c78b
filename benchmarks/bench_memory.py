"""Benchmark: peak resident memory of ``segment`` with many box prompts and of ``explain`` /
``segment`` on a very large image, each case in a fresh subprocess.

Cases (every one a new Python process, which reports its own ``ru_maxrss`` at the end and its
resident memory after imports and model loading, before any image):

boxes-N     LiteMedSAM ``Segmenter.segment`` of N boxes on one 256 x 256 image (the chest
            radiograph shrunk), from scratch (encoder run included). Target: 2000 boxes peak
            within 1.2x the peak of 10 boxes.
explain-S   ``read_image`` of an S x S uint8 TIFF, then ``explain`` with the built-in
            lesion-detector. Target: peak within 3x the image's size in float32 (S^2 x 4 bytes).
segment-S   ``read_image`` of the same TIFF, then LiteMedSAM ``segment`` with one box (half
            the image). Reported, with the same yardstick.

The TIFF is written once by a subprocess too (about S^2 bytes on disk, in a temporary folder).
The large cases are skipped, with a note, when the machine's available memory is below what
they are meant to stay within.

Usage::

    python benchmarks/bench_memory.py [--boxes 10,2000] [--size 30000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import ROOT, ensure_importable
else:
    from ._common import ROOT, ensure_importable

ensure_importable()

BOX_IMAGE = 256
BOX_RATIO_TARGET = 1.2
LARGE_FACTOR_TARGET = 3.0


def _rss_bytes() -> int:
    """Current resident set size of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _peak_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _available_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _random_boxes(n: int, size: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    corner = rng.integers(0, size - 40, (n, 2))
    extent = rng.integers(24, size // 2, (n, 2))
    return np.concatenate([corner, np.minimum(corner + extent, size)], 1)


# -- the cases, run in a child process ----------------------------------------------------------


def _case_boxes(n: int, device: str) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from benchmarks._common import chest_radiograph, pick_device
    from napari_samcam.images import to_unit_range
    from napari_samcam.segment import load_segmenter

    segmenter = load_segmenter("litemedsam", device=str(pick_device(device)))
    small = F.interpolate(
        torch.from_numpy(to_unit_range(chest_radiograph()))[None, None],
        size=(BOX_IMAGE, BOX_IMAGE),
        mode="bilinear",
        antialias=True,
    )[0, 0]
    image = (small.numpy() * 255).astype(np.uint8)
    boxes = _random_boxes(n, BOX_IMAGE)
    baseline, baseline_peak = _rss_bytes(), _peak_bytes()
    start = time.perf_counter()
    regions = segmenter.segment(image, boxes=boxes)
    seconds = time.perf_counter() - start
    masks = sum(r.mask.nbytes for r in regions)
    return {
        "baseline_rss": baseline,
        "baseline_peak": baseline_peak,
        "seconds": seconds,
        "regions": len(regions),
        "empty_masks": sum(r.area == 0 for r in regions),
        "masks_bytes": masks,
        "prompt_batch": segmenter.prompt_batch,
    }


def _case_large(kind: str, path: str, device: str) -> dict:
    import numpy as np

    from benchmarks._common import pick_device

    dev = str(pick_device(device))
    if kind == "explain":
        from napari_samcam.classifiers import load_classifier
        from napari_samcam.saliency import explain

        model = load_classifier("lesion-detector", device=dev)
    else:
        from napari_samcam.segment import load_segmenter

        model = load_segmenter("litemedsam", device=dev)
    from napari_samcam.images import read_image

    baseline, baseline_peak = _rss_bytes(), _peak_bytes()
    start = time.perf_counter()
    data = read_image(path)
    read_s = time.perf_counter() - start
    image = data.array
    after_read = _rss_bytes()
    if kind == "explain":
        result = explain(image, model)
        check = {"map_dtype": str(result.map.dtype), "map_max": float(result.map.max())}
    else:
        h, w = image.shape[:2]
        box = np.array([[h // 4, w // 4, 3 * h // 4, 3 * w // 4]])
        (region,) = model.segment(image, boxes=box)
        check = {"mask_fraction": region.area / image.size, "score": region.score}
    return {
        "baseline_rss": baseline,
        "baseline_peak": baseline_peak,
        "after_read_rss": after_read,
        "image_bytes": int(image.nbytes),
        "image_dtype": str(image.dtype),
        "image_shape": list(image.shape),
        "read_s": read_s,
        "seconds": time.perf_counter() - start,
        **check,
    }


def _write_tiff(path: str, size: int) -> dict:
    """A smooth uint8 test pattern with a bright disc, written without a float copy."""
    import numpy as np
    import tifffile

    axis = np.arange(size, dtype=np.float32)
    ramp = (np.sin(axis / size * 6.0) * 60 + 100).astype(np.uint8)
    image = np.empty((size, size), dtype=np.uint8)
    centre, radius = size * 0.6, size * 0.12
    for start in range(0, size, 1024):
        rows = axis[start : start + 1024, None]
        block = image[start : start + 1024]
        block[:] = ramp[None, :] // 2 + ramp[start : start + 1024, None] // 2
        disc = (rows - centre) ** 2 + (axis[None, :] - centre * 0.8) ** 2 < radius**2
        block[disc] = 230
    tifffile.imwrite(path, image)
    return {"bytes": Path(path).stat().st_size}


def _child(spec: dict) -> dict:
    case = spec["case"]
    if case == "boxes":
        info = _case_boxes(int(spec["n"]), spec["device"])
    elif case in ("explain", "segment"):
        info = _case_large(case, spec["path"], spec["device"])
    elif case == "tiff":
        info = _write_tiff(spec["path"], int(spec["size"]))
    else:
        raise ValueError(case)
    info["peak"] = _peak_bytes()
    return info


def _spawn(spec: dict) -> dict:
    """Run one case in a fresh interpreter; its dict, or ``{"error": ...}``."""
    command = [sys.executable, "-m", "benchmarks.bench_memory", "--child", json.dumps(spec)]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip()[-800:]
        return {"error": f"exit {proc.returncode}: {tail}", "wall_s": time.perf_counter() - start}
    info = json.loads(lines[-1][len("RESULT") :])
    info["wall_s"] = time.perf_counter() - start
    return info


# -- the parent ---------------------------------------------------------------------------------


def run(boxes: tuple[int, ...] = (10, 2000), size: int = 30000, device: str = "auto") -> dict:
    from benchmarks._common import load_average

    result: dict = {"load_average_start": load_average(), "box_image": BOX_IMAGE}
    result["boxes"] = {str(n): _spawn({"case": "boxes", "n": n, "device": device}) for n in boxes}
    few, many = (str(min(boxes)), str(max(boxes))) if boxes else ("", "")
    if len(boxes) > 1 and not any("error" in result["boxes"][k] for k in (few, many)):
        ratio = result["boxes"][many]["peak"] / result["boxes"][few]["peak"]
        result["box_ratio"] = ratio
        result["box_target_met"] = ratio <= BOX_RATIO_TARGET
    float32 = size * size * 4
    result["large"] = {"size": size, "float32_bytes": float32}
    needed = LARGE_FACTOR_TARGET * float32
    available = _available_bytes()
    if size and available is not None and available < needed:
        result["large"]["skipped"] = (
            f"{available / 1e9:.1f} GB available, below the {needed / 1e9:.1f} GB the "
            f"{size}^2 cases are meant to stay within"
        )
    elif size:
        with tempfile.TemporaryDirectory(prefix="samcam-bench-memory-") as tmp:
            path = str(Path(tmp) / f"large-{size}.tif")
            written = _spawn({"case": "tiff", "path": path, "size": size})
            result["large"]["tiff"] = written
            if "error" not in written:
                for kind in ("explain", "segment"):
                    info = _spawn({"case": kind, "path": path, "device": device})
                    if "error" not in info:
                        info["x_float32"] = info["peak"] / float32
                        info["target_met"] = info["peak"] <= needed
                    result["large"][kind] = info
    result["load_average_end"] = load_average()
    return result


def print_result(result: dict) -> None:
    gb = 1e9
    print(f"segment, LiteMedSAM, {result['box_image']}^2 image, N boxes (fresh process each):")
    for n, info in result["boxes"].items():
        if "error" in info:
            print(f"  {n:>5} boxes: error {info['error']}")
            continue
        print(
            f"  {n:>5} boxes: peak {info['peak'] / gb:.2f} GB (after imports + model "
            f"{info['baseline_rss'] / gb:.2f} GB; masks {info['masks_bytes'] / 1e6:.0f} MB; "
            f"{info['seconds']:.1f} s)"
        )
    if "box_ratio" in result:
        verdict = "met" if result["box_target_met"] else "MISSED"
        print(f"  ratio {result['box_ratio']:.3f} (target <= {BOX_RATIO_TARGET}) {verdict}")
    large = result["large"]
    if "skipped" in large:
        print(f"{large['size']}^2 cases skipped: {large['skipped']}")
        return
    for kind in ("explain", "segment"):
        info = large.get(kind)
        if info is None:
            continue
        if "error" in info:
            print(f"{kind} {large['size']}^2: error {info['error']}")
            continue
        verdict = "met" if info["target_met"] else "MISSED"
        print(
            f"{kind} on a {large['size']}^2 uint8 TIFF: peak {info['peak'] / gb:.2f} GB = "
            f"{info['x_float32']:.2f}x the image in float32 ({large['float32_bytes'] / gb:.2f} GB;"
            f" target <= {LARGE_FACTOR_TARGET:.0f}x {verdict}); after imports + model "
            f"{info['baseline_rss'] / gb:.2f} GB, after reading {info['after_read_rss'] / gb:.2f}"
            f" GB; {info['seconds']:.0f} s"
        )


def main(argv=None) -> int:
    from benchmarks._common import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", default="10,2000", help="box counts (comma-separated)")
    parser.add_argument("--size", type=int, default=30000, help="large image side; 0: skip")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT" + json.dumps(_child(json.loads(args.child))))
        return 0
    boxes = tuple(int(n) for n in args.boxes.split(",") if n.strip())
    result = run(boxes, args.size, args.device)
    return report(result, print_result, args.json)


if __name__ == "__main__":
    sys.exit(main())
