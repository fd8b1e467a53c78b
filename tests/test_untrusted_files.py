"""Files from someone else: no model file runs code unless trusted, and bad files get clear errors.

Every malicious file here carries a live payload: unpickling it creates a marker folder. Each
test checks that napari-samcam refuses the file with a :class:`SamcamError` naming it, that the
marker is absent, and then that the payload was live (loading the file the unsafe way creates
the marker), so a test cannot pass on a harmless file.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from conftest import TinyCNN
from napari_samcam.classifiers import load_checkpoint, load_classifier
from napari_samcam.cli import main
from napari_samcam.errors import (
    CheckpointError,
    InputError,
    ModelNotAvailableError,
    SamcamError,
    UntrustedFileError,
)


class Payload:
    """Unpickling this creates the folder ``marker``: a stand-in for any code an attacker runs."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _payload_bytes(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    return buffer.getvalue()


def _refused(excinfo, path: Path, marker: Path) -> str:
    error = excinfo.value
    assert isinstance(error, SamcamError)
    assert str(path) in str(error)
    assert not marker.exists()
    return str(error)


def _rewrite_zip(source: Path, target: Path, replace) -> None:
    """Copy a zip archive entry by entry, ``replace(name, data)`` giving each entry's bytes."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            out.writestr(info.filename, replace(info.filename, src.read(info.filename)))


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "PAYLOAD-RAN"


@pytest.fixture
def exported(tmp_path):
    path = tmp_path / "good.pt2"
    program = torch.export.export(TinyCNN.build(), (torch.zeros(1, 3, 32, 32),))
    torch.export.save(program, str(path))
    return path


@pytest.fixture
def evil_pt2(tmp_path, exported, marker):
    """A real torch.export archive whose pickled sample inputs hold the payload."""
    path = tmp_path / "evil.pt2"
    payload = _payload_bytes(marker)

    def replace(name, data):
        return payload if name.endswith("sample_inputs/model.pt") else data

    _rewrite_zip(exported, path, replace)
    return path


@pytest.fixture
def evil_torchscript(tmp_path, marker):
    """A torch.jit.save archive whose data.pkl is replaced by the payload's pickle."""
    scripted = tmp_path / "good.ts"
    with pytest.warns(FutureWarning):
        torch.jit.script(TinyCNN.build()).save(str(scripted))
    path = tmp_path / "evil.pt"
    payload = pickle.dumps(Payload(marker), protocol=2)

    def replace(name, data):
        return payload if name.endswith("/data.pkl") else data

    _rewrite_zip(scripted, path, replace)
    return path


@pytest.fixture
def spy_loaders(monkeypatch):
    """Record every call of torch's code-running loaders (and refuse to run them)."""
    calls: list[str] = []

    def refuse(name):
        def loader(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called on an untrusted file")

        return loader

    monkeypatch.setattr(torch.export, "load", refuse("torch.export.load"))
    monkeypatch.setattr(torch.jit, "load", refuse("torch.jit.load"))
    return calls


# -- .pt / .pth state dicts -------------------------------------------------------------------


def test_state_dict_with_a_reduce_payload_is_refused(tmp_path, marker):
    import torchvision

    path = tmp_path / "weights.pth"
    state = dict(torchvision.models.resnet18(num_classes=2).state_dict())
    state["extra"] = Payload(marker)
    torch.save(state, path)
    with pytest.raises(UntrustedFileError) as excinfo:
        load_classifier("torchvision:resnet18", checkpoint=path, device="cpu")
    message = _refused(excinfo, path, marker)
    assert "trust_checkpoint=True" in message and "--trust-checkpoint" in message
    assert "posix.mkdir" in message  # what the unpickler refused
    torch.load(path, weights_only=False)  # the payload is live
    assert marker.exists()


def test_trusted_checkpoint_that_needs_unpickling_still_loads(tmp_path):
    import argparse

    import torchvision

    model = torchvision.models.resnet18(num_classes=3)
    path = tmp_path / "full.pth"
    torch.save({"state_dict": model.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UntrustedFileError):
        load_checkpoint(path)
    clf = load_classifier(
        "torchvision:resnet18", checkpoint=path, trust_checkpoint=True, device="cpu"
    )
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(clf.model(x), model.eval()(x))


# -- torch.export archives (.pt2) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("archive", "kind"), [("evil_pt2", "torch.export"), ("evil_torchscript", "TorchScript")]
)
def test_code_archives_are_not_opened_without_trust(request, archive, kind, marker, spy_loaders):
    path = request.getfixturevalue(archive)
    with pytest.raises(UntrustedFileError) as excinfo:
        load_classifier(path, device="cpu")
    message = _refused(excinfo, path, marker)
    assert kind in message
    assert "trust_checkpoint=True" in message and "--trust-checkpoint" in message
    assert spy_loaders == []  # neither torch.export.load nor torch.jit.load was called


def test_pt2_payload_is_live(evil_pt2, marker):
    """The archive above runs its payload when opened the plain way."""
    with pytest.raises(Exception):  # noqa: B017 - torch fails after unpickling
        torch.export.load(str(evil_pt2))
    assert marker.exists()


def test_trusted_pt2_loads_and_explains(exported):
    from napari_samcam.saliency import explain

    clf = load_classifier(exported, device="cpu", trust_checkpoint=True)
    assert clf.input_size == (32, 32)
    saliency = explain(np.random.default_rng(0).random((40, 50)), clf)
    assert saliency.map.shape == (40, 50) and np.isfinite(saliency.map).all()


def test_random_bytes_pt2_is_a_clean_error_even_when_trusted(tmp_path, capfd, spy_loaders):
    path = tmp_path / "rand.pt2"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError) as excinfo:
        load_classifier(path, device="cpu", trust_checkpoint=True)
    assert str(path) in str(excinfo.value) and "torch.export" in str(excinfo.value)
    assert spy_loaders == []  # refused before torch reads it
    assert capfd.readouterr().err == ""


