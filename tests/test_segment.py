import numpy as np
import pytest

from napari_samcam.errors import PromptError
from napari_samcam.segment import context_crop, to_sam_coords


def test_to_sam_coords_flips_and_scales():
    xy = to_sam_coords(np.array([[10, 20], [0, 5]]), (100, 200), (50, 100))
    np.testing.assert_allclose(xy, [[10, 5], [2.5, 0]])


def test_second_prompt_reuses_the_embedding(tiny_segmenter, rng):
    image = rng.integers(0, 255, (40, 60), dtype=np.uint8)
    r1 = tiny_segmenter.segment(image, boxes=[[5, 5, 30, 40]])
    r2 = tiny_segmenter.segment(image, points=[[10, 12]], point_labels=[1])
    r3 = tiny_segmenter.segment(image, boxes=[[5, 5, 30, 40], [0, 0, 10, 10]])
    assert tiny_segmenter.encoder_calls == 1
    assert len(r1) == 1 and len(r2) == 1 and len(r3) == 2
    assert r1[0].mask.shape == (40, 60) and r1[0].mask.dtype == bool
    np.testing.assert_array_equal(r1[0].mask, r3[0].mask)
    assert r1[0].source == "sam-box" and r1[0].prompt["box"] == [5, 5, 30, 40]
    assert r2[0].source == "sam-points" and r2[0].prompt["points"] == [[10.0, 12.0]]
    other = image.copy()
    other[0, 0] ^= 1
    tiny_segmenter.segment(other, boxes=[[5, 5, 30, 40]])
    assert tiny_segmenter.encoder_calls == 2


