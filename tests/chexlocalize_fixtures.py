"""CheXlocalize-format fixtures built by the tests: maps pickled as CheXlocalize pickles them
(``pickle.dump`` of a dict holding a torch tensor), a ground-truth JSON and PNG images."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from napari_samcam.evaluation import encode_rle

SHAPE = (16, 16)  # (height, width) of every image
TRUTH_ID = "patient1_study1_view1_frontal"


def block(r0: int, r1: int, c0: int, c1: int, shape=SHAPE) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def write_map(folder: Path, img_id: str, task: str, array: np.ndarray, prob=0.5) -> Path:
    """A ``<img_id>_<task>_map.pkl`` as CheXlocalize writes it: ``map`` (1, 1, h, w)."""
    height, width = SHAPE
    info = {
        "map": torch.from_numpy(np.asarray(array, dtype=np.float32))[None, None],
        "prob": prob,
        "task": task,
        "gt": 1,
        "cxr_dims": (width, height),
    }
    path = folder / f"{img_id}_{task}_map.pkl"
    with open(path, "wb") as handle:
        pickle.dump(info, handle)
    return path


def write_dataset(root: Path, truths: dict, maps: dict) -> tuple[Path, Path, Path]:
    """``truths``: {img_id: {task: mask}}, ``maps``: {(img_id, task): array}.

    Returns the ground-truth JSON, the image folder and the map folder.
    """
    images = root / "valid"
    map_dir = root / "maps"
    map_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    gt = {}
    for img_id, tasks in truths.items():
        patient, study, view = img_id.split("_", 2)
        folder = images / patient / study
        folder.mkdir(parents=True, exist_ok=True)
        iio.imwrite(folder / f"{view}.png", rng.integers(0, 255, SHAPE, dtype=np.uint8))
        gt[img_id] = {task: encode_rle(mask) for task, mask in tasks.items()}
    for (img_id, task), array in maps.items():
        write_map(map_dir, img_id, task, array)
    gt_path = root / "gt_segmentations.json"
    gt_path.write_text(json.dumps(gt))
    return gt_path, images, map_dir