def test_broken_trusted_pt2_leaks_no_torch_log(tmp_path, capfd):
    """An archive torch fails on gives one error with torch's reason, and nothing on stderr."""
    path = tmp_path / "broken.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("broken/readme.txt", "no program here")
    with pytest.raises(CheckpointError) as excinfo:
        load_classifier(path, device="cpu", trust_checkpoint=True)
    message = str(excinfo.value)
    assert str(path) in message and "version" in message  # torch: no "version" record
    assert "warnings above" not in message
    assert capfd.readouterr().err == ""


# -- TorchScript ------------------------------------------------------------------------------


def test_torchscript_payload_pickle_is_live(evil_torchscript, marker):
    with zipfile.ZipFile(evil_torchscript) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        pickle.loads(archive.read(name))
    assert marker.exists()


def test_trusted_torchscript_loads(tmp_path):
    model = TinyCNN.build()
    path = tmp_path / "m.ts"
    with pytest.warns(FutureWarning):
        torch.jit.script(model).save(str(path))
    clf = load_classifier(path, device="cpu", trust_checkpoint=True)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(clf.model(x), model(x))


# -- transformers folders (hf:) ---------------------------------------------------------------


def _hf_model():
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=2)
    return ResNetForImageClassification(config).eval()


def _evil_bin(folder: Path, model, marker: Path) -> Path:
    state = dict(model.state_dict())
    state["payload"] = Payload(marker)
    path = folder / "pytorch_model.bin"
    torch.save(state, path)
    return path


def test_hf_folder_with_a_malicious_bin_is_refused(tmp_path, marker):
    model = _hf_model()
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    weights = _evil_bin(folder, model, marker)
    with pytest.raises(UntrustedFileError) as excinfo:
        load_classifier(f"hf:{folder}", device="cpu")
    message = _refused(excinfo, weights, marker)
    assert "--trust-checkpoint" in message and "safetensors" in message
    torch.load(weights, weights_only=False)  # the payload is live
    assert marker.exists()


def test_hf_folder_prefers_safetensors(tmp_path, marker):
    model = _hf_model()
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    _evil_bin(folder, model, marker)
    clf = load_classifier(f"hf:{folder}", device="cpu", trust_checkpoint=True)
    assert not marker.exists()  # the pickle beside the safetensors was never read
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(clf.model(x), model(pixel_values=x).logits)


def test_hf_hub_id_is_resolved_locally_without_network(monkeypatch, tmp_path):
    import socket

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    connects = []

    def no_network(self, *args, **kwargs):
        connects.append(args)
        raise OSError("network used")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(ModelNotAvailableError) as excinfo:
        load_classifier("hf:someone/not-cached", device="cpu")
    assert "someone/not-cached" in str(excinfo.value) and "@COMMIT" in str(excinfo.value)
    with pytest.raises(InputError, match="pinned revision"):
        load_classifier("hf:someone/not-cached", device="cpu", download=True)
    assert connects == []


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "img.png"
    iio.imwrite(path, np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8))
    return path


