"""Benchmark: one SAM 2 box prompt on a cached 2048 x 2048 image, against SAM2ImagePredictor.

Same model (SAM 2.1 Hiera-T with seeded random weights built from the sam2 package's config: no
SAM 2 weights ship offline; the cost of a prompt does not depend on the weights' values), same
box; each side embeds the image once (``set_image`` / the segmenter's cache), then one prompt is
timed: ``Segmenter.segment`` (content key, decoder, mask upsampling to 2048 x 2048, the Region)
against ``SAM2ImagePredictor.predict(box=..., multimask_output=False)``, interleaved rounds.

Usage::

    python benchmarks/bench_sam2.py [--rounds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import ensure_importable
else:
    from ._common import ensure_importable

ensure_importable()

from benchmarks._common import interleaved, pick_device, report, summary  # noqa: E402

BOX = (420, 200, 1610, 1000)  # (row0, col0, row1, col1), as in bench_prompt


def run(rounds: int = 9, device: str = "auto") -> dict:
    try:
        from sam2.sam2_image_predictor import SAM2ImagePredictor
    except ImportError:
        return {"error": "the sam2 extra is not installed (README, 'SAM 2')"}
    import numpy as np
    import torch

    from benchmarks._common import radiograph_2k
    from napari_samcam.images import to_unit_range
    from napari_samcam.sam.sam2_backend import build_sam2_model
    from napari_samcam.sam_models import load_sam_model
    from napari_samcam.segment import Segmenter

    dev = pick_device(device)
    torch.manual_seed(0)
    model = build_sam2_model("sam2.1_hiera_tiny", device=dev)
    image = radiograph_2k()
    segmenter = Segmenter(load_sam_model(model, device=dev))
    ours = segmenter.segment(image, boxes=[BOX])[0]
    predictor = SAM2ImagePredictor(model)
    rgb8 = np.repeat((to_unit_range(image) * 255).astype(np.uint8)[..., None], 3, -1)
    predictor.set_image(rgb8)
    r0, c0, r1, c1 = BOX
    xyxy = np.array([c0, r0, c1 - 1, r1 - 1])
    masks, scores, _ = predictor.predict(box=xyxy, multimask_output=False)
    candidates = {
        "segment": lambda: segmenter.segment(image, boxes=[BOX]),
        "SAM2ImagePredictor.predict": lambda: predictor.predict(box=xyxy, multimask_output=False),
    }
    times = interleaved(candidates, rounds, device=dev)
    figures = {name: summary(t) for name, t in times.items()}
    ours_ms = figures["segment"]["median_ms"]
    upstream_ms = figures["SAM2ImagePredictor.predict"]["median_ms"]
    inter = np.logical_and(ours.mask, masks[0]).sum()
    union = np.logical_or(ours.mask, masks[0]).sum()
    return {
        "model": "sam2.1_hiera_tiny (random weights, seed 0)",
        "image_shape": list(image.shape),
        "box": list(BOX),
        "segment_ms": ours_ms,
        "predict_ms": upstream_ms,
        "ratio": ours_ms / upstream_ms,
        "figures": figures,
        "encoder_calls": segmenter.encoder_calls,
        "mask_iou_vs_upstream": float(inter / max(union, 1)),
        "score": ours.score,
        "upstream_score": float(scores[0]),
        "note": "upstream embeds its own uint8 RGB resize (set_image), so masks may differ",
        "rounds": rounds,
        "torch_threads": torch.get_num_threads(),
    }


def print_result(result: dict) -> None:
    if "error" in result:
        print(f"sam2: {result['error']}")
        return
    print(
        f"one SAM 2 prompt: segment {result['segment_ms']:.1f} ms, SAM2ImagePredictor.predict "
        f"{result['predict_ms']:.1f} ms = {result['ratio']:.3f}x"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    return report(run(args.rounds, args.device), print_result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
