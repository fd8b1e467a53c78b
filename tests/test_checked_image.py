"""An image is validated once, where it enters, and passed inward as a CheckedImage."""

from __future__ import annotations

import numpy as np
import pytest

import napari_samcam.images as images
from napari_samcam.errors import InputError
from napari_samcam.images import CheckedImage, checked_image, validate_image


def test_constructing_is_the_check():
    with pytest.raises(InputError, match=r"scan: 1 pixel\(s\) are NaN"):
        CheckedImage(np.array([[0.0, np.nan], [1.0, 2.0]]), name="scan")
    with pytest.raises(InputError, match=r"scan: shape \(4,\) is not an image"):
        CheckedImage(np.zeros(4), name="scan")
    checked = CheckedImage(np.ones((3, 5), dtype=bool))
    assert checked.dtype == np.uint8 and checked.shape == (3, 5) and checked.ndim == 2
    assert not checked.volume
    # the NaN passes a check that leaves finite values out, and says so
    lax = CheckedImage(np.array([[0.0, np.nan], [1.0, 2.0]]), finite=False)
    assert lax.finite is False


def test_checked_images_are_not_checked_again(monkeypatch):
    checked = CheckedImage(np.arange(12.0).reshape(3, 4))
    calls = []
    real = images.validate_image
    monkeypatch.setattr(images, "validate_image", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert checked_image(checked) is checked
    assert checked_image(checked, finite=False) is checked
    assert validate_image(checked) is checked.array
    assert calls == []
    # an array, or a check that left out what is asked for now, is checked
    lax = CheckedImage(np.array([[0.0, np.nan], [1.0, 2.0]]), finite=False)
    assert checked_image(lax, finite=False) is lax
    with pytest.raises(InputError, match="NaN"):
        checked_image(lax)
    assert checked_image(np.ones((2, 2))).finite
    assert len(calls) == 3  # building lax, checking it again for finite values, the array


def test_a_checked_volume_is_not_a_2d_image():
    volume = CheckedImage(np.zeros((5, 8, 8)), name="ct", allow_volume=True)
    assert volume.volume
    with pytest.raises(InputError, match=r"ct: shape \(5, 8, 8\) is a volume"):
        checked_image(volume)
    with pytest.raises(InputError, match="not an image"):
        validate_image(volume)
    assert validate_image(volume, allow_volume=True) is volume.array


def test_read_image_hands_out_its_check(tmp_path):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(path)
    data = images.read_image(path)
    assert isinstance(data.checked, CheckedImage)
    assert data.checked.array is data.array and data.checked.name == str(path)


def test_explain_and_segment_take_a_checked_image(tiny_classifier, tiny_segmenter, rng):
    from napari_samcam.saliency import explain

    image = rng.random((40, 48)).astype(np.float32)
    checked = CheckedImage(image)
    np.testing.assert_array_equal(
        explain(checked, tiny_classifier, target=1).map,
        explain(image, tiny_classifier, target=1).map,
    )
    box = np.array([[5, 6, 30, 40]])
    (a,) = tiny_segmenter.segment(checked, boxes=box, context=None)
    (b,) = tiny_segmenter.segment(image, boxes=box, context=None)
    np.testing.assert_array_equal(a.mask, b.mask)
    # a check without the finite values still gets them checked before SAM sees the image
    bad = image.copy()
    bad[3, 3] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        tiny_segmenter.segment(CheckedImage(bad, finite=False), boxes=box, context=None)


def test_a_dataset_job_validates_its_image_once(
    monkeypatch, tiny_phantoms, tiny_lesion_classifier
):
    from conftest import build_tiny_sam
    from napari_samcam.evaluation import load_manifest, make_spec
    from napari_samcam.evaluation.jobs import make_jobs, run_image_job

    spec = make_spec(
        classifiers=[tiny_lesion_classifier],
        region_sources=["ground-truth", "box", "sam-box", "sam-trust", "sam-saliency-box"],
        sam=build_tiny_sam(),
        device="cpu",
    )
    items = [item for item in load_manifest(tiny_phantoms) if item.positive][:1]
    (job,) = make_jobs(items, spec)
    names = []
    real = images.validate_image

    def counting(array, *, name="image", **options):
        names.append(name)
        return real(array, name=name, **options)

    monkeypatch.setattr(images, "validate_image", counting)
    for module in ("classifiers", "segment", "embedding_keys", "saliency"):
        module = __import__(f"napari_samcam.{module}", fromlist=["x"])
        if hasattr(module, "validate_image"):
            monkeypatch.setattr(module, "validate_image", counting)
    result = run_image_job(job, spec)
    assert len(result.rows) > 0
    # the image file once and its mask file once, nothing inside the job again
    assert names.count(str(job.path)) == 1
    assert len(names) == 2, names
