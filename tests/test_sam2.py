"""The SAM 2 backend against Meta's own predictors, on random weights built from sam2's configs.

No SAM 2 weights can be downloaded here, so the models are randomly initialised (seeded).
Random weights give logits close to 0 (|logit| ~0.3 at most), so masks are compared where the
logit is clear of the threshold (|logit| > 1e-3, about 99 % of the pixels) and the comparison
also checks that most pixels are.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sam2")
torch = pytest.importorskip("torch")

from napari_samcam.errors import InputError, ModelNotAvailableError  # noqa: E402
from napari_samcam.sam.sam2_backend import Sam2Backend, build_sam2_model  # noqa: E402
from napari_samcam.sam_models import load_sam_model  # noqa: E402
from napari_samcam.segment import Segmenter  # noqa: E402

CLEAR = 1e-3


@pytest.fixture(scope="module")
def sam2_tiny():
    torch.manual_seed(0)
    return build_sam2_model("sam2.1_hiera_tiny")


@pytest.fixture(scope="module")
def small_sam2():
    """SAM 2.1 tiny at a 256 px input: the video predictor's path, four times fewer pixels."""
    torch.manual_seed(0)
    return build_sam2_model("sam2.1_hiera_tiny", overrides=("++model.image_size=256",))


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    image[30:70, 40:100] //= 3  # something to segment
    image[0, 0], image[0, 1] = 0, 255  # the full 8-bit range, as the predictor assumes
    return image


def _assert_same_mask(mask: np.ndarray, logits: np.ndarray) -> None:
    clear = np.abs(logits) > CLEAR
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(mask[clear], (logits > 0)[clear])


@pytest.mark.slow
def test_sam2_masks_and_scores_equal_the_image_predictor(sam2_tiny):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    image = _image()
    segmenter = Segmenter(load_sam_model(sam2_tiny, device="cpu"))
    assert isinstance(segmenter.backend, Sam2Backend)
    predictor = SAM2ImagePredictor(sam2_tiny)
    predictor.set_image(image)

    boxes = np.array([[10, 20, 60, 90], [30, 40, 85, 115]])  # (row0, col0, row1, col1)
    xyxy = np.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3] - 1, boxes[:, 2] - 1], 1)
    ours = segmenter.segment(image, boxes=boxes)
    logits, scores, _ = predictor.predict(box=xyxy, multimask_output=False, return_logits=True)
    for region, logit, score in zip(ours, logits, scores, strict=True):
        assert region.score == pytest.approx(float(score[0]), abs=1e-5)
        _assert_same_mask(region.mask, logit[0])

    # one click: three masks proposed, the best-scored kept (as SamPredictor users do)
    click = segmenter.segment(image, points=[[50, 70]])[0]
    logits, scores, _ = predictor.predict(
        point_coords=np.array([[70, 50]]), point_labels=np.array([1]), return_logits=True
    )
    best = int(np.argmax(scores))
    assert click.score == pytest.approx(float(scores[best]), abs=1e-5)
    _assert_same_mask(click.mask, logits[best])

    # a box with a positive and a negative click: box corners first, then the clicks
    mixed = segmenter.segment(
        image, boxes=[[10, 20, 60, 90]], points=[[40, 50], [15, 25]], point_labels=[1, 0]
    )[0]
    logits, scores, _ = predictor.predict(
        point_coords=np.array([[50, 40], [25, 15]]),
        point_labels=np.array([1, 0]),
        box=np.array([20, 10, 89, 59]),
        multimask_output=False,
        return_logits=True,
    )
    assert mixed.score == pytest.approx(float(scores[0]), abs=1e-5)
    _assert_same_mask(mixed.mask, logits[0])
    assert segmenter.encoder_calls == 1  # every prompt on the cached embedding


def _reference_volume(model, frames, key, xyxy, size, monkeypatch):
    """SAM2VideoPredictor.init_state / add_new_points_or_box / propagate_in_video, upstream,
    given the same prepared frames (its own loader reads only JPEG folders and MP4 files)."""
    import sam2.sam2_video_predictor as video

    monkeypatch.setattr(video, "load_video_frames", lambda **_: (frames, *size))
    logits = {}
    with torch.inference_mode():
        state = model.init_state("volume")
        model.add_new_points_or_box(state, frame_idx=key, obj_id=1, box=xyxy)
        for reverse in (False, True):
            for index, _, out in model.propagate_in_video(
                state, start_frame_idx=key, reverse=reverse
            ):
                logits.setdefault(index, out[0, 0].numpy())
    return [logits[z] for z in range(len(frames))]


