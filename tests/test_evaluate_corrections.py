"""Correcting one evaluation item: SAM prompted again, the region re-scored, saved as truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import TINY_EVALUATION_METHODS, build_tiny_sam

METHODS = TINY_EVALUATION_METHODS


@pytest.fixture
def stored(tiny_evaluation):
    from napari_samcam.evaluation.stored import open_evaluation

    return open_evaluation(tiny_evaluation.out)


def _region(view, source):
    return next(r for r in view.regions if r[0]["region_source"] == source)


def test_rescoring_a_stored_region_gives_its_stored_scores(stored):
    from napari_samcam.evaluation.corrections import rescore_item

    item = stored.items()[0]
    view = stored.item_view(item)
    for source in ("ground-truth", "sam-saliency-box"):
        record, mask, scores = _region(view, source)
        fresh = rescore_item(stored.config, record, mask, view.saliencies)
        # an annotation region is scored against every map, a saliency-based one against its own
        expected = len(METHODS) if source == "ground-truth" else 1
        assert len(fresh) == expected
        for _, row in fresh.iterrows():
            old = scores[scores["cam_method"] == row["cam_method"]].iloc[0]
            for metric in ("iou", "energy", "hit", "dice", "auroc"):
                assert row[metric] == pytest.approx(old[metric], abs=0.02, nan_ok=True)


def test_resegment_and_rescore_a_new_box(stored):
    from napari_samcam.errors import InputError
    from napari_samcam.evaluation.corrections import rescore_item, resegment
    from napari_samcam.metrics import localization_metrics
    from napari_samcam.segment import load_segmenter

    item = stored.items()[0]
    view = stored.item_view(item)
    record = _region(view, "sam-box")[0]
    segmenter = load_segmenter(build_tiny_sam())
    box = np.array([[10, 12, 50, 60]])
    mask = resegment(segmenter, view.image, boxes=box)
    direct = segmenter.segment(view.image, boxes=box)[0].mask
    np.testing.assert_array_equal(mask, direct)
    fresh = rescore_item(stored.config, record, mask, view.saliencies)
    binarization = {
        k: v for k, v in stored.config["config"]["binarization"].items() if v is not None
    }
    for provenance, saliency in view.saliencies:
        row = fresh[fresh["cam_method"] == provenance["cam_method"]].iloc[0]
        want = localization_metrics(saliency, mask, **binarization)
        assert row["iou"] == pytest.approx(want["iou"], nan_ok=True)
        assert row["energy"] == pytest.approx(want["energy"], nan_ok=True)
    # a region erased to nothing: the scores that need a region say so
    erased = rescore_item(stored.config, record, np.zeros_like(mask), view.saliencies)
    for _, row in erased.iterrows():
        assert math.isnan(row["hit"]) and row["nan_reasons"]["hit"] == "the region is empty"
        assert not math.isnan(row["iou"]) and "iou" not in row["nan_reasons"]
    clicks, polarity = np.array([[30.0, 35.0], [5.0, 5.0]]), np.array([1, 0])
    clicked = resegment(segmenter, view.image, points=clicks, point_labels=polarity)
    direct = segmenter.segment(view.image, points=clicks, point_labels=polarity)[0].mask
    np.testing.assert_array_equal(clicked, direct)
    with pytest.raises(InputError, match="draw a box"):
        resegment(segmenter, view.image)


def test_save_ground_truth_is_read_back_by_load_manifest(stored, tmp_path):
    from napari_samcam.errors import OutputExistsError
    from napari_samcam.evaluation.corrections import save_ground_truth
    from napari_samcam.evaluation.manifests import load_manifest

    items = stored.items()
    masks = {}
    for item in items[:2]:
        view = stored.item_view(item)
        mask = np.zeros(view.image.shape[:2], dtype=bool)
        mask[5 + item : 30, 8 : 40 - item] = True
        masks[item] = mask
        path = stored.job_arrays(item).image_path
        manifest = save_ground_truth(mask, tmp_path / "gt" / f"item{item}.png", path, cls="lesion")
    loaded = load_manifest(manifest)
    assert len(loaded) == 2
    for entry, item in zip(loaded, items[:2], strict=True):
        assert entry.cls == "lesion" and entry.label == "1"
        assert entry.path.resolve() == stored.job_arrays(item).image_path.resolve()
        np.testing.assert_array_equal(entry.load_mask(masks[item].shape), masks[item])
    before = (tmp_path / "gt" / f"item{items[0]}.png").read_bytes()
    with pytest.raises(OutputExistsError, match="exists"):
        save_ground_truth(masks[items[1]], tmp_path / "gt" / f"item{items[0]}.png", path)
    assert (tmp_path / "gt" / f"item{items[0]}.png").read_bytes() == before
    with pytest.raises(OutputExistsError, match="already has a ground truth"):
        save_ground_truth(masks[items[1]], tmp_path / "gt" / "again.png", path, cls="lesion")
    assert not (tmp_path / "gt" / "again.png").exists()
    assert len(load_manifest(manifest)) == 2


def test_what_cannot_be_corrected_says_why(stored):
    from napari_samcam.errors import InputError
    from napari_samcam.evaluation.corrections import evaluation_segmenter, rescore_item

    # the tiny SAM was passed as an object: config.json names only its class
    assert stored.config["config"]["sam"]["spec"] == "Sam"
    with pytest.raises(InputError, match="cannot be loaded again by name"):
        evaluation_segmenter(stored.config)
    with pytest.raises(InputError, match="used no SAM model"):
        evaluation_segmenter({"config": {"sam": None}})
    view = stored.item_view(stored.items()[0])
    record, mask, _ = _region(view, "ground-truth")
    chex = {"config": {**stored.config["config"], "protocol": "chexlocalize"}}
    with pytest.raises(InputError, match="'samcam' protocol only"):
        rescore_item(chex, record, mask, view.saliencies)
    with pytest.raises(InputError, match="image's shape"):
        rescore_item(stored.config, record, mask[:-1], view.saliencies)
