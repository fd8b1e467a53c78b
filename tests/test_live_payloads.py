"""Live payloads against every loader and writer of someone else's files.

Each test first shows that its payload does harm when read the unsafe way (a marker folder
appears, a download starts, a file outside the output folder changes, gigabytes are requested,
a read never ends), then that napari-samcam refuses it with one SamcamError naming the file,
with no marker, nothing written outside, and little memory (measured in a child process).
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from payloads import assert_refused, run_child

#: The data-segment cap of a child reading a payload the unsafe way.
HARM_LIMIT = 1536 << 20

XRV = "densenet121-res224-all"


class Mkdir:
    """Unpickling this creates the folder ``marker``: a stand-in for any code an attacker runs."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "PAYLOAD-RAN"


# --------------------------------------------------------------------------------------------
# 1-3: torchxrayvision's classes called from a pickle
# --------------------------------------------------------------------------------------------

xrv = pytest.importorskip("torchxrayvision")


def _weights_name() -> str:
    return xrv.models.model_urls[XRV]["weights_url"].rsplit("/", 1)[1]


class CallDenseNet:
    """A pickle that *calls* torchxrayvision's DenseNet with weights and a cache folder."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = str(cache_dir)

    def __reduce__(self):
        # DenseNet(growth_rate, block_config, num_init_features, bn_size, drop_rate,
        #          num_classes, in_channels, weights, cache_dir)
        return (xrv.models.DenseNet, (32, (6, 12, 24, 16), 64, 4, 0, 18, 1, XRV, self.cache_dir))


def _old_allowlist() -> list:
    """The classes the weights-only read allowed before: torchxrayvision's and torch's own."""
    nn = torch.nn
    models = xrv.models
    return [
        models.DenseNet,
        models._DenseBlock,
        models._DenseLayer,
        models._Transition,
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.MaxPool2d,
        nn.AvgPool2d,
        nn.Linear,
        nn.Sequential,
        nn.Dropout,
        set,
    ]


def _calling_checkpoint(tmp_path: Path, marker: Path) -> Path:
    """evil.pt calls DenseNet(weights=..., cache_dir=DIR); DIR holds a full-pickle payload."""
    folder = tmp_path / "attacker-cache"
    folder.mkdir()
    torch.save(Mkdir(marker), folder / _weights_name())
    evil = tmp_path / "evil.pt"
    torch.save(CallDenseNet(folder), evil)
    return evil


def test_1_checkpoint_calling_an_allowlisted_class_runs_nothing(tmp_path, marker):
    evil = _calling_checkpoint(tmp_path, marker)
    # the unsafe way: a weights-only read that allows the class lets the file call it
    with (
        torch.serialization.safe_globals(_old_allowlist()),
        pytest.raises(Exception),  # noqa: B017 - the payload's os.mkdir result is no state dict
    ):
        torch.load(evil, weights_only=True)
    assert marker.exists()
    marker.rmdir()
    result = run_child(
        f"""
        import torch, torchxrayvision  # imported first: the call's own memory is measured
        from napari_samcam.classifiers import load_classifier
        attempt(lambda: load_classifier("xrv:{XRV}", checkpoint={str(evil)!r}, device="cpu"))
        """,
        cwd=tmp_path,
    )
    assert "holds no weights" in assert_refused(result, evil, kind="CheckpointError")
    assert not marker.exists()


def test_1_cli_explain_with_the_calling_checkpoint(tmp_path, marker, capsys):
    from napari_samcam.cli import main

    evil = _calling_checkpoint(tmp_path, marker)
    image = tmp_path / "cxr.png"
    iio.imwrite(image, np.full((64, 64), 128, np.uint8))
    code = main(
        [
            "explain",
            str(image),
            "--model",
            f"xrv:{XRV}",
            "--checkpoint",
            str(evil),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(evil) in err[0]
    assert not marker.exists()


def test_2_tampered_file_in_the_cache_runs_nothing(tmp_path, marker):
    cache = tmp_path / "models_data"
    cache.mkdir()
    cached = cache / _weights_name()
    torch.save(Mkdir(marker), cached)
    # the unsafe way: torchxrayvision's own constructor unpickles its cached file fully
    with pytest.raises(Exception):  # noqa: B017 - the payload is no module
        xrv.models.DenseNet(weights=XRV, cache_dir=str(cache))
    assert marker.exists()
    marker.rmdir()
    result = run_child(
        f"""
        import torch, torchxrayvision as xrv
        xrv.utils.get_cache_dir = lambda: {str(cache)!r}
        from napari_samcam.classifiers import load_classifier
        attempt(lambda: load_classifier("xrv:{XRV}", device="cpu"))
        """,
        cwd=tmp_path,
    )
    assert_refused(result, cached, kind="UntrustedFileError")
    assert not marker.exists()


def test_3_pickle_pointing_at_an_empty_folder_downloads_nothing(tmp_path, monkeypatch):
    target = tmp_path / "attacker-picked"
    target.mkdir()
    evil = tmp_path / "evil.pt"
    torch.save(CallDenseNet(target), evil)
    fetched = []

    def recording_download(url, filename):
        fetched.append((url, filename))
        raise OSError("stand-in: no network in tests")

    monkeypatch.setattr(xrv.utils, "download", recording_download)
    with torch.serialization.safe_globals(_old_allowlist()), pytest.raises(OSError):
        torch.load(evil, weights_only=True)
    # the unsafe way fetched from the internet into the folder the file chose
    assert fetched and fetched[0][1].startswith(str(target))
    fetched.clear()
    result = run_child(
        f"""
        import torchxrayvision as xrv
        calls = []
        xrv.utils.download = lambda url, filename: calls.append(url)
        import torch.hub
        torch.hub.download_url_to_file = lambda *a, **k: calls.append(a)
        from napari_samcam.classifiers import load_classifier
        attempt(lambda: load_classifier("xrv:{XRV}", checkpoint={str(evil)!r}, device="cpu"))
        report(downloads=len(calls))
        """,
        cwd=tmp_path,
    )
    assert result["downloads"] == 0
    assert list(target.iterdir()) == []


def test_xrv_release_pickle_still_loads_its_weights(tmp_path):
    from napari_samcam.classifiers import load_classifier
    from napari_samcam.xrv_classifiers import build_xrv_model

    torch.manual_seed(1)
    model = build_xrv_model(XRV)
    path = tmp_path / "release.pt"
    torch.save(model, path)  # how torchxrayvision publishes its DenseNets
    classifier = load_classifier(f"xrv:{XRV}", checkpoint=path, device="cpu")
    ours, theirs = classifier.model.state_dict(), model.state_dict()
    assert set(ours) == set(theirs) - {"op_threshs"}
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_pinned_download_is_kept_only_when_its_digest_matches(tmp_path, monkeypatch):
    import hashlib

    from napari_samcam.errors import ModelNotAvailableError
    from napari_samcam.xrv_classifiers import xrv_weights_file

    release = tmp_path / "release" / _weights_name()
    release.parent.mkdir()
    torch.save({"w": torch.ones(2)}, release)
    digest = hashlib.sha256(release.read_bytes()).hexdigest()
    monkeypatch.setitem(xrv.models.model_urls[XRV], "weights_url", release.as_uri())
    cache = tmp_path / "cache"
    with pytest.raises(ModelNotAvailableError, match="could not be downloaded"):
        xrv_weights_file(XRV, cache, download=True, sha256="0" * 64)
    assert not any(cache.glob("*.pt"))
    got = xrv_weights_file(XRV, cache, download=True, sha256=digest)
    assert got == cache / release.name and got.read_bytes() == release.read_bytes()


# --------------------------------------------------------------------------------------------
# 4-5: writing through links
# --------------------------------------------------------------------------------------------


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text("the victim's own data\n")
    return path


def test_4_lock_link_changes_nothing_outside(tmp_path, victim):
    from napari_samcam._folders import LOCK_NAME, output_lock
    from napari_samcam.errors import OutputNotWritableError

    out = tmp_path / "out"
    out.mkdir()
    lock = out / LOCK_NAME
    lock.symlink_to(victim)
    # the unsafe way: opening the lock by name follows the link and overwrites its target
    with open(lock, "a+", encoding="utf-8") as handle:
        handle.seek(0)
        handle.truncate()
        handle.write('{"pid": 1, "host": "x"}')
    assert victim.read_text() == '{"pid": 1, "host": "x"}'
    victim.write_text("the victim's own data\n")
    with pytest.raises(OutputNotWritableError) as error, output_lock(out):
        pass
    assert str(lock) in str(error.value) and "symbolic link" in str(error.value)
    assert victim.read_text() == "the victim's own data\n"
    assert lock.is_symlink()


def test_4_evaluate_refuses_a_lock_link_and_a_lock_folder(
    tmp_path, victim, tiny_lesion_classifier
):
    from napari_samcam._folders import LOCK_NAME
    from napari_samcam.errors import OutputNotWritableError
    from napari_samcam.evaluation import evaluate
    from napari_samcam.phantoms import write_phantoms

    manifest = write_phantoms(1, tmp_path / "phantoms", seed=1, size=64)
    for name, make in (("link", lambda p: p.symlink_to(victim)), ("folder", Path.mkdir)):
        out = tmp_path / f"out-{name}"
        out.mkdir()
        make(out / LOCK_NAME)
        with pytest.raises(OutputNotWritableError, match=LOCK_NAME):
            evaluate(
                manifest,
                out,
                classifiers=[tiny_lesion_classifier],
                region_sources=["ground-truth"],
                sam=None,
                plots=False,
                report=False,
            )
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    assert victim.read_text() == "the victim's own data\n"


def _mask() -> np.ndarray:
    mask = np.zeros((16, 16), bool)
    mask[4:9, 3:7] = True
    return mask


def test_5_ground_truth_mask_through_a_dangling_link(tmp_path):
    from napari_samcam.errors import OutputNotWritableError
    from napari_samcam.evaluation.corrections import save_ground_truth

    folder, outside = tmp_path / "gt", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    link = folder / "mask.png"
    link.symlink_to(outside / "created.png")
    iio.imwrite(link, _mask().astype(np.uint8))  # the unsafe way creates a file outside
    assert (outside / "created.png").exists()
    (outside / "created.png").unlink()
    with pytest.raises(OutputNotWritableError, match="symbolic link") as error:
        save_ground_truth(_mask(), link, tmp_path / "img.png")
    assert str(link) in str(error.value)
    assert list(outside.iterdir()) == [] and not (folder / "ground-truth.csv").exists()


def test_5_ground_truth_manifest_link_is_not_appended_to(tmp_path, victim):
    from napari_samcam.errors import OutputNotWritableError
    from napari_samcam.evaluation.corrections import save_ground_truth

    folder = tmp_path / "gt"
    folder.mkdir()
    manifest = folder / "ground-truth.csv"
    manifest.symlink_to(victim)
    with open(manifest, "a", encoding="utf-8") as handle:  # the unsafe way
        handle.write("img.png,1,,mask.png\n")
    assert victim.read_text().endswith("mask.png\n")
    victim.write_text("the victim's own data\n")
    with pytest.raises(OutputNotWritableError, match="symbolic link") as error:
        save_ground_truth(_mask(), folder / "mask.png", tmp_path / "img.png")
    assert str(manifest) in str(error.value)
    assert victim.read_text() == "the victim's own data\n"
    assert not (folder / "mask.png").exists()


def test_5_unwritable_manifest_folder_leaves_no_mask(tmp_path, monkeypatch):
    from napari_samcam.errors import OutputNotWritableError
    from napari_samcam.evaluation import corrections

    folder = tmp_path / "gt"

    def refuse(folder_, **kwargs):
        if folder_ == tmp_path / "read-only":
            raise OutputNotWritableError(f"folder={str(folder_)!r} is not writable")
        return folder_

    (tmp_path / "read-only").mkdir()
    monkeypatch.setattr(corrections, "check_writable", refuse)
    with pytest.raises(OutputNotWritableError, match="read-only"):
        corrections.save_ground_truth(
            _mask(),
            folder / "mask.png",
            tmp_path / "img.png",
            manifest=tmp_path / "read-only/m.csv",
        )
    assert not (folder / "mask.png").exists()

    # the manifest write itself failing (a full disk): the mask goes too, one clear error
    def failing_rows(manifest, rows):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(corrections, "check_writable", lambda f, **k: f)
    monkeypatch.setattr(corrections, "_write_rows", failing_rows)
    with pytest.raises(OutputNotWritableError, match="mask was not kept"):
        corrections.save_ground_truth(_mask(), folder / "mask.png", tmp_path / "img.png")
    assert not (folder / "mask.png").exists()


def test_5_ground_truth_needs_a_png_name(tmp_path):
    from napari_samcam.errors import InputError
    from napari_samcam.evaluation.corrections import save_ground_truth

    naive = tmp_path / "naive.txt"
    iio.imwrite(naive, _mask().astype(np.uint8), extension=".tif")  # TIFF bytes, .txt name
    assert naive.read_bytes()[:2] in (b"II", b"MM")
    with pytest.raises(InputError, match=r"\.png") as error:
        save_ground_truth(_mask(), tmp_path / "mask.txt", tmp_path / "img.png")
    assert str(tmp_path / "mask.txt") in str(error.value)
    assert not (tmp_path / "mask.txt").exists()


def test_ground_truth_rows_keep_their_values_and_neutralise_formulas(tmp_path):
    from napari_samcam.evaluation.corrections import save_ground_truth
    from napari_samcam.evaluation.manifests import load_manifest

    image = tmp_path / "img.png"
    iio.imwrite(image, np.zeros((16, 16), np.uint8))
    manifest = save_ground_truth(_mask(), tmp_path / "a.png", image, cls="=HYPERLINK(1)")
    save_ground_truth(_mask(), tmp_path / "b.png", image, cls="@SUM(1)")
    with open(manifest, newline="") as handle:
        cells = [row["class"] for row in csv.DictReader(handle)]
    assert cells == ["'=HYPERLINK(1)", "'@SUM(1)"]  # shown as text by spreadsheets
    items = load_manifest(manifest)
    assert [item.cls for item in items] == ["=HYPERLINK(1)", "@SUM(1)"]
    assert items[0].load_mask((16, 16)).sum() == _mask().sum()


# --------------------------------------------------------------------------------------------
# 6-8: tiny files that declare gigabytes
# --------------------------------------------------------------------------------------------


def _harm(tmp_path: Path, code: str) -> dict:
    """Run the unsafe read under :data:`HARM_LIMIT`: it must ask for more than that."""
    result = run_child(
        f"""
        try:
            {code}
        except MemoryError:
            report(harm="MemoryError")
        except RuntimeError as exc:
            report(harm="RuntimeError " + str(exc)[:200])
        else:
            report(harm=None)
        """,
        cwd=tmp_path,
        limit=HARM_LIMIT,
    )
    assert result.get("harm") and (
        result["harm"] == "MemoryError" or "allocate" in result["harm"]
    ), result
    return result


def _ndarray_call_pickle(path: Path) -> Path:
    # GLOBAL numpy ndarray; ((100000, 100000),) REDUCE: 80 GB from a 50-byte file
    data = b"\x80\x02cnumpy\nndarray\nJ\xa0\x86\x01\x00J\xa0\x86\x01\x00\x86\x85R."
    path.write_bytes(data)
    return path


class _StretchedTensor:
    """A tensor of 30000 x 30000 float32 over one stored element (stride 0)."""

    def __reduce__(self):
        storage = torch.zeros(1).untyped_storage()
        return (
            torch._utils._rebuild_tensor_v2,
            (
                torch.storage.TypedStorage(
                    wrap_storage=storage, dtype=torch.float32, _internal=True
                ),
                0,
                (1, 1, 30000, 30000),
                (0, 0, 0, 0),
                False,
                {},
            ),
        )


@pytest.mark.parametrize("kind", ["ndarray-call", "stretched-tensor"])
def test_6_pickle_declaring_gigabytes_is_refused_before_allocating(tmp_path, kind):
    path = tmp_path / f"{kind}_Edema_map.pkl"
    if kind == "ndarray-call":
        _ndarray_call_pickle(path)
        unsafe = f"import pickle, numpy; pickle.load(open({str(path)!r}, 'rb')).fill(1)"
    else:
        with open(path, "wb") as handle:
            pickle.dump({"map": _StretchedTensor(), "task": "Edema"}, handle)
        unsafe = (
            f"import pickle, numpy; m = pickle.load(open({str(path)!r}, 'rb'))['map']; "
            "numpy.ascontiguousarray(m.numpy(), dtype='float32')"
        )
    assert path.stat().st_size < 600
    _harm(tmp_path, unsafe)
    result = run_child(
        f"""
        import torch  # imported first: the call's own memory is measured
        from napari_samcam.saliency_files import read_saliency
        attempt(lambda: read_saliency({str(path)!r}, (128, 128)))
        """,
        cwd=tmp_path,
    )
    assert "nothing was allocated" in assert_refused(result, path, kind="InputError")


def test_6_saliency_pickles_of_every_protocol_still_read(tmp_path):
    from napari_samcam.saliency_files import load_map_file

    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    for protocol in (0, 2, 4, 5):
        for value in (
            array,
            torch.from_numpy(array)[None, None],
            torch.from_numpy(array).bfloat16(),
        ):
            path = tmp_path / f"p{protocol}.pkl"
            with open(path, "wb") as handle:
                pickle.dump({"map": value, "cxr_dims": (4, 3)}, handle, protocol=protocol)
            loaded = load_map_file(path)
            np.testing.assert_allclose(loaded.array, array)
            assert loaded.size == (3, 4)


def _coco_rle_manifest(tmp_path: Path, side: int) -> Path:
    image = tmp_path / "img.png"
    iio.imwrite(image, np.zeros((128, 128), np.uint8))
    data = {
        "images": [{"id": 1, "file_name": "img.png", "height": 128, "width": 128}],
        "categories": [{"id": 1, "name": "lesion"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": {"size": [side, side], "counts": [side * side - 5, 5]},
            }
        ],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    return path


def test_7_rle_declaring_a_huge_size_is_refused_before_decoding(tmp_path):
    manifest = _coco_rle_manifest(tmp_path, 100000)
    assert manifest.stat().st_size < 400
    # the unsafe way: run-length decoding builds the declared 10^10 pixels
    _harm(
        tmp_path,
        "import numpy; v = numpy.zeros(2, bool); v[1] = True; "
        "numpy.repeat(v, [100000 * 100000 - 5, 5]).reshape((100000, 100000), order='F')",
    )
    result = run_child(
        f"""
        from napari_samcam.evaluation.manifests import load_manifest
        attempt(lambda: load_manifest({str(manifest)!r}))
        """,
        cwd=tmp_path,
    )
    assert "nothing was allocated" in assert_refused(result, manifest, kind="InputError")


def test_7_rle_of_another_size_than_its_image_is_refused(tmp_path):
    from napari_samcam.errors import InputError
    from napari_samcam.evaluation.arrays import region_mask
    from napari_samcam.evaluation.manifests import load_manifest

    manifest = _coco_rle_manifest(tmp_path, 20000)  # within the bound, but not the image's size
    (item,) = load_manifest(manifest)
    with pytest.raises(InputError, match=r"not the image's \[128, 128\]") as error:
        item.load_mask((128, 128))
    assert str(manifest) in str(error.value)
    record = {"rle": {"size": [20000, 20000], "counts": [20000 * 20000]}}
    with pytest.raises(InputError, match="not the image's"):
        region_mask(record, (128, 128))


@pytest.fixture(scope="module")
def npz_bomb(tmp_path_factory) -> Path:
    """A ~1.6 MB .npz whose one array inflates to 1.6 GB of zeros."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.npz"
    count = 1600 << 20
    header = {"descr": "|u1", "fortran_order": False, "shape": (count,)}
    block = bytes(16 << 20)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("map.npy", "w", force_zip64=True) as member,
    ):
        np.lib.format.write_array_header_1_0(member, header)
        for _ in range(count // len(block)):
            member.write(block)
    return path


def test_8_npz_bomb_is_refused_before_decompressing(tmp_path, npz_bomb):
    assert npz_bomb.stat().st_size < 4 << 20
    _harm(tmp_path, f"import numpy; numpy.load({str(npz_bomb)!r})['map']")
    for code in (
        f"from napari_samcam.saliency_files import read_saliency\n"
        f"attempt(lambda: read_saliency({str(npz_bomb)!r}, (128, 128)))",
        f"from napari_samcam.evaluation.arrays import read_job_arrays\n"
        f"attempt(lambda: read_job_arrays({str(npz_bomb)!r}))",
    ):
        assert_refused(run_child(code, cwd=tmp_path), npz_bomb, kind="InputError")


def test_8_npy_declaring_more_than_it_holds(tmp_path):
    path = tmp_path / "map.npy"
    with open(path, "wb") as handle:
        header = {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)}
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(bytes(64))
    result = run_child(
        f"""
        from napari_samcam.saliency_files import read_saliency
        attempt(lambda: read_saliency({str(path)!r}, (128, 128)))
        """,
        cwd=tmp_path,
    )
    assert "40,000,000,000 bytes" in assert_refused(result, path, kind="InputError")


