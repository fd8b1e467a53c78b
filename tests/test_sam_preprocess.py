"""Contrast pre-processing of the image SAM sees: names, values, cache keys and provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.exposure import equalize_adapthist

from napari_samcam.errors import InputError
from napari_samcam.sam_preprocess import apply_preprocess, canonical_name, parse_preprocess


def test_names_parse_and_normalise():
    assert parse_preprocess(None) == () and parse_preprocess("none") == ()
    assert parse_preprocess("CLAHE") == (("clahe", 0.01),)
    assert parse_preprocess("clahe:0.03+gamma:0.5") == (("clahe", 0.03), ("gamma", 0.5))
    assert canonical_name("gamma:2.0") == "gamma:2" and canonical_name("none") is None
    for bad in ("gamma", "gamma:-1", "clahe:2", "sharpen", "gamma:x"):
        with pytest.raises(InputError, match="--sam-preprocess"):
            parse_preprocess(bad)


def test_gamma_and_clahe_values():
    unit = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    # gamma 0.5: x ** 0.5; 0.25 -> 0.5
    np.testing.assert_allclose(apply_preprocess(unit, "gamma:0.5"), np.sqrt(unit), rtol=1e-6)
    low_contrast = 0.4 + 0.1 * np.random.default_rng(0).random((64, 64))
    out = apply_preprocess(low_contrast, "clahe")
    np.testing.assert_allclose(out, equalize_adapthist(low_contrast, clip_limit=0.01), atol=1e-6)
    assert out.std() > 2 * low_contrast.std()  # contrast stretched
    # steps apply in order: CLAHE, then gamma
    both = apply_preprocess(low_contrast, "clahe+gamma:2")
    np.testing.assert_allclose(both, out.astype(np.float64) ** 2, atol=1e-6)
    assert apply_preprocess(unit, None) is unit


def test_segment_records_preprocess_and_embeds_separately(tiny_segmenter):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 64), dtype=np.uint8)
    plain = tiny_segmenter.segment(image, boxes=[[5, 5, 30, 40]])[0]
    assert "preprocess" not in plain.prompt
    calls = tiny_segmenter.encoder_calls
    clahe = tiny_segmenter.segment(image, boxes=[[5, 5, 30, 40]], preprocess="clahe")[0]
    assert clahe.prompt["preprocess"] == "clahe:0.01"
    assert tiny_segmenter.encoder_calls == calls + 1  # its own embedding, not the plain one's
    tiny_segmenter.segment(image, boxes=[[0, 0, 20, 20]], preprocess="clahe:0.01")
    assert tiny_segmenter.encoder_calls == calls + 1  # the same name: cached
    # the embedding is the one of the processed image
    direct = tiny_segmenter.embed(image, preprocess="clahe")
    assert direct is tiny_segmenter.embed(image, preprocess="clahe:0.01")
    assert direct is not tiny_segmenter.embed(image)


def test_evaluate_records_preprocess_in_region_prompts(tmp_path, tiny_sam):
    import imageio.v3 as iio

    from napari_samcam.evaluation import evaluate

    rng = np.random.default_rng(1)
    iio.imwrite(tmp_path / "a.png", rng.integers(0, 255, (40, 48), dtype=np.uint8))
    mask = np.zeros((40, 48), np.uint8)
    mask[10:20, 12:30] = 255
    iio.imwrite(tmp_path / "a_mask.png", mask)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "image,label,mask,box_r0,box_c0,box_r1,box_c1\na.png,1,a_mask.png,10,12,20,30\n"
    )
    result = evaluate(
        manifest,
        tmp_path / "out",
        region_sources=("ground-truth", "sam-box"),
        sam=tiny_sam,
        sam_preprocess="gamma:0.5",
        plots=False,
        report=False,
    )
    prompts = result.regions[result.regions["region_source"] == "sam-box"]["prompt"]
    assert [json.loads(p)["preprocess"] for p in prompts] == ["gamma:0.5"]
    assert result.config["sam_preprocess"] == "gamma:0.5"
    with pytest.raises(InputError, match="sharpen"):
        evaluate(manifest, tmp_path / "bad", sam=tiny_sam, sam_preprocess="sharpen")
    assert not (tmp_path / "bad").exists()
