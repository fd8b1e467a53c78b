"""Same answers with and without each speed optimisation (speed itself is in benchmarks/).

Encoder features and decoder logits agree to float32 rounding; LiteMedSAM's masks on the real
chest radiograph are identical for box prompts except at pixels whose logit is within float
rounding of the threshold (where the plain model itself differs between thread counts); CAMs and
metrics agree to 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_samcam import _module_copies, _threads
from napari_samcam.sam._fast import accel as _accel

torch = pytest.importorskip("torch")

OFF = dict.fromkeys(_accel.OPTIMISATIONS, False)
VARIANTS = {
    "none": OFF,
    **{name: dict(OFF, **{name: True}) for name in _accel.OPTIMISATIONS},
    "fused+fold": dict(OFF, fused=True, fold_bn=True),
    "all": {},
}

# (row0, col0, row1, col1) on the 1955 x 1841 radiograph: lungs, upper chest, lower mediastinum
ANATOMICAL_BOXES = [
    [400, 200, 1500, 900],
    [400, 950, 1500, 1650],
    [100, 100, 600, 700],
    [1200, 600, 1800, 1300],
]


# -- tiny models: mechanics, fast ---------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_accelerated_tiny_sam_matches_plain(tiny_sam, variant):
    flags = VARIANTS[variant]
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    encoder = _accel.accelerate_encoder(tiny_sam.image_encoder, **flags)
    decoder = _accel.accelerate_decoder(tiny_sam.mask_decoder, **flags)
    pe = tiny_sam.prompt_encoder.get_dense_pe()
    boxes = torch.tensor([[5.0, 6.0, 40.0, 50.0], [0.0, 0.0, 20.0, 30.0]])
    with torch.inference_mode():
        ref = tiny_sam.image_encoder(x)
        fast = encoder(x)
        layout = (
            torch.channels_last if flags.get("channels_last", True) else torch.contiguous_format
        )
        assert fast.is_contiguous(memory_format=layout)
        np.testing.assert_allclose(fast.numpy(), ref.numpy(), atol=1e-5 * float(ref.abs().max()))
        sparse, dense = tiny_sam.prompt_encoder(points=None, boxes=boxes, masks=None)
        for multimask in (False, True):
            args = dict(
                image_embeddings=ref,
                image_pe=pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
            low_ref, iou_ref = tiny_sam.mask_decoder(**args)
            low, iou = decoder(**args)
            assert low.shape == low_ref.shape and iou.shape == iou_ref.shape
            np.testing.assert_allclose(low.numpy(), low_ref.numpy(), atol=1e-4)
            np.testing.assert_allclose(iou.numpy(), iou_ref.numpy(), atol=1e-5)


def test_decoder_reuses_static_projections_only_per_image(tiny_sam):
    decoder = _accel.accelerate_decoder(tiny_sam.mask_decoder)
    pe = tiny_sam.prompt_encoder.get_dense_pe()
    with torch.inference_mode():
        images = [
            torch.randn(1, 32, 8, 8, generator=torch.Generator().manual_seed(s)) for s in (1, 2)
        ]
        for image in images:
            static: dict = {}
            for box in ([[5.0, 6.0, 40.0, 50.0]], [[1.0, 2.0, 20.0, 30.0]]):
                sparse, dense = tiny_sam.prompt_encoder(
                    points=None, boxes=torch.tensor(box), masks=None
                )
                args = dict(
                    image_embeddings=image,
                    image_pe=pe,
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=False,
                )
                cached = decoder(**args, static=static)
                fresh = decoder(**args)
                assert {"keys", "t2i_k", "t2i_v", "i2t_q"} <= set(static)
                for a, b in zip(cached, fresh, strict=True):
                    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


def test_segmenter_masks_match_the_plain_model(tiny_sam, rng):
    from napari_samcam.sam_models import load_sam_model
    from napari_samcam.segment import Segmenter

    model = load_sam_model(tiny_sam, device="cpu")
    fast, plain = Segmenter(model), Segmenter(model, accelerate=False)
    image = rng.integers(0, 255, (96, 80), dtype=np.uint8)
    boxes = [[5, 5, 60, 70], [30, 10, 90, 40]]
    fast_regions = fast.segment(image, boxes=boxes)
    plain_regions = plain.segment(image, boxes=boxes)
    for a, b in zip(fast_regions, plain_regions, strict=True):
        # random weights put many logits near 0: allow a rare flip at the threshold
        assert (a.mask != b.mask).mean() < 1e-3
        assert a.score == pytest.approx(b.score, abs=1e-5)


def test_segmenter_follows_weights_edited_in_place(tiny_sam, rng):
    from napari_samcam.sam_models import load_sam_model
    from napari_samcam.segment import Segmenter

    model = load_sam_model(tiny_sam, device="cpu")
    fast = Segmenter(model)
    image = rng.integers(0, 255, (48, 64), dtype=np.uint8)
    before = fast.embed(image).features.clone()
    first = fast.backend.modules()["encoder"]
    with torch.no_grad():
        model.sam.image_encoder.neck[0].weight.mul_(2.0)
    fast.clear_cache()
    after = fast.embed(image).features
    assert fast.backend.modules()["encoder"] is not first
    with torch.inference_mode():
        expected = Segmenter(model, accelerate=False).embed(image).features
    assert not torch.allclose(before, after)
    np.testing.assert_allclose(after.numpy(), expected.numpy(), atol=1e-5)


def test_prompt_threads_leave_torch_threads_unchanged(tiny_segmenter, rng):
    image = rng.integers(0, 255, (40, 60), dtype=np.uint8)
    before = torch.get_num_threads()
    tiny_segmenter.segment(image, boxes=[[5, 5, 30, 40]])
    assert torch.get_num_threads() == before
    with _threads.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# -- content keys -------------------------------------------------------------------------------


def test_embedding_key_is_the_image_hash_and_sees_in_place_edits():
    from napari_samcam.images import image_hash
    from napari_samcam.segment import embedding_key

    image = np.random.default_rng(0).random((1200, 1100), dtype=np.float32)  # > 2 leaves
    assert embedding_key(image) == image_hash(image)
    assert embedding_key(image) == image_hash(image)  # memo hit
    image[600, 550] += 1.0  # in place: same object, same buffer
    assert embedding_key(image) == image_hash(image)
    image[-1, -1] = np.nextafter(image[-1, -1], np.float32(2))  # last leaf, last byte region
    assert embedding_key(image) == image_hash(image)


def test_content_digest_depends_on_bytes_shape_and_dtype():
    from napari_samcam.segment import content_digest

    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert content_digest(a) == content_digest(a.copy())
    assert content_digest(a) != content_digest(a.reshape(6, 4))
    assert content_digest(a) != content_digest(a.view(np.int32))
    assert content_digest(a[:, ::2]) == content_digest(np.ascontiguousarray(a[:, ::2]))
    big = np.random.default_rng(1).random((1500, 1500))  # 18 MB: several parallel leaves
    other = big.copy()
    other[1499, 1499] += 1e-9
    assert content_digest(big) == content_digest(big.copy())
    assert content_digest(big) != content_digest(other)


# -- Grad-CAM -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "layercam", "eigencam"])
def test_gradient_shortcut_gives_the_same_cam(tiny_classifier, rng, monkeypatch, method):
    from napari_samcam import saliency

    image = rng.random((50, 70)).astype(np.float32)
    fast = saliency.explain(image, tiny_classifier, method=method, target=1)
    params = list(tiny_classifier.model.parameters())
    assert all(p.requires_grad for p in params)  # restored after the call
    monkeypatch.setattr(saliency, "_target_gradient_only", lambda cam: False)
    slow = saliency.explain(image, tiny_classifier, method=method, target=1)
    np.testing.assert_allclose(fast.raw, slow.raw, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(fast.map, slow.map)
    assert fast.probabilities == pytest.approx(slow.probabilities, abs=1e-7)


class _InPlaceAfterTarget(torch.nn.Module):
    """DenseNet's pattern: ``relu_`` on the target layer's output."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
        )
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        out = torch.nn.functional.relu(self.features(x), inplace=True)
        return self.fc(out.mean((2, 3)))


