"""The public chest X-ray localization datasets, read as they are distributed.

===============  ================================  ==========================================
dataset          annotation file                   reader
===============  ================================  ==========================================
NIH ChestX-ray14 ``BBox_List_2017.csv``            :func:`~.nih.read_nih`
RSNA Pneumonia   ``stage_2_train_labels.csv``      :func:`~.rsna.read_rsna`
SIIM-ACR         ``train-rle.csv``                 :func:`~.siim.read_siim`
VinDr-CXR        ``train.csv`` (three readers)     :func:`~.vindr.read_vindr`
===============  ================================  ==========================================

Each file may be plain, gzipped or (RSNA's Kaggle download) zipped; it is read without
unpacking. :func:`detect_dataset` tells the dataset from the file's columns, so
:func:`~napari_samcam.evaluation.manifests.load_manifest` and ``samcam evaluate`` take these files
as manifests. Findings are mapped to the classifiers' pathology names (:mod:`.labels`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ._common import Annotations, Entry, items_from
from ._files import read_header
from .nih import read_nih
from .rsna import read_rsna
from .siim import decode_siim_rle, encode_siim_rle, read_siim
from .vindr import read_vindr

__all__ = [
    "DATASETS",
    "Annotations",
    "Entry",
    "decode_siim_rle",
    "detect_dataset",
    "encode_siim_rle",
    "load_dataset",
    "read_annotations",
    "read_nih",
    "read_rsna",
    "read_siim",
    "read_vindr",
]

#: Dataset name -> (the first columns of its annotation file, its reader).
DATASETS = {
    "nih": (("Image Index", "Finding Label", "Bbox [x"), read_nih),
    "rsna": (("patientId", "x", "y", "width", "height", "Target"), read_rsna),
    "siim": (("ImageId", "EncodedPixels"), read_siim),
    "vindr": (("image_id", "class_name", "class_id", "rad_id"), read_vindr),
}

_SUFFIXES = (".csv", ".csv.gz", ".gz", ".zip")


def detect_dataset(path: str | Path) -> str | None:
    """The dataset whose annotation file ``path`` is (``"nih"``, ...), from its columns; ``None``
    for anything else."""
    path = Path(path)
    if not path.name.lower().endswith(_SUFFIXES):
        return None
    header = read_header(path)
    for name, (columns, _) in DATASETS.items():
        if tuple(header[: len(columns)]) == columns:
            return name
    return None


def read_annotations(path: str | Path, dataset: str | None = None) -> Annotations:
    """Parse a dataset's annotation file (the dataset told from its columns by default)."""
    name = dataset or detect_dataset(path)
    if name not in DATASETS:
        raise InputError(
            f"annotation file {str(path)!r}: not one of the datasets read as distributed "
            f"({', '.join(DATASETS)}); its columns are {read_header(Path(path))}."
        )
    return DATASETS[name][1](path)


def load_dataset(path: str | Path, *, image_root: str | Path | None = None) -> list:
    """The evaluation items (:class:`~napari_samcam.evaluation.manifests.Item`) of a dataset's
    annotation file whose images are under ``image_root`` (default: the file's folder).

    Raises
    ------
    InputError
        A bad row (the message names the line), or no annotated image under ``image_root``.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    return items_from(read_annotations(path), root)