def test_mask_upsampling_matches_upstream_postprocessing(tiny_segmenter, rng):
    import torch

    image = rng.integers(0, 255, (37, 53), dtype=np.uint8)
    emb = tiny_segmenter.embed(image)
    sam = tiny_segmenter.model.sam
    for seed in range(5):
        low = torch.randn(16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        expected = sam.postprocess_masks(low[None, None], emb.input_size, emb.original_size)
        mine = tiny_segmenter._upsampler(emb, 16).mask(low)
        np.testing.assert_array_equal(mine, (expected[0, 0] > 0).numpy())


@pytest.mark.parametrize(
    ("input_size", "original_size"),
    [((64, 48), (37, 29)), ((64, 64), (200, 200)), ((48, 64), (90, 120)), ((64, 31), (64, 31))],
)
def test_mask_upsampler_logits_match_interpolate(input_size, original_size):
    """Both resizing steps of ``postprocess_masks`` (crops smaller and larger than the input)."""
    import torch
    import torch.nn.functional as F

    from napari_samcam.sam.upsample import MaskUpsampler

    upsampler = MaskUpsampler.padded(16, 64, input_size, original_size)
    for seed in range(3):
        low = torch.randn(16, 16, generator=torch.Generator().manual_seed(seed)) * 3 + 1
        padded = F.interpolate(low[None, None], (64, 64), mode="bilinear", align_corners=False)
        cropped = padded[..., : input_size[0], : input_size[1]]
        expected = F.interpolate(cropped, original_size, mode="bilinear", align_corners=False)
        window, (r0, r1, c0, c1) = upsampler.logits(low)
        np.testing.assert_allclose(window, expected[0, 0, r0:r1, c0:c1], atol=1e-5)
        outside = expected[0, 0].clone()
        outside[r0:r1, c0:c1] = 0
        assert (outside <= 0).all()  # nothing positive left out of the window
        np.testing.assert_array_equal(upsampler.mask(low), (expected[0, 0] > 0).numpy())


def test_masks_match_upstream_predictor(tiny_segmenter, rng):
    """Same prompt, same embedding: our decoder path equals SamPredictor's masks."""
    from segment_anything import SamPredictor

    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    emb = tiny_segmenter.embed(image)
    predictor = SamPredictor(tiny_segmenter.model.sam)
    predictor.features = emb.features
    predictor.original_size, predictor.input_size = emb.original_size, emb.input_size
    predictor.is_image_set = True
    box = np.array([8, 10, 40, 50])
    ours = tiny_segmenter.segment(image, boxes=[box])[0]
    masks, scores, _ = predictor.predict(box=np.array([10, 8, 49, 39]), multimask_output=False)
    np.testing.assert_array_equal(ours.mask, masks[0])
    assert ours.score == pytest.approx(float(scores[0]), rel=1e-5)


def test_context_mode_embeds_a_crop_per_box(tiny_segmenter, rng):
    image = rng.integers(0, 255, (200, 300), dtype=np.uint8)
    regions = tiny_segmenter.segment(
        image, boxes=[[50, 60, 70, 90], [100, 200, 130, 240]], context=2.5
    )
    assert tiny_segmenter.encoder_calls == 2
    for region in regions:
        r0, c0, r1, c1 = region.prompt["crop"]
        outside = region.mask.copy()
        outside[r0:r1, c0:c1] = False
        assert not outside.any()
        assert region.prompt["context"] == 2.5
    tiny_segmenter.segment(image, boxes=[[50, 60, 70, 90]], context=2.5)
    assert tiny_segmenter.encoder_calls == 2


def test_context_crop_geometry():
    crop = context_crop(np.array([40, 40, 60, 80]), (200, 300), 2.0, 16)
    assert crop == (10, 20, 90, 100)  # 2 x the long side (40) = 80, centred on (50, 60)
    edge = context_crop(np.array([0, 0, 10, 10]), (200, 300), 3.0, 16)
    assert edge[:2] == (0, 0) and edge[2] - edge[0] == 30


def test_bad_prompts_raise(tiny_segmenter):
    image = np.zeros((20, 30), np.uint8)
    with pytest.raises(PromptError, match="outside the image"):
        tiny_segmenter.segment(image, points=[[25, 5]])
    with pytest.raises(PromptError, match=r"boxes\[0\] .* reaches outside"):
        tiny_segmenter.segment(image, boxes=[[0, 0, 21, 10]])
    with pytest.raises(PromptError, match="empty"):
        tiny_segmenter.segment(image, boxes=[[5, 5, 5, 10]])
    with pytest.raises(PromptError, match="one label per point"):
        tiny_segmenter.segment(image, points=[[1, 1]], point_labels=[2])
    with pytest.raises(PromptError, match="no prompt"):
        tiny_segmenter.segment(image)


@pytest.mark.slow
def test_litemedsam_box_prompt_segments_the_right_lung(chest_radiograph, litemedsam):
    """Real model, real radiograph: a box around the right lung gives a lung-shaped mask."""
    image = chest_radiograph.array[::4, ::4]  # 489 x 461
    box = np.array([90, 60, 400, 225])  # patient's right lung (image left)
    (region,) = litemedsam.segment(image, boxes=[box])
    r0, c0, r1, c1 = box
    inside = region.mask[r0:r1, c0:c1].sum() / region.area
    fill = region.area / ((r1 - r0) * (c1 - c0))
    assert region.score > 0.7
    assert inside > 0.95  # the mask stays in the box
    assert 0.3 < fill < 0.95  # and is not the box itself: a lung is not a rectangle
    # Lungs are dark (air) on a radiograph: the mask is darker than the rest of the box.
    crop, mask = image[r0:r1, c0:c1], region.mask[r0:r1, c0:c1]
    assert crop[mask].mean() < crop[~mask].mean()


@pytest.mark.parametrize("with_points", [False, True])
def test_box_prompts_in_batches_give_the_masks_and_scores_of_one_batch(tiny_sam, rng, with_points):
    """Memory is bounded by decoding boxes a few at a time; the answers do not change."""
    from napari_samcam.sam_models import load_sam_model
    from napari_samcam.segment import Segmenter

    image = rng.integers(0, 255, (70, 90), dtype=np.uint8)
    corners = rng.integers(0, 40, (11, 2))
    boxes = np.concatenate([corners, corners + rng.integers(6, 30, (11, 2))], 1)
    points = {"points": [[35, 45]], "point_labels": [1]} if with_points else {}
    results = {
        batch: Segmenter(load_sam_model(tiny_sam), prompt_batch=batch).segment(
            image, boxes=boxes, **points
        )
        for batch in (1, 3, 11, 64)
    }
    reference = results[64]
    assert len(reference) == 11
    assert len({r.mask.tobytes() for r in reference}) > 1  # the boxes give different masks
    for batch, regions in results.items():
        assert [r.prompt["box"] for r in regions] == boxes.tolist(), batch
        for region, expected in zip(regions, reference, strict=True):
            np.testing.assert_array_equal(region.mask, expected.mask)
            # the decoder's matrix products round differently for other batch sizes
            assert region.score == pytest.approx(expected.score, abs=1e-6)


def test_prompt_batch_must_be_positive(tiny_sam):
    from napari_samcam.errors import InputError
    from napari_samcam.sam_models import load_sam_model
    from napari_samcam.segment import Segmenter

    with pytest.raises(InputError, match="prompt_batch=0"):
        Segmenter(load_sam_model(tiny_sam), prompt_batch=0)


def test_mask_upsampling_in_row_blocks_matches_upstream(tiny_segmenter, rng, monkeypatch):
    """Full-resolution logits are computed a block of rows at a time; same masks."""
    import torch

    from napari_samcam.sam import upsample

    image = rng.integers(0, 255, (301, 173), dtype=np.uint8)
    emb = tiny_segmenter.embed(image)
    sam = tiny_segmenter.model.sam
    for tile in (1, 500, 1 << 22):  # one row per block, a few rows, the whole window
        monkeypatch.setattr(upsample, "TILE_PIXELS", tile)
        for seed in range(3):
            low = torch.randn(16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
            expected = sam.postprocess_masks(low[None, None], emb.input_size, emb.original_size)
            mine = tiny_segmenter._upsampler(emb, 16).mask(low)
            assert mine.any() and not mine.all()
            np.testing.assert_array_equal(mine, (expected[0, 0] > 0).numpy())