def test_gradient_shortcut_allows_in_place_ops_after_the_target(rng, monkeypatch):
    from napari_samcam import saliency
    from napari_samcam.classifiers import load_classifier

    classifier = load_classifier(
        _InPlaceAfterTarget().eval(),
        class_names=["a", "b"],
        input_size=(16, 16),
        channels=1,
        mean=(0.5,),
        std=(0.25,),
        target_layer="features",
    )
    image = rng.random((40, 30)).astype(np.float32)
    fast = saliency.explain(image, classifier, target=1)
    monkeypatch.setattr(saliency, "_target_gradient_only", lambda cam: False)
    slow = saliency.explain(image, classifier, target=1)
    assert fast.raw.max() > 0
    np.testing.assert_allclose(fast.raw, slow.raw, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam", "fullgrad"])
def test_channels_last_copy_gives_the_same_cam(tiny_classifier, rng, monkeypatch, method):
    from napari_samcam import saliency

    image = rng.random((50, 70)).astype(np.float32)
    fast = saliency.explain(image, tiny_classifier, method=method, target=1)
    _, layer, clone, clone_layer = tiny_classifier.extra["cam_copy"]
    assert clone is not tiny_classifier.model and clone_layer is not layer
    conv = next(m for m in clone.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for p in tiny_classifier.model.parameters():  # the user's model is left as it was
        assert p.is_contiguous()
    monkeypatch.setenv("SAMCAM_ACCELERATE", "0")
    plain = saliency.explain(image, tiny_classifier, method=method, target=1)
    np.testing.assert_allclose(fast.raw, plain.raw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast.map, plain.map, atol=1e-5)
    assert fast.probabilities == pytest.approx(plain.probabilities, abs=1e-6)


def test_no_channels_last_copy_of_large_classifiers(rng, monkeypatch):
    from conftest import TinyCNN
    from napari_samcam import saliency
    from napari_samcam.classifiers import load_classifier

    model = TinyCNN.build()
    size = sum(p.numel() * 4 for p in model.parameters())
    monkeypatch.setattr(_module_copies, "CHANNELS_LAST_MAX_BYTES", size - 1)
    classifier = load_classifier(model, class_names=["a", "b"], input_size=(32, 32))
    sal = saliency.explain(rng.random((40, 40)).astype(np.float32), classifier, target=1)
    assert classifier.extra["cam_copy"][2] is None and sal.map.shape == (40, 40)
    monkeypatch.setattr(_module_copies, "CHANNELS_LAST_MAX_BYTES", size + 1)
    assert _module_copies.channels_last_copy(model) is not None


def test_channels_last_copy_follows_weight_changes(tiny_classifier, rng, monkeypatch):
    from napari_samcam import saliency

    image = rng.random((40, 40)).astype(np.float32)
    before = saliency.explain(image, tiny_classifier, target=1)
    conv = next(m for m in tiny_classifier.model.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight.mul_(-1.5)
    try:
        after = saliency.explain(image, tiny_classifier, target=1)
        monkeypatch.setenv("SAMCAM_ACCELERATE", "0")
        plain = saliency.explain(image, tiny_classifier, target=1)
    finally:
        with torch.no_grad():
            conv.weight.div_(-1.5)
    assert not np.allclose(after.raw, before.raw)
    np.testing.assert_allclose(after.raw, plain.raw, rtol=1e-5, atol=1e-6)


def test_cam_upsampling_matches_interpolate(rng):
    import torch.nn.functional as F

    from napari_samcam._resample import upsample
    from napari_samcam.saliency import upsampled_map

    cases = (((7, 7), (1955, 1841)), ((14, 9), (100, 333)), ((32, 32), (20, 17)), ((1, 3), (9, 9)))
    for small, shape in cases:
        cam = rng.random(small).astype(np.float32)
        ref = F.interpolate(
            torch.from_numpy(cam)[None, None], size=shape, mode="bilinear", align_corners=False
        )[0, 0].numpy()
        fast = upsample(torch.from_numpy(cam), shape).numpy()
        np.testing.assert_allclose(fast, ref, atol=1e-6)
        np.testing.assert_allclose(upsampled_map(cam, shape), ref / ref.max(), atol=1e-6)
    # negative values are set to 0 before upsampling
    cam = rng.normal(size=(6, 5)).astype(np.float32)
    ref = F.interpolate(
        torch.from_numpy(cam).clamp_min(0)[None, None],
        size=(50, 40),
        mode="bilinear",
        align_corners=False,
    )[0, 0]
    np.testing.assert_allclose(upsampled_map(cam, (50, 40)), (ref / ref.max()).numpy(), atol=1e-6)
    assert not upsampled_map(-np.ones((4, 4), np.float32), (8, 8)).any()


@pytest.mark.parametrize(
    "shape, size", [((1955, 1841), (256, 256)), ((300, 200), (224, 224)), ((64, 700), (32, 48))]
)
def test_antialiased_downsampling_matches_interpolate(rng, shape, size):
    import torch.nn.functional as F

    from napari_samcam._resample import downsample

    image = torch.from_numpy(rng.random((2, *shape), dtype=np.float32) * 4000)
    ref = F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0]
    np.testing.assert_allclose(downsample(image, size).numpy(), ref.numpy(), rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("channels", [1, 3])
def test_classifier_tensor_resizes_before_mapping_intensities(rng, dtype, channels):
    """Resize-then-map equals the plain map-then-resize (``to_unit_range``, interpolate)."""
    import torch.nn.functional as F

    from conftest import identity_classifier
    from napari_samcam.classifiers import classifier_tensor
    from napari_samcam.images import to_unit_range

    high = 255 if dtype == np.uint8 else 3000
    image = (rng.random((333, 257, 3)) * high + 7).astype(dtype)
    for colour in (False, True):
        data = image if colour else image[..., 0]
        classifier = identity_classifier(channels)
        unit = torch.from_numpy(to_unit_range(data))
        unit = unit.permute(2, 0, 1) if colour else unit[None]
        if channels == 1:
            unit = unit.mean(0, keepdim=True)
        ref = F.interpolate(unit[None], size=(64, 48), mode="bilinear", antialias=True)
        ref = (ref.expand(-1, channels, -1, -1) - 0.5) / 0.25
        got = classifier_tensor(data, classifier)
        assert got.shape == (1, channels, 64, 48)
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=2e-5)


# -- the real model on the real radiograph (slow) ------------------------------------------------


@pytest.fixture(scope="module")
def radiograph(chest_radiograph):
    return np.asarray(chest_radiograph.array, dtype=np.float32)


@pytest.fixture(scope="module")
def plain_litemedsam(litemedsam):
    from napari_samcam.segment import Segmenter

    return Segmenter(litemedsam.model, accelerate=False)


@pytest.mark.slow
def test_litemedsam_encoder_features_with_each_optimisation(litemedsam, radiograph):
    tensor, _ = litemedsam._prepare(radiograph, None)
    x = litemedsam.backend.encoder_input(tensor)
    encoder = litemedsam.model.sam.image_encoder
    with torch.inference_mode():
        ref = encoder(x)  # torch's thread setting
        scale = float(ref.abs().max())
        with _threads.torch_threads(1):  # every variant, one thread (steady on busy machines)
            for name, flags in VARIANTS.items():
                out = _accel.accelerate_encoder(encoder, **flags)(x)
                assert float((out - ref).abs().max()) < 2e-5 * scale, name
        out = _accel.accelerate_encoder(encoder)(x)
        assert float((out - ref).abs().max()) < 2e-5 * scale


def _reference_logits(segmenter, embedding, box) -> np.ndarray:
    """The plain model's full-resolution mask logits for one box (-inf outside the window)."""
    from napari_samcam.segment import to_sam_coords

    sam = segmenter.model.sam
    corners = np.array([[box[:2], [box[2] - 1, box[3] - 1]]], dtype=float)
    xy = to_sam_coords(corners, embedding.original_size, embedding.input_size)
    with torch.inference_mode():
        sparse, dense = sam.prompt_encoder(
            points=None, boxes=torch.as_tensor(xy.reshape(1, 4)), masks=None
        )
        low, _ = sam.mask_decoder(
            image_embeddings=embedding.features,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
    window, (r0, r1, c0, c1) = segmenter._upsampler(embedding, low.shape[-1]).logits(low[0, 0])
    full = np.full(embedding.original_size, -np.inf, dtype=np.float32)
    full[r0:r1, c0:c1] = window.numpy()
    return full


@pytest.mark.slow
def test_litemedsam_masks_identical_wherever_the_logit_is_not_at_the_threshold(
    litemedsam, plain_litemedsam, radiograph
):
    """Box prompts: masks with and without the optimisations are identical, except at pixels
    whose logit is within float rounding of the threshold (|logit| < 1e-3).

    Such pixels cannot be pinned down by any change of kernels: the plain model flips the same
    ones between 1 and 2 torch threads (a pixel or two per box on this image, of 10^5).
    """
    rng = np.random.default_rng(1)
    boxes = [list(b) for b in ANATOMICAL_BOXES]
    for _ in range(4):
        r0, c0 = rng.integers(0, 1500), rng.integers(0, 1400)
        boxes.append([r0, c0, r0 + rng.integers(40, 450), c0 + rng.integers(40, 440)])
    fast = litemedsam.segment(radiograph, boxes=boxes)
    plain = plain_litemedsam.segment(radiograph, boxes=boxes)
    embedding = plain_litemedsam.embed(radiograph)
    for box, a, b in zip(boxes, fast, plain, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)
        logits = _reference_logits(plain_litemedsam, embedding, box)
        stable = np.abs(logits) >= 1e-3
        # boxes are decoded a few at a time, the reference one alone: the matrix products
        # round differently, so only pixels clear of the threshold must agree exactly
        np.testing.assert_array_equal(b.mask[stable], (logits > 0)[stable])
        assert (b.mask != (logits > 0)).sum() <= max(3, 1e-4 * b.area)
        np.testing.assert_array_equal(a.mask[stable], b.mask[stable])
        assert (a.mask != b.mask).sum() <= max(3, 1e-4 * b.area)


@pytest.mark.slow
def test_litemedsam_context_mode_masks_agree(litemedsam, plain_litemedsam, radiograph):
    fast = litemedsam.segment(radiograph, boxes=ANATOMICAL_BOXES[:2], context=2.5)
    plain = plain_litemedsam.segment(radiograph, boxes=ANATOMICAL_BOXES[:2], context=2.5)
    for a, b in zip(fast, plain, strict=True):
        assert (a.mask != b.mask).sum() <= 3


def _plain_classifier_tensor(image, classifier, *, window=None):
    """Map intensities, then resize with ``F.interpolate``: the straightforward order."""
    import torch.nn.functional as F

    from napari_samcam.images import to_unit_range

    unit = torch.from_numpy(to_unit_range(image, window))
    unit = unit.permute(2, 0, 1)[None] if unit.ndim == 3 else unit[None, None]
    if unit.shape[1] != classifier.channels:
        unit = unit.mean(1, keepdim=True).expand(-1, classifier.channels, -1, -1)
    unit = F.interpolate(unit, size=classifier.input_size, mode="bilinear", antialias=True)
    mean = torch.tensor(classifier.mean).view(1, -1, 1, 1)
    std = torch.tensor(classifier.std).view(1, -1, 1, 1)
    return (unit - mean) / std


def _plain_saliency_map(cam, shape):
    import torch.nn.functional as F

    up = F.interpolate(
        torch.from_numpy(np.maximum(cam, 0))[None, None], size=tuple(shape), mode="bilinear"
    )[0, 0]
    return (up / up.max() if up.max() > 0 else up).numpy()


@pytest.mark.slow
def test_metrics_agree_with_and_without_optimisations(
    litemedsam, plain_litemedsam, radiograph, tiny_classifier, monkeypatch
):
    from napari_samcam import saliency
    from napari_samcam.metrics import METRIC_NAMES, localization_metrics

    box = ANATOMICAL_BOXES[0]
    (fast_region,) = litemedsam.segment(radiograph, boxes=[box])
    (plain_region,) = plain_litemedsam.segment(radiograph, boxes=[box])
    fast_map = saliency.explain(radiograph, tiny_classifier, target=1).map
    monkeypatch.setattr(saliency, "_target_gradient_only", lambda cam: False)
    monkeypatch.setattr(saliency, "_cam_threads", lambda classifier: None)
    monkeypatch.setenv("SAMCAM_ACCELERATE", "0")  # no channels-last copy
    monkeypatch.setattr(saliency, "classifier_tensor", _plain_classifier_tensor)
    monkeypatch.setattr(saliency, "upsampled_map", _plain_saliency_map)
    plain_map = saliency.explain(radiograph, tiny_classifier, target=1).map
    np.testing.assert_allclose(fast_map, plain_map, atol=1e-5)
    fast = localization_metrics(fast_map, fast_region.mask)
    plain = localization_metrics(plain_map, plain_region.mask)
    # Sums over the map agree to float rounding. Metrics that count pixels (above the K-th
    # value, above a threshold) can move by a pixel whose value ties the cut-off within that
    # rounding, as any change of summation order makes them: one pixel of the region.
    pixel = 1.0 / plain_region.mask.sum()
    for name in METRIC_NAMES:
        tolerance = 1e-6 if name in ("energy", "auroc", "auprc", "hit") else 1e-6 + 2 * pixel
        assert fast[name] == pytest.approx(plain[name], abs=tolerance, nan_ok=True), name


@pytest.mark.slow
def test_compiled_encoder_matches_eager(tiny_sam, rng):
    """torch.compile (inductor, frozen weights): same features (needs a C compiler)."""
    import shutil
    import warnings

    from napari_samcam.sam_models import load_sam_model
    from napari_samcam.segment import Segmenter

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile needs a C compiler")
    model = load_sam_model(tiny_sam, device="cpu")
    compiled = Segmenter(model, compile_encoder=True)
    plain = Segmenter(model, accelerate=False)
    image = rng.integers(0, 255, (48, 64), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the eager encoder
        out = compiled.embed(image).features
    ref = plain.embed(image).features
    assert compiled.compile_encoder  # compiled, not fallen back to eager
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-5 * float(ref.abs().max()))


# -- metrics: one sort per map gives the per-pair implementation's numbers -------------------


def _metric_maps(rng):
    """Maps with and without ties, float32/64, bool, constant, a Grad-CAM-like upsampling."""
    import torch.nn.functional as F

    smooth = rng.standard_normal((37, 53))
    small = torch.from_numpy(rng.random((1, 1, 4, 5)).astype(np.float32))
    upsampled = F.interpolate(small, size=(61, 47), mode="bilinear", align_corners=False)[0, 0]
    signed_zeros = np.where(rng.random((37, 53)) < 0.5, -0.0, 0.0) + np.round(smooth)
    return {
        "smooth": smooth,
        "float32": smooth.astype(np.float32),
        "ties": np.round(smooth * 3),
        "relu-ties": np.maximum(np.round(smooth * 4), 0).astype(np.float32),
        "signed-zeros": signed_zeros,
        "upsampled": upsampled.numpy(),
        "integers": rng.integers(0, 5, (37, 53)),
        "bool": smooth > 0.3,
        "constant": np.full((37, 53), 0.25),
    }


def _metric_regions(rng, shape):
    yy, xx = np.indices(shape)
    return [
        (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2 < (shape[0] / 5) ** 2,  # small
        rng.random(shape) < 0.7,  # larger than its outside
        rng.random(shape) < 0.3,
        np.zeros(shape, dtype=bool),
        np.ones(shape, dtype=bool),
        np.eye(*shape, dtype=bool),  # one pixel per row
    ]


METRIC_OPTIONS = [
    {},
    {"method": "fixed", "threshold": 0.5},
    {"method": "fixed", "threshold": 0.25, "fill_holes": True},
    {"method": "percentile", "percentile": 20, "k": 9},
    {"method": "otsu", "fill_holes": False, "tolerance": 2.5, "k": 0.4},
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("options", METRIC_OPTIONS)
def test_metrics_with_one_sort_per_map_equal_the_per_pair_implementation(seed, options):
    import math
    import warnings

    from metrics_reference import reference_metrics
    from napari_samcam.metrics import METRIC_NAMES, localization_metrics

    rng = np.random.default_rng(seed)
    for kind, saliency in _metric_maps(rng).items():
        regions = _metric_regions(rng, saliency.shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            together = localization_metrics(saliency, regions, **options)
            on_tensor = localization_metrics(torch.from_numpy(saliency), regions, **options)
            for i, region in enumerate(regions):
                before = reference_metrics(saliency, region, **options)
                alone = localization_metrics(saliency, region, **options)
                for name in METRIC_NAMES:
                    expected = before[name]
                    for got in (together[i][name], alone[name], on_tensor[i][name]):
                        # identical, not close: the same integers in the same order
                        assert got == expected or (math.isnan(got) and math.isnan(expected)), (
                            kind,
                            i,
                            name,
                            got,
                            expected,
                        )


# -- the contract between the fast and the plain backend (random weights) ------------------------


def _backend_contract(model, image: np.ndarray, boxes, points) -> None:
    """The fast backend's embedding, logits, scores and masks are the plain backend's."""
    from napari_samcam.sam._fast.backend import FastSegmentAnythingBackend
    from napari_samcam.sam.plain import SegmentAnythingBackend
    from napari_samcam.segment import Segmenter

    fast_segmenter = Segmenter(model)
    plain_segmenter = Segmenter(model, accelerate=False)
    assert isinstance(fast_segmenter.backend, FastSegmentAnythingBackend)
    assert type(plain_segmenter.backend) is SegmentAnythingBackend
    fast_embedding = fast_segmenter.embed(image)
    plain_embedding = plain_segmenter.embed(image)
    ref = plain_embedding.features
    scale = float(ref.abs().max())
    assert float((fast_embedding.features - ref).abs().max()) < 2e-5 * scale
    for multimask in (False, True):
        for prompt in ({"boxes": boxes}, {"points": points, "labels": np.ones(len(points))}):
            # both decoders on the plain embedding: the decoder's own agreement
            low, iou = fast_segmenter.predict_logits(
                plain_embedding, multimask=multimask, **prompt
            )
            low_ref, iou_ref = plain_segmenter.predict_logits(
                plain_embedding, multimask=multimask, **prompt
            )
            np.testing.assert_allclose(iou.numpy(), iou_ref.numpy(), atol=1e-5)
            tolerance = 1e-4 * max(1.0, float(low_ref.abs().max()))
            np.testing.assert_allclose(low.numpy(), low_ref.numpy(), atol=tolerance)
    fast_regions = fast_segmenter.segment(image, boxes=boxes)
    plain_regions = plain_segmenter.segment(image, boxes=boxes)
    for box, a, b in zip(boxes, fast_regions, plain_regions, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)
        logits = _reference_logits(plain_segmenter, plain_embedding, box)
        clear = np.abs(logits) > 1e-3
        np.testing.assert_array_equal(a.mask[clear], b.mask[clear])
        assert (a.mask != b.mask).mean() < 1e-3


@pytest.mark.slow
def test_fast_backend_keeps_the_contract_on_random_litemedsam(rng):
    from napari_samcam.sam_models import SamModel, litemedsam_architecture

    torch.manual_seed(0)
    model = SamModel(litemedsam_architecture().eval(), "litemedsam-random", 256, box_only=True)
    image = rng.integers(0, 255, (300, 260), dtype=np.uint8)
    boxes = np.array([[20, 30, 200, 180], [150, 100, 290, 250]])
    _backend_contract(model, image, boxes, np.array([[100, 100], [60, 200]]))


@pytest.mark.slow
@pytest.mark.needs_memory(
    "6G", "the plain backend's global attention holds 12 x 4096 x 4096 floats per copy at 1024 px"
)
def test_fast_backend_keeps_the_contract_on_random_vit_b(rng):
    from segment_anything import sam_model_registry

    from napari_samcam.sam_models import SamModel

    torch.manual_seed(0)
    model = SamModel(sam_model_registry["vit_b"](checkpoint=None).eval(), "vit_b-random", 1024)
    image = rng.integers(0, 255, (120, 100), dtype=np.uint8)
    boxes = np.array([[10, 10, 90, 80], [40, 20, 115, 95]])
    _backend_contract(model, image, boxes, np.array([[50, 40]]))


def test_other_upstream_versions_get_the_plain_backend_and_one_warning(tiny_sam, monkeypatch):
    import warnings

    from napari_samcam.sam._fast import backend, upstream
    from napari_samcam.sam.plain import SegmentAnythingBackend
    from napari_samcam.sam_models import load_sam_model
    from napari_samcam.segment import Segmenter

    model = load_sam_model(tiny_sam, device="cpu")
    assert isinstance(Segmenter(model).backend, backend.FastSegmentAnythingBackend)
    monkeypatch.setattr(upstream, "VERIFIED_VERSIONS", {"segment-anything": ("0.9",)})
    monkeypatch.setattr(backend, "_WARNED", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = Segmenter(model), Segmenter(model)
    assert type(first.backend) is SegmentAnythingBackend
    assert type(second.backend) is SegmentAnythingBackend
    messages = [str(w.message) for w in caught if "fast variant" in str(w.message)]
    assert len(messages) == 1
    assert "segment-anything 1.0 is installed" in messages[0] and "0.9" in messages[0]


def test_models_the_fast_variant_was_not_checked_on_run_plain(monkeypatch):
    """A decoder of another class (e.g. MobileSAM's copy of SAM's) gets the plain backend."""
    import warnings

    from conftest import build_tiny_sam
    from napari_samcam.sam._fast import backend
    from napari_samcam.sam.plain import SegmentAnythingBackend
    from napari_samcam.sam_models import SamModel
    from napari_samcam.segment import Segmenter

    sam = build_tiny_sam()

    class OtherDecoder(torch.nn.Module):  # not segment_anything's MaskDecoder
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kwargs):
            return self.inner(**kwargs)

    sam.mask_decoder = OtherDecoder(sam.mask_decoder)
    monkeypatch.setattr(backend, "_WARNED", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        segmenter = Segmenter(SamModel(sam, "other", 64))
    assert type(segmenter.backend) is SegmentAnythingBackend
    assert any("OtherDecoder" in str(w.message) for w in caught)
    regions = segmenter.segment(np.zeros((40, 40), dtype=np.uint8) + 9, boxes=[[5, 5, 30, 30]])
    assert regions[0].mask.shape == (40, 40)
