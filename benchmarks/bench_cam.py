"""Benchmark: Grad-CAM (``napari_samcam.saliency.explain``) against one forward + backward.

The classifier is the built-in ``lesion-detector`` (``load_classifier("lesion-detector")``) when
its weights are installed, else a torchvision resnet18 with random weights. The image is the
real chest radiograph (1955 x 1841); ``explain`` takes it whole (preprocessing, CAM, upsampling
to full size, normalisation). The baseline is one forward and one backward pass of the same
classifier on the same preprocessed input tensor (the target logit's gradient with respect to
every weight, as a training step or pytorch-grad-cam's own ``loss.backward()`` computes it).
Also timed: ``explain`` with the backward pass going through every layer (the gradient shortcut
off) and the preprocessing alone.

Usage::

    python benchmarks/bench_cam.py [--rounds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import ensure_importable
else:
    from ._common import ensure_importable

ensure_importable()

from benchmarks._common import interleaved, pick_device, summary  # noqa: E402

TARGET_RATIO = 1.5


def load_benchmark_classifier(device):
    """``lesion-detector`` when available, else a random-weight resnet18; and its label."""
    from napari_samcam.classifiers import load_classifier

    try:
        return load_classifier("lesion-detector", device=device), "lesion-detector"
    except Exception as exc:
        import torch
        import torchvision

        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=2)
        classifier = load_classifier(
            model, class_names=["normal", "lesion"], input_size=(224, 224), device=device
        )
        return classifier, f"resnet18 (random weights; lesion-detector: {exc})"


def run(rounds: int = 9, device: str = "auto") -> dict:
    import numpy as np
    import torch

    from benchmarks._common import chest_radiograph
    from napari_samcam import saliency
    from napari_samcam.classifiers import classifier_tensor

    dev = pick_device(device)
    classifier, label = load_benchmark_classifier(dev)
    image = chest_radiograph()
    target = 1
    tensor = classifier_tensor(image, classifier)
    model = classifier.model

    def forward_backward():
        with torch.enable_grad():
            out = model(tensor)
            out[0, target].backward()
        model.zero_grad(set_to_none=True)

    def explain_full_backward():
        # the gradient shortcut off: pytorch-grad-cam's backward through every layer
        original = saliency._target_gradient_only
        saliency._target_gradient_only = lambda cam: False
        try:
            return saliency.explain(image, classifier, target=target)
        finally:
            saliency._target_gradient_only = original

    fast = saliency.explain(image, classifier, target=target)
    slow = explain_full_backward()
    candidates = {
        "explain (Grad-CAM)": lambda: saliency.explain(image, classifier, target=target),
        "forward + backward": forward_backward,
        "explain, full backward": explain_full_backward,
        "preprocessing (classifier_tensor)": lambda: classifier_tensor(image, classifier),
    }
    times = interleaved(candidates, rounds, device=dev)
    figures = {name: summary(t) for name, t in times.items()}
    cam_ms = figures["explain (Grad-CAM)"]["median_ms"]
    base_ms = figures["forward + backward"]["median_ms"]
    return {
        "classifier": label,
        "image_shape": list(image.shape),
        "input_shape": list(tensor.shape),
        "explain_ms": cam_ms,
        "forward_backward_ms": base_ms,
        "ratio": cam_ms / base_ms,
        "target_ratio": TARGET_RATIO,
        "target_met": cam_ms / base_ms <= TARGET_RATIO,
        "figures": figures,
        "map_max_abs_diff_vs_full_backward": float(np.abs(fast.map - slow.map).max()),
        "raw_max_abs_diff_vs_full_backward": float(np.abs(fast.raw - slow.raw).max()),
        "rounds": rounds,
    }


def print_result(result: dict) -> None:
    print(f"Grad-CAM of {result['classifier']} on a {result['image_shape']} image")
    print(f"{'what':<36}{'median ms':>10}")
    for name, fig in result["figures"].items():
        print(f"{name:<36}{fig['median_ms']:>10.1f}")
    verdict = "met" if result["target_met"] else "MISSED"
    print(
        f"explain = {result['ratio']:.2f}x one forward + backward; target "
        f"{result['target_ratio']}x {verdict}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args.rounds, args.device)
    print_result(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
