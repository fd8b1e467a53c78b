#!/usr/bin/env python
"""Train the two built-in phantom classifiers and write their weights and metadata.

``lesion-detector``
    Trained on phantoms in pairs: every lesion image next to the very same image without the
    lesion (``PhantomCase.clean``), with a burned-in corner marker on a random half of the
    pairs, so the only cue separating the classes is the lesion. Besides the image label, an
    auxiliary loss asks the per-location evidence map to match the lesion mask (downsampled to
    the 32x32 grid): the model is taught to be right for the right reason.
``shortcut-detector``
    Trained on image labels only, where the marker sits on 97 % of the positives and 3 % of the
    negatives and the lesions are faint, so the marker is the easy cue.

Fresh phantoms are generated for every epoch (no image is seen twice). Held-out sets are
phantoms from other seeds at the benchmark's default size (512 px, resized to the network's
256x256 as the package does). The script reports AUROCs and where the Grad-CAM maximum falls
(inside the lesion mask, the annotation box, or the marker box) and writes, for each model,
``<out>/<name>.pt`` (a state dict) and ``<out>/<name>.json`` (metadata and metrics).

Usage::

    python scripts/train_phantom_classifiers.py --out src/napari_samcam/weights --seed 0

Runs on a CPU in minutes; torch's deterministic algorithms and a fixed thread count make a
rerun reproduce the metrics up to floating-point noise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_samcam.builtin_classifiers import (
    BUILTIN_CLASSIFIERS,
    CLASS_NAMES,
    DEFAULT_WIDTHS,
    FINDING_CLASS,
    PhantomCNN,
)
from napari_samcam.classifiers import Classifier, classifier_tensor
from napari_samcam.phantoms import generate_phantoms
from napari_samcam.saliency import explain

VERSION = "1.0.0"
INPUT_SIZE = 256
WIDTHS = DEFAULT_WIDTHS
SHARPNESS = 1.0
FAINT_CONTRAST = (0.03, 0.08)
TOLERANCE = 15  # pixels, pointing-game tolerance
# The lesion detector starts on conspicuous lesions (a curriculum: without it, the first few
# hundred steps find nothing to learn), then sees a range a little wider than the benchmark's
# default (0.12, 0.3) on both sides.
WARMUP_CONTRAST = (0.3, 0.5)
MAIN_CONTRAST = (0.1, 0.4)

# name -> how its training data are made
CONFIGS = {
    "lesion-detector": {
        "paired": True,
        "mask_loss": 1.0,
        "marker": "random",
        "lesion_contrast": MAIN_CONTRAST,
        "warmup_contrast": WARMUP_CONTRAST,
        "warmup_epochs": 2,
        "seed_offset": 0,
        "epochs": 14,
        "n_train": 4000,
        # the chest film, with its own rounded opacities, is the hard background
        "backgrounds": {"chest": 0.85, "extremity": 0.1, "head-ct": 0.05},
    },
    "shortcut-detector": {
        "paired": False,
        "mask_loss": 0.0,
        "marker": "correlated",
        "lesion_contrast": FAINT_CONTRAST,
        "warmup_contrast": None,
        "warmup_epochs": 0,
        "seed_offset": 500,
        "epochs": 4,
        "n_train": 3000,
        "backgrounds": None,
    },
}


def log(message: str) -> None:
    print(message, flush=True)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def settings(name: str, args) -> dict:
    """The model's training settings, with the command-line overrides applied."""
    config = dict(CONFIGS[name])
    if args.epochs is not None:
        config["epochs"] = args.epochs
    if args.n_train is not None:
        config["n_train"] = args.n_train
    config["warmup_epochs"] = min(config["warmup_epochs"], config["epochs"] - 1)
    return config


