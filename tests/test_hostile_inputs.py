"""Damaged or odd inputs that used to end in a raw traceback: each is one SamcamError naming
the file; damaged stored parts are redone; CSV cells that a spreadsheet would run are written
as text; a failed run leaves nothing behind."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from napari_samcam.errors import (
    CheckpointError,
    InputError,
    OutputNotWritableError,
    SamcamError,
    UntrustedFileError,
)
from napari_samcam.evaluation import evaluate
from napari_samcam.saliency_files import load_map_file


def _pickle(path, value, protocol=4):
    with open(path, "wb") as handle:
        pickle.dump(value, handle, protocol=protocol)
    return path


def _deep_list(depth: int) -> bytes:
    # "(" marks and "l" lists, nested ``depth`` times: a few bytes per level
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


@pytest.mark.parametrize(
    "case",
    ["ragged", "cxr-nan", "cxr-inf", "cxr-text", "deep", "detach", "truncated", "object-array"],
)
def test_odd_saliency_pickles_are_one_clear_error(tmp_path, case):
    path = tmp_path / "x_Edema_map.pkl"
    good = np.ones((4, 5), np.float32)
    if case == "ragged":
        _pickle(path, {"map": [[1.0, 2.0], [3.0]]})
    elif case.startswith("cxr-"):
        value = {"cxr-nan": float("nan"), "cxr-inf": float("inf"), "cxr-text": "wide"}[case]
        _pickle(path, {"map": good, "cxr_dims": (value, 4)})
    elif case == "deep":
        path.write_bytes(_deep_list(200000))
    elif case == "detach":
        # {"map": OrderedDict()} whose BUILD sets an attribute named like a tensor's method
        path.write_bytes(
            b"\x80\x02}X\x03\x00\x00\x00mapccollections\nOrderedDict\n)R"
            b"}X\x06\x00\x00\x00detachK\x01sbs."
        )
    elif case == "truncated":
        path.write_bytes(pickle.dumps({"map": good})[:40])
    else:
        _pickle(path, {"map": np.array([object(), 1], dtype=object)})
    with pytest.raises(SamcamError) as error:
        load_map_file(path)
    assert str(path) in str(error.value)
    assert isinstance(error.value, (InputError, UntrustedFileError))


def test_truncated_npy_is_not_called_a_pickle(tmp_path):
    path = tmp_path / "map.npy"
    np.save(path, np.ones((30, 30), np.float32))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="declares") as error:
        load_map_file(path)
    assert "pickled" not in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_object_arrays_in_numpy_files_are_refused(tmp_path, suffix):
    path = tmp_path / f"map{suffix}"
    array = np.array([{"a": 1}, 2], dtype=object)
    if suffix == ".npy":
        np.save(path, array, allow_pickle=True)
    else:
        np.savez(path, map=array)
    with pytest.raises(UntrustedFileError, match="pickled Python objects") as error:
        load_map_file(path)
    assert str(path) in str(error.value)


def test_deeply_nested_coco_json_is_one_error(tmp_path):
    from napari_samcam.evaluation.manifests import load_manifest

    path = tmp_path / "coco.json"
    path.write_text("[" * 200000 + "]" * 200000)
    with pytest.raises(InputError, match="too deeply") as error:
        load_manifest(path)
    assert str(path) in str(error.value)


def test_corrupt_safetensors_is_a_checkpoint_error(tmp_path):
    transformers = pytest.importorskip("transformers")
    from napari_samcam.classifiers import load_classifier

    config = transformers.ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8], depths=[1], num_labels=2
    )
    folder = tmp_path / "model"
    transformers.ResNetForImageClassification(config).save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as error:
        load_classifier(f"hf:{folder}", device="cpu")
    assert str(weights) in str(error.value)


def test_segment_text_misuse_is_an_input_error(tiny_sam):
    from napari_samcam.clip_regions import segment_text
    from napari_samcam.segment import Segmenter

    image = np.zeros((32, 32), np.uint8)
    segmenter = Segmenter(tiny_sam)
    with pytest.raises(InputError, match="first argument is a Segmenter"):
        segment_text(image, segmenter, "nodule", clip="x")  # arguments swapped
    with pytest.raises(InputError, match="not a string"):
        segment_text(segmenter, image, 3, clip="x")
    with pytest.raises(InputError, match="top_k"):
        segment_text(segmenter, image, "nodule", clip="x", top_k=[1])
    with pytest.raises(InputError, match="margin"):
        segment_text(segmenter, image, "nodule", clip="x", margin="wide")


def test_napari_writers_into_an_unwritable_folder(tmp_path, monkeypatch):
    import tempfile

    from napari_samcam._napari._writer import write_array, write_table

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputNotWritableError, match="cannot be written") as error:
        write_array(tmp_path / "mask.tif", np.ones((4, 4), np.uint8), {"name": "m"}, "labels")
    assert str(tmp_path / "mask.tif") in str(error.value)
    with pytest.raises(OutputNotWritableError):
        write_table(tmp_path / "t.csv", pd.DataFrame({"a": [1]}))
    assert list(tmp_path.iterdir()) == []


def test_napari_table_writer_neutralises_formulas(tmp_path):
    from napari_samcam._napari._writer import write_table

    path = tmp_path / "t.csv"
    write_table(path, pd.DataFrame({"class": ["=1+1", "-x", "ok"], "value": [-0.5, 1.0, 2.0]}))
    lines = path.read_text().splitlines()
    assert lines[1:] == ["'=1+1,-0.5", "'-x,1.0", "ok,2.0"]


# --------------------------------------------------------------------------------------------
# Evaluate output folders
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    from napari_samcam.phantoms import write_phantoms

    return write_phantoms(2, tmp_path_factory.mktemp("phantoms"), seed=4, size=64)


def _evaluate(manifest, out, classifier, **options):
    options = {
        "classifiers": [classifier],
        "region_sources": ["ground-truth"],
        "sam": None,
        "plots": False,
        "report": False,
        "n_resamples": 20,
        **options,
    }
    return evaluate(manifest, out, **options)


@pytest.mark.parametrize("damage", ["truncated", "empty", "not-parquet", "other-columns"])
def test_a_damaged_part_is_redone_on_resume(tmp_path, phantoms, tiny_lesion_classifier, damage):
    out = tmp_path / "out"
    first = _evaluate(phantoms, out, tiny_lesion_classifier)
    parts = sorted((out / "parts").glob("*.metrics.parquet"))
    assert len(parts) == 2
    victim = parts[0]
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:100])
    elif damage == "empty":
        victim.write_bytes(b"")
    elif damage == "not-parquet":
        victim.write_bytes(b"PK\x03\x04 not a table")
    else:
        pd.DataFrame({"x": [1]}).to_parquet(victim)
    again = _evaluate(phantoms, out, tiny_lesion_classifier)
    assert again.n_computed == 1 and again.n_reused == 1
    columns = ["item", "metric", "region_source", "value"]
    pd.testing.assert_frame_equal(
        again.metrics[columns].sort_values(columns[:3]).reset_index(drop=True),
        first.metrics[columns].sort_values(columns[:3]).reset_index(drop=True),
    )


def test_metrics_csv_neutralises_formulas_from_the_manifest(
    tmp_path, phantoms, tiny_lesion_classifier
):
    rows = pd.read_csv(phantoms, keep_default_na=False)
    rows["class"] = ['=HYPERLINK("http://x")', "+1"]
    manifest = phantoms.parent / "formulas.csv"
    rows.to_csv(manifest, index=False)
    result = _evaluate(manifest, tmp_path / "out", tiny_lesion_classifier)
    assert set(result.metrics["class"]) == {'=HYPERLINK("http://x")', "+1"}
    written = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert set(written["class"]) == {'\'=HYPERLINK("http://x")', "'+1"}
    assert written["value"].dtype == np.float64  # numbers stay numbers


def test_a_failed_fresh_run_leaves_no_config_behind(tmp_path, phantoms, monkeypatch):
    from napari_samcam.evaluation import runner

    def crash(*args, **kwargs):
        raise RuntimeError("stand-in for a crash before the first image is done")

    monkeypatch.setattr(runner, "_run_local", crash)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="stand-in"):
        _evaluate(phantoms, out, _tiny())
    assert sorted(p.name for p in out.iterdir()) == []


def _tiny():
    from conftest import TinyCNN
    from napari_samcam.classifiers import load_classifier

    return load_classifier(
        TinyCNN.build(), class_names=["no lesion", "lesion"], input_size=(32, 32), device="cpu"
    )


@pytest.mark.parametrize("damage", ["config-list", "meta-missing", "metrics-junk", "arrays-junk"])
def test_damaged_evaluation_folder_is_one_error(
    tmp_path, phantoms, tiny_lesion_classifier, damage
):
    from napari_samcam.evaluation.stored import open_evaluation

    out = tmp_path / "out"
    _evaluate(phantoms, out, tiny_lesion_classifier)
    arrays = sorted((out / "parts").glob("*.arrays.npz"))[0]
    metrics = sorted((out / "parts").glob("*.metrics.parquet"))[0]
    (out / "metrics.parquet").unlink(missing_ok=True)
    if damage == "config-list":
        (out / "config.json").write_text("[]")
        named = out / "config.json"
    elif damage == "meta-missing":
        np.savez(arrays, meta=np.frombuffer(json.dumps({"items": 1}).encode(), np.uint8))
        named = arrays
    elif damage == "metrics-junk":
        metrics.write_bytes(b"junk")
        named = metrics
    else:
        arrays.write_bytes(b"PK junk")
        named = arrays
    with pytest.raises(InputError) as error:
        open_evaluation(out)
    assert str(named) in str(error.value)


def test_torch_storage_declaring_more_than_it_carries(tmp_path):
    import io
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings():  # TypedStorage's deprecation notice
        warnings.simplefilter("ignore")
        torch.save(torch.zeros(4).storage(), buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    # the storage's element count ends its persistent id: 4 -> 2**40 (4 TB of float32)
    patched = data.replace(b"K\x04Nt", b"\x8a\x06" + (1 << 40).to_bytes(6, "little") + b"Nt", 1)
    assert patched != data

    class Stretched:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (patched,))

    path = _pickle(tmp_path / "s.pkl", {"map": Stretched()}, protocol=2)
    with pytest.raises(InputError, match="storage") as error:
        load_map_file(path)
    assert str(path) in str(error.value)


def test_memory_limit_script_caps_a_command_and_its_children(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "memory_limit.py"
    grab = "import numpy; numpy.ones(2 << 30, numpy.uint8)"  # 2 GiB, touched
    child = (
        "import subprocess, sys; "
        f"sys.exit(subprocess.run([sys.executable, '-c', {grab!r}]).returncode)"
    )
    for code in (grab, child):
        done = subprocess.run(
            [sys.executable, str(script), "1G", "--", sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert done.returncode != 0
        assert "MemoryError" in done.stderr


def test_memory_limit_script_makes_pyarrow_allocate_with_malloc(tmp_path):
    # mimalloc reserves 1 GiB on first use, which RLIMIT_DATA would count as used
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "memory_limit.py"
    code = "import pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    for preset, expected in ((None, "system"), ("mimalloc", "mimalloc")):
        if preset:
            env["ARROW_DEFAULT_MEMORY_POOL"] = preset
        done = subprocess.run(
            [sys.executable, str(script), "2G", "--", sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected


def test_session_writer_into_a_path_under_a_file(tmp_path):
    from napari_samcam._napari._writer import write_session

    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    layers = [(np.zeros((4, 4), np.uint8), {"name": "image"}, "image")]
    with pytest.raises(OutputNotWritableError, match="is a file") as error:
        write_session(str(blocker / "session"), layers)
    assert str(blocker) in str(error.value)
    assert blocker.read_text() == "a file, not a folder"


def _tiff_declaring(path, shape=(60000, 60000)):
    """A 16x16 uncompressed TIFF whose header then claims ``shape``: 3.6 GB from 512 bytes."""
    import tifffile

    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageLength"].overwrite(shape[0])
        tif.pages[0].tags["ImageWidth"].overwrite(shape[1])
    return path


def test_tiff_declaring_more_pixels_than_it_holds_is_refused(tmp_path):
    from napari_samcam.errors import ImageReadError
    from napari_samcam.images import read_image

    path = _tiff_declaring(tmp_path / "claims.tif")
    with pytest.raises(ImageReadError, match="declares") as error:
        read_image(path)
    assert str(path) in str(error.value) and "3,600,000,000 bytes" in str(error.value)


def test_compressed_tiff_is_read_up_to_the_array_limit(tmp_path):
    import tifffile

    from napari_samcam._raster import read_tiff
    from napari_samcam.errors import ImageReadError

    image = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)
    tifffile.imwrite(tmp_path / "z.tif", image, compression="zlib")
    np.testing.assert_array_equal(read_tiff(tmp_path / "z.tif"), image)
    with pytest.raises(ImageReadError, match="6,144 bytes"):
        read_tiff(tmp_path / "z.tif", limit=64 * 48 * 2 - 1)


def _finishes(call, seconds=20.0):
    """Run ``call`` in a thread: what it raised; fails if still blocked after ``seconds``."""
    import threading

    outcome = {}

    def run():
        try:
            call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked on a pipe"
    return outcome.get("error")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_session_folder_with_a_pipe_or_an_inflated_tiff_is_refused(tmp_path):
    from napari_samcam._napari._session_io import SESSION_FILE, read_session, write_session
    from napari_samcam.errors import ImageReadError

    features = pd.DataFrame({"score": [0.5]})
    layers = [
        (np.zeros((16, 16), np.uint8), {"name": "image"}, "image"),
        (np.zeros((16, 16), np.int32), {"name": "regions", "features": features}, "labels"),
    ]
    session = tmp_path / "session"
    write_session(session, layers)
    data_file = session / "layers" / "00-image.tif"
    features_file = session / "layers" / "01-regions.parquet"
    assert data_file.name in (session / SESSION_FILE).read_text()
    assert features_file.name in (session / SESSION_FILE).read_text()
    assert len(read_session(session)) == 2

    def swap_for_pipe(path):
        saved = path.read_bytes()
        path.unlink()
        os.mkfifo(path)
        return saved

    for victim in (session / SESSION_FILE, data_file, features_file):
        saved = swap_for_pipe(victim)
        error = _finishes(lambda: read_session(session))
        assert isinstance(error, ImageReadError), error
        assert str(victim) in str(error) and "not a regular file" in str(error)
        victim.unlink()
        victim.write_bytes(saved)
    _tiff_declaring(data_file)
    error = _finishes(lambda: read_session(session))
    assert isinstance(error, ImageReadError) and "declares" in str(error)
    assert str(data_file) in str(error)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_model_folder_with_a_pipe_inside_is_refused(tmp_path, tiny_clip_folder):
    import shutil

    from napari_samcam.clip_regions import load_clip
    from napari_samcam.errors import SamcamError

    folder = tmp_path / "clip"
    shutil.copytree(tiny_clip_folder, folder)
    (folder / "merges.txt").unlink()
    os.mkfifo(folder / "merges.txt")  # the tokenizer would wait on it for ever
    error = _finishes(lambda: load_clip(str(folder), device="cpu"))
    assert isinstance(error, SamcamError), error
    assert str(folder / "merges.txt") in str(error) and "not a regular file" in str(error)


def test_npy_header_declaring_a_huge_length_is_refused_before_reading_it(tmp_path):
    from napari_samcam._files import read_npy

    path = tmp_path / "long-header.npy"
    # format 2.0: a 4-byte header length, here 2 GB in a 30-byte file
    path.write_bytes(b"\x93NUMPY\x02\x00" + (2**31 - 1).to_bytes(4, "little") + b"{}" * 8)
    with pytest.raises(InputError, match="header declares 2,147,483,647 bytes") as error:
        read_npy(path, "saliency file")
    assert str(path) in str(error.value)
    path.write_bytes(b"\x93NUMPY\x3a\x01" + b"\x00" * 20)  # a version numpy never wrote
    with pytest.raises(InputError, match=r"version 58\.1"):
        read_npy(path, "saliency file")


def test_tiff_volume_with_no_slices_is_refused(tmp_path):
    import tifffile

    from napari_samcam.errors import SamcamError
    from napari_samcam.images import read_image

    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((0, 8, 8), np.uint8))
    with pytest.raises(SamcamError, match="empty") as error:
        read_image(tmp_path / "empty.tif")
    assert str(tmp_path / "empty.tif") in str(error.value)


@pytest.mark.slow
def test_fuzz_driver_under_a_memory_cap_finds_nothing(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    scripts = Path(__file__).parents[1] / "scripts"
    fuzz = [sys.executable, str(scripts / "fuzz_readers.py"), "--iterations", "1500"]
    fuzz += ["--seed", "7", "--keep", str(tmp_path / "findings")]
    done = subprocess.run(
        [sys.executable, str(scripts / "memory_limit.py"), "1G", "--", *fuzz],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1500 mutated files (seed 7)" in done.stdout and "0 finding(s)" in done.stdout
    assert "refused" in done.stdout and "read" in done.stdout
