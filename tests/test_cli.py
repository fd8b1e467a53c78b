import json

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch

from conftest import TinyCNN
from napari_samcam.cli import main


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "img.png"
    iio.imwrite(path, rng.integers(0, 255, (40, 50), dtype=np.uint8))
    return path


@pytest.fixture
def exported_model(tmp_path):
    path = tmp_path / "m.pt2"
    program = torch.export.export(TinyCNN.build(), (torch.zeros(1, 3, 32, 32),))
    torch.export.save(program, str(path))
    return path


def test_explain_writes_map_overlay_and_provenance(tmp_path, image_file, exported_model, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            str(image_file),
            "--model",
            str(exported_model),
            "--trust-checkpoint",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    saliency = tifffile.imread(out / "saliency.tif")
    assert saliency.shape == (40, 50) and saliency.dtype == np.float32
    info = json.loads((out / "saliency.json").read_text())
    assert info["classifier"] == "m.pt2" and info["method"] == "gradcam"
    assert 0 <= info["probability"] <= 1
    assert iio.imread(out / "overlay.png").ndim == 3
    # A second run refuses to overwrite.
    code = main(["explain", str(image_file), "--model", str(exported_model), "--out", str(out)])
    assert code == 2
    assert "--overwrite" in capsys.readouterr().err


def test_explain_bad_inputs_write_nothing(tmp_path, exported_model, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "explain",
                str(tmp_path / "nope.png"),
                "--model",
                str(exported_model),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_segment_with_a_tiny_model(tmp_path, image_file, tiny_sam, monkeypatch):
    import napari_samcam.segment as segment

    real = segment.load_segmenter
    monkeypatch.setattr(segment, "load_segmenter", lambda *a, **k: real(tiny_sam))
    out = tmp_path / "seg"
    code = main(
        ["segment", str(image_file), "--box", "5,5,30,40", "--box", "0,0,10,10", "--out", str(out)]
    )
    assert code == 0
    labels = tifffile.imread(out / "masks.tif")
    assert labels.shape == (40, 50) and set(np.unique(labels)) <= {0, 1, 2}
    info = json.loads((out / "regions.json").read_text())
    assert [r["prompt"]["box"] for r in info["regions"]] == [[5, 5, 30, 40], [0, 0, 10, 10]]
    assert (iio.imread(out / "mask_1.png") > 0).sum() == info["regions"][0]["area"]


def test_segment_needs_a_prompt(tmp_path, image_file, capsys):
    assert main(["segment", str(image_file), "--out", str(tmp_path / "o")]) == 2
    assert "at least one --box" in capsys.readouterr().err


def test_litemedsam_loads_without_timm_deprecation_notices():
    """LiteMedSAM's vendored code imports timm by deprecated paths; a run must not print that."""
    import subprocess
    import sys

    code = (
        "from napari_samcam.segment import load_segmenter; "
        "load_segmenter('litemedsam', device='cpu')"
    )
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "timm" not in done.stderr and "FutureWarning" not in done.stderr, done.stderr
