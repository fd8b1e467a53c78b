"""Bad input gets a clear SamcamError naming the input, and leaves nothing behind.

One test per case: malformed prompts and CLI arguments, unknown devices, unwritable output
folders, concurrent runs into one folder, malformed manifests, repeated manifest entries, boxes
beyond the image, float64 images near the top of the float range, NaN in PNG exports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from conftest import TinyCNN
from napari_samcam.cli import main
from napari_samcam.errors import (
    InputError,
    OutputBusyError,
    OutputNotWritableError,
    PromptError,
    SamcamError,
)
from napari_samcam.evaluation import evaluate, load_manifest

TESTS = Path(__file__).parent
SRC = Path(__import__("napari_samcam").__file__).parents[1]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    from napari_samcam.phantoms import write_phantoms

    folder = tmp_path_factory.mktemp("phantoms")
    return write_phantoms(3, folder, seed=5, size=96, positive_fraction=1.0)


@pytest.fixture(scope="module")
def classifier(tiny_lesion_classifier):
    return tiny_lesion_classifier


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "img.png"
    iio.imwrite(path, np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8))
    return path


def _evaluate(manifest, out, classifier, **options):
    kwargs = dict(
        classifiers=[classifier],
        region_sources=["ground-truth"],
        sam=None,
        plots=False,
        report=False,
        n_resamples=50,
    )
    kwargs.update(options)
    return evaluate(manifest, out, **kwargs)


def _cli_error(argv, capsys) -> str:
    """Run the CLI on bad input: it must exit with 2 and print one line; return the line."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejects the argument
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# --------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--box", "1,1,inf,5", "box (1.0, 1.0, inf, 5.0) is not finite"),
        ("--box", "nan,1,4,5", "box (nan, 1.0, 4.0, 5.0) is not finite"),
        ("--box", "1,1,1e400,5", "is not finite"),
        ("--box", "5,1,2,5", "box (5.0, 1.0, 2.0, 5.0) is empty"),
        ("--point", "inf,3", "point (inf, 3.0) is not finite"),
        ("--point", "a,3", "point 'a,3': expected 2 comma-separated numbers"),
    ],
)
def test_cli_prompt_that_is_not_a_finite_box_is_one_line(
    tmp_path, image_file, capsys, option, value, fragment
):
    out = tmp_path / "out"
    err = _cli_error(["segment", str(image_file), option, value, "--out", str(out)], capsys)
    assert f"argument {option}: " in err and fragment in err
    assert not out.exists()


def test_cli_box_outside_the_image_fails_before_the_model_loads(
    tmp_path, image_file, monkeypatch, capsys
):
    import napari_samcam.segment

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(napari_samcam.segment, "load_segmenter", no_model)
    out = tmp_path / "out"
    argv = ["segment", str(image_file), "--box", "1,1,9,9", "--box", "0,0,50,60"]
    err = _cli_error([*argv, "--out", str(out)], capsys)
    assert "--box[1] = (0.0, 0.0, 50.0, 60.0) reaches outside the image of shape (40, 50)" in err
    assert not out.exists()


def test_segment_names_the_bad_prompt_and_its_index(tiny_segmenter):
    from napari_samcam.box_prompts import box_region

    image = np.zeros((20, 30), np.uint8)
    with pytest.raises(PromptError, match=r"boxes\[1\] = \('a', 1, 2, 3\): 'a' is not a number"):
        tiny_segmenter.segment(image, boxes=[(0, 0, 5, 5), ("a", 1, 2, 3)])
    with pytest.raises(PromptError, match=r"boxes\[0\] = \(1, 2, 3\) has 3 values"):
        tiny_segmenter.segment(image, boxes=[(1, 2, 3)])
    with pytest.raises(PromptError, match=r"boxes\[2\] = \(0.0, 0.0, 5.0, inf\) is not finite"):
        tiny_segmenter.segment(
            image, boxes=np.array([[0, 0, 5, 5], [1, 1, 4, 4], [0, 0, 5, np.inf]])
        )
    with pytest.raises(PromptError, match=r"points\[1\] = \(2, None\): None is not a number"):
        tiny_segmenter.segment(image, points=[(1, 1), (2, None)])
    with pytest.raises(PromptError, match=r"box\[0\] = \('a', 1, 2, 3\): 'a' is not a number"):
        box_region(("a", 1, 2, 3), (20, 30))
    # a good prompt still segments
    assert len(tiny_segmenter.segment(image, boxes=[(0, 0, 5, 5), (1, 1, 9.0, 9)])) == 2


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------


