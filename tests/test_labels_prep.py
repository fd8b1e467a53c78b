"""What a segmentation job's worker prepares of the regions Labels layers: the old regions'
boxes and the largest label, so that the GUI thread clears and numbers regions without a pass
over the whole array. Checked against the whole-array passes they replace."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samcam._napari._labels_prep import (
    LabelsPrep,
    clear_label,
    labels_buffer,
    prepare_labels,
    scan_labels,
)


def _labelled_volume(seed: int) -> np.ndarray:
    """Three planes with rectangles of labels 1-9, some overlapping (a later one on top)."""
    rng = np.random.default_rng(seed)
    data = np.zeros((3, 60, 80), dtype=np.uint16)
    for label in range(1, 10):
        plane = rng.integers(0, 3)
        r0, c0 = rng.integers(0, 50), rng.integers(0, 70)
        data[plane, r0 : r0 + rng.integers(2, 12), c0 : c0 + rng.integers(2, 12)] = label
    return data


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clearing_inside_the_scanned_boxes_equals_a_whole_array_pass(seed):
    data = _labelled_volume(seed)
    present = [int(v) for v in np.unique(data) if v]
    planes = {label: (int(np.nonzero(data == label)[0][0]),) for label in present}
    dropped = {label: planes[label] for label in present[::2]}
    scan = scan_labels(data, dropped)

    expected = data.copy()
    for label in dropped:
        expected[expected == label] = 0
    assert scan.largest == int(expected.max())  # the largest label left after clearing
    for label in dropped:
        where = scan.boxes[label]
        assert where[0] == dropped[label][0]
        assert (data[where] == label).sum() == (data == label).sum()  # the box holds them all
        clear_label(data, label, scan)
    np.testing.assert_array_equal(data, expected)


def test_a_label_with_no_pixel_is_found_nowhere_and_clears_nothing():
    data = np.zeros((20, 30), dtype=np.uint16)
    data[2:5, 3:9] = 4
    scan = scan_labels(data, {7: ()})
    assert scan.boxes == {7: None} and scan.largest == 4
    before = data.copy()
    clear_label(data, 7, scan)
    np.testing.assert_array_equal(data, before)


def test_an_array_that_was_not_scanned_is_cleared_by_a_whole_pass():
    scanned = np.zeros((10, 10), dtype=np.uint16)
    other = scanned.copy()
    other[1:3, 1:3] = 5
    other[8, 8] = 5
    prep = LabelsPrep(scans=[scan_labels(scanned, {})])
    assert prep.scan_of(scanned).array is scanned
    assert prep.scan_of(other) is None  # equal values are not the same layer data
    clear_label(other, 5, prep.scan_of(other))
    assert not other.any()


def test_prepare_labels_scans_every_array_and_allocates_the_new_layer():
    data = _labelled_volume(5)
    top = data[:1]
    prep = prepare_labels(
        {"labels_to_scan": [(data, {1: (0,)}), (top, {})], "new_layer_shape": (2, 8, 9)}
    )
    assert len(prep.scans) == 2
    assert prep.scans[0].array is data and prep.scans[1].array is top
    assert prep.scans[1].largest == int(top.max()) and prep.scans[1].boxes == {}
    assert prep.buffer.shape == (2, 8, 9) and not prep.buffer.any()
    assert prepare_labels({}).buffer is None and prepare_labels({}).scans == []


def test_labels_buffer_is_a_zeroed_16_bit_array_or_nothing():
    assert labels_buffer(None) is None
    buffer = labels_buffer((3, 40, 50))
    assert buffer.shape == (3, 40, 50) and buffer.dtype == np.uint16 and not buffer.any()


def test_a_second_segment_clears_the_old_regions_with_the_workers_boxes(
    tiny_segmenter, monkeypatch
):
    """The session's jobs hand every regions array of the image to the worker, and the apply
    on the GUI thread finds the scan of each: no whole-array pass is left to it."""
    pytest.importorskip("napari")
    from napari.components import ViewerModel

    from napari_samcam._napari import _labels_prep
    from napari_samcam._napari._session import SamcamSession

    image = np.full((3, 96, 96), 40, dtype=np.uint8)
    image[:, 30:60, 20:50] = 200
    viewer = ViewerModel()
    viewer.add_image(image, name="stack")
    session = SamcamSession(viewer, segmenter=tiny_segmenter)
    session.segment(boxes=[(25, 15, 65, 55)], index=(1,))
    session.segment(boxes=[(25, 15, 65, 55)], index=(2,))
    session.segment(points=[(40, 30)], index=(1,))  # another kind's layer

    found = []
    real_scan_of = _labels_prep.LabelsPrep.scan_of
    monkeypatch.setattr(
        _labels_prep.LabelsPrep,
        "scan_of",
        lambda self, array: found.append(real_scan_of(self, array)) or found[-1],
    )
    regions = session.segment(boxes=[(28, 18, 62, 52)], index=(1,))
    assert found and all(scan is not None for scan in found)
    table = regions.features
    assert sorted(table["slice"].astype(str)) == ["1", "2"]  # slice 1 replaced, 2 kept
    labels = session.metrics()["label"].tolist()
    assert len(labels) == len(set(labels)) == 3  # unique over the image's layers
    for layer in session.regions_layers():
        data = np.asarray(layer.data)
        for label, area in zip(layer.features["label"], layer.features["area"], strict=True):
            assert int((data == label).sum()) == int(area) > 0
        in_table = set(int(v) for v in layer.features["label"])
        assert set(int(v) for v in np.unique(data) if v) == in_table
