"""Saliency maps read from files: formats, resizing, provenance, and pickles that are refused."""

from __future__ import annotations

import math
import os
import pickle

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F

from chexlocalize_fixtures import SHAPE, write_map
from napari_samcam.errors import InputError, UntrustedFileError
from napari_samcam.saliency_files import SaliencyFolder, load_map_file, read_saliency

MAP = np.arange(48, dtype=np.float32).reshape(6, 8) / 47.0  # a ramp 0..1


class _WritesAFile:
    """Unpickling this runs ``open(target, 'w').write('pwned')``."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (exec, (f"open({self.target!r}, 'w').write('pwned')",))


def _save(path, array):
    suffix = "".join(path.suffixes)
    if suffix == ".npy":
        np.save(path, array)
    elif suffix == ".npz":
        np.savez(path, map=array, other=np.zeros(2))
    elif suffix == ".tif":
        tifffile.imwrite(path, array)
    elif suffix == ".png":
        iio.imwrite(path, np.round(array * 255).astype(np.uint8))
    elif suffix == ".nii.gz":
        nib.save(nib.Nifti1Image(array.T.copy(), np.eye(4)), str(path))
    return path


@pytest.mark.parametrize("name", ["m.npy", "m.npz", "m.tif", "m.png", "m.nii.gz"])
def test_formats_read_as_the_same_map(tmp_path, name):
    path = _save(tmp_path / name, MAP)
    loaded = load_map_file(path)
    if name.endswith(".png"):  # 8-bit values as stored: 0..255
        np.testing.assert_allclose(loaded.array / 255, MAP, atol=0.5 / 255)
    else:
        np.testing.assert_array_equal(loaded.array, MAP)


def test_resized_like_chexlocalize_with_provenance(tmp_path):
    path = _save(tmp_path / "m.npy", MAP)
    saliency = read_saliency(path, (30, 20), task="Edema", name="captum")
    expected = F.interpolate(
        torch.from_numpy(MAP)[None, None], size=(30, 20), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(saliency.map, expected, atol=1e-6)
    assert saliency.map.shape == (30, 20) and saliency.map.dtype == np.float32
    np.testing.assert_array_equal(saliency.raw, MAP)
    info = saliency.provenance()
    assert info["method"] == "file" and info["source"] == str(path)
    assert info["classifier"] == "captum" and info["class_name"] == "Edema"
    assert math.isnan(info["probability"])


def test_constant_map_stays_constant_after_resizing(tmp_path):
    # a constant map resized 40 x 40 -> 396 x 382 picks up rounding noise in some resizers; the
    # Saliency must stay exactly constant so the metrics see no structure
    path = _save(tmp_path / "c.npy", np.full((40, 40), 0.3, np.float32))
    saliency = read_saliency(path, (396, 382))
    assert not saliency.map.any()


def test_chexlocalize_pickle(tmp_path):
    path = write_map(tmp_path, "patient1_study1_view1_frontal", "Edema", MAP, prob=0.25)
    saliency = read_saliency(path, SHAPE, task="Edema")
    assert saliency.probability == 0.25 and saliency.class_name == "Edema"
    np.testing.assert_array_equal(saliency.raw, MAP)
    with pytest.raises(InputError, match="explains 'Edema', not 'Cardiomegaly'"):
        read_saliency(path, SHAPE, task="Cardiomegaly")
    with pytest.raises(InputError, match="cxr_dims"):
        read_saliency(path, (SHAPE[0] + 1, SHAPE[1]))


def test_fourteen_probabilities_pick_the_task(tmp_path):
    path = tmp_path / "x_Edema_map.pkl"
    probs = torch.linspace(0, 1, 14)
    with open(path, "wb") as handle:
        pickle.dump({"map": torch.ones(1, 1, 4, 4), "prob": probs, "task": "Edema"}, handle)
    # Edema is CheXpert's label 5
    assert load_map_file(path).probability == pytest.approx(float(probs[5]))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "pwned.txt"
    path = tmp_path / "img_Edema_map.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"map": _WritesAFile(target), "task": "Edema"}, handle)
    with pytest.raises(UntrustedFileError, match=r"img_Edema_map\.pkl.*builtins\.exec"):
        read_saliency(path, SHAPE)
    assert not target.exists()
    # an explicit trust flag unpickles it (and so runs it): the flag is the only way in
    with pytest.raises(InputError):
        load_map_file(path, trust=True)
    assert target.read_text() == "pwned"


def test_malicious_pickle_refused_by_evaluate(tmp_path):
    from chexlocalize_fixtures import TRUTH_ID, write_dataset

    gt, images, maps = write_dataset(
        tmp_path, {TRUTH_ID: {"Edema": np.ones(SHAPE, bool)}}, {(TRUTH_ID, "Edema"): MAP}
    )
    target = tmp_path / "pwned.txt"
    with open(maps / f"{TRUTH_ID}_Edema_map.pkl", "wb") as handle:
        pickle.dump({"map": _WritesAFile(target)}, handle)
    from napari_samcam.evaluation import evaluate

    with pytest.raises(UntrustedFileError, match="--trust-saliency"):
        evaluate(gt, tmp_path / "out", image_root=images, saliency=maps, region_sources=["box"])
    assert not target.exists()


def test_pickled_numpy_array_is_allowed(tmp_path):
    path = tmp_path / "m.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"map": MAP}, handle)
    np.testing.assert_array_equal(load_map_file(path).array, MAP)


def test_npy_with_objects_is_refused(tmp_path):
    path = tmp_path / "m.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UntrustedFileError, match=r"m\.npy"):
        load_map_file(path)


@pytest.mark.parametrize(
    ("array", "message"),
    [(np.zeros((2, 3, 4)), "2-D"), (np.array([[np.nan, 1.0], [0.0, 1.0]]), "NaN")],
)
def test_bad_maps_name_the_file(tmp_path, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(InputError, match=f"bad.npy.*{message}|{message}.*bad.npy"):
        load_map_file(path)


def test_folder_lookup(tmp_path):
    os.makedirs(tmp_path / "sub")
    _save(tmp_path / "sub" / "case1_Edema.npy", MAP)
    _save(tmp_path / "case1.tif", MAP)
    _save(tmp_path / "case2.npy", MAP)
    folder = SaliencyFolder(tmp_path)
    assert folder.find(["case1"], "Edema").name == "case1_Edema.npy"  # class-specific first
    assert folder.find(["case1"], "Effusion").name == "case1.tif"
    assert folder.find(["nope", "case2"], "").name == "case2.npy"
    assert folder.find(["case3"], "Edema") is None
    with pytest.raises(InputError, match="not a folder"):
        SaliencyFolder(tmp_path / "missing")
