"""Large images in the viewer: how results are handed to napari so that it shows them without
freezing (multiscale saliency maps, 16-bit region labels), and that scores and sessions still
use the full-resolution map. No Qt: a ViewerModel and tiny models."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari.components import ViewerModel
from napari.layers import Layer

from napari_samcam._napari._jobs import region_display
from napari_samcam._napari._layers import (
    META_KEY,
    PYRAMID_MIN_SIDE,
    PYRAMID_TOP_SIDE,
    display_levels,
    labels_dtype,
)
from napari_samcam._napari._session import SamcamSession, saliency_plane
from napari_samcam.metrics import localization_metrics

SIDE = PYRAMID_MIN_SIDE + 4  # just large enough to be shown as a multiscale layer


def test_display_levels_are_strided_views_down_to_the_top_size():
    rng = np.random.default_rng(3)
    small = rng.random((PYRAMID_MIN_SIDE, 40), dtype=np.float32)
    assert display_levels(small) is small  # shown as it is
    plane = rng.random((2 * PYRAMID_MIN_SIDE + 1, 50), dtype=np.float32)
    levels = display_levels(plane)
    assert levels[0] is plane
    for k, level in enumerate(levels):
        np.testing.assert_array_equal(level, plane[:: 2**k, :: 2**k])
        assert np.shares_memory(level, plane)  # nothing copied
    assert max(levels[-1].shape) <= PYRAMID_TOP_SIDE < max(levels[-2].shape)
    volume = rng.random((2, PYRAMID_MIN_SIDE + 1, 3), dtype=np.float32)
    assert display_levels(volume) is volume  # stacks stay plain


def test_labels_dtype_is_16_bit_while_the_labels_fit():
    assert labels_dtype(0) == np.uint16
    assert labels_dtype(65535) == np.uint16
    assert labels_dtype(65536) == np.int32


def test_region_display_is_the_tight_box_of_the_mask_and_its_trust_columns():
    from napari_samcam.region_trust import quality_of_region
    from napari_samcam.sam.types import Region

    rng = np.random.default_rng(4)
    for _ in range(20):
        mask = np.zeros((60, 70), dtype=bool)
        r0, c0 = rng.integers(0, 50, 2)
        mask[r0 : r0 + rng.integers(1, 10), c0 : c0 + rng.integers(1, 10)] = True
        mask &= rng.random(mask.shape) < 0.7
        region = Region(mask, "sam-box", {"box": [int(r0), int(c0), int(r0) + 9, int(c0) + 9]})
        shown = region_display(region)
        assert shown.area == mask.sum() == shown.mask.sum()
        np.testing.assert_array_equal(shown.mask, mask[shown.where])
        quality = quality_of_region(region)
        assert shown.trust == {k: quality[k] for k in ("region_unreliable", "region_reason")}
        if mask.any():
            inner = shown.mask  # no empty border row or column
            assert inner[0].any() and inner[-1].any() and inner[:, 0].any() and inner[:, -1].any()
    empty = region_display(Region(np.zeros((5, 5), dtype=bool), "sam-box"))
    assert empty.area == 0 and empty.mask.size == 0


@pytest.fixture(scope="module")
def large_session():
    """Explain and Segment on a SIDE x SIDE image with a bright square."""
    from conftest import TinyCNN, build_tiny_sam
    from napari_samcam.classifiers import load_classifier
    from napari_samcam.segment import load_segmenter

    image = np.full((SIDE, SIDE), 30, dtype=np.uint8)
    image[1000:1600, 2000:2800] = 220
    viewer = ViewerModel()
    viewer.add_image(image, name="large")
    classifier = load_classifier(
        TinyCNN.build(), class_names=["cat", "dog"], input_size=(32, 32), device="cpu"
    )
    session = SamcamSession(
        viewer, classifier=classifier, segmenter=load_segmenter(build_tiny_sam())
    )
    saliency = session.explain()
    session.segment(boxes=[(900, 1900, 1700, 2900), (3000, 100, 3400, 700)])
    return session, saliency


def test_a_large_saliency_map_is_a_multiscale_layer_scored_at_full_resolution(large_session):
    session, saliency = large_session
    assert saliency.multiscale and saliency.data.shape == (SIDE, SIDE)
    full = np.asarray(saliency.data[0])
    assert full.dtype == np.float32 and full.shape == (SIDE, SIDE)
    assert saliency_plane(saliency, ()) is full  # read where it is, not copied
    table = session.metrics()
    layers = session.viewer.layers
    masks = [
        np.asarray(layers[name].data) == label
        for name, label in zip(table["layer"], table["label"], strict=True)
    ]
    expected = localization_metrics(full, masks)
    for row, want in zip(table.to_dict("records"), expected, strict=True):
        assert row["iou"] == pytest.approx(want["iou"], nan_ok=True)
        assert row["energy"] == pytest.approx(want["energy"], nan_ok=True)


def test_regions_of_a_large_image_are_16_bit_labels(large_session):
    session, _ = large_session
    assert all(lyr.data.dtype == np.uint16 for lyr in session.regions_layers())
    table = session.metrics()
    assert table["label"].tolist() == [1, 2]
    for name, label, area in zip(table["layer"], table["label"], table["area"], strict=True):
        assert int((np.asarray(session.viewer.layers[name].data) == label).sum()) == area > 0


def test_a_session_reopens_a_large_map_as_a_multiscale_layer(large_session, tmp_path):
    from napari_samcam._napari._session_io import read_session

    session, saliency = large_session
    folder = session.save(tmp_path / "large.samcam")[0]
    layers = {lyr.name: lyr for lyr in (Layer.create(*d) for d in read_session(folder))}
    back = layers[saliency.name]
    assert back.metadata[META_KEY]["kind"] == "saliency" and back.multiscale
    np.testing.assert_array_equal(np.asarray(back.data[0]), np.asarray(saliency.data[0]))
    assert layers["large"].multiscale is False  # the image itself stays as it was
    for regions in session.regions_layers():
        assert layers[regions.name].data.dtype == np.uint16