def test_manifest_with_non_utf8_bytes(tmp_path, image_file):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"image,label\nimg.png,1\nimg\xe9.png,0\n")
    with pytest.raises(InputError, match=r"m\.csv': line 3 holds bytes that are not UTF-8") as e:
        load_manifest(manifest)
    assert "save the file as UTF-8" in str(e.value)


def _coco(tmp_path, annotations, *, file_name="img.png"):
    data = {
        "images": [{"id": 7, "file_name": file_name, "height": 40, "width": 50}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "lesion"}],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))  # json writes NaN as the literal NaN, as Python reads it
    return path


def test_coco_annotations_null(tmp_path, image_file):
    with pytest.raises(InputError, match=r"key 'annotations': NoneType instead of a list"):
        load_manifest(_coco(tmp_path, None))


@pytest.mark.parametrize(
    ("coordinate", "shown"), [("12", "'12'"), (float("nan"), "nan"), (float("inf"), "inf")]
)
def test_coco_polygon_coordinates_must_be_finite_numbers(tmp_path, image_file, coordinate, shown):
    polygon = [1, 1, 20, 1, 20, coordinate, 1, 20]
    ann = {"id": 31, "image_id": 7, "category_id": 1, "segmentation": [polygon]}
    with pytest.raises(InputError) as e:
        load_manifest(_coco(tmp_path, [ann]))
    message = str(e.value)
    assert "id 31" in message and "image 'img.png'" in message
    assert f"coordinate 5 is {shown}" in message


def test_repeated_manifest_rows_are_scored_once(tmp_path, phantoms, classifier):
    rows = pd.read_csv(phantoms, keep_default_na=False)
    manifest = phantoms.parent / "repeated.csv"
    repeated = pd.concat([rows.iloc[[0]], rows.iloc[[1]], rows.iloc[[0]], rows.iloc[[0]]])
    repeated.to_csv(manifest, index=False)
    with pytest.warns(UserWarning, match="2 entries repeat an earlier one") as record:
        result = _evaluate(manifest, tmp_path / "out", classifier)
    message = str(record[0].message)
    assert "row 3 (line 4) repeats row 1 (line 2)" in message
    assert "row 4 (line 5) repeats row 1 (line 2)" in message
    assert result.n_images == 2 and sorted(result.metrics["item"].unique()) == [0, 1]
    summary = result.summary
    assert set(summary.loc[summary["group"] == "all", "n"]) == {2}


def test_contradicting_manifest_rows_are_refused(tmp_path, phantoms):
    rows = pd.read_csv(phantoms, keep_default_na=False)
    changed = rows.iloc[[0]].copy()
    changed["label"] = 0
    manifest = phantoms.parent / "contradicting.csv"
    pd.concat([rows.iloc[[0]], rows.iloc[[1]], changed]).to_csv(manifest, index=False)
    with pytest.raises(InputError, match=r"row 1 \(line 2\) and row 3 \(line 4\) annotate"):
        load_manifest(manifest)


def test_rows_with_another_box_of_one_finding_are_kept(tmp_path, phantoms):
    # a CSV row holds one box: two lesions of one class on one image take two rows
    rows = pd.read_csv(phantoms, keep_default_na=False)
    second = rows.iloc[[0]].copy()
    second["box_r1"] = second["box_r1"] - 1
    manifest = phantoms.parent / "two-lesions.csv"
    pd.concat([rows.iloc[[0]], second]).to_csv(manifest, index=False)
    items = load_manifest(manifest)
    assert len(items) == 2 and items[0].boxes != items[1].boxes


