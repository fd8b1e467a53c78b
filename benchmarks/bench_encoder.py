"""Benchmark: the SAM image encoder (LiteMedSAM) against its FLOP bound, optimisation by one.

The bound is the encoder's FLOPs (``torch.utils.flop_counter.FlopCounterMode``) divided by the
machine's fp32 matrix-product rate (a 2048 x 2048 ``torch.mm``), both measured in this run; the
rate is re-measured in every round, interleaved with the encoder runs, so both see the same
machine load. Also timed, in the same rounds: upstream ``SamPredictor.set_image`` (the starting
point), the plain encoder module, each optimisation of ``napari_samcam.sam._fast.accel``
alone, all of them (the default), and all of them on one thread. ``torch.compile`` is measured
in fresh subprocesses with an empty and then a warm inductor cache (cold / warm compile time
and the compiled encoder's run time).

Usage::

    python benchmarks/bench_encoder.py [--rounds N] [--no-compile] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import ensure_importable
else:
    from ._common import ensure_importable

ensure_importable()

from benchmarks._common import (  # noqa: E402
    interleaved,
    matmul_gflops,
    median,
    pick_device,
    summary,
    timed,
)

TARGET_RATIO = 1.5


def encoder_flops(encoder, tensor) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        encoder(tensor)
    return int(counter.get_total_flops())


def _input(segmenter, image):
    tensor, _ = segmenter._prepare(image, None)
    return segmenter.backend.encoder_input(tensor)


def _variants(encoder):
    """name -> module: the plain encoder, each optimisation alone, all of them."""
    from napari_samcam.sam._fast import accel as _accel

    off = dict.fromkeys(_accel.OPTIMISATIONS, False)
    out = {"plain": encoder}
    for name in _accel.OPTIMISATIONS:
        # folding is what makes fused convolutions possible: "fused" includes it
        flags = dict(off, **{name: True}, **({"fold_bn": True} if name == "fused" else {}))
        out[name] = _accel.accelerate_encoder(encoder, **flags)
    out["all"] = _accel.accelerate_encoder(encoder)
    return out


def _compile_child(cache_dir: str, device: str, threads: int) -> dict:
    """Runs in a subprocess: compile the accelerated encoder, time compile and steady state."""
    import time

    import torch

    torch.set_num_threads(int(threads))
    from napari_samcam.sam._fast import accel as _accel
    from napari_samcam.sam_models import load_sam_model

    dev = torch.device(device)
    sam = load_sam_model("litemedsam", device=dev).sam
    x = torch.rand(1, 3, 256, 256, device=dev)
    result = {}
    # inductor generates its own fused kernels; it cannot trace the oneDNN ops of fused=True
    for label, fused in (("unfused", False),):
        eager = _accel.accelerate_encoder(sam.image_encoder, fused=fused)
        compiled = _accel.compile_module(eager)
        with torch.inference_mode():
            start = time.perf_counter()
            compiled(x)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            first = time.perf_counter() - start
            times = [timed(lambda c=compiled: c(x), dev) for _ in range(3)]
            ref = eager(x)
            diff = float((compiled(x) - ref).abs().max())
        result[label] = {"first_call_s": first, "run_s": median(times), "max_abs_diff": diff}
    result["cache_dir_used"] = cache_dir
    return result


def measure_compile(device) -> dict:
    """Cold then warm compile, each in a fresh interpreter sharing one new inductor cache."""
    import torch

    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="samcam-inductor-") as cache:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
        code = (
            "import json, sys; sys.path[:0] = sys.argv[1:3]; "
            "from benchmarks.bench_encoder import _compile_child; "
            "print('RESULT' + json.dumps(_compile_child(*sys.argv[3:6])))"
        )
        root = Path(__file__).resolve().parents[1]
        for phase in ("cold", "warm"):
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    code,
                    str(root),
                    str(root / "src"),
                    cache,
                    str(device),
                    str(torch.get_num_threads()),
                ],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
            if proc.returncode != 0 or not lines:
                out[phase] = {"error": (proc.stderr or proc.stdout).strip()[-800:]}
                break
            out[phase] = json.loads(lines[-1][len("RESULT") :])
    return out


def run(rounds: int = 5, device: str = "auto", compile: bool = True) -> dict:
    import numpy as np
    import torch
    from segment_anything import SamPredictor

    from benchmarks._common import chest_radiograph
    from napari_samcam.images import to_unit_range
    from napari_samcam.sam_models import load_sam_model
    from napari_samcam.segment import Segmenter

    dev = pick_device(device)
    model = load_sam_model("litemedsam", device=dev)
    encoder = model.sam.image_encoder
    segmenter = Segmenter(model, accelerate=False)
    image = chest_radiograph()
    x = _input(segmenter, image)
    flops = encoder_flops(encoder, x)
    start_rate = matmul_gflops(dev)

    modules = _variants(encoder)
    predictor = SamPredictor(model.sam)
    rgb8 = np.repeat((to_unit_range(image) * 255).astype(np.uint8)[..., None], 3, -1)

    def run_module(module):
        def call():
            with torch.inference_mode():
                module(x)

        return call

    rates: list[float] = []
    candidates = {"matmul": lambda: rates.append(matmul_gflops(dev))}
    candidates["set_image (upstream)"] = lambda: predictor.set_image(rgb8)
    candidates.update({name: run_module(m) for name, m in modules.items()})
    with torch.inference_mode():
        reference = encoder(x)
        diffs = {
            name: float((m(x) - reference).abs().max())
            for name, m in modules.items()
            if name != "plain"
        }
    times = interleaved(candidates, rounds, device=dev)
    times.pop("matmul")
    one_thread: dict = {}
    rates_1: list[float] = []
    if dev.type == "cpu":
        from napari_samcam._threads import torch_threads

        with torch_threads(1):
            one_thread = interleaved(
                {
                    "all, 1 thread": run_module(modules["all"]),
                    "matmul, 1 thread": lambda: rates_1.append(matmul_gflops(dev)),
                },
                max(2, rounds // 2),
                device=dev,
            )
        one_thread.pop("matmul, 1 thread")
    rate = median(rates)
    bound_s = flops / (rate * 1e9)
    figures = {name: summary(t) for name, t in {**times, **one_thread}.items()}
    for fig in figures.values():
        fig["x_flop_bound"] = fig["median_ms"] / 1e3 / bound_s
    best = figures["all"]["median_ms"]
    for fig in figures.values():
        fig["x_default"] = fig["median_ms"] / best
    result = {
        "flops": flops,
        "gflop": flops / 1e9,
        "matmul_gflops_start": start_rate,
        "matmul_gflops": rate,
        "matmul_gflops_rounds": rates,
        "flop_bound_ms": 1e3 * bound_s,
        "encoder_ms": best,
        "ratio": best / 1e3 / bound_s,
        "target_ratio": TARGET_RATIO,
        "target_met": best / 1e3 / bound_s <= TARGET_RATIO,
        "figures": figures,
        "max_abs_diff_vs_plain": diffs,
        "feature_scale": float(reference.abs().max()),
        "rounds": rounds,
    }
    if one_thread:
        rate_1 = median(rates_1)
        bound_1 = flops / (rate_1 * 1e9)
        result["one_thread"] = {
            "matmul_gflops": rate_1,
            "flop_bound_ms": 1e3 * bound_1,
            "encoder_ms": figures["all, 1 thread"]["median_ms"],
            "ratio": figures["all, 1 thread"]["median_ms"] / 1e3 / bound_1,
        }
    if compile:
        result["compile"] = measure_compile(dev)
        for phase in ("cold", "warm"):
            info = result["compile"].get(phase, {})
            for label in ("unfused", "fused"):
                if label in info:
                    info[label]["x_flop_bound"] = info[label]["run_s"] / bound_s
    return result


def print_result(result: dict) -> None:
    print(
        f"encoder: {result['gflop']:.1f} GFLOP, matmul {result['matmul_gflops']:.0f} GFLOP/s "
        f"-> bound {result['flop_bound_ms']:.0f} ms"
    )
    print(f"{'variant':<24}{'median ms':>10}{'x bound':>9}{'x default':>10}")
    for name, fig in result["figures"].items():
        print(
            f"{name:<24}{fig['median_ms']:>10.0f}{fig['x_flop_bound']:>9.2f}"
            f"{fig['x_default']:>10.2f}"
        )
    for phase, info in result.get("compile", {}).items():
        if "error" in info:
            print(f"torch.compile {phase}: failed: {info['error'][-200:]}")
            continue
        for label in ("unfused", "fused"):
            if label in info:
                d = info[label]
                print(
                    f"torch.compile {phase} ({label}): first call {d['first_call_s']:.1f} s, "
                    f"then {1e3 * d['run_s']:.0f} ms ({d['x_flop_bound']:.2f}x bound)"
                )
    verdict = "met" if result["target_met"] else "MISSED"
    print(
        f"default encoder {result['ratio']:.2f}x its FLOP bound: target {TARGET_RATIO}x {verdict}"
    )


def main(argv=None) -> int:
    from benchmarks._common import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args.rounds, args.device, not args.no_compile)
    return report(result, print_result, args.json)


if __name__ == "__main__":
    sys.exit(main())