def test_8_napari_opens_no_bomb_from_an_evaluation_folder(tmp_path, npz_bomb):
    from napari_samcam.errors import InputError
    from napari_samcam.evaluation.stored import open_evaluation

    folder = tmp_path / "evaluation"
    (folder / "parts").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    shutil.copy(npz_bomb, folder / "parts" / "x.arrays.npz")
    import pandas as pd

    from napari_samcam.evaluation.jobs import rows_frame

    rows = rows_frame([]).reindex(range(1))
    rows = rows.assign(item=0, metric="iou", value=0.5, region_source="ground-truth")
    pd.DataFrame(rows).to_parquet(folder / "parts" / "x.metrics.parquet")
    with pytest.raises(InputError, match="declares") as error:
        open_evaluation(folder)
    assert "x.arrays.npz" in str(error.value)


# --------------------------------------------------------------------------------------------
# 9: reads that never end
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "dev-zero-link"])
def test_9_fifo_or_device_image_is_refused_without_reading(tmp_path, kind):
    image = tmp_path / ("pipe.png" if kind == "fifo" else "zero.dcm")
    if kind == "fifo":
        os.mkfifo(image)
    else:
        image.symlink_to("/dev/zero")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"image,label\n{image.name},1\n")
    # the unsafe way: hashing the file never returns
    hang = run_child(
        f"""
        import hashlib
        with open({str(image)!r}, 'rb') as h:
            hashlib.blake2b(h.read()).hexdigest()
        """,
        cwd=tmp_path,
        limit=HARM_LIMIT,
        timeout=5,
    )
    assert hang.get("timed_out") or hang.get("rc") != 0
    for code in (
        "from napari_samcam.evaluation.jobs import _image_digest\n"
        f"attempt(lambda: _image_digest(Path({str(image)!r})))",
        "from napari_samcam.images import read_image\n"
        f"attempt(lambda: read_image({str(image)!r}))",
    ):
        result = run_child("from pathlib import Path\n" + code, cwd=tmp_path, timeout=60)
        assert "not a regular file" in assert_refused(result, image)