def test_box_beyond_the_image_is_clipped_with_a_warning_naming_the_row(
    tmp_path, image_file, classifier
):
    manifest = tmp_path / "boxes.csv"
    manifest.write_text(
        "image,label,box_r0,box_c0,box_r1,box_c1\nimg.png,1,30,40,60,70\n", encoding="utf-8"
    )
    with pytest.warns(UserWarning, match=r"row 1 \(line 2\): box \[30, 40, 60, 70\]") as record:
        result = _evaluate(manifest, tmp_path / "out", classifier, region_sources=["box"])
    assert "clipped to [30, 40, 40, 50]" in str(record[0].message)
    prompt = json.loads(result.metrics["prompt"].iloc[0])
    assert prompt["boxes"] == [[30, 40, 40, 50]]
    # COCO boxes are checked against the image size the manifest gives
    ann = {"id": 5, "image_id": 7, "category_id": 1, "bbox": [45, 0, 10, 10]}
    with pytest.warns(UserWarning, match=r"\(id 5, image 'img.png'\), key 'bbox'") as record:
        (item,) = load_manifest(_coco(tmp_path, [ann]))
    assert item.boxes == [(0, 45, 10, 50)]


# --------------------------------------------------------------------------------------------
# Devices, output folders, arguments
# --------------------------------------------------------------------------------------------


def test_unknown_device_is_refused_before_any_work(tmp_path, image_file, phantoms, capsys):
    from napari_samcam.classifiers import available_devices, load_classifier

    out = tmp_path / "out"
    err = _cli_error(["explain", str(image_file), "--out", str(out), "--device", "tpu:7"], capsys)
    assert "device 'tpu:7' is not available" in err and ", ".join(available_devices()) in err
    assert not out.exists()
    with pytest.raises(InputError, match="device 'cuda:99' is not available"):
        load_classifier(TinyCNN.build(), input_size=(32, 32), device="cuda:99")
    with pytest.raises(InputError, match="device 'tpu:7' is not available"):
        evaluate(phantoms, out, classifiers=[TinyCNN.build()], device="tpu:7")
    assert not out.exists()


