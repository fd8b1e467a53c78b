"""Point prompts on box-only SAM models: clicks become scored candidate boxes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samcam.errors import PromptError
from napari_samcam.point_prompts import (
    PointBoxSearch,
    boundary_contrast,
    candidate_boxes,
    segment_points_with_boxes,
)


@pytest.fixture
def box_only(tiny_sam):
    from napari_samcam.sam_models import SamModel
    from napari_samcam.segment import Segmenter

    return Segmenter(SamModel(tiny_sam, "tiny-box-only", image_size=64, box_only=True))


def _scene(rng, shape=(120, 160)):
    image = rng.normal(60, 5, shape).clip(0, 255)
    image[40:70, 50:90] += 120  # a bright rectangle
    return image.astype(np.uint8)


def test_candidate_boxes_around_one_point():
    boxes = candidate_boxes(np.array([[20, 30]]), np.array([4, 10]), (100, 100))
    np.testing.assert_array_equal(boxes, [[10, 20, 30, 40], [16, 26, 24, 34]])
    shifted = candidate_boxes(np.array([[50, 50]]), np.array([10]), (100, 100), (-0.5, 0, 0.5))
    assert len(shifted) == 9
    assert set(np.unique(shifted[:, 2] - shifted[:, 0])) == {20}
    assert set(np.unique(shifted[:, 0])) == {36, 40, 46}  # centres 45.5, 50.5, 55.5
    # every shifted box still holds the click
    assert ((shifted[:, :2] <= 50) & (shifted[:, 2:] > 50)).all()


def test_candidate_boxes_span_several_points_and_stay_inside_the_image():
    points = np.array([[10, 10], [30, 60]])
    boxes = candidate_boxes(points, np.array([15]), (50, 70))
    assert len(boxes) == 3  # one per point, one spanning both
    assert [0, 0, 46, 70] in boxes.tolist()  # rows 10..30, cols 10..60 grown by 15, clipped
    assert (boxes[:, [0, 2]] <= 50).all() and (boxes[:, [1, 3]] <= 70).all()
    assert (boxes >= 0).all()


def test_boundary_contrast_prefers_the_mask_on_the_edges():
    image = np.zeros((60, 60), np.float32)
    image[20:40, 20:40] = 1
    from scipy import ndimage

    gradient = ndimage.gaussian_gradient_magnitude(image, 1.0)
    right = np.zeros_like(image, dtype=bool)
    right[20:40, 20:40] = True
    inner = np.zeros_like(right)
    inner[25:35, 25:35] = True
    assert boundary_contrast(right, gradient) > 3 * boundary_contrast(inner, gradient)
    assert boundary_contrast(np.zeros_like(right), gradient) == 0.0
    assert boundary_contrast(right, np.zeros_like(gradient)) == 0.0


def test_points_on_a_box_only_model_are_turned_into_boxes(box_only, rng):
    image = _scene(rng)
    (region,) = box_only.segment(image, points=[[55, 70]])
    assert region.source == "sam-points"
    done = region.prompt["points_to_box"]
    assert done["strategy"].startswith("points→box ")
    r0, c0, r1, c1 = done["box"]
    assert str(done["box"][0]) in done["strategy"]
    assert r0 <= 55 < r1 and c0 <= 70 < c1  # the chosen box holds the click
    assert done["candidates"] > 10
    # one crop for the search, at most one per further level, one for the refinement
    assert 1 <= done["encoder_runs"] == box_only.encoder_calls <= PointBoxSearch().levels + 1
    assert region.prompt["points"] == [[55.0, 70.0]] and region.prompt["context"] == 2.5
    assert region.mask.shape == image.shape and region.mask.dtype == bool
    assert region.model == "tiny-box-only"


def test_a_nearby_click_reuses_the_search_embeddings(box_only, rng):
    image = _scene(rng)
    (first,) = box_only.segment(image, points=[[55, 70]])
    assert first.prompt["points_to_box"]["encoder_runs"] >= 2
    (again,) = box_only.segment(image, points=[[56, 71]])  # same crops once snapped
    assert again.prompt["points_to_box"]["encoder_runs"] <= 1  # at most a new refinement


def test_contrast_preprocessing_reaches_the_click_search(box_only, rng):
    image = _scene(rng)
    (plain,) = box_only.segment(image, points=[[55, 70]])
    runs = box_only.encoder_calls
    (region,) = box_only.segment(image, points=[[55, 70]], preprocess="clahe")
    assert region.prompt["preprocess"] == "clahe:0.01"
    assert "preprocess" not in plain.prompt
    # the pre-processed image has embeddings of its own, not the plain image's cached ones
    assert box_only.encoder_calls > runs


def test_no_mask_holds_a_negative_point(box_only, rng):
    image = _scene(rng)
    positive = np.array([[55.0, 70.0]])
    free, _, _ = segment_points_with_boxes(box_only, image, positive, np.array([1]), key="s")
    rows, cols = np.nonzero(free)
    far = int(np.argmax((rows - 55) ** 2 + (cols - 70) ** 2))
    negative = [int(rows[far]), int(cols[far])]  # inside the mask chosen without it
    points = np.concatenate([positive, [negative]])
    mask, _, done = segment_points_with_boxes(box_only, image, points, np.array([1, 0]), key="s")
    assert not done["fallback"]
    assert not mask[negative[0], negative[1]]
    assert mask.any()


def test_box_and_points_prompt_the_box_and_let_points_choose(box_only, rng):
    image = _scene(rng)
    (region,) = box_only.segment(image, points=[[55, 70]], boxes=[[35, 45, 75, 95]])
    assert region.source == "sam-box"
    assert region.prompt["box"] == [35, 45, 75, 95]
    done = region.prompt["points_to_box"]
    assert done["strategy"].startswith("box 35,45,75,95")
    assert done["box"] == [35, 45, 75, 95]
    assert done["candidates"] == 4  # the single output and the three multimask outputs
    assert done["encoder_runs"] == 1
    r0, c0, r1, c1 = done["crop"]
    outside = region.mask.copy()
    outside[r0:r1, c0:c1] = False
    assert not outside.any()


def test_only_negative_points_need_a_box(box_only):
    with pytest.raises(PromptError, match="all negative"):
        box_only.segment(np.zeros((40, 40), np.uint8), points=[[10, 10]], point_labels=[0])


def test_models_that_take_points_get_them_natively(tiny_segmenter, rng):
    image = _scene(rng)
    assert not tiny_segmenter.model.box_only
    (region,) = tiny_segmenter.segment(image, points=[[55, 70]])
    assert "points_to_box" not in region.prompt
    assert tiny_segmenter.encoder_calls == 1


@pytest.fixture(scope="module")
def lesions():
    from napari_samcam.phantoms import generate_phantoms

    return [case for case in generate_phantoms(12, seed=11) if case.label][:4]


@pytest.mark.slow
def test_litemedsam_click_at_a_lesion_centre_segments_the_lesion(litemedsam, lesions):
    """Real model, real phantoms: one click gives the lesion, a negative click stays out.

    Over 30 phantom lesions (scripts/measure_point_prompts.py, docs/napari.md) a centre click
    gave mean Dice 0.70 (median 0.80) with a tail of misses (a neighbouring outline wins);
    the same click given to the model as a point gave 0.16, the issue's click pair IoU 0.10.
    On these four (measured 0.60, 0.74, 0.84, 0.11) a mean of 0.5 and two lesions above 0.7
    hold with room for another machine's rounding, and fail for the old answer.
    """
    assert litemedsam.model.box_only
    scores = []
    for case in lesions:
        rows, cols = np.nonzero(case.mask)
        nearest = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)
        centre = [int(rows[nearest]), int(cols[nearest])]
        (region,) = litemedsam.segment(case.image, points=[centre])
        truth = case.mask
        scores.append(2 * (region.mask & truth).sum() / (region.mask.sum() + truth.sum()))
        assert region.prompt["points_to_box"]["encoder_runs"] <= PointBoxSearch().levels + 1
        r0, _, r1, _ = case.box
        negative = [r0 - 4, centre[1]] if r0 >= 4 else [r1 + 3, centre[1]]
        (fenced,) = litemedsam.segment(case.image, points=[centre, negative], point_labels=[1, 0])
        assert not fenced.mask[negative[0], negative[1]]
        assert fenced.mask[centre[0], centre[1]]
    assert np.mean(scores) >= 0.5, scores
    assert sum(score > 0.7 for score in scores) >= 2, scores
