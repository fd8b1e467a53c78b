"""Fuzz the file readers: mutated saliency maps, images and manifests must give a result or one
``SamcamError`` naming the file, never another exception, a hang or a runaway allocation.

Run it under a memory cap, with a seed::

    python scripts/memory_limit.py 1G -- python scripts/fuzz_readers.py --iterations 2000 --seed 1

Each iteration takes a valid seed file (``.npy``, ``.npz``, CheXlocalize ``.pkl``, ``.tif``,
``.png``, a CSV and a COCO JSON manifest), mutates its bytes (flips, overwrites with boundary
values, truncation, insertion, chunk repeats), and reads it with napari-samcam's loader. A
finding is any exception outside the ``SamcamError`` family, or a read that takes longer than
``--timeout`` seconds; its file is kept in ``--keep`` and the exit status is 1.
"""

from __future__ import annotations

import argparse
import faulthandler
import io
import json
import pickle
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

BOUNDARY = [
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\xff\xff\xff\x7f",
    b"\x00\x00\x00\x80",
    b"9" * 12,
]


def seed_files(folder: Path) -> dict[str, Path]:
    """One small valid file per reader, written into ``folder``."""
    import tifffile
    import torch
    from PIL import Image

    rng = np.random.default_rng(0)
    saliency = rng.random((24, 20)).astype(np.float32)
    files = {}
    files["npy"] = folder / "map.npy"
    np.save(files["npy"], saliency)
    files["npz"] = folder / "map.npz"
    np.savez_compressed(files["npz"], map=saliency)
    files["pkl"] = folder / "img_Edema_map.pkl"
    with open(files["pkl"], "wb") as handle:
        record = {"map": torch.from_numpy(saliency)[None, None], "prob": torch.tensor([0.7])}
        pickle.dump({**record, "task": "Edema", "gt": torch.zeros(1)}, handle)
    image = (rng.random((24, 20)) * 255).astype(np.uint8)
    files["tif"] = folder / "image.tif"
    tifffile.imwrite(files["tif"], image, compression="zlib")
    files["png"] = folder / "image.png"
    Image.fromarray(image).save(files["png"])
    files["csv"] = folder / "manifest.csv"
    files["csv"].write_text(
        "image,label,box_r0,box_c0,box_r1,box_c1\nimage.png,1,2,3,12,15\nimage.png,0,,,,\n"
    )
    coco = {
        "images": [{"id": 1, "file_name": "image.png", "height": 24, "width": 20}],
        "categories": [{"id": 1, "name": "lesion"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [3, 2, 10, 8],
                "iscrowd": 1,
                "segmentation": {"size": [24, 20], "counts": [50, 30, 400]},
            },
        ],
    }
    files["json"] = folder / "coco.json"
    files["json"].write_text(json.dumps(coco))
    return files


def readers() -> dict[str, callable]:
    """The loader each seed kind goes through."""
    from napari_samcam.evaluation.manifests import load_manifest
    from napari_samcam.images import read_image
    from napari_samcam.saliency_files import load_map_file

    return {
        "npy": load_map_file,
        "npz": load_map_file,
        "pkl": load_map_file,
        "tif": read_image,
        "png": read_image,
        "csv": load_manifest,
        "json": load_manifest,
    }


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One to four random byte-level edits of ``data``."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        if not out:
            break
        where = int(rng.integers(0, len(out)))
        kind = int(rng.integers(0, 5))
        if kind == 0:  # flip a bit
            out[where] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:  # a boundary value over some bytes
            value = BOUNDARY[int(rng.integers(0, len(BOUNDARY)))]
            out[where : where + len(value)] = value
        elif kind == 2:  # truncate
            del out[where:]
        elif kind == 3:  # insert random bytes
            out[where:where] = rng.integers(0, 256, int(rng.integers(1, 16)), np.uint8).tobytes()
        else:  # repeat a chunk
            end = min(len(out), where + int(rng.integers(1, 64)))
            out[where:where] = out[where:end] * int(rng.integers(1, 8))
    return bytes(out)


class _Timeout(BaseException):  # not an Exception: readers that catch those must not swallow it
    pass


def _alarm(signum, frame):
    raise _Timeout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per read")
    parser.add_argument("--keep", type=Path, default=Path("fuzz-findings"))
    args = parser.parse_args(argv)

    from napari_samcam.errors import SamcamError

    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="samcam-fuzz-"))
    try:
        seeds = seed_files(work)
        originals = {kind: path.read_bytes() for kind, path in seeds.items()}
        load = readers()
        outcomes: Counter = Counter()
        findings = 0
        signal.signal(signal.SIGALRM, _alarm)
        started = time.perf_counter()
        for iteration in range(args.iterations):
            kind = list(seeds)[int(rng.integers(0, len(seeds)))]
            path = seeds[kind]
            data = mutate(originals[kind], rng)
            path.write_bytes(data)
            # a read stuck in native code ignores the alarm: the watchdog dumps the stacks and
            # exits, and the file it was reading is already kept
            args.keep.mkdir(parents=True, exist_ok=True)
            current = args.keep / f"current-{path.name}"
            current.write_bytes(data)
            faulthandler.dump_traceback_later(3 * args.timeout, exit=True)
            signal.setitimer(signal.ITIMER_REAL, args.timeout)
            try:
                load[kind](path)
                outcomes[kind, "read"] += 1
            except SamcamError as exc:
                outcomes[kind, "refused"] += 1
                assert str(path) in str(exc) or path.name in str(exc), (kind, str(exc))
            except BaseException as exc:
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                findings += 1
                outcomes[kind, type(exc).__name__] += 1
                kept = args.keep / f"{iteration:06d}-{path.name}"
                shutil.copyfile(path, kept)
                trace = traceback.format_exception_only(type(exc), exc)[-1].strip()
                print(f"finding {iteration}: {kind}: {trace[:300]} (kept {kept})", flush=True)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                faulthandler.cancel_dump_traceback_later()
            current.unlink()
            path.write_bytes(originals[kind])
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = io.StringIO()
    for (kind, outcome), n in sorted(outcomes.items()):
        print(f"  {kind:5s} {outcome:20s} {n}", file=table)
    print(f"{args.iterations} mutated files (seed {args.seed}) in {seconds:.1f} s:")
    print(table.getvalue(), end="")
    print(f"{findings} finding(s)")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
