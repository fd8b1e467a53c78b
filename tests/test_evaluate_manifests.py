"""Manifests of the dataset evaluation: CSV, COCO (polygons, RLE) and CheXlocalize."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

from napari_samcam.errors import InputError
from napari_samcam.evaluation.manifests import (
    decode_rle,
    encode_rle,
    load_manifest,
    rle_from_string,
    rle_to_string,
)

# A 4 x 3 mask; column-major it reads 000 111 000 11 0: runs [3, 3, 3, 2, 1].
HAND_MASK = np.array(
    [
        [0, 1, 0],
        [0, 1, 1],
        [0, 0, 1],
        [1, 0, 0],
    ],
    dtype=bool,
)
# Runs 3, 3, 3 are written as they are ('3' = 48 + 3); from the fourth run on the difference to
# the run two places back is written: 2 - 3 = -1 -> 5-bit group 31 with the sign bit -> 'O';
# 1 - 3 = -2 -> group 30 -> 'N'.
HAND_COUNTS = "333ON"


def test_rle_string_decoding_by_hand():
    assert rle_from_string(HAND_COUNTS) == [3, 3, 3, 2, 1]
    assert rle_to_string([3, 3, 3, 2, 1]) == HAND_COUNTS
    decoded = decode_rle({"size": [4, 3], "counts": HAND_COUNTS})
    np.testing.assert_array_equal(decoded, HAND_MASK)
    # CheXlocalize's key for the size
    decoded = decode_rle({"img_size": [4, 3], "counts": HAND_COUNTS})
    np.testing.assert_array_equal(decoded, HAND_MASK)
    # uncompressed counts
    np.testing.assert_array_equal(
        decode_rle({"size": [4, 3], "counts": [3, 3, 3, 2, 1]}), HAND_MASK
    )


def test_rle_long_runs_and_round_trip(rng):
    # Runs longer than 31 need several 5-bit groups; big differences need the sign bit.
    runs = [0, 40, 1000, 7, 3, 2000, 1]
    assert rle_from_string(rle_to_string(runs)) == runs
    for shape in [(1, 1), (5, 7), (64, 48)]:
        for density in (0.0, 0.2, 1.0):
            mask = rng.random(shape) < density
            rle = encode_rle(mask)
            assert isinstance(rle["counts"], str)
            np.testing.assert_array_equal(decode_rle(rle), mask)
            np.testing.assert_array_equal(decode_rle(encode_rle(mask, compressed=False)), mask)


def test_rle_errors_are_clear():
    with pytest.raises(InputError, match="pixels"):
        decode_rle({"size": [4, 4], "counts": HAND_COUNTS})
    with pytest.raises(InputError, match="alphabet"):
        decode_rle({"size": [4, 3], "counts": "33 ON"})
    with pytest.raises(InputError, match="size"):
        decode_rle({"counts": HAND_COUNTS})


@pytest.fixture
def csv_set(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("a", "b"):
        iio.imwrite(tmp_path / "images" / f"{name}.png", np.zeros((20, 30), dtype=np.uint8))
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[5:9, 10:15] = 255
    iio.imwrite(tmp_path / "masks" / "a.png", mask)
    return tmp_path


def _write_csv(folder, lines):
    path = folder / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_manifest(csv_set):
    path = _write_csv(
        csv_set,
        [
            "image,label,mask,box_r0,box_c0,box_r1,box_c1",
            "images/a.png,1,masks/a.png,4,9,10,16",
            "images/b.png,0,,,,,",
        ],
    )
    a, b = load_manifest(path)
    assert a.image == "images/a.png" and a.label == "1" and a.positive
    assert a.boxes == [(4, 9, 10, 16)]
    mask = a.load_mask((20, 30))
    assert mask.sum() == 20 and mask[5:9, 10:15].all()
    assert not b.positive and b.boxes == []
    assert b.load_mask((20, 30)).sum() == 0  # negative: an empty ground truth
    with pytest.raises(InputError, match="shape"):
        a.load_mask((10, 10))


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (["file,label", "images/a.png,1"], "no 'image' column"),
        (["image,box_r0,box_c0", "images/a.png,1,2"], "box columns"),
        (
            ["image,box_r0,box_c0,box_r1,box_c1", "images/a.png,1,2,x,4"],
            r"row 1 \(line 2\), column 'box_r1'",
        ),
        (
            ["image,box_r0,box_c0,box_r1,box_c1", "images/a.png,1,2,3,4", "images/b.png,5,5,2,9"],
            "row 2 .*empty",
        ),
        (["image,mask", "images/a.png,masks/zzz.png"], "column 'mask'.*does not exist"),
        (["image", "images/nope.png"], "column 'image'.*does not exist"),
        (["image"], "lists no image"),
    ],
)
def test_csv_errors_name_file_row_and_column(csv_set, lines, match):
    path = _write_csv(csv_set, lines)
    with pytest.raises(InputError, match=match) as info:
        load_manifest(path)
    assert "manifest.csv" in str(info.value)


def test_coco_polygons_rle_and_boxes(tmp_path):
    for name in ("p.png", "r.png", "n.png"):
        iio.imwrite(tmp_path / name, np.zeros((12, 16), dtype=np.uint8))
    rle_mask = np.zeros((12, 16), dtype=bool)
    rle_mask[2:5, 3:9] = True
    coco = {
        "images": [
            {"id": 1, "file_name": "p.png", "height": 12, "width": 16},
            {"id": 2, "file_name": "r.png", "height": 12, "width": 16},
            {"id": 3, "file_name": "n.png", "height": 12, "width": 16},
        ],
        "categories": [{"id": 7, "name": "nodule"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 7,
                # the square of pixels rows 2..5, cols 4..9 (pixel edges at integers)
                "segmentation": [[4, 2, 10, 2, 10, 6, 4, 6]],
                "bbox": [4, 2, 6, 4],
            },
            {
                "id": 2,
                "image_id": 2,
                "category_id": 7,
                "segmentation": encode_rle(rle_mask),
                "bbox": [3.0, 2.0, 6.0, 3.0],
            },
        ],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    poly, rle, negative = load_manifest(path)
    assert poly.cls == "nodule" and poly.boxes == [(2, 4, 6, 10)]
    expected = np.zeros((12, 16), dtype=bool)
    expected[2:6, 4:10] = True
    np.testing.assert_array_equal(poly.load_mask((12, 16)), expected)
    assert rle.boxes == [(2, 3, 5, 9)]
    np.testing.assert_array_equal(rle.load_mask((12, 16)), rle_mask)
    assert not negative.positive and negative.load_mask((12, 16)).sum() == 0

    coco["annotations"][0]["bbox"] = [1, 1, 0, 3]
    path.write_text(json.dumps(coco))
    with pytest.raises(InputError, match=r"annotations\[0\] \(id 1, image 'p.png'\), key 'bbox'"):
        load_manifest(path)
    coco["annotations"][0]["bbox"] = [1, 1, 2, 3]
    coco["annotations"][1]["image_id"] = 99
    path.write_text(json.dumps(coco))
    with pytest.raises(InputError, match=r"annotations\[1\], key 'image_id'"):
        load_manifest(path)


def test_chexlocalize_ground_truth(tmp_path):
    nested = tmp_path / "patient1" / "study2"
    nested.mkdir(parents=True)
    iio.imwrite(nested / "view1_frontal.png", np.zeros((4, 3), dtype=np.uint8))
    gt = {
        "patient1_study2_view1_frontal": {
            "Nodule": {"img_size": [4, 3], "counts": HAND_COUNTS},
            "Edema": encode_rle(np.zeros((4, 3), dtype=bool)) | {"img_size": [4, 3]},
        }
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    nodule, edema = load_manifest(path)
    assert nodule.cls == "Nodule" and nodule.label == "1"
    mask = nodule.load_mask((4, 3))
    np.testing.assert_array_equal(mask, HAND_MASK)
    # boxes come from the mask's 4-connected components
    assert sorted(nodule.box_list(mask)) == [(0, 1, 3, 3), (3, 0, 4, 1)]
    assert edema.label == "0" and edema.load_mask((4, 3)).sum() == 0
    with pytest.raises(InputError, match="no image"):
        load_manifest(path, image_root=tmp_path / "elsewhere")


def test_unknown_json_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"a": 1}))
    with pytest.raises(InputError, match="neither COCO"):
        load_manifest(path)
    with pytest.raises(InputError, match="does not exist"):
        load_manifest(tmp_path / "missing.csv")