@pytest.fixture
def read_only(tmp_path):
    """A folder this process cannot write to (a read-only folder, or /sys for root)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        yield folder
    else:  # root ignores permissions: use a file system the kernel keeps read-only
        system = Path("/sys/kernel")
        try:
            tempfile.TemporaryFile(dir=system).close()
        except OSError:
            yield system
        else:
            pytest.skip("no read-only folder available")
    folder.chmod(0o755)


@pytest.mark.parametrize("command", ["explain", "segment", "evaluate", "phantoms", "demo"])
def test_read_only_output_folder_fails_before_any_model_loads(
    read_only, image_file, phantoms, monkeypatch, capsys, command
):
    import napari_samcam.classifiers
    import napari_samcam.segment

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(napari_samcam.classifiers, "load_classifier", no_model)
    monkeypatch.setattr(napari_samcam.segment, "load_segmenter", no_model)
    before = sorted(os.listdir(read_only))
    out = read_only / "results"
    argv = {
        "explain": ["explain", str(image_file)],
        "segment": ["segment", str(image_file), "--box", "1,1,9,9"],
        "evaluate": ["evaluate", str(phantoms), "--quiet"],
        "phantoms": ["phantoms", "--n", "2", "--quiet"],
        "demo": ["demo", "--n", "1", "--quiet"],
    }[command]
    err = _cli_error([*argv, "--out", str(out)], capsys)
    assert f"samcam {command}: error: --out={str(out)!r} is not writable" in err
    assert sorted(os.listdir(read_only)) == before


def test_read_only_output_folder_in_the_python_api(read_only, phantoms, classifier):
    from napari_samcam.phantoms import write_phantoms

    with pytest.raises(OutputNotWritableError, match=f"out={str(read_only / 'x')!r}"):
        _evaluate(phantoms, read_only / "x", classifier)
    with pytest.raises(OutputNotWritableError, match="is not writable"):
        write_phantoms(1, read_only / "x")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["evaluate", "M", "--bootstrap", "-1"], "argument --bootstrap: '-1' is not a positive"),
        (["evaluate", "M", "--bootstrap", "0"], "argument --bootstrap: '0' is not a positive"),
        (["evaluate", "M", "--limit", "0"], "argument --limit: '0'"),
        (["evaluate", "M", "--workers", "-2"], "argument --workers: '-2'"),
        (["evaluate", "M", "--context", "0.5"], "argument --context: '0.5' is not 0 or a number"),
        (["evaluate", "M", "--threshold", "nan"], "argument --threshold: 'nan' is not a finite"),
        (["evaluate", "M", "--method", "gradkam"], "argument --method: 'gradkam' is not a CAM"),
        (["evaluate", "M", "--text", " "], "argument --text: empty text"),
        (["evaluate", "M", "--checkpoint", "none.pt"], "argument --checkpoint: 'none.pt' does"),
        (["explain", "I", "--slice", "-1"], "argument --slice: '-1' is not a whole number >= 0"),
        (["explain", "I", "--method", "x"], "argument --method: 'x' is not a CAM method"),
        (["segment", "I", "--top-k", "0"], "argument --top-k: '0'"),
        (["segment", "I", "--context", "inf"], "argument --context: 'inf' is not a number >= 1"),
        (["segment", "I", "--device", "tpu"], "argument --device: device 'tpu' is not available"),
        (["phantoms", "--n", "2", "--seed", "-1"], "argument --seed: '-1'"),
        (["phantoms", "--n", "2", "--size", "0"], "argument --size: '0'"),
        (
            ["phantoms", "--n", "2", "--positive-fraction", "1.5"],
            "'1.5' is not a number in [0, 1]",
        ),
        (["demo", "--n", "0"], "argument --n: '0' is not a positive whole number"),
    ],
)
def test_every_argument_is_checked_before_any_work(
    tmp_path, image_file, phantoms, capsys, argv, fragment
):
    out = tmp_path / "out"
    argv = [{"M": str(phantoms), "I": str(image_file)}.get(a, a) for a in argv]
    err = _cli_error([*argv, "--out", str(out)], capsys)
    assert err.startswith(f"samcam {argv[0]}: error: ") and fragment in err
    assert err.endswith(f"(see samcam {argv[0]} --help)")
    assert not out.exists()


def test_bootstrap_is_checked_before_the_run_in_the_python_api(tmp_path, phantoms, classifier):
    out = tmp_path / "out"
    with pytest.raises(InputError, match="n_resamples=-1: pass a positive number"):
        _evaluate(phantoms, out, classifier, n_resamples=-1)
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# Concurrent runs into one output folder
# --------------------------------------------------------------------------------------------

_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from conftest import TinyCNN
    from napari_samcam.classifiers import load_classifier
    from napari_samcam.errors import SamcamError
    from napari_samcam.evaluation import evaluate

    manifest, out, hold = sys.argv[1], sys.argv[2], sys.argv[3:]

    def progress(done, total):
        if hold and done == 0:  # inside the run: say so, then wait to be released
            Path(hold[0], "started").touch()
            deadline = time.time() + 120
            while not Path(hold[0], "release").exists() and time.time() < deadline:
                time.sleep(0.05)

    model = load_classifier(
        TinyCNN.build(), class_names=["no lesion", "lesion"], input_size=(32, 32), device="cpu"
    )
    try:
        result = evaluate(manifest, out, classifiers=[model], region_sources=["ground-truth"],
                          sam=None, plots=False, report=False, n_resamples=50,
                          progress=progress)
    except SamcamError as exc:
        print(f"error: {{exc}}", file=sys.stderr)
        sys.exit(2)
    print(result.n_computed, result.n_reused)
    """
)


