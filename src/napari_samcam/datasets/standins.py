"""Stand-in images for a dataset's annotation file, to run the pipeline without the images.

The public datasets' images need an account and an agreement to download; their annotation
files do not. :func:`write_standins` writes, for the first ``n`` annotated images of a parsed
file, an image of the right name, format and size (NIH: 1024 x 1024 PNG; RSNA, SIIM: 1024 x 1024
DICOM; VinDr: DICOM as large as its boxes need) showing a real chest radiograph (pydicom-data's
``RG1_UNCI``) with a synthetic lesion in each annotated box (SIIM: in its mask), so that
``samcam evaluate`` has something to localize. The scores say whether the pipeline works, not
how a model does on the real images.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..coco_masks import decode_rle
from ..phantom_backgrounds import source_image
from ._common import Annotations, Entry

__all__ = ["standin_image", "write_standins"]

#: Peak intensity a lesion adds, on the [0, 1] scale of the background.
LESION_CONTRAST = 0.3


@lru_cache(maxsize=4)
def _background(shape: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    return resize(source_image("chest"), shape, order=1, anti_aliasing=True).astype(np.float32)


def _size(entries: list[Entry], default: tuple[int, int]) -> tuple[int, int]:
    """Image size: the dataset's when it has one, else room for every box with a margin."""
    if default:
        return default
    rows = max((b[2] for e in entries for b in e.boxes), default=0)
    cols = max((b[3] for e in entries for b in e.boxes), default=0)
    return max(1024, 64 * math.ceil((rows + 64) / 64)), max(1024, 64 * math.ceil((cols + 64) / 64))


def standin_image(entries: list[Entry], shape: tuple[int, int]) -> np.ndarray:
    """A radiograph of ``shape`` (float32 in [0, 1]) with a soft lesion in each box or mask of
    ``entries`` (the annotations of one image)."""
    from scipy import ndimage

    image = _background(tuple(shape)).copy()
    lesion = np.zeros(shape, dtype=np.float32)
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    for entry in entries:
        for r0, c0, r1, c1 in entry.boxes:
            cr, cc = (r0 + r1) / 2, (c0 + c1) / 2
            hr, hc = max((r1 - r0) * 0.4, 1.0), max((c1 - c0) * 0.4, 1.0)
            inside = ((rows - cr) / hr) ** 2 + ((cols - cc) / hc) ** 2
            lesion = np.maximum(lesion, np.clip(1.0 - inside, 0.0, 1.0) ** 0.5)
        for rle in entry.rle or ():
            part = ndimage.gaussian_filter(decode_rle(rle).astype(np.float32), 3.0)
            lesion = np.maximum(lesion, part)
    return np.clip(image + LESION_CONTRAST * lesion, 0.0, 1.0)


def _write_dicom(path: Path, image: np.ndarray, uid: str) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    instance = uid if all(c.isdigit() or c == "." for c in uid) else generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # computed radiography
    meta.MediaStorageSOPInstanceUID = instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, instance
    ds.Modality = "CR"
    ds.PatientID = uid[:64]
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.round(image * 4095).astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


#: Where each dataset's download puts an image, and its format.
LAYOUT = {
    "nih": ("images/{}", ".png"),
    "rsna": ("stage_2_train_images/{}", ".dcm"),
    "siim": ("dicom-images-train/{}", ".dcm"),
    "vindr": ("train/{}", ".dicom"),
}


def write_standins(annotations: Annotations, out: str | Path, n: int) -> list[Path]:
    """Write stand-in images of the first ``n`` annotated images of ``annotations`` into
    ``out``, laid out as the dataset's download (:data:`LAYOUT`); returns their paths."""
    import imageio.v3 as iio

    out = Path(out)
    by_image: dict[str, list[Entry]] = {}
    for entry in annotations.entries:
        if entry.image in by_image or len(by_image) < n:
            by_image.setdefault(entry.image, []).append(entry)
    pattern, suffix = LAYOUT[annotations.dataset]
    fixed = {"nih": (1024, 1024), "rsna": (1024, 1024), "siim": (1024, 1024)}
    paths = []
    for image, entries in by_image.items():
        shape = _size(entries, fixed.get(annotations.dataset, ()))
        pixels = standin_image(entries, shape)
        name = image if image.endswith(suffix) else image + suffix
        path = out / pattern.format(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".png":
            iio.imwrite(path, np.round(pixels * 255).astype(np.uint8), extension=".png")
        else:
            _write_dicom(path, pixels, image)
        paths.append(path)
    return paths
