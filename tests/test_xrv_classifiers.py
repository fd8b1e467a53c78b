"""torchxrayvision models as classifier specs: random-weight architectures, state dicts the tests
save, its preprocessing, CheXlocalize task names, offline behaviour and ``samcam explain``."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch

pytest.importorskip("torchxrayvision")

from napari_samcam.classifier_specs import find_spec, registered_names
from napari_samcam.classifiers import classifier_tensor, load_classifier
from napari_samcam.cli import main
from napari_samcam.errors import CheckpointError, ModelNotAvailableError
from napari_samcam.xrv_classifiers import build_xrv_model

SPEC = "xrv:densenet121-res224-all"


@pytest.fixture(scope="module")
def densenet_state(tmp_path_factory):
    torch.manual_seed(0)
    model = build_xrv_model("densenet121-res224-all")
    # kaiming-initialised DenseNets saturate the sigmoid: a small head keeps logits moderate,
    # and a non-negative one gives every class positive evidence, so maps are not all zero
    with torch.no_grad():
        model.classifier.weight.abs_().mul_(1e-3)
    path = tmp_path_factory.mktemp("xrv") / "densenet.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_registered_and_loaded_with_its_conventions(densenet_state):
    model, path = densenet_state
    assert SPEC in registered_names() and find_spec(SPEC) is not None
    classifier = load_classifier(SPEC, checkpoint=path, device="cpu")
    # torchxrayvision's labels with CheXlocalize's names where they differ
    assert classifier.class_names[7] == "Pleural Effusion"
    assert classifier.class_names[16] == "Airspace Opacity"
    assert "Cardiomegaly" in classifier.class_names and "Effusion" not in classifier.class_names
    assert classifier.channels == 1 and classifier.input_size == (224, 224)
    assert classifier.multilabel and classifier.center_crop
    assert classifier.target_layer is classifier.model.features.norm5
    for ours, theirs in zip(
        classifier.model.state_dict().values(), model.state_dict().values(), strict=True
    ):
        assert torch.equal(ours, theirs)


def test_preprocessing_is_xrv_scaling_with_centre_crop(densenet_state):
    _, path = densenet_state
    classifier = load_classifier(SPEC, checkpoint=path, device="cpu")
    # 8-bit image 40 x 60: the centred 40 x 40 square is columns 10:50, set to 255; the
    # columns outside it are 0. xrv: crop, then (2 * x / 255 - 1) * 1024 -> +1024 everywhere.
    image = np.zeros((40, 60), np.uint8)
    image[:, 10:50] = 255
    tensor = classifier_tensor(image, classifier)
    assert tuple(tensor.shape) == (1, 1, 224, 224)
    np.testing.assert_allclose(tensor.numpy(), 1024.0, rtol=1e-6)
    # and a mid-grey 8-bit value 51 -> (2 * 0.2 - 1) * 1024 = -614.4
    tensor = classifier_tensor(np.full((30, 30), 51, np.uint8), classifier)
    np.testing.assert_allclose(tensor.numpy(), -614.4, rtol=1e-5)


def test_explained_map_covers_the_centre_crop_only(densenet_state):
    from napari_samcam.saliency import explain

    _, path = densenet_state
    classifier = load_classifier(SPEC, checkpoint=path, device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (60, 90), dtype=np.uint8)
    saliency = explain(image, classifier, target="Pleural Effusion")
    assert saliency.map.shape == (60, 90) and saliency.class_name == "Pleural Effusion"
    assert saliency.layer == "features.norm5" and 0 < saliency.probability < 1
    # the model saw columns 15:75 only
    assert not saliency.map[:, :15].any() and not saliency.map[:, 75:].any()
    assert saliency.map[:, 15:75].max() == pytest.approx(1.0)


def test_released_module_pickle_loads_weights_only(tmp_path, densenet_state, monkeypatch):
    # torchxrayvision's DenseNet release files are torch.save(model): read with an allowlist
    model, _ = densenet_state
    import torchxrayvision as xrv

    url = xrv.models.model_urls["densenet121-res224-all"]["weights_url"]
    cached = tmp_path / url.rsplit("/", 1)[1]
    torch.save(model, cached)
    monkeypatch.setattr(xrv.utils, "get_cache_dir", lambda: str(tmp_path))
    classifier = load_classifier(SPEC, device="cpu")
    assert classifier.source == str(cached)
    assert torch.equal(classifier.model.classifier.weight, model.classifier.weight)


class _Evil:
    def __reduce__(self):
        return (print, ("ran",))


def test_other_pickles_need_trust(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"features.conv0.weight": _Evil()}, path)
    with pytest.raises(CheckpointError, match="trust_checkpoint"):
        load_classifier(SPEC, checkpoint=path, device="cpu")
    assert "ran" not in capsys.readouterr().out


def test_offline_download_is_a_clear_error(tmp_path, monkeypatch):
    import torch.hub
    import torchxrayvision as xrv

    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise OSError("no route to host")

    monkeypatch.setattr(xrv.utils, "get_cache_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    # nothing is downloaded unless asked, and only pinned by its SHA-256
    with pytest.raises(ModelNotAvailableError, match=r"download=True.*checkpoint="):
        load_classifier(SPEC, device="cpu")
    with pytest.raises(ModelNotAvailableError, match=r"publishes no digest.*@SHA256"):
        load_classifier(SPEC, device="cpu", download=True)
    assert calls == []
    with pytest.raises(ModelNotAvailableError, match=r"could not be downloaded.*checkpoint="):
        load_classifier(f"{SPEC}@{'0' * 64}", device="cpu", download=True)
    assert len(calls) == 1 and calls[0].startswith("https://github.com/mlmed/")
    assert not any(p.suffix == ".pt" for p in tmp_path.iterdir())


def test_samcam_explain_with_an_xrv_model(tmp_path, densenet_state):
    _, path = densenet_state
    image = tmp_path / "cxr.png"
    iio.imwrite(image, np.random.default_rng(1).integers(0, 255, (64, 80), dtype=np.uint8))
    out = tmp_path / "out"
    args = ["explain", str(image), "--model", SPEC, "--checkpoint", str(path)]
    assert main([*args, "--target", "Cardiomegaly", "--out", str(out), "--device", "cpu"]) == 0
    saliency = tifffile.imread(out / "saliency.tif")
    assert saliency.shape == (64, 80)
    assert not saliency[:, :8].any() and not saliency[:, 72:].any()  # centre 64 x 64 crop
    info = json.loads((out / "saliency.json").read_text())
    assert info["classifier"] == SPEC and info["class_name"] == "Cardiomegaly"
    assert info["layer"] == "features.norm5"
