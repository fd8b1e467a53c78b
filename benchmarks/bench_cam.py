"""Benchmark: Grad-CAM (``napari_samcam.saliency.explain``) against one forward + backward.

The classifier is the built-in ``lesion-detector`` (``load_classifier("lesion-detector")``) when
its weights are installed, else a torchvision resnet18 with random weights. The baseline is one
forward and one backward pass of the same classifier on the same input tensor (the target
logit's gradient with respect to every weight, as a training step or pytorch-grad-cam's own
``loss.backward()`` computes it), with torch's thread setting.

``explain`` is timed on two images: the real chest radiograph resized to the classifier's input
size (so the figure is the CAM itself), and the radiograph at full size, 1955 x 1841, where
``explain`` also converts and resizes 3.6 M pixels on the way in and upsamples and normalises
the map to 3.6 M pixels on the way out. Also timed: ``explain`` with the backward pass through
every layer (the gradient shortcut off), ``explain`` on the classifier's own model instead of
its channels-last copy, a forward + backward of that copy, the preprocessing
(``classifier_tensor``) and the map's upsampling + normalisation alone.

Usage::

    python benchmarks/bench_cam.py [--rounds N] [--json PATH]
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
    import torch.nn.functional as F

    from benchmarks._common import chest_radiograph
    from napari_samcam import saliency
    from napari_samcam.classifiers import classifier_tensor

    dev = pick_device(device)
    classifier, label = load_benchmark_classifier(dev)
    full = chest_radiograph()
    size = tuple(classifier.input_size or (224, 224))
    small = F.interpolate(torch.from_numpy(full)[None, None], size=size, mode="area")[0, 0]
    small = np.ascontiguousarray(small.numpy())
    target = 1
    tensor = classifier_tensor(small, classifier)
    model = classifier.model

    def forward_backward():
        with torch.enable_grad():
            out = model(tensor)
            out[0, target].backward()
        model.zero_grad(set_to_none=True)

    def explain_full_backward(image):
        # the gradient shortcut off: pytorch-grad-cam's backward through every layer
        original = saliency._target_gradient_only
        saliency._target_gradient_only = lambda cam: False
        try:
            return saliency.explain(image, classifier, target=target)
        finally:
            saliency._target_gradient_only = original

    def explain_own_model(image):
        # the channels-last copy off: the CAM runs on the classifier's model as given
        original = saliency._cam_model
        saliency._cam_model = lambda classifier, layer, reshape: (classifier.model, layer)
        try:
            return saliency.explain(image, classifier, target=target)
        finally:
            saliency._cam_model = original

    from napari_samcam._module_copies import channels_last_copy

    clone = channels_last_copy(model) or model
    tensor_cl = tensor.contiguous(memory_format=torch.channels_last)

    def forward_backward_channels_last():
        with torch.enable_grad():
            out = clone(tensor_cl)
            out[0, target].backward()
        clone.zero_grad(set_to_none=True)

    fast = saliency.explain(full, classifier, target=target)
    slow = explain_full_backward(full)
    raw = fast.raw
    candidates = {
        "explain, input-size image": lambda: saliency.explain(small, classifier, target=target),
        "forward + backward": forward_backward,
        "explain, full-size image": lambda: saliency.explain(full, classifier, target=target),
        "explain, full-size, full backward": lambda: explain_full_backward(full),
        "explain, input-size, own model layout": lambda: explain_own_model(small),
        "forward + backward, channels-last copy": forward_backward_channels_last,
        "full-size preprocessing": lambda: classifier_tensor(full, classifier),
        "full-size map upsampling + normalisation": lambda: saliency.upsampled_map(
            raw, full.shape
        ),
    }
    times = interleaved(candidates, rounds, device=dev)
    figures = {name: summary(t) for name, t in times.items()}
    base_ms = figures["forward + backward"]["median_ms"]
    cam_ms = figures["explain, input-size image"]["median_ms"]
    full_ms = figures["explain, full-size image"]["median_ms"]
    return {
        "classifier": label,
        "input_shape": list(tensor.shape),
        "image_shape": list(full.shape),
        "explain_ms": cam_ms,
        "explain_full_ms": full_ms,
        "forward_backward_ms": base_ms,
        "ratio": cam_ms / base_ms,
        "ratio_full": full_ms / base_ms,
        "target_ratio": TARGET_RATIO,
        "target_met": cam_ms / base_ms <= TARGET_RATIO,
        "target_met_full": full_ms / base_ms <= TARGET_RATIO,
        "figures": figures,
        "map_max_abs_diff_vs_full_backward": float(np.abs(fast.map - slow.map).max()),
        "raw_max_abs_diff_vs_full_backward": float(np.abs(fast.raw - slow.raw).max()),
        "rounds": rounds,
    }


def print_result(result: dict) -> None:
    print(f"Grad-CAM of {result['classifier']}, input {result['input_shape']}")
    print(f"{'what':<44}{'median ms':>10}")
    for name, fig in result["figures"].items():
        print(f"{name:<44}{fig['median_ms']:>10.1f}")
    for key, what in (("", "input-size image"), ("_full", "full-size image")):
        verdict = "met" if result["target_met" + key] else "MISSED"
        print(
            f"explain ({what}) = {result['ratio' + key]:.2f}x one forward + backward; "
            f"target {result['target_ratio']}x {verdict}"
        )


def main(argv=None) -> int:
    from benchmarks._common import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args.rounds, args.device)
    return report(result, print_result, args.json)


if __name__ == "__main__":
    sys.exit(main())
