"""Stand-in images for a public dataset's annotation file, laid out as its download.

Writes, for the first N annotated images of ANNOTATION_FILE (NIH ``BBox_List_2017.csv``, RSNA
``stage_2_train_labels.csv``, SIIM ``train-rle.csv``, VinDr ``train.csv``; plain, .gz or .zip),
an image of the right name, format and size with a synthetic lesion in each annotated box
(:mod:`napari_samcam.datasets.standins`), so that ``samcam evaluate ANNOTATION_FILE --images
OUT`` runs without the real images. The scores then say that the pipeline works, not how a
model does on the real images.

Usage::

    python scripts/dataset_standins.py ANNOTATION_FILE OUT [--n 20]

torchxrayvision ships copies of the four annotation files in its package data
(``python -c "import torchxrayvision, pathlib; print(pathlib.Path(torchxrayvision.__file__)
.parent / 'data')"``).
"""

from __future__ import annotations

import argparse

from napari_samcam.datasets import read_annotations
from napari_samcam.datasets.standins import write_standins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("annotations", help="the dataset's annotation file as distributed")
    parser.add_argument("out", help="folder for the images (pass it as --images)")
    parser.add_argument("--n", type=int, default=20, help="images to write (default: 20)")
    args = parser.parse_args()
    parsed = read_annotations(args.annotations)
    paths = write_standins(parsed, args.out, args.n)
    print(f"{parsed.dataset}: wrote {len(paths)} stand-in images under {args.out}")


if __name__ == "__main__":
    main()
