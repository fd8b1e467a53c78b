import numpy as np
import pytest
import torch

from conftest import TinyCNN
from napari_samcam.classifiers import load_classifier
from napari_samcam.errors import InputError
from napari_samcam.saliency import CAM_METHODS, explain, predict


def _hooks(model):
    return sum(
        len(m._forward_hooks)
        + len(m._backward_hooks)
        + len(m._forward_pre_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


def test_map_is_at_image_resolution_with_provenance(tiny_classifier):
    image = np.random.default_rng(1).integers(0, 255, (45, 61), dtype=np.uint8)
    sal = explain(image, tiny_classifier)
    assert sal.map.shape == (45, 61) and sal.map.dtype == np.float32
    assert sal.map.min() >= 0.0 and sal.map.max() <= 1.0
    assert sal.raw.shape == (16, 16)  # conv stage before pooling at 32x32 input
    probs = predict(image, tiny_classifier)
    top = max(probs, key=probs.get)
    assert sal.class_name == top
    assert sal.probability == pytest.approx(probs[top], rel=1e-5)
    assert sal.layer == "4" and sal.method == "gradcam"
    assert sum(sal.probabilities) == pytest.approx(1.0, rel=1e-5)


def test_raw_matches_manual_gradcam(tiny_classifier):
    """Grad-CAM by hand: ReLU(sum_k mean(dy/dA_k) A_k) at the last spatial layer (ReLU 4)."""
    image = np.random.default_rng(2).random((32, 32)).astype(np.float32)
    from napari_samcam.classifiers import classifier_tensor

    model = tiny_classifier.model
    acts = {}
    handle = model[4].register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    x = classifier_tensor(image, tiny_classifier)
    out = model(x)
    handle.remove()
    grad = torch.autograd.grad(out[0, 1], acts["a"])[0]
    manual = torch.relu((grad.mean((2, 3), keepdim=True) * acts["a"]).sum(1))[0].detach().numpy()
    sal = explain(image, tiny_classifier, target="dog")
    assert sal.class_index == 1
    np.testing.assert_allclose(sal.raw, manual, rtol=1e-4, atol=1e-6)
    if manual.max() > 0:
        np.testing.assert_allclose(sal.map.max(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("method", ["gradcam++", "HiResCAM", "xgradcam", "layercam", "eigencam"])
def test_methods_by_name(tiny_classifier, method):
    sal = explain(np.zeros((20, 20), np.uint8) + 7, tiny_classifier, method=method)
    assert sal.map.shape == (20, 20) and np.isfinite(sal.map).all()


@pytest.mark.parametrize("method", CAM_METHODS)
def test_every_method_explains_the_requested_class(tiny_classifier, method):
    image = np.random.default_rng(4).random((40, 36)).astype(np.float32)
    sal = explain(image, tiny_classifier, method=method, target="dog")
    assert sal.class_index == 1 and sal.method == method
    assert sal.map.shape == (40, 36) and np.isfinite(sal.map).all()
    assert sal.map.min() >= 0.0 and sal.map.max() <= 1.0
    assert sal.probability == pytest.approx(predict(image, tiny_classifier)["dog"], rel=1e-4)


def test_no_hooks_left_after_many_calls(tiny_classifier):
    image = np.random.default_rng(3).random((32, 32)).astype(np.float32)
    before = _hooks(tiny_classifier.model)
    for i in range(50):
        explain(image, tiny_classifier, target=i % 2)
    clone = tiny_classifier.extra["cam_copy"][2]  # the CAM ran on this channels-last copy
    assert _hooks(tiny_classifier.model) == before == 0
    assert _hooks(clone) == 0


def test_bad_inputs(tiny_classifier):
    with pytest.raises(InputError, match="not a CAM method"):
        explain(np.zeros((8, 8)), tiny_classifier, method="magic")
    with pytest.raises(InputError, match="out of range"):
        explain(np.zeros((8, 8)), tiny_classifier, target=7)
    with pytest.raises(InputError, match="NaN"):
        explain(np.full((8, 8), np.nan), tiny_classifier)
    with pytest.raises(InputError, match="shape"):
        explain(np.zeros((2, 8, 8, 8)), tiny_classifier)


def test_target_layer_by_name():
    clf = load_classifier(TinyCNN.build(), input_size=(32, 32), target_layer="1", device="cpu")
    sal = explain(np.ones((32, 32)), clf)
    assert sal.layer == "1" and sal.raw.shape == (32, 32)
    assert "gradcam++" in CAM_METHODS
