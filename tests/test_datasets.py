"""The public datasets' annotation files, read as distributed: counts against the real files,
SIIM's RLE against an independent decoder, and every kind of bad row."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from napari_samcam.datasets import (
    decode_siim_rle,
    detect_dataset,
    encode_siim_rle,
    load_dataset,
    read_annotations,
    read_nih,
    read_rsna,
    read_siim,
    read_vindr,
)
from napari_samcam.datasets.siim import siim_runs
from napari_samcam.errors import InputError
from napari_samcam.evaluation.manifests import load_manifest

xrv = pytest.importorskip("torchxrayvision")
DATA = Path(xrv.__file__).parent / "data"
NIH = DATA / "BBox_List_2017.csv.gz"
RSNA = DATA / "kaggle_stage_2_train_labels.csv.zip"
SIIM = DATA / "siim-pneumothorax-train-rle.csv.gz"
VINDR = DATA / "vinbigdata-train.csv.gz"


def _rows(path: Path) -> list[list[str]]:
    """The data rows of a file as the csv module reads it (independent of the readers)."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            text = archive.read(archive.namelist()[0]).decode("utf-8")
    else:
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
    return list(csv.reader(io.StringIO(text)))[1:]


# --------------------------------------------------------------------------------------------
# The real files: counts


def test_datasets_are_told_from_their_columns(tmp_path):
    assert [detect_dataset(p) for p in (NIH, RSNA, SIIM, VINDR)] == [
        "nih",
        "rsna",
        "siim",
        "vindr",
    ]
    other = tmp_path / "manifest.csv"
    other.write_text("image,label\na.png,1\n")
    assert detect_dataset(other) is None
    assert detect_dataset(DATA / "chexpert_train.csv.gz") is None


def test_nih_counts_equal_the_file():
    rows = _rows(NIH)
    parsed = read_nih(NIH)
    assert parsed.n_rows == len(rows) == 984
    assert parsed.n_images == len({r[0] for r in rows})
    assert parsed.n_boxes == len(rows)
    assert parsed.findings == Counter(r[1] for r in rows)
    assert len(parsed.findings) == 8
    assert len(parsed.entries) == len({(r[0], r[1]) for r in rows})
    # Every box is the row's [x, y, w, h] as (row0, col0, row1, col1), rounded outwards.
    first = parsed.entries[0]
    x, y, w, h = (float(v) for v in rows[0][2:6])
    assert first.boxes[0] == (
        int(np.floor(y)),
        int(np.floor(x)),
        int(np.ceil(y + h)),
        int(np.ceil(x + w)),
    )
    # Labels are the classifier's: "Infiltrate" is torchxrayvision's "Infiltration".
    assert {e.cls for e in parsed.entries if e.finding == "Infiltrate"} == {"Infiltration"}
    assert {e.cls for e in parsed.entries} <= set(xrv.datasets.default_pathologies)


def test_rsna_counts_equal_the_file():
    rows = _rows(RSNA)
    parsed = read_rsna(RSNA)
    positive = [r for r in rows if r[5] == "1"]
    assert parsed.n_rows == len(rows)
    assert parsed.n_images == len({r[0] for r in rows})
    assert parsed.n_boxes == len(positive)
    assert len(parsed.entries) == len({r[0] for r in positive})
    assert parsed.findings == Counter(
        {"Pneumonia": len(positive), "Normal": len(rows) - len(positive)}
    )
    assert {e.cls for e in parsed.entries} == {"Pneumonia"}


def test_siim_counts_equal_the_file():
    rows = _rows(SIIM)
    parsed = read_siim(SIIM)
    parts = [r for r in rows if r[1].strip() != "-1"]
    assert parsed.n_rows == len(rows)
    assert parsed.n_images == len({r[0] for r in rows})
    assert parsed.n_masks == len(parts)
    assert len(parsed.entries) == len({r[0] for r in parts})
    assert sum(len(e.rle) for e in parsed.entries) == len(parts)
    assert max(len(e.rle) for e in parsed.entries) == max(Counter(r[0] for r in parts).values())
    assert {e.cls for e in parsed.entries} == {"Pneumothorax"}


