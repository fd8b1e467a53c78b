"""Tests of the two classifiers shipped with the package."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import torch

from napari_samcam.builtin_classifiers import (
    BUILTIN_CLASSIFIERS,
    PhantomCNN,
    builtin_metadata,
    load_builtin_classifier,
)
from napari_samcam.classifiers import Classifier, classifier_tensor
from napari_samcam.errors import InputError

NAMES = ("lesion-detector", "shortcut-detector")


def _auroc(scores, labels) -> float:
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


@pytest.fixture(scope="module")
def loaded() -> dict[str, Classifier]:
    return {name: load_builtin_classifier(name) for name in NAMES}


def _probabilities(classifier: Classifier, images) -> np.ndarray:
    with torch.no_grad():
        batch = torch.cat([classifier_tensor(image, classifier) for image in images])
        return torch.softmax(classifier.model(batch), dim=1)[:, 1].numpy()


def test_names_are_listed():
    assert set(BUILTIN_CLASSIFIERS) == set(NAMES)
    assert all(isinstance(text, str) and text for text in BUILTIN_CLASSIFIERS.values())


@pytest.mark.parametrize("name", NAMES)
def test_load_gives_a_complete_classifier(loaded, name):
    classifier = loaded[name]
    assert isinstance(classifier, Classifier)
    assert classifier.name == name
    assert classifier.class_names == ["no lesion", "lesion"]
    assert classifier.finding_class == "lesion"  # what the widget explains by default
    assert classifier.channels == 1
    assert classifier.input_size == (256, 256)
    assert len(classifier.mean) == len(classifier.std) == 1
    assert 0 < classifier.mean[0] < 1 and 0 < classifier.std[0] < 1
    assert isinstance(classifier.model, PhantomCNN)
    assert classifier.target_layer is classifier.model.stage5
    assert not classifier.model.training
    assert classifier.version == builtin_metadata(name)["version"]


@pytest.mark.parametrize("name", NAMES)
def test_output_shape(loaded, name):
    model = loaded[name].model
    with torch.no_grad():
        assert model(torch.zeros(3, 1, 256, 256)).shape == (3, 2)
        width = builtin_metadata(name)["architecture"]["widths"][-1]
        assert model.features(torch.zeros(1, 1, 256, 256)).shape == (1, width, 32, 32)
        # P(lesion) is the sigmoid of the pooled evidence
        x = torch.randn(2, 1, 256, 256)
        z = model.pool(model.evidence(x))
        assert torch.allclose(torch.softmax(model(x), 1)[:, 1], torch.sigmoid(z), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_weights_are_small_and_documented(name):
    folder = resources.files("napari_samcam") / "weights"
    weights = folder / f"{name}.pt"
    assert weights.is_file()
    assert len(weights.read_bytes()) < 5 * 1024 * 1024
    meta = builtin_metadata(name)
    for key in ("version", "architecture", "input_size", "mean", "std", "class_names"):
        assert key in meta
    assert meta["training"]["seed"] == 0
    assert "train_phantom_classifiers.py" in meta["training"]["command"]
    assert meta["license"] == "BSD-3-Clause"
    import hashlib

    assert hashlib.sha256(weights.read_bytes()).hexdigest() == meta["sha256"]


def test_unknown_name_is_an_input_error():
    with pytest.raises(InputError, match="lesion-detector"):
        load_builtin_classifier("tumour-finder")


def test_registry_loads_builtins(loaded):
    from napari_samcam.classifiers import load_classifier

    classifier = load_classifier("lesion-detector", device="cpu")
    assert classifier.name == "lesion-detector"
    reference = loaded["lesion-detector"].model.state_dict()
    for key, value in classifier.model.state_dict().items():
        assert torch.equal(value, reference[key])


@pytest.mark.slow
def test_lesion_detector_finds_lesions_in_fresh_phantoms(loaded):
    from napari_samcam.phantoms import generate_phantoms

    classifier = loaded["lesion-detector"]
    cases = generate_phantoms(40, seed=20240611)
    scores = _probabilities(classifier, [c.image for c in cases])
    labels = [c.label for c in cases]
    assert _auroc(scores, labels) >= 0.9

    positives = [c for c in cases if c.label]
    with_lesion = _probabilities(classifier, [c.image for c in positives])
    without = _probabilities(classifier, [c.clean for c in positives])
    assert np.mean(with_lesion > without) >= 0.9
    # the most conspicuous lesion, on its own
    best = int(np.argmax([c.lesion_contrast * c.lesion_radius for c in positives]))
    assert with_lesion[best] > without[best] + 0.2


@pytest.mark.slow
def test_shortcut_detector_looks_at_the_marker(loaded):
    from napari_samcam.phantoms import generate_phantoms
    from napari_samcam.saliency import explain

    classifier = loaded["shortcut-detector"]
    cases = generate_phantoms(30, seed=777, marker=(1.0, 0.0), lesion_contrast=(0.03, 0.08))
    scores = _probabilities(classifier, [c.image for c in cases])
    assert _auroc(scores, [c.label for c in cases]) >= 0.9
    from scipy import ndimage as ndi

    positives = [c for c in cases if c.label][:8]
    near_marker = []
    for case in positives:
        saliency = explain(case.image, classifier, target="lesion")
        r0, c0, r1, c1 = case.marker_box
        marker = np.zeros(case.mask.shape, dtype=bool)
        marker[r0:r1, c0:c1] = True
        total = float(saliency.map.sum())
        # None of the evidence is on the lesion ...
        assert saliency.map[case.mask].sum() <= 0.05 * total
        # ... the map's maximum lies within one CAM cell (16 px at 512) of the marker ...
        r, c = np.unravel_index(int(np.argmax(saliency.map)), saliency.map.shape)
        near_marker.append(ndi.distance_transform_edt(~marker)[r, c] <= 16)
        # ... and nearly all of its energy is around the marker.
        around = ndi.binary_dilation(marker, iterations=32)
        assert saliency.map[around].sum() >= 0.9 * total
    assert np.mean(near_marker) >= 0.75