def training_images(config: dict, epoch: int, args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 images (N, S, S), labels (N,) and lesion masks (N, S, S) for one epoch."""
    seed = args.seed * 1000 + config["seed_offset"] + epoch
    contrast = config["lesion_contrast"]
    if epoch < config["warmup_epochs"]:
        contrast = config["warmup_contrast"]
    if config["paired"]:
        cases = generate_phantoms(
            config["n_train"] // 2,
            seed=seed,
            size=args.train_size,
            positive_fraction=1.0,
            marker=config["marker"],
            lesion_contrast=contrast,
            backgrounds=config["backgrounds"],
        )
        images = [c.image for c in cases] + [c.clean for c in cases]
        labels = [1] * len(cases) + [0] * len(cases)
        masks = [c.mask for c in cases] + [np.zeros_like(c.mask) for c in cases]
    else:
        cases = generate_phantoms(
            config["n_train"],
            seed=seed,
            size=args.train_size,
            positive_fraction=0.5,
            marker=config["marker"],
            lesion_contrast=contrast,
            backgrounds=config["backgrounds"],
        )
        images = [c.image for c in cases]
        labels = [c.label for c in cases]
        masks = [c.mask for c in cases]
    return np.stack(images), np.asarray(labels, dtype=np.int64), np.stack(masks)


def to_input(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 (N, H, W) -> normalised (N, 1, 256, 256), as ``classifier_tensor`` does it."""
    tensor = torch.from_numpy(images).float().div_(255.0)[:, None]
    if tuple(tensor.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        tensor = F.interpolate(
            tensor, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True
        )
    return (tensor - mean) / std


def train(name: str, config: dict, args) -> tuple[torch.nn.Module, float, float, list[dict]]:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = PhantomCNN(WIDTHS, sharpness=SHARPNESS)
    mask_weight = config["mask_loss"]
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
    )
    steps_per_epoch = -(-config["n_train"] // args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=config["epochs"] * steps_per_epoch, pct_start=0.1
    )
    mean = std = None
    history = []
    for epoch in range(config["epochs"]):
        t0 = time.perf_counter()
        images, labels, masks = training_images(config, epoch, args)
        t_gen = time.perf_counter() - t0
        if mean is None:
            unit = images.astype(np.float32) / 255.0
            mean, std = round(float(unit.mean()), 3), round(float(unit.std()), 3)
            del unit
        model.train()
        order = rng.permutation(len(labels))
        total_loss = total_mask_loss = correct = 0.0
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            x = to_input(images[idx], mean, std)
            # extra augmentation: flips and a small intensity jitter
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            x[flip] = x[flip].flip(-1)
            target = torch.from_numpy(masks[idx]).float()[:, None]
            target[flip] = target[flip].flip(-1)
            gain = torch.from_numpy(rng.uniform(0.9, 1.1, (len(idx), 1, 1, 1)).astype("f4"))
            shift = torch.from_numpy(rng.uniform(-0.1, 0.1, (len(idx), 1, 1, 1)).astype("f4"))
            x = x * gain + shift
            y = torch.from_numpy(labels[idx])
            optimizer.zero_grad(set_to_none=True)
            evidence = model.evidence(x)
            z = model.pool(evidence)
            logits = torch.stack([-0.5 * z, 0.5 * z], dim=1)
            loss = F.cross_entropy(logits, y)
            if mask_weight:
                # a grid cell is "lesion" when any of its pixels is
                grid = F.adaptive_max_pool2d(target, evidence.shape[-2:])
                mask_loss = F.binary_cross_entropy_with_logits(
                    evidence, grid, pos_weight=torch.tensor(5.0)
                )
                total_mask_loss += float(mask_loss.detach()) * len(idx)
                loss = loss + mask_weight * mask_loss
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += float((logits.argmax(1) == y).sum())
        entry = {
            "epoch": epoch + 1,
            "loss": round(total_loss / len(order), 4),
            "mask_loss": round(total_mask_loss / len(order), 4),
            "accuracy": round(correct / len(order), 4),
            "generate_s": round(t_gen, 1),
            "epoch_s": round(time.perf_counter() - t0, 1),
        }
        history.append(entry)
        log(f"  [{name}] {entry}")
    model.eval()
    return model, mean, std, history


@torch.no_grad()
def probabilities(model, images: np.ndarray, mean: float, std: float) -> np.ndarray:
    out = []
    for start in range(0, len(images), 64):
        logits = model(to_input(images[start : start + 64], mean, std))
        out.append(torch.softmax(logits, 1)[:, 1].numpy())
    return np.concatenate(out)


def make_test_sets(args) -> dict[str, list]:
    base = 900_000 + args.seed * 10
    n = args.n_test
    return {
        # benchmark phantoms: default contrast, no marker
        "plain": generate_phantoms(n, seed=base + 1),
        # the shortcut's own test distribution: faint lesions, correlated marker
        "correlated": generate_phantoms(
            n, seed=base + 2, marker="correlated", lesion_contrast=FAINT_CONTRAST
        ),
        # the bias reversed: marker on negatives only
        "reversed": generate_phantoms(
            n, seed=base + 3, marker=(0.0, 1.0), lesion_contrast=FAINT_CONTRAST
        ),
        # localization set: default-contrast lesions with a marker on every image
        "marked": generate_phantoms(args.n_loc, seed=base + 4, marker="always"),
    }


def _box_distance(r: int, c: int, box) -> float:
    r0, c0, r1, c1 = box
    dr = max(r0 - r, 0, r - (r1 - 1))
    dc = max(c0 - c, 0, c - (c1 - 1))
    return float(np.hypot(dr, dc))


def localization(classifier: Classifier, cases) -> dict:
    """Where the Grad-CAM for "lesion" points, over the positive cases.

    ``max_in_*``: the saliency maximum lies inside the region. ``max_near_*``: within
    ``TOLERANCE`` pixels of it (the pointing game's usual tolerance; one Grad-CAM cell of this
    architecture is 16 pixels of a 512-pixel image). ``energy_in_*``: mean share of the map's
    sum inside the box.
    """
    from scipy import ndimage as ndi

    counts: dict[str, float] = {}
    n = 0
    for case in cases:
        if not case.label:
            continue
        sal = explain(case.image, classifier, method="gradcam", target="lesion")
        heat = sal.map
        r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
        total = float(heat.sum()) or 1.0
        n += 1
        hits = {
            "max_in_lesion_mask": bool(case.mask[r, c]),
            "max_near_lesion_mask": ndi.distance_transform_edt(~case.mask)[r, c] <= TOLERANCE,
            "max_in_lesion_box": _box_distance(r, c, case.box) == 0,
            "max_near_lesion_box": _box_distance(r, c, case.box) <= TOLERANCE,
            "energy_in_lesion_box": float(heat[_slices(case.box)].sum()) / total,
        }
        if case.marker_box is not None:
            hits["max_in_marker_box"] = _box_distance(r, c, case.marker_box) == 0
            hits["max_near_marker_box"] = _box_distance(r, c, case.marker_box) <= TOLERANCE
            hits["energy_in_marker_box"] = float(heat[_slices(case.marker_box)].sum()) / total
        for key, value in hits.items():
            counts[key] = counts.get(key, 0.0) + float(value)
    keys = [
        "max_in_lesion_mask",
        "max_near_lesion_mask",
        "max_in_lesion_box",
        "max_near_lesion_box",
        "max_in_marker_box",
        "max_near_marker_box",
        "energy_in_lesion_box",
        "energy_in_marker_box",
    ]
    out: dict = {"n_positives": n, "tolerance_px": TOLERANCE}
    out.update({key: round(counts.get(key, 0.0) / max(n, 1), 3) for key in keys})
    return out


def _slices(box) -> tuple[slice, slice]:
    r0, c0, r1, c1 = box
    return slice(r0, r1), slice(c0, c1)


def evaluate(model, mean, std, test_sets) -> tuple[dict, dict]:
    classifier = Classifier(
        model=model,
        name="candidate",
        class_names=list(CLASS_NAMES),
        input_size=(INPUT_SIZE, INPUT_SIZE),
        channels=1,
        mean=(mean,),
        std=(std,),
        target_layer=model.stage5,
    )
    # the batched conversion must match the package's own
    probe = test_sets["plain"][0].image
    reference = classifier_tensor(probe, classifier)
    assert torch.allclose(to_input(probe[None], mean, std), reference, atol=1e-5)
    metrics = {}
    for key in ("plain", "correlated", "reversed"):
        cases = test_sets[key]
        images = np.stack([c.image for c in cases])
        labels = np.array([c.label for c in cases])
        p = probabilities(model, images, mean, std)
        metrics[key] = {
            "n": len(cases),
            "auroc": round(auroc(p, labels), 4),
            "accuracy": round(float(((p > 0.5) == labels).mean()), 4),
        }
    loc = {
        "plain": localization(classifier, test_sets["plain"]),
        "correlated": localization(classifier, test_sets["correlated"]),
        "marked": localization(classifier, test_sets["marked"]),
    }
    return metrics, loc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("src/napari_samcam/weights"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--n-train",
        type=int,
        default=None,
        help="training images per epoch (default: 4000 lesion-detector, 3000 shortcut-detector)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs, each on fresh phantoms (default: 14 lesion-detector, 4 shortcut-detector)",
    )
    parser.add_argument("--train-size", type=int, default=INPUT_SIZE)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--n-test", type=int, default=400, help="images per held-out set")
    parser.add_argument("--n-loc", type=int, default=200, help="images in the localization set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="no training: re-evaluate the weights in --out and update their JSON metrics",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    command = "python scripts/train_phantom_classifiers.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    log("generating held-out phantoms ...")
    test_sets = make_test_sets(args)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {}
    if args.evaluate_only:
        for name in args.models:
            meta_file = args.out / f"{name}.json"
            meta = json.loads(meta_file.read_text("utf-8"))
            arch = meta["architecture"]
            model = PhantomCNN(tuple(arch["widths"]), sharpness=arch["sharpness"])
            state = torch.load(args.out / f"{name}.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(state)
            model.eval()
            log(f"evaluating {name} ...")
            metrics, loc = evaluate(model, meta["mean"][0], meta["std"][0], test_sets)
            meta["held_out"]["metrics"] = metrics
            meta["held_out"]["gradcam_localization"] = loc
            meta_file.write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
            summary[name] = {"held_out": metrics, "localization": loc}
        log(json.dumps(summary, indent=1))
        return 0
    for name in args.models:
        log(f"training {name} ...")
        t0 = time.perf_counter()
        config = settings(name, args)
        model, mean, std, history = train(name, config, args)
        train_s = time.perf_counter() - t0
        log(f"  trained in {train_s:.0f} s; evaluating ...")
        metrics, loc = evaluate(model, mean, std, test_sets)
        log(json.dumps({"held_out": metrics, "gradcam_localization": loc}, indent=1))
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        weights = args.out / f"{name}.pt"
        tmp = weights.with_suffix(".pt.tmp")
        torch.save(state, tmp)
        tmp.replace(weights)
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        meta = {
            "name": name,
            "description": BUILTIN_CLASSIFIERS[name],
            "version": VERSION,
            "sha256": digest,
            "architecture": {
                "class": "napari_samcam.builtin_classifiers.PhantomCNN",
                "widths": list(WIDTHS),
                "sharpness": SHARPNESS,
                "head": "1x1 conv evidence map, log-sum-exp pooling, logits (-z/2, z/2)",
                "parameters": int(sum(p.numel() for p in model.parameters())),
                "target_layer": "stage5",
            },
            "input_size": [INPUT_SIZE, INPUT_SIZE],
            "channels": 1,
            "mean": [mean],
            "std": [std],
            "class_names": list(CLASS_NAMES),
            "finding_class": FINDING_CLASS,
            "training": {
                "command": command,
                "seed": args.seed,
                "epochs": config["epochs"],
                "images_per_epoch": config["n_train"],
                "image_size": args.train_size,
                "paired_clean_negatives": config["paired"],
                "backgrounds": config["backgrounds"]
                or "default (chest 0.7, extremity 0.2, head-ct 0.1)",
                "mask_loss_weight": config["mask_loss"],
                "marker": config["marker"],
                "lesion_contrast": config["lesion_contrast"],
                "warmup_epochs": config["warmup_epochs"],
                "warmup_contrast": config["warmup_contrast"],
                "batch_size": args.batch_size,
                "max_lr": args.lr,
                "threads": args.threads,
                "torch": torch.__version__,
                "seconds": round(train_s),
                "history": history,
            },
            "held_out": {
                "seeds": {
                    "plain": 900_000 + args.seed * 10 + 1,
                    "correlated": 900_000 + args.seed * 10 + 2,
                    "reversed": 900_000 + args.seed * 10 + 3,
                    "marked": 900_000 + args.seed * 10 + 4,
                },
                "image_size": 512,
                "sets": {
                    "plain": "no marker, default lesion contrast",
                    "correlated": "marker on 97% of positives / 3% of negatives, faint lesions",
                    "reversed": "marker on negatives only, faint lesions",
                    "marked": "marker on every image, default lesion contrast (positives used)",
                },
                "metrics": metrics,
                "gradcam_localization": loc,
            },
            "license": "BSD-3-Clause",
            "training_data": "synthetic phantoms on pydicom-data test images (MIT licence)",
            "intended_use": "demonstration of saliency localization scores; not for clinical use",
        }
        (args.out / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
        summary[name] = {"train_s": round(train_s), "held_out": metrics, "localization": loc}
        log(f"  wrote {weights} ({weights.stat().st_size / 1e6:.2f} MB)")
    log(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