def test_vindr_counts_and_readers_equal_the_file():
    rows = _rows(VINDR)
    parsed = read_vindr(VINDR)
    boxed = [r for r in rows if r[1] != "No finding"]
    assert parsed.n_rows == len(rows)
    assert parsed.n_images == len({r[0] for r in rows}) == 15000
    assert parsed.n_boxes == len(boxed)
    assert parsed.findings == Counter(r[1] for r in rows)
    assert len(parsed.findings) == 15
    assert len(parsed.entries) == len({(r[0], r[1]) for r in boxed})
    readers_of = {}
    for r in rows:
        readers_of.setdefault(r[0], set()).add(r[3])
    assert all(len(v) == 3 for v in readers_of.values())  # three radiologists per image
    marked = Counter((r[0], r[1], r[3]) for r in boxed)
    for entry in parsed.entries:
        assert set(entry.readers) == readers_of[entry.image]
        for reader, boxes in entry.readers.items():
            assert len(boxes) == marked[(entry.image, entry.finding, reader)]
        assert sum(len(b) for b in entry.readers.values()) == len(entry.boxes)
    names = {e.finding: e.cls for e in parsed.entries}
    assert names["Pleural effusion"] == "Effusion"
    assert names["Pleural thickening"] == "Pleural_Thickening"
    assert names["Nodule/Mass"] == "Nodule"


# --------------------------------------------------------------------------------------------
# SIIM's relative column-major RLE


def _kaggle_decode(cell: str, width: int, height: int) -> np.ndarray:
    """The SIIM challenge's decoding, written out with a loop: relative starts, column-major."""
    mask = np.zeros(width * height, dtype=bool)
    numbers = [int(v) for v in cell.split()]
    position = 0
    for start, length in zip(numbers[0::2], numbers[1::2], strict=True):
        position += start
        mask[position : position + length] = True
        position += length
    return mask.reshape(width, height).T


def test_siim_decode_equals_an_independent_decoder_and_round_trips():
    parts = [r for r in _rows(SIIM) if r[1].strip() != "-1"][:300]
    assert len(parts) == 300
    for _, cell in parts:
        mask = decode_siim_rle(cell)
        expected = _kaggle_decode(cell, 1024, 1024)
        np.testing.assert_array_equal(mask, expected)
        assert mask.any()
        assert encode_siim_rle(mask) == " ".join(cell.split())
        np.testing.assert_array_equal(decode_siim_rle(encode_siim_rle(mask)), mask)
    assert encode_siim_rle(np.zeros((4, 4), bool)) == "-1"
    assert not decode_siim_rle("-1").any()


def test_siim_item_mask_is_the_union_of_its_rows(tmp_path):
    parsed = read_siim(SIIM)
    entry = next(e for e in parsed.entries if len(e.rle) >= 2)
    (tmp_path / f"{entry.image}.dcm").write_bytes(b"")  # found by name; not read here
    with pytest.warns(UserWarning, match="left out"):
        items = load_dataset(SIIM, image_root=tmp_path)
    items = [i for i in items if i.image_id == entry.image]
    cells = [r[1] for r in _rows(SIIM) if r[0] == entry.image]
    expected = np.logical_or.reduce([_kaggle_decode(c, 1024, 1024) for c in cells])
    np.testing.assert_array_equal(items[0].load_mask((1024, 1024)), expected)


# --------------------------------------------------------------------------------------------
# Bad rows: an error or a warning that names the line


def _gz(path: Path, text: str) -> Path:
    path.write_bytes(gzip.compress(text.encode()))
    return path