@pytest.mark.slow
def test_sam2_volume_from_a_box_equals_the_video_predictor(small_sam2, monkeypatch):
    rng = np.random.default_rng(0)
    volume = rng.random((4, 48, 40)).astype(np.float32)
    volume[:, 10:30, 12:30] += 1.5
    segmenter = Segmenter(load_sam_model(small_sam2, device="cpu"))
    seen = []
    regions = segmenter.segment_volume(
        volume, (8, 10, 32, 32), key_slice=1, progress=lambda d, t: seen.append((d, t))
    )
    assert [r.prompt["slice"] for r in regions] == [0, 1, 2, 3]
    assert all(r.prompt["key_slice"] == 1 and r.mask.shape == (48, 40) for r in regions)
    assert seen[-1] == (4, 4)

    window = (float(volume.min()), float(volume.max()))
    frames = torch.cat([segmenter._prepare(volume[z], window)[0] for z in range(4)])
    frames = segmenter.backend.normalized(frames)
    xyxy = np.array([10, 8, 31, 31], dtype=np.float32)
    reference = _reference_volume(small_sam2, frames, 1, xyxy, (48, 40), monkeypatch)
    for region, logits in zip(regions, reference, strict=True):
        _assert_same_mask(region.mask, logits)
        assert region.mask.any()


def test_volume_needs_a_model_that_remembers_slices(tiny_segmenter):
    with pytest.raises(InputError, match="SAM 2"):
        tiny_segmenter.segment_volume(np.zeros((3, 32, 32)), (2, 2, 20, 20), key_slice=0)


def test_volume_arguments_are_checked_before_any_work(small_sam2):
    segmenter = Segmenter(load_sam_model(small_sam2, device="cpu"))
    with pytest.raises(InputError, match="key_slice=5"):
        segmenter.segment_volume(np.zeros((3, 32, 32)), (2, 2, 20, 20), key_slice=5)
    with pytest.raises(InputError, match="shape"):
        segmenter.segment_volume(np.zeros((32, 32)), (2, 2, 20, 20), key_slice=0)
    with pytest.raises(InputError, match="box"):
        segmenter.segment_volume(np.zeros((3, 32, 32)), (2, 2, 40, 20), key_slice=0)
    assert segmenter.encoder_calls == 0


def test_sam2_checkpoint_loads_as_data_and_errors_name_the_file(small_sam2, tmp_path):
    from napari_samcam.sam import sam2_backend

    path = tmp_path / "sam2.1_hiera_tiny.pt"
    state = {k: v.clone() for k, v in small_sam2.state_dict().items()}
    torch.save({"model": state}, path)
    model = sam2_backend.load_sam2(
        "sam2.1_hiera_tiny", checkpoint=path, cache=tmp_path, overrides=("++model.image_size=256",)
    )
    loaded = model.sam.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)

    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"image_encoder.x": torch.zeros(1)}}, wrong)
    with pytest.raises(Exception, match=r"wrong\.pt"):
        sam2_backend.load_sam2("sam2.1_hiera_tiny", checkpoint=wrong, cache=tmp_path)

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, evil)
    with pytest.raises(Exception, match=r"evil\.pt"):
        sam2_backend.load_sam2("sam2.1_hiera_tiny", checkpoint=evil, cache=tmp_path)


def test_sam2_names_without_a_checkpoint_say_where_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMCAM_CACHE", str(tmp_path))
    with pytest.raises(ModelNotAvailableError, match=r"sam2\.1_hiera_small\.pt") as info:
        load_sam_model("sam2.1_hiera_small")
    assert "dl.fbaipublicfiles.com/segment_anything_2/092824" in str(info.value)
    assert str(tmp_path) in str(info.value)


@pytest.mark.slow
def test_samcam_segment_volume_from_box_writes_the_apis_masks(small_sam2, tmp_path, monkeypatch):
    import json

    import tifffile

    import napari_samcam.segment as segment
    from napari_samcam.cli import main

    rng = np.random.default_rng(0)
    volume = rng.random((3, 40, 36)).astype(np.float32)
    volume[:, 8:28, 10:26] += 1.5
    path = tmp_path / "volume.tif"
    tifffile.imwrite(path, volume, photometric="minisblack")
    segmenter = Segmenter(load_sam_model(small_sam2, device="cpu"))
    monkeypatch.setattr(segment, "load_segmenter", lambda *a, **k: segmenter)
    out = tmp_path / "out"
    args = ["segment", str(path), "--volume-from-box", "--slice", "2", "--box", "6,8,30,28"]
    assert main([*args, "--out", str(out)]) == 0
    masks = tifffile.imread(out / "masks.tif")
    info = json.loads((out / "regions.json").read_text())
    expected = segmenter.segment_volume(volume, (6, 8, 30, 28), key_slice=2)
    assert masks.shape == (3, 40, 36)
    np.testing.assert_array_equal(masks.astype(bool), np.stack([r.mask for r in expected]))
    assert [r["prompt"]["slice"] for r in info["regions"]] == [0, 1, 2]
    assert {r["prompt"]["key_slice"] for r in info["regions"]} == {2}
    assert [r["area"] for r in info["regions"]] == [r.area for r in expected]


def test_samcam_segment_volume_from_box_needs_one_box_and_a_volume(tmp_path, capsys):
    import tifffile

    from napari_samcam.cli import main

    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, np.zeros((20, 20), dtype=np.float32))
    args = ["segment", str(path), "--volume-from-box", "--out", str(tmp_path / "o")]
    assert main([*args, "--box", "1,1,9,9", "--box", "2,2,8,8"]) == 2
    assert "exactly one --box" in capsys.readouterr().err
    assert main([*args, "--box", "1,1,9,9", "--slice", "0"]) == 2
    assert "2-D image" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
