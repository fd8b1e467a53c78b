"""Shared fixtures: tiny random-weight models for mechanics, real data for behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch._dynamo  # noqa: F401

_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def pytest_runtest_setup(item):
    """Skip a ``needs_memory`` test when the process runs under a smaller data cap."""
    import resource

    marker = item.get_closest_marker("needs_memory")
    if marker is None:
        return
    size, why = marker.args
    need = int(float(size[:-1]) * _UNITS[size[-1]])
    cap = resource.getrlimit(resource.RLIMIT_DATA)[0]
    if cap != resource.RLIM_INFINITY and cap < need:
        pytest.skip(f"needs a data cap of {size} or more ({why}); the cap is {cap / 2**30:.1f}G")


# torch._dynamo pulls in triton, whose LLVM clashes with the one software OpenGL loads for a
# napari canvas: importing it after a viewer exists kills the process. Import it first.


def build_tiny_sam(img_size: int = 64, dim: int = 32, seed: int = 0, decoder_depth: int = 1):
    """A ~0.2 M-parameter ``segment_anything`` Sam with the real API; runs in milliseconds."""
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    torch.manual_seed(seed)
    patch = 8
    grid = img_size // patch
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size,
            patch_size=patch,
            embed_dim=dim,
            depth=1,
            num_heads=2,
            out_chans=dim,
            window_size=0,
            global_attn_indexes=(),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=decoder_depth, embedding_dim=dim, mlp_dim=64, num_heads=2
            ),
            transformer_dim=dim,
            iou_head_depth=2,
            iou_head_hidden_dim=32,
        ),
    )
    return sam.eval()


class TinyCNN:
    """Factory for a small CNN classifier (2 classes) with a named last conv stage."""

    @staticmethod
    def build(in_channels: int = 3, n_classes: int = 2, seed: int = 0):
        import torch
        from torch import nn

        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, n_classes),
        ).eval()


@pytest.fixture
def tiny_sam():
    return build_tiny_sam()


@pytest.fixture
def tiny_segmenter(tiny_sam):
    from napari_samcam.segment import load_segmenter

    return load_segmenter(tiny_sam)


@pytest.fixture
def tiny_classifier():
    from napari_samcam.classifiers import load_classifier

    return load_classifier(
        TinyCNN.build(), class_names=["cat", "dog"], input_size=(32, 32), device="cpu"
    )


@pytest.fixture(scope="session")
def tiny_phantoms(tmp_path_factory):
    """Manifest of 5 small phantoms (96 px, 4 with a lesion)."""
    from napari_samcam.phantoms import write_phantoms

    folder = tmp_path_factory.mktemp("tiny-phantoms")
    return write_phantoms(5, folder, seed=3, size=96, positive_fraction=0.8)


@pytest.fixture(scope="session")
def tiny_lesion_classifier():
    """A TinyCNN classifier with the built-ins' classes ("no lesion", "lesion")."""
    from napari_samcam.classifiers import load_classifier

    return load_classifier(
        TinyCNN.build(), class_names=["no lesion", "lesion"], input_size=(32, 32), device="cpu"
    )


def identity_classifier(channels: int):
    """A pass-through Classifier to a (64, 48) input, mean 0.5 and std 0.25 per channel: its
    ``classifier_tensor`` is the model input itself."""
    import torch

    from napari_samcam.classifiers import Classifier

    return Classifier(
        model=torch.nn.Identity(),
        name="identity",
        class_names=["a", "b"],
        input_size=(64, 48),
        channels=channels,
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
    )


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def chest_radiograph():
    """The real PA chest radiograph (CR, 1955x1841) from pydicom-data, as ImageData."""
    import pydicom.data

    from napari_samcam.images import read_image

    return read_image(pydicom.data.get_testdata_file("RG1_UNCI.dcm", download=False))


@pytest.fixture(scope="session")
def litemedsam():
    from napari_samcam.segment import load_segmenter

    return load_segmenter("litemedsam", device="cpu")


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE vocabularies use for bytes."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    symbols = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def build_tiny_clip(folder):
    """A tiny random CLIP saved in ``folder`` like a real one: weights, tokenizer (a byte-level
    vocabulary), preprocessor config. Builds offline in about a second; returns ``folder``."""
    import json

    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": 256 + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip_folder(tmp_path_factory):
    """:func:`build_tiny_clip` in a temporary folder, once per test run."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


#: CAM methods and region sources of :func:`tiny_evaluation`.
TINY_EVALUATION_METHODS = ("gradcam", "hirescam")
TINY_EVALUATION_SOURCES = ("ground-truth", "box", "sam-box", "sam-saliency-box")


@pytest.fixture(scope="session")
def tiny_evaluation(tmp_path_factory, tiny_lesion_classifier):
    """``samcam evaluate`` of 4 phantoms (80 px) with the tiny classifier and tiny SAM."""
    from napari_samcam.evaluation import evaluate
    from napari_samcam.phantoms import write_phantoms

    folder = tmp_path_factory.mktemp("tiny-evaluation")
    manifest = write_phantoms(4, folder / "data", seed=5, size=80, positive_fraction=0.75)
    return evaluate(
        manifest,
        folder / "out",
        classifiers=[tiny_lesion_classifier],
        methods=TINY_EVALUATION_METHODS,
        region_sources=TINY_EVALUATION_SOURCES,
        sam=build_tiny_sam(),
        device="cpu",
        n_resamples=20,
        plots=False,
        report=False,
    )