NIH_HEAD = "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.png,Mass,2000,10,30,30", "outside the image"),
        ("a.png,Mass,10,10,-5,30", "negative or zero width"),
        ("a.png,Fracture,10,10,5,5", "'Fracture' is not one of NIH's"),
        ("a.png,Mass,10,ten,5,5", "'ten' is not a finite number"),
        ("a.png,Mass,10,nan,5,5", "'nan' is not a finite number"),
    ],
)
def test_nih_bad_row_is_an_error_naming_the_line(tmp_path, row, message):
    path = _gz(tmp_path / "BBox_List_2017.csv.gz", NIH_HEAD + "b.png,Mass,1,1,5,5\n" + row + "\n")
    with pytest.raises(InputError, match=f"line 3.*{message}|{message}.*"):
        read_nih(path)
    with pytest.raises(InputError) as info:
        read_nih(path)
    assert "line 3" in str(info.value) and str(path) in str(info.value)


def test_box_reaching_beyond_the_image_is_clipped_with_a_warning(tmp_path):
    path = tmp_path / "BBox_List_2017.csv"
    path.write_text(NIH_HEAD + "a.png,Mass,1000,10,50,20\n")
    with pytest.warns(UserWarning, match="line 2.*clipped to rows 10..30, columns 1000..1024"):
        parsed = read_nih(path)
    assert parsed.entries[0].boxes == [(10, 1000, 30, 1024)]


def test_vindr_bad_rows(tmp_path):
    head = "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n"
    good = "img,Cardiomegaly,3,R1,10,10,50,50\n"
    cases = {
        "img,Cardiomegaly,3,R2,60,10,50,50\n": "negative or zero width",
        "img,Broken rib,3,R2,10,10,50,50\n": "'Broken rib' is not a VinDr-CXR finding",
        "img,Cardiomegaly,4,R2,10,10,50,50\n": "'Cardiomegaly' is class 3",
        "img,No finding,14,R2,10,10,50,50\n": "a box on a 'No finding' row",
        "img,Cardiomegaly,3,,10,10,50,50\n": "rad_id must not be empty",
        "img,Cardiomegaly,3,R2,10,10,,50\n": "without all of",
    }
    for row, message in cases.items():
        path = _gz(tmp_path / "train.csv.gz", head + good + row)
        with pytest.raises(InputError, match=f"line 3.*{message}"):
            read_vindr(path)


def test_vindr_box_outside_the_image_is_an_error_when_the_image_is_read(tmp_path):
    import imageio.v3 as iio

    path = tmp_path / "train.csv"
    path.write_text(
        "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n"
        "img,Cardiomegaly,3,R1,10,10,50,50\n"
        "img,Nodule/Mass,8,R2,5000,10,5050,50\n"
        "img,No finding,14,R3,,,,\n"
    )
    (tmp_path / "train").mkdir()
    iio.imwrite(tmp_path / "train" / "img.png", np.zeros((256, 256), np.uint8))
    items = load_manifest(path)
    assert [i.cls for i in items] == ["Cardiomegaly", "Nodule"]
    assert items[0].readers == {"R1": [(10, 10, 50, 50)], "R2": [], "R3": []}
    assert items[0].box_list(None, (256, 256)) == [(10, 10, 50, 50)]
    with pytest.raises(InputError, match=r"line 3.*lies outside the image"):
        items[1].box_list(None, (256, 256))


