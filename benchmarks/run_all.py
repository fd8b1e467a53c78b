"""The napari-samcam benchmark suite: every figure as a ratio to a baseline measured in the run.

Usage::

    python -m benchmarks [--quick] [--json results.json] [--only encoder,prompt,...]

(or ``python benchmarks/run_all.py`` with the same options). Runs on CUDA when available
(``--device cpu`` to force the CPU). Figures:

encoder   LiteMedSAM's image encoder vs its FLOP bound (FLOPs / measured fp32 matmul rate)
prompt    one box prompt on a cached 2048 x 2048 image vs upstream SamPredictor.predict
sam2      the same with SAM 2.1 Hiera-T (random weights) vs SAM2ImagePredictor.predict
cam       Grad-CAM (explain) vs one forward + backward of the same classifier and input
metrics   localization_metrics of one 1024 x 1024 pair vs a straightforward reference; at
          CheXlocalize's 2320 x 2828, 1 map x 1 and x 4 regions vs one np.sort of the map
evaluate  samcam evaluate on N phantoms vs its model compute (encoder + decode + CAM)
share     the metrics' share of samcam evaluate on 2320 x 2828 images with 10 tasks each
demo      peak RSS of samcam demo (a subprocess)
memory    peak RSS of segment with 10 vs 2000 boxes, and of explain / segment on a 30000^2
          uint8 image (fresh subprocesses; the large cases need about 6 GB free)
cli       samcam --help and every samcam COMMAND --help (fresh interpreters) vs importing
          napari_samcam alone
gui       the longest GUI-thread freeze per dock-widget action (fresh napari process, 20 ms
          heartbeat) vs the idle heartbeat gap

Prints a table (figure, measured, baseline, ratio, target, whether it holds) and writes every
detail as JSON. Timings are medians of interleaved rounds; on a shared machine, the load
average at the start and end is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import ensure_importable
else:
    from ._common import ensure_importable

ensure_importable()

from benchmarks._common import (  # noqa: E402
    load_average,
    machine,
    pick_device,
    retain_freed_memory,
)

SUITES = (
    "encoder",
    "prompt",
    "sam2",
    "cam",
    "metrics",
    "evaluate",
    "share",
    "demo",
    "memory",
    "cli",
    "gui",
)


def _settings(quick: bool) -> dict:
    if quick:
        return {
            "encoder": {"rounds": 3, "compile": False},
            "prompt": {"rounds": 7},
            "sam2": {"rounds": 5},
            "cam": {"rounds": 5},
            "metrics": {"repeats": 5, "rounds": 3},
            "evaluate": {"n": 3},
            "share": {"n": 1},
            "demo": {"n": 2},
            "memory": {"boxes": (10, 2000), "size": 30000},
            "cli": {"rounds": 3},
            "gui": {},
        }
    return {
        "encoder": {"rounds": 5, "compile": True},
        "prompt": {"rounds": 15},
        "sam2": {"rounds": 9},
        "cam": {"rounds": 9},
        "metrics": {"repeats": 11, "rounds": 7},
        "evaluate": {"n": 16},
        "share": {"n": 1},
        "demo": {"n": 8},
        "memory": {"boxes": (10, 2000), "size": 30000},
        "cli": {"rounds": 7},
        "gui": {},
    }


def run_suite(name: str, options: dict, device: str) -> dict:
    if name == "encoder":
        from benchmarks import bench_encoder

        return bench_encoder.run(options["rounds"], device, options["compile"])
    if name == "prompt":
        from benchmarks import bench_prompt

        return bench_prompt.run(options["rounds"], device)
    if name == "sam2":
        from benchmarks import bench_sam2

        return bench_sam2.run(options["rounds"], device)
    if name == "cam":
        from benchmarks import bench_cam

        return bench_cam.run(options["rounds"], device)
    if name == "metrics":
        from benchmarks.bench_metrics import run

        return run(repeats=options["repeats"], rounds=options["rounds"])
    if name == "evaluate":
        from benchmarks import bench_evaluate

        return bench_evaluate.run(options["n"], device)
    if name == "share":
        from benchmarks import bench_evaluate

        return bench_evaluate.run_share(options["n"], device)
    if name == "demo":
        from benchmarks import bench_demo

        return bench_demo.run(options["n"], device)
    if name == "memory":
        from benchmarks import bench_memory

        return bench_memory.run(options["boxes"], options["size"], device)
    if name == "cli":
        from benchmarks import bench_startup

        return bench_startup.run(options["rounds"])
    if name == "gui":
        from benchmarks import bench_gui

        return bench_gui.run()
    raise ValueError(name)


def _holds(value) -> str:
    return "n/a" if value is None else ("yes" if value else "NO")


def _row(figure, measured, baseline, ratio, target, holds) -> dict:
    return {
        "figure": figure,
        "measured": measured,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "holds": _holds(holds),
    }


def table_rows(results: dict) -> list[dict]:
    """One row per figure: what, measured, baseline, ratio, target, holds."""
    rows = []

    def add(*cells):
        rows.append(_row(*cells))

    for name, result in results.items():
        if name == "memory":
            rows += memory_rows(result)
            continue
        if "error" in result and name != "demo":
            add(name, "error", "", "", "", None)
            continue
        if name == "encoder":
            bound = f"FLOP bound {result['flop_bound_ms']:.0f} ms"
            add(
                "encoder, LiteMedSAM 256x256 (default)",
                f"{result['encoder_ms']:.0f} ms",
                f"{bound} ({result['gflop']:.1f} GFLOP @ {result['matmul_gflops']:.0f} GFLOP/s)",
                f"{result['ratio']:.2f}x",
                "<= 1.5x bound",
                result["target_met"],
            )
            one = result.get("one_thread")
            if one:
                add(
                    "encoder, 1 thread",
                    f"{one['encoder_ms']:.0f} ms",
                    f"1-thread bound {one['flop_bound_ms']:.0f} ms "
                    f"(@ {one['matmul_gflops']:.0f} GFLOP/s)",
                    f"{one['ratio']:.2f}x",
                    "(info)",
                    None,
                )
            for variant in ("set_image (upstream)", "plain"):
                fig = result["figures"][variant]
                add(
                    f"encoder, {variant}",
                    f"{fig['median_ms']:.0f} ms",
                    bound,
                    f"{fig['x_flop_bound']:.2f}x",
                    "(before)",
                    None,
                )
            for phase, info in result.get("compile", {}).items():
                best = info.get("unfused")
                if best:
                    add(
                        f"encoder, torch.compile ({phase} cache)",
                        f"{1e3 * best['run_s']:.0f} ms, first call {best['first_call_s']:.0f} s",
                        bound,
                        f"{best['x_flop_bound']:.2f}x",
                        "(opt-in)",
                        None,
                    )
        elif name == "prompt":
            figs = result["figures"]
            add(
                "one prompt, cached 2048x2048 image",
                f"{result['segment_ms']:.1f} ms",
                f"SamPredictor.predict {result['predict_ms']:.0f} ms",
                f"{result['ratio']:.3f}x ({result['speedup']:.1f}x faster)",
                f"<= {result['target_ratio']}x",
                result["target_met"],
            )
            row = result["back_to_back"]
            add(
                "one prompt, back to back",
                f"{row['segment_ms']:.1f} ms",
                f"SamPredictor.predict {row['predict_ms']:.0f} ms",
                f"{row['ratio']:.3f}x",
                "(info)",
                None,
            )
            add(
                "mask decoder alone, one box",
                f"{figs['decoder (predict_logits)']['median_ms']:.1f} ms",
                f"upstream MaskDecoder {figs['upstream MaskDecoder']['median_ms']:.0f} ms",
                f"{result['decoder_ratio']:.3f}x",
                "(info)",
                None,
            )
            one = figs["segment, one thread"]["median_ms"]
            add(
                "one prompt, prompt_threads=1",
                f"{one:.1f} ms",
                f"default {result['segment_ms']:.1f} ms",
                f"{one / result['segment_ms']:.2f}x",
                "(info)",
                None,
            )
            add(
                "image content key, 2048x2048 float32",
                f"{figs['embedding_key (memo hit)']['median_ms']:.1f} ms",
                f"image_hash {figs['image_hash (BLAKE2b)']['median_ms']:.1f} ms",
                f"{1 / result['hash_speedup']:.2f}x",
                "(info)",
                None,
            )
        elif name == "sam2":
            add(
                "one SAM 2 prompt, cached 2048x2048 image",
                f"{result['segment_ms']:.1f} ms",
                f"SAM2ImagePredictor.predict {result['predict_ms']:.0f} ms",
                f"{result['ratio']:.3f}x",
                "(info)",
                None,
            )
        elif name == "cam":
            clf = result["classifier"].split(" (")[0]
            size = "x".join(map(str, result["input_shape"][-2:]))
            add(
                f"Grad-CAM (explain), {clf}, {size} image",
                f"{result['explain_ms']:.1f} ms",
                f"forward + backward {result['forward_backward_ms']:.1f} ms",
                f"{result['ratio']:.2f}x",
                "<= 1.5x",
                result["target_met"],
            )
            full = result["figures"]
            add(
                f"Grad-CAM (explain), {clf}, full 1955x1841",
                f"{result['explain_full_ms']:.1f} ms",
                f"forward + backward {result['forward_backward_ms']:.1f} ms",
                f"{result['ratio_full']:.2f}x",
                "<= 1.5x",
                result["target_met_full"],
            )
            add(
                "  explain on the model as given (no channels-last copy)",
                f"{full['explain, input-size, own model layout']['median_ms']:.1f} ms",
                "forward + backward of the channels-last copy "
                f"{full['forward + backward, channels-last copy']['median_ms']:.1f} ms",
                "",
                "(info)",
                None,
            )
            add(
                "  of which full-size pre- / post-processing",
                f"{full['full-size preprocessing']['median_ms']:.1f} + "
                f"{full['full-size map upsampling + normalisation']['median_ms']:.1f} ms",
                "",
                "",
                "(info)",
                None,
            )
        elif name == "metrics":
            add(
                "localization_metrics, 1024x1024 pair",
                f"{result['localization_metrics_ms']:.1f} ms",
                f"reference {result['reference_ms']:.0f} ms",
                f"{1 / result['speedup']:.3f}x (agree: {result['agree']})",
                "(info)",
                None,
            )
            chex = result.get("chexlocalize")
            if chex:
                figs = chex["figures"]
                sort = f"np.sort of the map {chex['sort_ms']:.0f} ms"
                for label, key, ratio, target, met in (
                    (
                        "1 map x 1 region",
                        "1 map x 1 region",
                        "one_region_ratio",
                        "target_one_region",
                        "target_met_one_region",
                    ),
                    (
                        "1 map x 4 regions",
                        "1 map x 4 regions",
                        "four_regions_ratio",
                        "target_four_regions",
                        "target_met_four_regions",
                    ),
                ):
                    add(
                        f"metrics, 2320x2828, {label}",
                        f"{figs[key]['median_ms']:.0f} ms",
                        sort,
                        f"{chex[ratio]:.2f}x",
                        f"<= {chex[target]}x",
                        chex[met],
                    )
                add(
                    "metrics, 2320x2828, 10 maps x 4 regions",
                    f"{figs['10 x 4']['median_ms'] / 1e3:.1f} s",
                    f"10 np.sorts {figs['10 np.sorts']['median_ms'] / 1e3:.1f} s",
                    f"{chex['all_maps_ratio']:.2f}x",
                    "(info)",
                    None,
                )
        elif name == "evaluate":
            add(
                f"samcam evaluate, {result['n_images']} phantoms",
                f"{result['total_s']:.1f} s ({result['images_per_s']:.2f} img/s)",
                f"model compute {result['model_compute_s']:.1f} s",
                f"{result['ratio']:.2f}x",
                "<= 1.10x",
                result["target_met"],
            )
            add(
                "samcam evaluate, per-image jobs only",
                f"{result['jobs_s']:.1f} s",
                f"model compute {result['model_compute_s']:.1f} s",
                f"{result['jobs_ratio']:.2f}x",
                "(info)",
                None,
            )
            needed = result["images_for_target"]
            add(
                "  outside the jobs: tables, plots, report",
                f"{result['after_jobs_s']:.2f} s",
                "",
                "",
                "(info)" if needed is None else f"(info) <= 1.10x from {needed} images",
                None,
            )
            keep = result["keep_arrays"]
            add(
                "  keeping arrays + gallery: time, end to end",
                f"{result['total_s']:.1f} s",
                f"keep_arrays=False, no gallery {keep['without_s']:.1f} s",
                f"{keep['time_ratio']:.3f}x",
                f"<= {keep['target_time']:.2f}x",
                keep["time_ratio"] <= keep["target_time"],
            )
            add(
                "  keeping arrays + gallery: time inside the run",
                f"{keep['in_run_s']:.2f} s",
                f"the run {result['total_s']:.1f} s",
                f"{1 + keep['in_run_share']:.3f}x",
                f"<= {keep['target_time']:.2f}x",
                1 + keep["in_run_share"] <= keep["target_time"],
            )
            add(
                "  keeping arrays: disk",
                f"{keep['arrays_bytes']} B",
                f"rest of the folder {keep['other_bytes']} B",
                f"{keep['disk_ratio']:.3f}x",
                f"<= {keep['target_disk']:.2f}x",
                keep["disk_ratio"] <= keep["target_disk"],
            )
        elif name == "share":
            add(
                f"metrics' share of samcam evaluate, {result['n_images']} x 2320x2828, "
                f"{result['tasks']} tasks",
                f"{result['metrics_s']:.1f} s of {result['total_s']:.1f} s",
                f"{result['metric_calls']} maps x 4 regions",
                f"{100 * result['share']:.1f}%",
                f"<= {100 * result['target_share']:.0f}%",
                result["target_met"],
            )
        elif name == "cli":
            add(
                f"CLI start, slowest --help ({result['worst_command']})",
                f"{1e3 * result['worst_s']:.0f} ms",
                f"import napari_samcam {1e3 * result['baseline_s']:.0f} ms",
                f"{result['ratio']:.2f}x",
                f"<= {result['target_s']:.0f} s",
                result["target_met"],
            )
        elif name == "gui":
            for action, seconds in result["stalls_s"].items():
                add(
                    f"GUI freeze: {action}",
                    f"{1e3 * seconds:.0f} ms",
                    f"idle heartbeat gap {1e3 * result['idle_s']:.0f} ms",
                    f"{seconds / result['idle_s']:.1f}x",
                    f"<= {1e3 * result['limit_s']:.0f} ms",
                    seconds <= result["limit_s"],
                )
        elif name == "demo":
            if "error" in result:
                add("samcam demo peak RSS", "error", "", "", "<= 2 GB", None)
            else:
                state = "" if result["completed"] else " (demo failed)"
                add(
                    "samcam demo peak RSS",
                    f"{result['peak_rss_gb']:.2f} GB{state}",
                    "",
                    "",
                    "<= 2 GB",
                    result["target_met"],
                )
    return rows


def memory_rows(result: dict) -> list[dict]:
    """The memory suite's rows (see :mod:`benchmarks.bench_memory`)."""
    from benchmarks.bench_memory import BOX_RATIO_TARGET, LARGE_FACTOR_TARGET

    rows = []

    def add(*cells):
        rows.append(_row(*cells))

    boxes = result.get("boxes", {})
    if boxes:
        few, many = min(boxes, key=int), max(boxes, key=int)
        side = result["box_image"]
        if "box_ratio" in result:
            add(
                f"segment peak RSS, {many} boxes, {side}x{side}",
                f"{boxes[many]['peak'] / 1e9:.2f} GB",
                f"{few} boxes {boxes[few]['peak'] / 1e9:.2f} GB",
                f"{result['box_ratio']:.3f}x",
                f"<= {BOX_RATIO_TARGET}x",
                result["box_target_met"],
            )
        else:
            add(f"segment peak RSS, {many} boxes", "error", "", "", "", None)
    large = result.get("large", {})
    side = large.get("size")
    if "skipped" in large:
        add(f"explain / segment peak RSS, {side}^2", "skipped", large["skipped"], "", "", None)
    for kind in ("explain", "segment"):
        info = large.get(kind)
        if info is None:
            continue
        if "error" in info:
            add(f"{kind} peak RSS, {side}^2 uint8", "error", "", "", "", None)
            continue
        add(
            f"{kind} peak RSS, {side}^2 uint8 TIFF",
            f"{info['peak'] / 1e9:.2f} GB",
            f"image in float32 {large['float32_bytes'] / 1e9:.2f} GB "
            f"(process before reading {info['baseline_rss'] / 1e9:.2f} GB)",
            f"{info['x_float32']:.2f}x",
            f"<= {LARGE_FACTOR_TARGET:.0f}x" if kind == "explain" else "(info)",
            info["target_met"] if kind == "explain" else None,
        )
    return rows