def test_cli_explain_refuses_an_untrusted_pt2(tmp_path, image_file, evil_pt2, marker, capsys):
    out = tmp_path / "out"
    args = ["explain", str(image_file), "--model", str(evil_pt2), "--out", str(out)]
    assert main([*args, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(evil_pt2) in err and "--trust-checkpoint" in err
    assert not marker.exists() and not out.exists()


def test_cli_explain_random_bytes_pt2_with_trust(tmp_path, image_file, capfd):
    path = tmp_path / "rand.pt2"
    path.write_bytes(np.random.default_rng(1).bytes(2048))
    out = tmp_path / "out"
    args = ["explain", str(image_file), "--model", str(path), "--out", str(out)]
    assert main([*args, "--trust-checkpoint", "--device", "cpu"]) == 2
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err
    assert not out.exists()


def test_cli_evaluate_refuses_an_untrusted_pt2_before_any_work(tmp_path, evil_pt2, marker, capsys):
    from napari_samcam.phantoms import write_phantoms

    manifest = write_phantoms(2, tmp_path / "phantoms", seed=0, size=64)
    out = tmp_path / "eval"
    args = ["evaluate", str(manifest), "--out", str(out), "--model", str(evil_pt2)]
    assert main([*args, "--regions", "box", "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert str(evil_pt2) in err and "--trust-checkpoint" in err
    assert not marker.exists() and not out.exists()


# -- SAM checkpoint downloads -----------------------------------------------------------------


def test_sam_download_pins_are_full_sha256():
    from napari_samcam import sam_models

    for filename, digest in sam_models._SAM_CHECKPOINTS.values():
        assert len(digest) == 64 and int(digest, 16) >= 0, filename


@pytest.fixture
def fake_release(tmp_path, monkeypatch):
    """The official download URL pointed at a local file (no network)."""
    import hashlib

    from napari_samcam import sam_models

    release = tmp_path / "release"
    release.mkdir()
    (release / "sam_vit_b_01ec64.pth").write_bytes(b"not the real checkpoint")
    monkeypatch.setattr(sam_models, "_SAM_URL", release.as_uri() + "/{}")
    monkeypatch.setenv("SAMCAM_CACHE", str(tmp_path / "cache"))
    return hashlib.sha256(b"not the real checkpoint").hexdigest()


def test_sam_download_checks_the_whole_digest(fake_release, tmp_path, monkeypatch):
    from napari_samcam import sam_models

    # the same digest but for its last hex digit: a prefix check would accept the file
    almost = fake_release[:-1] + ("0" if fake_release[-1] != "0" else "1")
    monkeypatch.setitem(sam_models._SAM_CHECKPOINTS, "vit_b", ("sam_vit_b_01ec64.pth", almost))
    with pytest.raises(ModelNotAvailableError) as excinfo:
        sam_models.load_sam_model("vit_b", download=True, device="cpu")
    assert "sam_vit_b_01ec64.pth" in str(excinfo.value) and "invalid hash" in str(excinfo.value)
    cache = tmp_path / "cache"
    assert not cache.exists() or list(cache.iterdir()) == []  # nothing half-downloaded kept


def test_sam_download_refused_without_a_pinned_digest(fake_release, tmp_path, monkeypatch):
    from napari_samcam import sam_models

    monkeypatch.setitem(sam_models._SAM_CHECKPOINTS, "vit_b", ("sam_vit_b_01ec64.pth", ""))
    with pytest.raises(ModelNotAvailableError, match="no full SHA-256 is pinned"):
        sam_models.load_sam_model("vit_b", download=True, device="cpu")
    assert not (tmp_path / "cache").exists()


def test_sam_download_with_the_pinned_digest_is_kept(fake_release, tmp_path, monkeypatch):
    from napari_samcam import sam_models

    monkeypatch.setitem(
        sam_models._SAM_CHECKPOINTS, "vit_b", ("sam_vit_b_01ec64.pth", fake_release)
    )
    # the verified file is then read as a state dict (weights only): this one is not one
    with pytest.raises(CheckpointError, match=r"sam_vit_b_01ec64\.pth"):
        sam_models.load_sam_model("vit_b", download=True, device="cpu")
    assert (tmp_path / "cache" / "sam_vit_b_01ec64.pth").read_bytes() == b"not the real checkpoint"


# -- session folders --------------------------------------------------------------------------


def _save(folder: Path, *names: str) -> Path:
    from napari_samcam._napari._session_io import write_session

    rng = np.random.default_rng(0)
    layers = [(rng.random((6, 7)).astype(np.float32), {"name": n}, "image") for n in names]
    write_session(folder, layers)
    return folder


def _edit_session(folder: Path, change) -> Path:
    """Change the first layer's record of a saved session as an editor of the JSON would."""
    from napari_samcam._napari._session_io import SESSION_FILE, decode, encode

    session_file = folder / SESSION_FILE
    document = json.loads(session_file.read_text())
    record = decode(document["layers"][0])
    change(record)
    document["layers"][0] = encode(record)
    session_file.write_text(json.dumps(document))
    return session_file


@pytest.fixture
def outside(tmp_path):
    import tifffile

    path = tmp_path / "outside.tif"
    tifffile.imwrite(path, np.full((3, 3), 7, np.uint8))
    return path


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_session_data_file_outside_the_folder_is_refused(tmp_path, outside, kind):
    from napari_samcam._napari._session_io import read_session

    folder = _save(tmp_path / "session", "scan")
    name = "../outside.tif" if kind == "dotdot" else str(outside)
    session_file = _edit_session(folder, lambda layer: layer.update(data_file=name))
    with pytest.raises(SamcamError) as excinfo:
        read_session(folder)
    message = str(excinfo.value)
    assert str(session_file) in message and name in message and "outside" in message


def test_session_link_leading_out_of_the_folder_is_refused(tmp_path, outside):
    from napari_samcam._napari._session_io import read_session

    folder = _save(tmp_path / "session", "scan")
    link = folder / "layers" / "00-scan.tif"
    link.unlink()
    link.symlink_to(outside)
    with pytest.raises(SamcamError) as excinfo:
        read_session(folder)
    assert "layers/00-scan.tif" in str(excinfo.value) and "link" in str(excinfo.value)


def test_session_layer_without_state_names_the_file_and_the_layer(tmp_path):
    from napari_samcam._napari._session_io import read_session

    folder = _save(tmp_path / "session", "scan")
    session_file = _edit_session(folder, lambda layer: layer.pop("state"))
    with pytest.raises(SamcamError) as excinfo:
        read_session(folder)
    message = str(excinfo.value)
    assert str(session_file) in message and "layer 0" in message and "'state'" in message


def test_session_with_a_missing_tiff_names_it(tmp_path):
    from napari_samcam._napari._reader import read_paths

    folder = _save(tmp_path / "session", "scan")
    (folder / "layers" / "00-scan.tif").unlink()
    with pytest.raises(SamcamError) as excinfo:
        read_paths(str(folder))
    message = str(excinfo.value)
    assert "samcam-session.json" in message and "layers/00-scan.tif" in message
    assert "missing" in message


def test_resaving_a_session_keeps_the_users_files(tmp_path):
    from napari_samcam._napari._session_io import read_session

    folder = _save(tmp_path / "session", "scan", "map")
    (folder / "my_notes.txt").write_text("keep me")
    (folder / "layers" / "readme.txt").write_text("mine too")
    (folder / "figures").mkdir()
    (folder / "figures" / "fig1.svg").write_text("<svg/>")
    _save(folder, "other")
    assert (folder / "my_notes.txt").read_text() == "keep me"
    assert (folder / "layers" / "readme.txt").read_text() == "mine too"
    assert (folder / "figures" / "fig1.svg").read_text() == "<svg/>"
    assert sorted(p.name for p in (folder / "layers").iterdir()) == ["00-other.tif", "readme.txt"]
    assert [state["name"] for _, state, _ in read_session(folder)] == ["other"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session"]  # no temporary folders


def test_a_session_file_listing_a_users_file_does_not_make_it_ours(tmp_path):
    folder = _save(tmp_path / "session", "scan")
    (folder / "my_notes.txt").write_text("keep me")
    _edit_session(folder, lambda layer: layer.update(features_file="my_notes.txt"))
    _save(folder, "scan")
    assert (folder / "my_notes.txt").read_text() == "keep me"


def test_resaving_refuses_to_replace_a_users_file_and_changes_nothing(tmp_path):
    from napari_samcam._napari._session_io import read_session
    from napari_samcam.errors import OutputExistsError

    folder = _save(tmp_path / "session", "scan")
    (folder / "my_notes.txt").write_text("keep me")
    (folder / "layers" / "00-other.tif").write_bytes(b"the user's own file")
    with pytest.raises(OutputExistsError) as excinfo:
        _save(folder, "other")
    assert "layers/00-other.tif" in str(excinfo.value)
    assert (folder / "layers" / "00-other.tif").read_bytes() == b"the user's own file"
    assert (folder / "my_notes.txt").read_text() == "keep me"
    assert [state["name"] for _, state, _ in read_session(folder)] == ["scan"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session"]


def test_a_failed_resave_leaves_the_old_session_whole(tmp_path, monkeypatch):
    import tifffile

    from napari_samcam._napari._session_io import read_session

    folder = _save(tmp_path / "session", "scan")
    (folder / "my_notes.txt").write_text("keep me")
    real = tifffile.imwrite
    calls = []

    def fail_second(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", fail_second)
    with pytest.raises(OSError, match="disk full"):
        _save(folder, "a", "b")
    assert [state["name"] for _, state, _ in read_session(folder)] == ["scan"]
    assert (folder / "my_notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session"]