def test_rsna_and_siim_bad_rows(tmp_path):
    rsna = tmp_path / "stage_2_train_labels.csv"
    rsna.write_text("patientId,x,y,width,height,Target\np1,10,10,5,5,2\n")
    with pytest.raises(InputError, match="line 2, column 'Target'"):
        read_rsna(rsna)
    rsna.write_text("patientId,x,y,width,height,Target\np1,,,,,0\np2,10,10,5,5,0\n")
    with pytest.raises(InputError, match="line 3: a box on a row with Target 0"):
        read_rsna(rsna)
    siim = tmp_path / "train-rle.csv"
    for cell, message in [
        ("1048570 10", "past the 1048576 pixels"),
        ("5 3 7", "3 numbers"),
        ("5 0", "lengths >= 1"),
        ("-5 3", "starts are >= 0"),
        ("5 x", "other than integers"),
    ]:
        siim.write_text(f"ImageId, EncodedPixels\na,-1\nb,{cell}\n")
        with pytest.raises(InputError, match=f"line 3, column 'EncodedPixels'.*{message}"):
            read_siim(siim)
    siim.write_text("ImageId, EncodedPixels\na,-1\na,5 3\n")
    with pytest.raises(InputError, match=r"line 3.*has mask parts and also '-1'"):
        read_siim(siim)


def test_siim_runs_are_bounded_before_anything_is_allocated():
    # A declared run of 10^12 pixels is refused from the numbers alone.
    with pytest.raises(InputError, match="past the"):
        siim_runs("0 1000000000000", (1024, 1024))
    assert siim_runs("2 3 1 1", (3, 3)) == [2, 3, 1, 1, 2]


def test_missing_images_are_left_out_with_a_warning_naming_the_lines(tmp_path):
    import imageio.v3 as iio

    path = tmp_path / "BBox_List_2017.csv"
    path.write_text(NIH_HEAD + "a.png,Mass,1,1,5,5\nb.png,Mass,1,1,5,5\nc.png,Nodule,1,1,5,5\n")
    (tmp_path / "images").mkdir()
    iio.imwrite(tmp_path / "images" / "b.png", np.zeros((8, 8), np.uint8))
    with pytest.warns(UserWarning, match=r"2 of 3 .* left out \(lines 2, 4\)"):
        items = load_manifest(path)
    assert [(i.image, i.cls, i.boxes) for i in items] == [("images/b.png", "Mass", [(1, 1, 6, 6)])]
    with pytest.raises(InputError, match=r"none of its 3 annotations .* has its image under"):
        load_manifest(path, image_root=tmp_path / "images" / "nowhere")


# --------------------------------------------------------------------------------------------
# Files as distributed, and only regular files


def test_zip_with_one_csv_is_read_and_other_archives_are_refused(tmp_path):
    text = "patientId,x,y,width,height,Target\np1,,,,,0\np2,10,20,30,40,1\n"
    good = tmp_path / "labels.csv.zip"
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("stage_2_train_labels.csv", text)
    parsed = read_annotations(good)
    assert (parsed.dataset, parsed.n_rows, parsed.n_boxes) == ("rsna", 2, 1)
    assert parsed.entries[0].boxes == [(20, 10, 60, 40)]
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.csv", text)
        archive.writestr("b.csv", text)
    with pytest.raises(InputError, match=r"holds one \.csv"):
        read_rsna(two)


def test_decompressed_size_is_bounded(tmp_path, monkeypatch):
    from napari_samcam.datasets import _files

    path = _gz(tmp_path / "train-rle.csv.gz", "ImageId, EncodedPixels\n" + "a,-1\n" * 1000)
    monkeypatch.setattr(_files, "MAX_TEXT_BYTES", 100)
    with pytest.raises(InputError, match="more than 100 bytes"):
        read_siim(path)


def test_only_regular_files_are_opened(tmp_path):
    folder = tmp_path / "BBox_List_2017.csv"
    folder.mkdir()
    with pytest.raises(InputError, match="not a regular file"):
        read_nih(folder)
    assert detect_dataset(folder) is None
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "train.csv"
        os.mkfifo(fifo)
        assert detect_dataset(fifo) is None  # not opened: a FIFO would block
        with pytest.raises(InputError, match="not a regular file"):
            read_vindr(fifo)


def test_real_files_parse_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in (NIH, RSNA, SIIM, VINDR):
            read_annotations(path)


# --------------------------------------------------------------------------------------------
# End to end: `samcam evaluate` on stand-in images at the files' names and sizes