def test_9_evaluate_with_a_fifo_image_stops_with_one_error(tmp_path, tiny_lesion_classifier):
    from napari_samcam.errors import SamcamError
    from napari_samcam.evaluation import evaluate

    image = tmp_path / "pipe.png"
    os.mkfifo(image)
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,label,box_r0,box_c0,box_r1,box_c1\npipe.png,1,1,1,5,5\n")
    out = tmp_path / "out"
    with pytest.raises(SamcamError, match="not a regular file") as error:
        evaluate(
            manifest,
            out,
            classifiers=[tiny_lesion_classifier],
            region_sources=["ground-truth"],
            sam=None,
            plots=False,
            report=False,
        )
    assert str(image) in str(error.value)
    assert not (out / "config.json").exists()  # a failed fresh run leaves nothing behind


# --------------------------------------------------------------------------------------------
# 10: a manifest of repeated rows
# --------------------------------------------------------------------------------------------


def test_10_repeated_rows_are_checked_in_linear_time_and_memory(tmp_path, monkeypatch):
    import warnings

    from napari_samcam.evaluation import manifests

    iio.imwrite(tmp_path / "img.png", np.zeros((8, 8), np.uint8))
    n = 20000
    path = tmp_path / "m.csv"
    path.write_text("image,label\n" + "img.png,1\n" * n)
    resolved, described = [], []
    real_resolve, real_annotation = Path.resolve, manifests._annotation
    monkeypatch.setattr(Path, "resolve", lambda self, *a: resolved.append(1) or real_resolve(self))
    monkeypatch.setattr(
        manifests, "_annotation", lambda *a, **k: described.append(1) or real_annotation(*a, **k)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = manifests.load_manifest(path)
    assert len(items) == 1
    # the harm was one resolve and four descriptions per row, and a warning naming every row
    assert len(resolved) <= 3 and len(described) <= 2 * n + 2
    (warning,) = [w for w in caught if "repeat" in str(w.message)]
    assert f"{n - 1} entries repeat" in str(warning.message) and len(str(warning.message)) < 800
    monkeypatch.undo()
    big = tmp_path / "big.csv"
    big.write_text("image,label\n" + "img.png,1\n" * 200000)
    result = run_child(
        f"""
        import warnings
        warnings.simplefilter("ignore")
        from napari_samcam.evaluation.manifests import load_manifest
        attempt(lambda: len(load_manifest({str(big)!r})))
        """,
        cwd=tmp_path,
        timeout=120,
    )
    assert result["error"] is None and result["value"] == "1"
    assert result["peak"] - result["start"] < 400 << 20


def test_9_napari_reader_of_an_evaluation_whose_image_became_a_fifo(
    tmp_path, tiny_lesion_classifier
):
    from napari_samcam.evaluation import evaluate
    from napari_samcam.phantoms import write_phantoms

    manifest = write_phantoms(1, tmp_path / "phantoms", seed=2, size=64)
    out = tmp_path / "out"
    evaluate(
        manifest,
        out,
        classifiers=[tiny_lesion_classifier],
        region_sources=["ground-truth"],
        sam=None,
        plots=False,
        report=False,
    )
    (arrays,) = (out / "parts").glob("*.arrays.npz")
    with np.load(arrays) as archive:
        stored = {name: archive[name] for name in archive.files}
    meta = json.loads(bytes(stored["meta"]).decode())
    image = Path(meta["path"])
    image.unlink()
    os.mkfifo(image)  # the stored image path now names a pipe nobody writes to
    np.savez(arrays, **stored)
    result = run_child(
        f"""
        import torch, imageio.v3, pandas, pyarrow.parquet  # the call's own memory is measured
        from napari_samcam._napari._reader import read_paths
        attempt(lambda: read_paths({str(out)!r}))
        """,
        cwd=tmp_path,
        timeout=90,
    )
    assert "not a regular file" in assert_refused(result, image, kind="ImageReadError")
