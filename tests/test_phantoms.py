"""Tests of the phantom lesion benchmark generator."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from napari_samcam.errors import InputError, OutputExistsError
from napari_samcam.phantoms import (
    MANIFEST_COLUMNS,
    PhantomCase,
    generate_phantoms,
    write_phantoms,
)

SIZE = 128


@pytest.fixture(scope="module")
def cases() -> list[PhantomCase]:
    return generate_phantoms(24, seed=11, size=SIZE, marker="random")


def _read_manifest(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_same_seed_gives_identical_cases():
    a = generate_phantoms(6, seed=5, size=SIZE, marker="random")
    b = generate_phantoms(6, seed=5, size=SIZE, marker="random")
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.image, y.image)
        assert np.array_equal(x.mask, y.mask)
        assert x.box == y.box and x.marker_box == y.marker_box and x.label == y.label
    c = generate_phantoms(6, seed=6, size=SIZE, marker="random")
    assert any(not np.array_equal(x.image, z.image) for x, z in zip(a, c, strict=True))


def test_same_seed_writes_byte_identical_files(tmp_path):
    first = write_phantoms(6, tmp_path / "a", seed=3, size=SIZE, marker="correlated")
    second = write_phantoms(6, tmp_path / "b", seed=3, size=SIZE, marker="correlated")
    files_a = sorted(p.relative_to(first.parent) for p in first.parent.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(second.parent) for p in second.parent.rglob("*") if p.is_file())
    assert files_a == files_b
    assert Path("manifest.csv") in files_a
    for rel in files_a:
        assert (first.parent / rel).read_bytes() == (second.parent / rel).read_bytes(), rel


def test_images_are_uint8_grayscale_of_the_asked_size(cases):
    for case in cases:
        assert case.image.dtype == np.uint8
        assert case.image.shape == (SIZE, SIZE)
        assert case.mask.shape == case.body.shape == (SIZE, SIZE)
        assert case.mask.dtype == bool
        assert case.image.std() > 5  # a real background, not a flat field


def test_positive_fraction_is_exact():
    labels = [c.label for c in generate_phantoms(10, seed=2, size=64, positive_fraction=0.3)]
    assert sum(labels) == 3
    assert sum(c.label for c in generate_phantoms(4, seed=2, size=64, positive_fraction=0)) == 0


def test_lesion_masks_lie_inside_the_image_and_the_body(cases):
    positives = [c for c in cases if c.label]
    assert positives
    for case in positives:
        assert case.mask.any()
        assert not (case.mask & ~case.body).any(), case.index
        assert case.lesion_kind in ("nodule", "irregular")
        assert case.lesion_contrast > 0 and case.lesion_radius > 0
        if case.marker_box is not None:
            r0, c0, r1, c1 = case.marker_box
            assert not case.mask[r0:r1, c0:c1].any()


def test_lesion_changes_the_image_only_near_the_mask(cases):
    from scipy import ndimage as ndi

    for case in (c for c in cases if c.label):
        assert case.clean is not None and case.clean.shape == case.image.shape
        diff = case.image.astype(int) - case.clean.astype(int)
        assert diff[case.mask].mean() > 0  # lesions add density
        near = ndi.binary_dilation(case.mask, iterations=max(6, int(case.lesion_radius)))
        assert not diff[~near].any()


def test_box_contains_the_mask_with_a_margin(cases):
    for case in (c for c in cases if c.label):
        rows = np.flatnonzero(case.mask.any(axis=1))
        cols = np.flatnonzero(case.mask.any(axis=0))
        r0, c0, r1, c1 = case.box
        assert 0 <= r0 < r1 <= SIZE and 0 <= c0 < c1 <= SIZE
        assert r0 < rows[0] and c0 < cols[0], (case.box, rows[0], cols[0])
        assert r1 > rows[-1] + 1 and c1 > cols[-1] + 1, (case.box, rows[-1], cols[-1])
        # a margin, not a frame around the whole image
        assert (r1 - r0) <= 2 * (rows[-1] + 1 - rows[0]) + 8


def test_negatives_have_no_mask_and_no_box(cases):
    negatives = [c for c in cases if not c.label]
    assert negatives
    for case in negatives:
        assert not case.mask.any()
        assert case.box is None and case.clean is None
        assert case.lesion_kind is None and case.lesion_contrast is None


def test_marker_presence_follows_the_request():
    tied = generate_phantoms(12, seed=4, size=SIZE, marker=(1.0, 0.0))
    assert [c.has_marker for c in tied] == [bool(c.label) for c in tied]
    assert all(c.has_marker for c in generate_phantoms(4, seed=4, size=SIZE, marker="always"))
    assert not any(c.has_marker for c in generate_phantoms(4, seed=4, size=SIZE))
    for case in tied:
        if case.has_marker:
            r0, c0, r1, c1 = case.marker_box
            assert 0 <= r0 < r1 <= SIZE and 0 <= c0 < c1 <= SIZE
            # in a corner
            assert min(r0, SIZE - r1) < SIZE // 8 and min(c0, SIZE - c1) < SIZE // 8
            tag = case.image[r0:r1, c0:c1]
            assert np.median(tag) > 200 and tag.min() < 60  # bright tag, dark letter


def test_manifest_columns_paths_and_content(tmp_path):
    manifest = write_phantoms(8, tmp_path / "set", seed=9, size=SIZE, marker="random")
    assert manifest == tmp_path / "set" / "manifest.csv"
    with open(manifest, encoding="utf-8") as handle:
        assert handle.readline().strip().split(",") == list(MANIFEST_COLUMNS)
    rows = _read_manifest(manifest)
    cases = generate_phantoms(8, seed=9, size=SIZE, marker="random")
    import imageio.v3 as iio

    for row, case in zip(rows, cases, strict=True):
        assert not Path(row["image"]).is_absolute()
        assert np.array_equal(iio.imread(manifest.parent / row["image"]), case.image)
        assert int(row["label"]) == case.label
        assert row["split"] == "test" and int(row["seed"]) == 9
        assert int(row["marker"]) == int(case.has_marker)
        box_cells = [row[k] for k in ("box_r0", "box_c0", "box_r1", "box_c1")]
        if case.label:
            assert not Path(row["mask"]).is_absolute()
            mask = iio.imread(manifest.parent / row["mask"])
            assert set(np.unique(mask)) <= {0, 255}
            assert np.array_equal(mask == 255, case.mask)
            assert tuple(int(v) for v in box_cells) == case.box
        else:
            assert row["mask"] == "" and box_cells == ["", "", "", ""]


def test_existing_manifest_is_not_overwritten(tmp_path):
    out = tmp_path / "set"
    write_phantoms(2, out, seed=0, size=64)
    before = (out / "manifest.csv").read_bytes()
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        write_phantoms(3, out, seed=1, size=64)
    assert (out / "manifest.csv").read_bytes() == before
    write_phantoms(3, out, seed=1, size=64, overwrite=True)
    assert len(_read_manifest(out / "manifest.csv")) == 3
    assert len(list((out / "images").iterdir())) == 3
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_interrupted_write_leaves_no_manifest(tmp_path, monkeypatch):
    import imageio.v3 as iio

    real = iio.imwrite
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(iio, "imwrite", failing)
    out = tmp_path / "set"
    with pytest.raises(OSError, match="disk full"):
        write_phantoms(6, out, seed=0, size=64)
    assert list(out.iterdir()) == []


def test_progress_is_reported(tmp_path):
    seen = []
    write_phantoms(3, tmp_path / "p", seed=0, size=64, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"n": 0}, "n="),
        ({"seed": -1}, "seed="),
        ({"size": 16}, "size="),
        ({"positive_fraction": 1.5}, "positive_fraction="),
        ({"marker": "sometimes"}, "marker="),
        ({"marker": (2.0, 0.0)}, "marker="),
        ({"lesion_contrast": (0.5, 0.1)}, "lesion_contrast="),
        ({"backgrounds": ["knee"]}, "backgrounds="),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, word):
    args = {"n": 2, "seed": 0, "size": 64, **kwargs}
    n = args.pop("n")
    with pytest.raises(InputError, match=word):
        generate_phantoms(n, **args)


def test_every_background_is_usable():
    for name in ("chest", "extremity", "head-ct"):
        (case,) = generate_phantoms(1, seed=1, size=SIZE, backgrounds=[name], positive_fraction=1)
        assert case.background == name
        assert case.body.mean() > 0.1
        assert not (case.mask & ~case.body).any()


@pytest.fixture(scope="module")
def shaped() -> list[PhantomCase]:
    return generate_phantoms(12, seed=21, size=256, positive_fraction=1.0, shapes="all")


def test_shape_classes_are_given_to_the_positives_in_turn(shaped):
    from napari_samcam.phantom_shapes import SHAPE_CLASSES

    kinds = [case.lesion_kind for case in shaped]
    assert kinds == list(SHAPE_CLASSES) * 2
    assert {case.background for case in shaped} == {"chest"}
    for case in shaped:
        assert case.mask.any() and not (case.mask & ~case.body).any()
        r0, c0, r1, c1 = case.box
        rows, cols = np.nonzero(case.mask)
        assert r0 <= rows.min() and rows.max() < r1 and c0 <= cols.min() and cols.max() < c1
        # the lesion is in the image: brighter than the same image without it on its mask
        assert case.image[case.mask].mean() > case.clean[case.mask].mean()


def test_shape_classes_have_their_geometry(shaped):
    from scipy import ndimage as ndi

    def by_kind(kind):
        return [case for case in shaped if case.lesion_kind == kind]

    compact_area = max(case.mask.sum() for case in by_kind("compact"))
    for case in by_kind("tube"):
        depth = ndi.distance_transform_edt(case.mask)
        assert depth.max() <= 3.5  # at most ~5 px wide at 512, scaled to 256
        r0, c0, r1, c1 = case.box
        assert case.mask.sum() / ((r1 - r0) * (c1 - c0)) < 0.2  # a line fills little of its box
    for case in by_kind("heart"):
        assert case.mask.sum() > 3 * compact_area
    for case in by_kind("multipart"):
        assert ndi.label(case.mask)[1] >= 2
    for case in by_kind("rib-nodule"):
        assert case.lesion_radius <= 11 * 256 / 512 + 0.5


def test_default_lesions_are_unchanged_by_the_shape_option():
    plain = generate_phantoms(4, seed=2, size=SIZE, positive_fraction=1.0)
    assert {case.lesion_kind for case in plain} <= {"nodule", "irregular"}
    compact = generate_phantoms(4, seed=2, size=SIZE, positive_fraction=1.0, shapes=["compact"])
    assert {case.lesion_kind for case in compact} == {"compact"}


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"shapes": ["blob"]}, "shapes="),
        ({"shapes": "tube", "backgrounds": ["chest", "extremity"]}, "chest"),
    ],
)
def test_bad_shape_arguments_name_the_argument(kwargs, word):
    with pytest.raises(InputError, match=word):
        generate_phantoms(2, size=SIZE, **kwargs)
