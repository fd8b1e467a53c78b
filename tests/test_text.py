"""Text prompts: SAM proposals scored by CLIP (tiny random models and a rigged stand-in)."""

from __future__ import annotations

import json
import sys
import types
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("segment_anything")

from conftest import build_tiny_clip  # noqa: E402
from napari_samcam import region_proposals  # noqa: E402
from napari_samcam._clip import HFClipEncoder, OpenClipEncoder, _embedding_tensor  # noqa: E402
from napari_samcam.clip_regions import (  # noqa: E402
    clear_clip_cache,
    clear_text_cache,
    clip_available,
    crop_for_clip,
    load_clip,
    propose_regions,
    segment_text,
    text_regions,
)
from napari_samcam.errors import InputError, ModelNotAvailableError, PromptError  # noqa: E402
from napari_samcam.segment import Region, load_segmenter  # noqa: E402

# Thresholds that let a random-weight SAM's masks through (its predicted IoUs are ~0.1-0.5).
PERMISSIVE = {
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "box_fit_thresh": 0.0,
    "min_area_fraction": 0.0,
    "max_area_fraction": 1.0,
    "box_nms_thresh": 0.9,
    "points_per_side": 4,
    "box_scales": (0.3, 0.6),
}


# -- fixtures ------------------------------------------------------------------------------------
def tiny_sam(seed: int = 0):
    """A ~60 k parameter Segment Anything with the real architecture (64 px input)."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    torch.manual_seed(seed)
    encoder = ImageEncoderViT(
        img_size=64,
        patch_size=8,
        embed_dim=32,
        depth=1,
        num_heads=2,
        out_chans=32,
        global_attn_indexes=(),
        window_size=0,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=32, image_embedding_size=(8, 8), input_image_size=(64, 64), mask_in_chans=4
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=1, embedding_dim=32, mlp_dim=64, num_heads=2),
        transformer_dim=32,
        iou_head_depth=2,
        iou_head_hidden_dim=32,
    )
    return Sam(encoder, prompt_encoder, decoder).eval()


@pytest.fixture(scope="module")
def segmenter():
    return load_segmenter(tiny_sam(), device="cpu")


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A tiny random CLIP saved like a real one: weights, tokenizer, preprocessor config."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


class RiggedClip:
    """A CLIP stand-in whose scores are known: crops are embedded by their mean brightness.

    ``[m, 1 - m]`` (normalised) for a crop of mean ``m``; texts containing "bright" embed as
    ``[1, 0]``, all others as ``[0, 1]``. So "bright" prefers the brightest crop.
    """

    name = "rigged-brightness"
    image_size = 16
    logit_scale = 10.0

    def __init__(self):
        self.image_calls = 0
        self.text_calls = 0
        self.crops: list[np.ndarray] = []

    def encode_images(self, images):
        self.image_calls += 1
        self.crops = list(images)
        means = np.array([float(np.mean(im)) for im in images])
        features = np.stack([means, 1.0 - means], 1)
        return features / np.linalg.norm(features, axis=1, keepdims=True)

    def encode_texts(self, texts):
        self.text_calls += 1
        return np.array([[1.0, 0.0] if "bright" in t else [0.0, 1.0] for t in texts])


def scene():
    """A dark image with a bright disk (0.9) and a grey square (0.5), and their masks."""
    rows, cols = np.mgrid[:64, :64]
    disk = (rows - 20) ** 2 + (cols - 20) ** 2 <= 8**2
    square = np.zeros((64, 64), dtype=bool)
    square[40:52, 36:48] = True
    image = np.full((64, 64), 0.1, dtype=np.float32)
    image[disk] = 0.9
    image[square] = 0.5
    return image, disk, square


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_text_cache()
    yield
    clear_text_cache()


# -- choosing regions with known scores ----------------------------------------------------------
def test_rigged_clip_chooses_the_bright_disk(segmenter):
    image, disk, square = scene()
    whole = np.ones_like(disk)
    clip = RiggedClip()
    regions = segment_text(segmenter, image, "bright", clip=clip, proposals=[square, disk, whole])
    assert len(regions) == 1
    region = regions[0]
    assert np.array_equal(region.mask, disk)
    assert region.source == "sam-text"
    assert region.prompt["text"] == "bright"
    assert region.prompt["negatives"] == ["background"]
    assert region.prompt["proposal"] == 1
    assert region.prompt["box"] == [12, 12, 29, 29]
    assert 0.0 < region.score < 1.0
    assert region.model == f"{segmenter.name} + rigged-brightness"
    provenance = region.provenance()
    assert provenance["region_source"] == "sam-text"
    assert provenance["score"] == region.score
    json.dumps(provenance)  # JSON-friendly

    # The score is the softmax over [text, *negatives] of logit_scale x cosine similarity.
    crop = crop_for_clip(image, disk, size=16)
    m = crop.mean()
    emb = np.array([m, 1 - m]) / np.hypot(m, 1 - m)
    logits = 10.0 * np.array([emb[0], emb[1]])
    expected = np.exp(logits[0]) / np.exp(logits).sum()
    assert region.score == pytest.approx(expected, rel=1e-5)


def test_other_text_chooses_the_other_region(segmenter):
    image, disk, square = scene()
    whole = np.ones_like(disk)
    regions = segment_text(
        segmenter,
        image,
        "dark",
        clip=RiggedClip(),
        negatives=["bright"],
        proposals=[square, disk, whole],
    )
    assert regions[0].prompt["proposal"] == 2
    assert regions[0].mask.all()


def test_top_k_threshold_and_similarity_mode(segmenter):
    image, disk, square = scene()
    masks = [square, disk, np.ones_like(disk)]
    clip = RiggedClip()
    ranked = segment_text(segmenter, image, "bright", clip=clip, proposals=masks, top_k=None)
    assert [r.prompt["proposal"] for r in ranked] == [1, 0, 2]
    scores = [r.score for r in ranked]
    assert scores == sorted(scores, reverse=True)
    assert [r.prompt["rank"] for r in ranked] == [0, 1, 2]

    middle = (scores[0] + scores[1]) / 2
    kept = segment_text(
        segmenter, image, "bright", clip=clip, proposals=masks, top_k=None, threshold=middle
    )
    assert [r.prompt["proposal"] for r in kept] == [1]

    with pytest.warns(UserWarning, match="no proposal scored"):
        none = segment_text(segmenter, image, "bright", clip=clip, proposals=masks, threshold=2)
    assert none == []

    plain = segment_text(segmenter, image, "bright", clip=clip, proposals=masks, negatives=[])
    assert plain[0].prompt["proposal"] == 1
    assert plain[0].score == pytest.approx(plain[0].prompt["similarity"], abs=1e-6)


def test_text_prompts_are_built_on_the_segmenter_not_inside_it(segmenter):
    image, disk, square = scene()
    via_function = segment_text(
        segmenter, image, "bright", clip=RiggedClip(), proposals=[square, disk]
    )
    via_helper = text_regions(segmenter, image, "bright", RiggedClip(), proposals=[square, disk])
    for regions in (via_function, via_helper):
        assert np.array_equal(regions[0].mask, disk)
        assert regions[0].source == "sam-text"
    with pytest.raises(TypeError, match="text"):
        segmenter.segment(image, text="bright", clip=RiggedClip())


def test_crop_for_clip_geometry_and_background():
    image, disk, _ = scene()
    kept = crop_for_clip(image, disk, background="keep", margin=0.0)
    assert kept.shape == (17, 17, 3)
    assert kept.dtype == np.float32
    np.testing.assert_allclose(kept[..., 0], kept[..., 2])
    unit = (image - 0.1) / 0.8  # min-max scaling of to_unit_range
    np.testing.assert_allclose(kept[..., 0], unit[12:29, 12:29], atol=1e-6)
    dimmed = crop_for_clip(image, disk, background="dim", margin=0.0)
    outside = ~disk[12:29, 12:29]
    np.testing.assert_allclose(dimmed[outside, 0], 0.3 * unit[12:29, 12:29][outside], atol=1e-6)
    np.testing.assert_allclose(dimmed[~outside, 0], unit[12:29, 12:29][~outside], atol=1e-6)
    # A proposal at the border: pixels beyond the image are black, the crop stays square.
    corner = np.zeros((64, 64), dtype=bool)
    corner[:10, :20] = True
    crop = crop_for_clip(image, corner, background="keep", margin=0.25)
    assert crop.shape == (30, 30, 3)
    assert (crop[:5] == 0).all()
    assert crop_for_clip(image, disk, size=16).shape == (16, 16, 3)
    with pytest.raises(InputError, match="background"):
        crop_for_clip(image, disk, background="blur")
    with pytest.raises(PromptError, match="empty"):
        crop_for_clip(image, np.zeros_like(disk))


# -- the whole path with real (tiny) SAM proposals -----------------------------------------------
@pytest.mark.parametrize("mode", ["points", "boxes", "saliency"])
def test_sam_proposals_scored_by_rigged_clip(segmenter, mode):
    image, disk, _ = scene()
    saliency = disk.astype(np.float32) if mode == "saliency" else None
    options = dict(PERMISSIVE, proposals=mode, saliency=saliency)
    proposals = propose_regions(segmenter, image, **options)
    assert proposals, "the permissive settings should let some proposals through"
    assert all(p.source == "sam-proposal" and p.mask.shape == (64, 64) for p in proposals)
    clip = RiggedClip()
    regions = segment_text(segmenter, image, "bright", clip=clip, top_k=None, **options)
    assert len(regions) == len(proposals)
    # The rigged score grows with the crop's mean brightness: the chosen proposal is known.
    means = [crop_for_clip(image, p.mask, size=16).mean() for p in proposals]
    best = int(np.argmax(means))
    assert regions[0].prompt["proposal"] == best
    assert np.array_equal(regions[0].mask, proposals[best].mask)
    assert regions[0].prompt["proposals"] == mode
    assert regions[0].prompt["text"] == "bright"
    assert regions[0].prompt["box"] == list(region_proposals.mask_bounds(proposals[best].mask))


def test_tiny_clip_folder_end_to_end(segmenter, clip_folder):
    image, _, _ = scene()
    steps = []
    regions = segment_text(
        segmenter,
        image,
        "nodule",
        clip=str(clip_folder),
        top_k=3,
        progress=lambda done, total: steps.append((done, total)),
        **PERMISSIVE,
    )
    assert 1 <= len(regions) <= 3
    scores = [r.score for r in regions]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert regions[0].model == f"{segmenter.name} + {clip_folder}"
    assert regions[0].prompt["text"] == "nodule"
    assert regions[0].prompt["proposals"] == "points"  # the tiny SAM takes point prompts
    assert regions[0].mask.shape == (64, 64) and regions[0].mask.any()
    assert steps[0] == (0, 3) and steps[-1] == (3, 3)
    encoder = load_clip(str(clip_folder), device="cpu")
    assert isinstance(encoder, HFClipEncoder)
    assert encoder.image_size == 32
    assert load_clip(str(clip_folder), device="cpu") is encoder  # once per process
    # RGB input works too.
    rgb = np.repeat(image[..., None], 3, axis=-1)
    assert segment_text(segmenter, rgb, "nodule", clip=encoder, **PERMISSIVE)


def test_second_text_costs_only_the_text_encoding(clip_folder):
    image, _, _ = scene()
    sam = tiny_sam(seed=0)
    seg = load_segmenter(sam, device="cpu")
    calls = {"sam": 0, "image": 0, "text": 0}
    original_forward = sam.image_encoder.forward

    def counting_forward(*args, **kwargs):
        calls["sam"] += 1
        return original_forward(*args, **kwargs)

    sam.image_encoder.forward = counting_forward
    encoder = load_clip(str(clip_folder), device="cpu")
    model = encoder.model
    original_image, original_text = model.get_image_features, model.get_text_features

    def image_features(*args, **kwargs):
        calls["image"] += 1
        return original_image(*args, **kwargs)

    def text_features(*args, **kwargs):
        calls["text"] += 1
        return original_text(*args, **kwargs)

    model.get_image_features, model.get_text_features = image_features, text_features
    try:
        for mode in ("points", "boxes"):
            options = dict(PERMISSIVE, proposals=mode)
            before = dict(calls)
            segment_text(seg, image, "nodule", clip=encoder, **options)
            assert calls["sam"] - before["sam"] <= 1
            assert calls["image"] - before["image"] == 1
            first = dict(calls)
            encoder_calls = seg.encoder_calls
            for text in (f"left lung {mode}", "nodule"):
                segment_text(seg, image, text, clip=encoder, negatives=[f"x {mode}"], **options)
            assert calls["sam"] == first["sam"]
            assert seg.encoder_calls == encoder_calls
            assert calls["image"] == first["image"]
            assert calls["text"] > first["text"]
            # Another crop style needs new crop embeddings, not new proposals.
            segment_text(seg, image, "nodule", clip=encoder, background="keep", **options)
            assert calls["sam"] == first["sam"]
            assert calls["image"] == first["image"] + 1
        assert seg.encoder_calls >= 1
        # The points mode runs the encoder itself and says so in encoder_calls.
        assert calls["sam"] == seg.encoder_calls
    finally:
        model.get_image_features, model.get_text_features = original_image, original_text


# -- entry points --------------------------------------------------------------------------------
def test_cli_segment_text_end_to_end(tmp_path, monkeypatch, clip_folder, segmenter):
    import imageio.v3 as iio

    import napari_samcam.segment as segment_module
    from napari_samcam.cli import main

    image, _, _ = scene()
    path = tmp_path / "scene.png"
    iio.imwrite(path, np.round(image * 255).astype(np.uint8))
    monkeypatch.setattr(segment_module, "load_segmenter", lambda *a, **k: segmenter)
    for name, value in PERMISSIVE.items():
        monkeypatch.setitem(region_proposals.PROPOSAL_OPTIONS, name, value)
    monkeypatch.setitem(region_proposals._MODE_DEFAULTS, "points", {})
    out = tmp_path / "out"
    argv = ["segment", str(path), "--text", "nodule", "--clip", str(clip_folder)]
    assert main([*argv, "--out", str(out)]) == 0
    report = json.loads((out / "regions.json").read_text())
    assert len(report["regions"]) == 1
    region = report["regions"][0]
    assert region["region_source"] == "sam-text"
    assert region["prompt"]["text"] == "nodule"
    assert region["model"].endswith(str(clip_folder))
    assert 0.0 <= region["score"] <= 1.0
    assert (out / "mask_1.png").is_file()


def test_cli_without_weights_names_the_fix(tmp_path, capsys):
    import imageio.v3 as iio

    from napari_samcam.cli import main

    image, _, _ = scene()
    path = tmp_path / "scene.png"
    iio.imwrite(path, np.round(image * 255).astype(np.uint8))
    missing = tmp_path / "no-clip-here"
    argv = ["segment", str(path), "--text", "nodule", "--clip", str(missing)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err
    assert "save_pretrained" in err and "--clip" in err


# -- no weights, no pretending -------------------------------------------------------------------
def test_no_clip_is_a_clear_error(segmenter):
    image, disk, _ = scene()
    with pytest.raises(ModelNotAvailableError, match="none was given") as info:
        segment_text(segmenter, image, "nodule", proposals=[disk])
    assert "save_pretrained" in str(info.value) and "--clip" in str(info.value)
    with pytest.raises(ModelNotAvailableError):
        segment_text(segmenter, image, "nodule")


def test_missing_folder_names_it(tmp_path):
    missing = tmp_path / "clip-model"
    with pytest.raises(ModelNotAvailableError) as info:
        load_clip(str(missing))
    message = str(info.value)
    assert str(missing) in message and "does not exist" in message
    assert "CLIPModel.from_pretrained" in message and "save_pretrained" in message


def test_hub_id_offline_names_id_and_fixes(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_id = "samcam-tests/no-such-clip"
    with pytest.raises(ModelNotAvailableError) as info:
        load_clip(hub_id)
    message = str(info.value)
    assert hub_id in message and "not on this machine" in message
    assert "save_pretrained" in message and "HF_HOME" in message and "--clip" in message
    ok, message = clip_available(hub_id)
    assert not ok and hub_id in message and "not cached" in message


def test_clip_available_checks_files_without_loading(clip_folder, tmp_path):
    import shutil

    ok, message = clip_available(str(clip_folder))
    assert ok and str(clip_folder) in message
    assert clip_available(RiggedClip())[0]

    no_weights = tmp_path / "no-weights"
    shutil.copytree(clip_folder, no_weights)
    (no_weights / "model.safetensors").unlink()
    ok, message = clip_available(str(no_weights))
    assert not ok and "no weights" in message and "model.safetensors" in message
    with pytest.raises(ModelNotAvailableError, match="no weights"):
        load_clip(str(no_weights))

    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(clip_folder, no_tokenizer)
    (no_tokenizer / "tokenizer.json").unlink()
    (no_tokenizer / "vocab.json").unlink()
    ok, message = clip_available(str(no_tokenizer))
    assert not ok and "tokenizer" in message

    not_clip = tmp_path / "classifier"
    not_clip.mkdir()
    (not_clip / "config.json").write_text(json.dumps({"model_type": "resnet"}))
    ok, message = clip_available(str(not_clip))
    assert not ok and "'resnet'" in message

    ok, message = clip_available(str(tmp_path / "absent"))
    assert not ok and "does not exist" in message
    ok, message = clip_available(None)
    assert not ok and "none was given" in message


def test_open_clip_specs_without_open_clip(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    spec = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    ok, message = clip_available(spec)
    assert not ok and "open_clip_torch" in message
    with pytest.raises(ModelNotAvailableError, match="open_clip_torch"):
        load_clip(spec)


def test_open_clip_model_through_a_stand_in_module(monkeypatch, segmenter):
    """The open_clip wrapper, with a fake ``open_clip`` module (the package is optional)."""

    class FakeVisual:
        image_size = (16, 16)

    class FakeOpenClip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = FakeVisual()
            self.logit_scale = torch.nn.Parameter(torch.tensor(np.log(10.0)))

        def encode_image(self, pixels):
            m = pixels.mean(dim=(1, 2, 3))
            return torch.stack([m, 1 - m], 1)

        def encode_text(self, tokens):
            return torch.stack([tokens[:, 0].float(), 1 - tokens[:, 0].float()], 1)

    def preprocess(pil):
        return torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)

    def tokenizer(texts):
        return torch.tensor([[1 if "bright" in t else 0] for t in texts])

    loaded = []
    fake = types.ModuleType("open_clip")

    def create_model_from_pretrained(name, device=None):
        loaded.append(name)
        return FakeOpenClip(), preprocess

    fake.create_model_from_pretrained = create_model_from_pretrained
    fake.get_tokenizer = lambda name: tokenizer
    monkeypatch.setitem(sys.modules, "open_clip", fake)
    clear_clip_cache()
    try:
        spec = "hf-hub:someone/biomed-clip-like"
        with pytest.raises(ModelNotAvailableError, match="not in the Hugging Face cache"):
            load_clip(spec)  # download=False: only the local cache is used
        encoder = load_clip(spec, download=True, device="cpu")
        assert isinstance(encoder, OpenClipEncoder)
        assert loaded == [spec] and encoder.image_size == 16
        image, disk, square = scene()
        regions = segment_text(segmenter, image, "bright", clip=encoder, proposals=[square, disk])
        assert np.array_equal(regions[0].mask, disk)
        assert regions[0].model.endswith(spec)
    finally:
        clear_clip_cache()


def test_embedding_tensor_accepts_both_transformers_conventions():
    tensor = torch.ones(2, 4)
    assert _embedding_tensor(tensor, "x") is tensor
    output = types.SimpleNamespace(pooler_output=tensor)
    assert _embedding_tensor(output, "x") is tensor
    with pytest.raises(InputError, match="without an embedding"):
        _embedding_tensor(object(), "get_image_features")


def test_tensor_returning_model_still_works(segmenter, clip_folder):
    """transformers 4 returns a tensor from get_image_features; that path works too."""
    encoder = load_clip(str(clip_folder), device="cpu")
    model = encoder.model
    original = model.get_image_features
    model.get_image_features = lambda **kw: original(**kw).pooler_output
    try:
        image, disk, square = scene()
        regions = segment_text(segmenter, image, "nodule", clip=encoder, proposals=[disk, square])
        assert len(regions) == 1
    finally:
        model.get_image_features = original


# -- input checks --------------------------------------------------------------------------------
def test_bad_inputs_are_named(segmenter):
    image, disk, _ = scene()
    clip = RiggedClip()
    with pytest.raises(PromptError, match="non-empty"):
        segment_text(segmenter, image, "  ", clip=clip, proposals=[disk])
    with pytest.raises(PromptError, match="also among the negatives"):
        segment_text(segmenter, image, "background", clip=clip, proposals=[disk])
    with pytest.raises(PromptError, match="template"):
        segment_text(segmenter, image, "x", clip=clip, proposals=[disk], templates=["a photo"])
    with pytest.raises(InputError, match="unknown text-prompt option"):
        segment_text(segmenter, image, "x", clip=clip, points_per_sid=8)
    with pytest.raises(InputError, match="proposals="):
        segment_text(segmenter, image, "x", clip=clip, proposals="everything")
    with pytest.raises(PromptError, match="saliency=MAP"):
        segment_text(segmenter, image, "x", clip=clip, proposals="saliency")
    with pytest.raises(PromptError, match="differs"):
        segment_text(
            segmenter, image, "x", clip=clip, proposals="saliency", saliency=np.ones((8, 8))
        )
    with pytest.raises(PromptError, match="differs"):
        segment_text(segmenter, image, "x", clip=clip, proposals=[np.ones((8, 8), bool)])
    with pytest.raises(InputError, match="top_k"):
        segment_text(segmenter, image, "x", clip=clip, proposals=[disk], top_k=0)
    with pytest.raises(InputError, match="clip="):
        segment_text(segmenter, image, "x", clip=42, proposals=[disk])


def test_no_proposals_warns_and_returns_nothing(segmenter):
    image, _, _ = scene()
    with pytest.warns(UserWarning, match="no proposals"):
        regions = segment_text(
            segmenter, image, "x", clip=RiggedClip(), proposals=[np.zeros((64, 64), bool)]
        )
    assert regions == []


def test_box_only_model_defaults_to_box_proposals(segmenter):
    from napari_samcam.sam_models import SamModel
    from napari_samcam.segment import Segmenter

    box_only = Segmenter(
        SamModel(segmenter.model.sam, "tiny-box-only", image_size=64, box_only=True)
    )
    image, _, _ = scene()
    regions = segment_text(box_only, image, "bright", clip=RiggedClip(), **PERMISSIVE)
    assert regions and regions[0].prompt["proposals"] == "boxes"
    assert regions[0].prompt["sam_prompt"] == "box-grid"
    with pytest.warns(UserWarning, match="box prompts only"):
        propose_regions(box_only, image, proposals="points", **PERMISSIVE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(propose_regions(box_only, image, **PERMISSIVE)[0], Region)


def test_clip_folder_with_a_malicious_bin_is_refused(clip_folder, tmp_path):
    import os
    import shutil

    from safetensors.torch import load_file

    from napari_samcam.errors import UntrustedFileError

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    marker = tmp_path / "PAYLOAD-RAN"
    folder = tmp_path / "clip"
    shutil.copytree(clip_folder, folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save({**state, "payload": Payload()}, folder / "pytorch_model.bin")
    clear_clip_cache()
    with pytest.raises(UntrustedFileError) as excinfo:
        load_clip(str(folder), device="cpu")
    assert str(folder / "pytorch_model.bin") in str(excinfo.value)
    assert "safetensors" in str(excinfo.value)
    assert not marker.exists()
    torch.load(folder / "pytorch_model.bin", weights_only=False)  # the payload is live
    assert marker.exists()


def test_open_clip_named_weights_are_never_fetched_unpinned(monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("open_clip")

    def create_model_and_transforms(*args, **kwargs):
        calls.append((args, kwargs))
        raise RuntimeError("stand-in: the weights would be read here")

    fake.create_model_and_transforms = create_model_and_transforms
    fake.get_pretrained_cfg = lambda arch, tag: {"hf_hub": "org/name"} if tag == "openai" else {}
    monkeypatch.setitem(sys.modules, "open_clip", fake)
    clear_clip_cache()
    # a stray file in the working directory named like the tag does not get past the check
    monkeypatch.chdir(tmp_path)
    (tmp_path / "openai").write_bytes(b"not weights")
    for download in (False, True):
        with pytest.raises(ModelNotAvailableError, match="without a pinned digest"):
            load_clip("open_clip:ViT-B-32:openai", device="cpu", download=download)
    with pytest.raises(ModelNotAvailableError, match="is not a file"):
        load_clip("open_clip:ViT-B-32:missing.pt", device="cpu")
    assert calls == []
    with pytest.raises(ModelNotAvailableError, match="stand-in"):
        load_clip("open_clip:ViT-B-32:" + str(tmp_path / "openai"), device="cpu")
    assert calls and calls[0][1]["pretrained"] == str(tmp_path / "openai")
