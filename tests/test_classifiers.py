import numpy as np
import pytest
import torch

from conftest import TinyCNN
from napari_samcam.classifiers import (
    classifier_tensor,
    find_target_layer,
    load_checkpoint,
    load_classifier,
)
from napari_samcam.errors import CheckpointError, InputError, UntrustedFileError


def test_wrap_module_and_class_lookup(tiny_classifier):
    assert tiny_classifier.class_index("DOG", 2) == 1
    assert tiny_classifier.class_index(0, 2) == 0
    with pytest.raises(InputError, match="out of range"):
        tiny_classifier.class_index(5, 2)
    with pytest.raises(InputError, match="not one of"):
        tiny_classifier.class_index("bird", 2)


def test_classifier_tensor_resizes_and_normalises(tiny_classifier):
    image = np.full((50, 70), 255, np.uint8)
    tensor = classifier_tensor(image, tiny_classifier)
    assert tuple(tensor.shape) == (1, 3, 32, 32)
    expected = (1.0 - np.array(tiny_classifier.mean)) / np.array(tiny_classifier.std)
    np.testing.assert_allclose(tensor[0, :, 5, 5].numpy(), expected, rtol=1e-5)
    gray = load_classifier(TinyCNN.build(in_channels=1), channels=1, mean=[0.5], std=[0.5])
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[..., 0] = 255  # mean of channels = 1/3
    t = classifier_tensor(rgb, gray)
    assert tuple(t.shape) == (1, 1, 224, 224)
    assert float(t[0, 0, 0, 0]) == pytest.approx((1 / 3 - 0.5) / 0.5, rel=1e-5)


def test_torchvision_checkpoint_round_trip(tmp_path):
    import torchvision

    model = torchvision.models.resnet18(num_classes=3)
    torch.save(model.state_dict(), tmp_path / "r18.pt")
    clf = load_classifier("torchvision:resnet18", checkpoint=tmp_path / "r18.pt", device="cpu")
    x = torch.randn(1, 3, 64, 64)
    model.eval()
    torch.testing.assert_close(clf.model(x), model(x))
    assert clf.version.startswith("sha256:")
    layer, reshape = find_target_layer(clf)
    assert layer is clf.model.layer4 and reshape is None


def test_checkpoint_that_does_not_fit_names_the_keys(tmp_path):
    import torchvision

    state = torchvision.models.resnet18(num_classes=3).state_dict()
    state.pop("layer1.0.conv1.weight")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"missing keys: layer1\.0\.conv1\.weight"):
        load_classifier("torchvision:resnet18", checkpoint=tmp_path / "bad.pt")


def test_unsafe_pickle_refused_unless_trusted(tmp_path):
    import argparse

    meta = argparse.Namespace(epochs=3)  # any object beyond tensors needs full unpickling
    torch.save({"state_dict": {"w": torch.zeros(2)}, "meta": meta}, tmp_path / "unsafe.pt")
    with pytest.raises(UntrustedFileError, match="trust_checkpoint=True"):
        load_checkpoint(tmp_path / "unsafe.pt")
    state = load_checkpoint(tmp_path / "unsafe.pt", trust_checkpoint=True)
    assert list(state) == ["w"]


def test_architecture_without_weights_is_refused():
    with pytest.raises(CheckpointError, match="checkpoint=PATH"):
        load_classifier("torchvision:resnet18")


def test_torchscript_file_predicts_but_cannot_be_hooked(tmp_path):
    from napari_samcam.saliency import explain, predict

    model = TinyCNN.build()
    torch.jit.script(model).save(str(tmp_path / "m.ts"))
    clf = load_classifier(
        tmp_path / "m.ts", device="cpu", input_size=(32, 32), trust_checkpoint=True
    )
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(clf.model(x), model(x))
    assert len(predict(np.zeros((32, 32)), clf)) == 2
    with pytest.raises(InputError, match=r"torch\.export"):
        explain(np.zeros((32, 32)), clf)


def test_exported_program_is_explainable(tmp_path):
    from napari_samcam.saliency import explain

    model = TinyCNN.build(in_channels=1)
    program = torch.export.export(model, (torch.zeros(1, 1, 40, 40),))
    torch.export.save(program, str(tmp_path / "m.pt2"))
    clf = load_classifier(tmp_path / "m.pt2", device="cpu", trust_checkpoint=True)
    assert clf.input_size == (40, 40) and clf.channels == 1
    x = torch.randn(1, 1, 40, 40)
    torch.testing.assert_close(clf.model(x), model(x))
    sal = explain(np.random.default_rng(0).random((50, 60)), clf)
    assert sal.map.shape == (50, 60) and sal.layer == "4"


def test_unknown_spec():
    with pytest.raises(InputError, match="not a registered name"):
        load_classifier("no-such-model")


def test_vit_target_layer_is_first_norm_of_last_block(tmp_path):
    import torchvision

    vit = torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=2,
    )
    clf = load_classifier(vit, input_size=(32, 32), device="cpu")
    layer, reshape = find_target_layer(clf)
    assert layer is vit.encoder.layers[-1].ln_1
    tokens = torch.randn(1, 17, 16)
    assert tuple(reshape(tokens).shape) == (1, 16, 4, 4)


def test_transformers_folder(tmp_path):
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        num_labels=2,
        id2label={0: "normal", 1: "nodule"},
        label2id={"normal": 0, "nodule": 1},
    )
    ResNetForImageClassification(config).save_pretrained(tmp_path / "hf")
    clf = load_classifier(str(tmp_path / "hf"), device="cpu")
    assert clf.class_names == ["normal", "nodule"]
    out = clf.model(torch.randn(1, 3, 64, 64))
    assert tuple(out.shape) == (1, 2)