def print_table(rows: list[dict]) -> None:
    headers = ("figure", "measured", "baseline", "ratio", "target", "holds")
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in headers]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(row[h]).ljust(w) for h, w in zip(headers, widths, strict=True)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, no torch.compile")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SUITES)}")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    parser.add_argument("--threads", type=int, help="torch intra-op threads for the run")
    args = parser.parse_args(argv)
    names = SUITES if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = set(names) - set(SUITES)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(SUITES)}")
    if args.threads:
        from napari_samcam._threads import configure_threads

        configure_threads(args.threads)
    device = pick_device(args.device)
    settings = _settings(args.quick)
    retain_freed_memory()
    info = machine(device)
    print(
        f"device {info['device']} ({info.get('gpu', info['cpu'])}), torch {info['torch']}, "
        f"{info['intra_op_threads']} threads, load average {info['load_average']}"
    )
    results: dict = {}
    durations: dict = {}
    for name in names:
        print(f"\n== {name} ==", flush=True)
        start = time.perf_counter()
        try:
            results[name] = run_suite(name, settings[name], str(device))
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        durations[name] = time.perf_counter() - start
        print(f"({durations[name]:.0f} s)", flush=True)
    rows = table_rows(results)
    print()
    print_table(rows)
    report = {
        "command": " ".join(
            ["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": info,
        "load_average_end": load_average(),
        "settings": {n: settings[n] for n in names},
        "seconds": durations,
        "table": rows,
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