END_TO_END = {
    # dataset: (annotation file, stand-in images, region sources)
    "nih": (NIH, 20, ["box"]),
    "rsna": (RSNA, 20, ["box"]),
    "siim": (SIIM, 20, ["ground-truth", "box"]),
    "vindr": (VINDR, 10, ["box", "sam-box", "readers"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", list(END_TO_END))
def test_samcam_evaluate_on_standin_images(tmp_path, dataset):
    """Each dataset's annotation file evaluated as distributed, on stand-in images with a lesion
    in each annotated box: every annotation of those images scored, with the saliency of the
    built-in lesion detector ranking the annotated pixels above the rest."""
    import pandas as pd

    from napari_samcam.cli import main
    from napari_samcam.datasets.standins import write_standins

    path, n_images, regions = END_TO_END[dataset]
    written = write_standins(read_annotations(path), tmp_path / "images", n_images)
    assert len(written) == n_images
    names = {p.name.removesuffix(p.suffix) for p in written} | {p.name for p in written}
    rows = [r for r in _rows(path) if r[0] in names]
    expected = {
        "nih": lambda r: (r[0], r[1]),
        "rsna": lambda r: r[0] if r[5] == "1" else None,
        "siim": lambda r: r[0] if r[1].strip() != "-1" else None,
        "vindr": lambda r: (r[0], r[1]) if r[1] != "No finding" else None,
    }[dataset]
    n_items = len({expected(r) for r in rows} - {None})
    out = tmp_path / "out"
    args = ["evaluate", str(path), "--images", str(tmp_path / "images"), "--out", str(out)]
    args += ["--regions", *regions, "--context", "0", "--bootstrap", "200", "--quiet"]
    with pytest.warns(UserWarning, match="left out"):  # the images not written
        assert main([*args, "--no-plots", "--gallery", "0"]) == 0
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert metrics["image"].nunique() == n_images
    assert metrics["item"].nunique() == n_items
    assert set(metrics["class"]) <= set(xrv.datasets.default_pathologies) | {
        "ILD",
        "Calcification",
    }
    auroc = metrics[metrics["metric"] == "auroc"]
    assert auroc["value"].between(0, 1).all()
    for source in regions:
        if source != "readers":
            values = auroc.loc[auroc["region_source"] == source, "value"]
            assert len(values) == n_items
            assert values.median() > (0.6 if dataset == "vindr" else 0.75), source
    if dataset == "vindr":
        agreement = pd.read_csv(out / "reader_agreement.csv")
        shown = agreement[(agreement["group"] == "all") & (agreement["metric"] == "iou")]
        assert set(shown["comparison"]) == {
            "reader-vs-reader",
            "box-vs-reader",
            "sam-box-vs-reader",
        }
        boxes = pd.read_csv(out / "reader_regions.csv").set_index("group")
        assert 0 < boxes.loc["all", "iou"] < 1
        assert "reader_agreement" in json.loads((out / "summary.json").read_text())


def test_nih_boxes_are_checked_against_the_label_list_next_to_them(tmp_path):
    (tmp_path / "BBox_List_2017.csv").write_text(
        NIH_HEAD + "a.png,Infiltrate,1,1,5,5\nb.png,Mass,1,1,5,5\nc.png,Nodule,1,1,5,5\n"
    )
    (tmp_path / "Data_Entry_2017_v2020.csv").write_text(
        "Image Index,Finding Labels,Follow-up #\na.png,Infiltration|Mass,0\nb.png,Nodule,0\n"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parsed = read_nih(tmp_path / "BBox_List_2017.csv")
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2  # a.png's Infiltrate is listed as Infiltration: no warning
    assert "line 3" in messages[0] and "'b.png' is not listed with 'Mass'" in messages[0]
    assert "line 4" in messages[1] and "'c.png'" in messages[1]
    assert parsed.n_boxes == 3  # warned about, still read