def _start(script, manifest, out, hold=None):
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    args = [sys.executable, str(script), str(manifest), str(out)]
    args += [] if hold is None else [str(hold)]
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(path: Path, process) -> None:
    deadline = time.time() + 180
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "the first run did not start"
        time.sleep(0.1)


def test_second_concurrent_run_refuses_and_a_dead_runs_lock_does_not_block(
    tmp_path, phantoms, classifier
):
    script = tmp_path / "run.py"
    script.write_text(_RUN.format(tests=str(TESTS)), encoding="utf-8")
    out = tmp_path / "out"
    hold = tmp_path / "hold"
    hold.mkdir()
    first = _start(script, phantoms, out, hold)
    try:
        _wait_for(hold / "started", first)
        second = _start(script, phantoms, out)
        _, err = second.communicate(timeout=300)
        assert second.returncode == 2, err
        assert f"output folder {str(out)!r} is in use by another evaluation" in err
        assert f"process {first.pid} on" in err
        (hold / "release").touch()
        stdout, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert stdout.split() == ["3", "0"]
    names = _files(out)
    assert "metrics.parquet" in names and not [n for n in names if "tmp" in n or "lock" in n]

    # A run killed in the middle leaves its lock file behind; the next run is not blocked.
    (hold / "started").unlink()
    (hold / "release").unlink()
    killed = _start(script, phantoms, out, hold)
    _wait_for(hold / "started", killed)
    killed.kill()
    killed.wait(timeout=60)
    assert json.loads((out / ".samcam.lock").read_text())["pid"] == killed.pid
    result = _evaluate(phantoms, out, classifier)
    assert (result.n_computed, result.n_reused) == (0, 3)
    assert not (out / ".samcam.lock").exists()


def test_the_lock_refuses_a_second_holder_in_one_process(tmp_path):
    from napari_samcam._folders import output_lock

    busy = pytest.raises(OutputBusyError, match=f"process {os.getpid()} on")
    with output_lock(tmp_path, what="evaluation"), busy, output_lock(tmp_path):
        pass
    with output_lock(tmp_path):  # released on exit
        pass
    assert _files(tmp_path) == []


def test_failed_atomic_write_leaves_nothing(tmp_path):
    from napari_samcam._folders import atomic_path

    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert _files(tmp_path) == ["table.csv"] and target.read_text() == "old"


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(40, 50), (32, 32)])  # resized first / mapped at full size
def test_float64_image_near_the_top_of_the_range_gives_a_finite_saliency(classifier, shape):
    from napari_samcam.images import to_unit_range
    from napari_samcam.saliency import explain

    image = np.random.default_rng(1).random(shape)
    small = explain(image, classifier).map
    for huge in (image * 1.79e308, (image - 0.5) * 1.79e308):  # up to the largest float64
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            big = explain(huge, classifier).map
            unit = to_unit_range(huge)
        assert np.isfinite(big).all() and big.max() > 0
        np.testing.assert_allclose(big, small, atol=1e-5)
        np.testing.assert_allclose(unit, to_unit_range(image), atol=1e-6)


def test_png_export_of_a_map_with_nan_keeps_the_finite_values(tmp_path):
    from napari_samcam._napari._writer import write_image

    saliency = np.linspace(0, 1, 20 * 30, dtype=np.float32).reshape(20, 30)
    saliency[5] = np.nan
    path = tmp_path / "x.png"
    with pytest.warns(UserWarning, match=r"x\.png'.*30 NaN pixel\(s\) are written as 0"):
        write_image(str(path), saliency, {})
    png = iio.imread(path)
    assert png.dtype == np.uint16 and (png[5] == 0).all()
    finite = np.delete(np.arange(20), 5)
    expected = np.round(saliency[finite].astype(np.float64) * 65535).astype(np.uint16)
    np.testing.assert_array_equal(png[finite], expected)
    with pytest.raises(SamcamError, match=r"y\.png'.*no finite value"):
        write_image(str(tmp_path / "y.png"), np.full((4, 4), np.nan), {})
    assert not (tmp_path / "y.png").exists()
