"""Large images: model inputs are resized from the stored values a block at a time, never
copied whole to float32, with the same values as mapping the whole image and then resizing."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import identity_classifier
from napari_samcam import _resample
from napari_samcam.images import to_unit_range


def _reference(image: np.ndarray, size, window=None, grey: bool = False) -> torch.Tensor:
    """Map the whole image to [0, 1], then ``F.interpolate`` (the plain way)."""
    unit = torch.from_numpy(to_unit_range(image, window))
    unit = unit.permute(2, 0, 1) if unit.ndim == 3 else unit[None]
    if grey:
        unit = unit.mean(0, keepdim=True)
    return F.interpolate(unit[None], size=size, mode="bilinear", antialias=True)[0]


def test_antialias_weights_built_in_column_blocks_equal_interpolating_the_identity(monkeypatch):
    n_out, n_in = 37, 301
    eye = torch.eye(n_in)[None, None]
    expected = F.interpolate(eye, size=(n_out, n_in), mode="bilinear", antialias=True)[0, 0]
    for block in (1 << 24, 1000, 1):  # columns per block: all, a few, two (the least)
        monkeypatch.setattr(_resample, "_BLOCK_VALUES", block)
        got = _resample._weights(n_out, n_in, True)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
@pytest.mark.parametrize("colour", [False, True])
def test_downsample_image_in_blocks_matches_mapping_then_interpolating(
    rng, monkeypatch, dtype, colour
):
    high = 255 if dtype == np.uint8 else 3000
    shape = (203, 317, 3) if colour else (203, 317)
    image = (rng.random(shape) * high + 3).astype(dtype)
    low_high = (float(image.min()), float(image.max()))
    window = (0.2 * high, 0.7 * high)
    for block in (1 << 24, 5000, 1):  # one block, several, one column per block
        monkeypatch.setattr(_resample, "_BLOCK_VALUES", block)
        _resample._CACHE.clear()
        # without a window: resize the stored values, map after
        resized = _resample.downsample_image(image, (40, 60))
        low, high_ = (0.0, 255.0) if dtype == np.uint8 else low_high
        got = (resized - low) / (high_ - low)
        torch.testing.assert_close(got, _reference(image, (40, 60)), rtol=0, atol=2e-6)
        # with a window: map each block first
        from napari_samcam.images import window_map

        got = _resample.downsample_image(image, (40, 60), transform=window_map(window))
        torch.testing.assert_close(got, _reference(image, (40, 60), window), rtol=0, atol=2e-6)
        if colour:
            got = _resample.downsample_image(
                image, (40, 60), transform=window_map(window), grey=True
            )
            expected = _reference(image, (40, 60), window, grey=True)
            torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)
    assert image.dtype == dtype and image.max() > 0  # the input is left alone


@pytest.mark.parametrize("channels", [1, 3])
def test_classifier_tensor_with_a_window_maps_blocks_before_resizing(rng, monkeypatch, channels):
    from napari_samcam.classifiers import classifier_tensor

    monkeypatch.setattr(_resample, "_BLOCK_VALUES", 3000)
    image = (rng.random((333, 257, 3)) * 3000).astype(np.uint16)
    window = (500.0, 2000.0)
    for data in (image, image[..., 0]):
        ref = _reference(data, (64, 48), window, grey=channels == 1 and data.ndim == 3)
        ref = (ref.expand(channels, -1, -1) - 0.5) / 0.25
        got = classifier_tensor(data, identity_classifier(channels), window=window)
        np.testing.assert_allclose(got[0].numpy(), ref.numpy(), atol=2e-5)


def _plain_encoder_input(segmenter, image, window):
    """The encoder input as built before: the whole image mapped to [0, 1], then resized."""
    size = segmenter.model.image_size
    unit = torch.from_numpy(to_unit_range(image, window))
    unit = unit.permute(2, 0, 1)[None] if unit.ndim == 3 else unit[None, None]
    scale = size / max(image.shape[:2])
    new = (int(image.shape[0] * scale + 0.5), int(image.shape[1] * scale + 0.5))
    tensor = F.interpolate(unit * 255.0, size=new, mode="bilinear", antialias=True)
    tensor = tensor.expand(-1, 3, -1, -1)
    sam = segmenter.model.sam
    tensor = (tensor - sam.pixel_mean) / sam.pixel_std
    return F.pad(tensor, (0, size - new[1], 0, size - new[0]))


def test_sam_input_is_resized_from_the_stored_values(tiny_segmenter, rng, monkeypatch):
    monkeypatch.setattr(_resample, "_BLOCK_VALUES", 4000)
    grey = (rng.random((150, 97)) * 4000).astype(np.uint16)
    rgba = rng.integers(0, 256, (97, 150, 4), dtype=np.uint8)
    for image, window in ((grey, None), (grey, (100.0, 3000.0)), (rgba, None), (rgba, (20, 200))):
        resized, new = tiny_segmenter._prepare(image, window)
        tensor = tiny_segmenter.backend.encoder_input(resized)
        expected = _plain_encoder_input(tiny_segmenter, image, window)
        assert tensor.shape == expected.shape == (1, 3, 64, 64)
        assert new == ((64, 41) if image is grey else (41, 64))
        # pixel_std of the tiny Sam is ImageNet's (~58): 1e-4 is ~6e-3 of a grey level
        torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-4)


def _numpy_peak(fn) -> int:
    """Peak bytes numpy allocated while ``fn`` ran (numpy reports to tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_model_inputs_of_a_large_image_need_no_float_copy_of_it(tiny_segmenter, rng, monkeypatch):
    from napari_samcam.classifiers import classifier_tensor

    monkeypatch.setattr(_resample, "_BLOCK_VALUES", 1 << 18)  # 1 MiB of float32 per block
    image = rng.integers(0, 256, (2400, 2000), dtype=np.uint8)
    float_copy = image.size * 4  # 19 MB
    for window in (None, (10, 200)):
        peak = _numpy_peak(
            lambda w=window: classifier_tensor(image, identity_classifier(3), window=w)
        )
        assert peak < float_copy / 4, (window, peak)
        peak = _numpy_peak(lambda w=window: tiny_segmenter._prepare(image, w))
        assert peak < float_copy / 4, (window, peak)


def test_overlay_of_a_large_image_maps_the_pixels_shown_with_the_whole_image_range(tmp_path, rng):
    import imageio.v3 as iio

    from napari_samcam.overlays import save_overlay

    image = (rng.random((1600, 1201)) * 1000 + 500).astype(np.uint16)
    image[1, 1], image[3, 3] = 0, 4000  # extremes the shown pixels (every 3rd) leave out
    saliency = np.zeros(image.shape, np.float32)
    auto = save_overlay(tmp_path / "auto.png", image, saliency=saliency)
    windowed = save_overlay(tmp_path / "win.png", image, saliency=saliency, window=(0, 4000))
    np.testing.assert_array_equal(iio.imread(auto), iio.imread(windowed))
