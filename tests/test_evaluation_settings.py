"""The evaluation settings are declared once and every surface follows the declaration."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from napari_samcam.errors import InputError
from napari_samcam.evaluation_settings import SETTINGS, check_settings, setting, spec_fields

ROOT = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    from napari_samcam.cli import evaluate as cli_evaluate

    parser = argparse.ArgumentParser(prog="samcam")
    return cli_evaluate.add_parser(parser.add_subparsers())


def test_spelled_choices_equal_the_modules_that_own_them():
    from napari_samcam.agreement import WILCOXON_ZERO_METHODS
    from napari_samcam.evaluation.comparisons import HOLM_FAMILIES
    from napari_samcam.metric_protocols import PROTOCOLS
    from napari_samcam.metrics import BINARIZE_METHODS
    from napari_samcam.region_sources import REGION_SOURCES

    assert setting("holm_family").choices == tuple(HOLM_FAMILIES)
    assert setting("zero_method").choices == tuple(WILCOXON_ZERO_METHODS)
    assert setting("protocol").choices == tuple(PROTOCOLS)
    assert setting("binarization").choices == tuple(BINARIZE_METHODS)
    assert setting("region_sources").choices == tuple(REGION_SOURCES)


def test_every_flag_is_an_argument_whose_default_is_the_declared_one():
    parser = _parser()
    by_dest = {action.dest: action for action in parser._actions}
    flagged = [entry for entry in SETTINGS if entry.flag]
    assert len(flagged) >= 30
    for entry in flagged:
        action = by_dest[entry.name]
        assert action.option_strings == [entry.flag]
        default = entry.flag_default()
        assert action.default == (list(default) if isinstance(default, tuple) else default)
        if entry.choices:
            assert list(action.choices) == list(entry.choices)
    # nothing but the declared flags, the manifest, --out, --quiet and --help
    own = {a.dest for a in parser._actions} - {e.name for e in flagged}
    assert own == {"help", "manifest", "out", "quiet"}


def test_parsed_flags_become_evaluate_keywords():
    from napari_samcam.cli.evaluate import settings_from_args

    parser = _parser()
    defaults = settings_from_args(parser.parse_args(["m.csv", "--out", "o"]))
    assert defaults == {
        entry.name: list(d) if isinstance(d := entry.flag_default(), tuple) else d
        for entry in SETTINGS
        if entry.flag and entry.flag_default() is not None
    }
    assert defaults["context"] == 2.5 and defaults["plots"] is True
    args = parser.parse_args(
        [
            "m.csv",
            "--out",
            "o",
            "--model",
            "a",
            "--model",
            "b",
            "--context",
            "0",
            "--target",
            "3",
            "--holm-family",
            "pair",
            "--no-plots",
            "--bootstrap",
            "50",
            "--regions",
            "box",
            "sam-box",
            "--wilcoxon-zeros",
            "pratt",
        ]
    )
    given = settings_from_args(args)
    assert given["classifiers"] == ["a", "b"]
    assert given["context"] is None  # 0 on the command line: None, the whole image once
    assert given["target"] == 3 and isinstance(given["target"], int)
    assert given["holm_family"] == "pair" and given["zero_method"] == "pratt"
    assert given["plots"] is False and given["report"] is True
    assert given["n_resamples"] == 50
    seeded = parser.parse_args(["m.csv", "--out", "o", "--bootstrap-seed", "7"])
    assert settings_from_args(seeded)["seed"] == 7
    assert given["region_sources"] == ["box", "sam-box"]
    named = parser.parse_args(["m.csv", "--out", "o", "--target", "lesion"])
    assert settings_from_args(named)["target"] == "lesion"


def test_unknown_and_invalid_settings_are_refused_by_name(tmp_path):
    from napari_samcam.evaluation import evaluate, make_spec

    manifest = tmp_path / "m.csv"
    manifest.write_text("image\n")
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"'n_resample'.*valid settings: classifiers, "):
        evaluate(manifest, out, n_resample=10)
    with pytest.raises(InputError, match=r"gallery.*n_resamples.*holm_family"):
        evaluate(manifest, out, n_resample=10)
    with pytest.raises(InputError, match=r"limit=0: pass a positive number.*--limit"):
        evaluate(manifest, out, limit=0)
    with pytest.raises(InputError, match=r"holm_family='all': pass one of run, metric, pair"):
        evaluate(manifest, out, holm_family="all")
    assert not out.exists()  # refused before anything is written
    with pytest.raises(InputError, match=r"unknown job setting\(s\) 'plots'"):
        make_spec(plots=False)


def test_check_settings_fills_every_default():
    values = check_settings({"seed": 7})
    assert values["seed"] == 7
    assert values["context"] == 2.5 and values["holm_family"] == "run"
    assert set(values) == {entry.name for entry in SETTINGS}
    assert set(check_settings({}, group="output")) == {
        e.name for e in SETTINGS if e.group == "output"
    }


def test_evalspec_fields_and_defaults_follow_the_declaration():
    from napari_samcam.evaluation.jobs import EvalSpec

    fields = {f.name: f for f in dataclasses.fields(EvalSpec)}
    stored = {entry.name: entry.default for entry in spec_fields()}
    assert set(fields) == set(stored) | {"classifiers", "sam", "binarization"}
    spec = EvalSpec(classifiers=())
    for name, default in stored.items():
        assert getattr(spec, name) == default
    assert spec.context == 2.5 and spec.methods == ("gradcam",)


def test_config_records_new_settings_only_when_changed():
    """An output folder of a run made before a setting existed keeps its digest."""
    from napari_samcam.evaluation.jobs import EvalSpec

    plain = EvalSpec(classifiers=())
    config = plain.config()
    assert "protocol" not in config and "sam_preprocess" not in config
    assert "saliency" not in config and "trust_saliency" not in config
    assert config["context"] == 2.5 and config["methods"] == ["gradcam"]
    changed = dataclasses.replace(plain, protocol="chexlocalize")
    assert changed.config()["protocol"] == "chexlocalize"
    assert changed.digest() != plain.digest()
    with_folder = dataclasses.replace(plain, saliency="maps")
    assert with_folder.config()["trust_saliency"] is False


def test_evaluate_docstring_lists_every_setting():
    from napari_samcam.evaluation import evaluate

    doc = evaluate.__doc__
    parameters = inspect.signature(evaluate).parameters
    assert list(parameters)[:3] == ["manifest", "out", "progress"]
    assert {name: p.default for name, p in list(parameters.items())[3:]} == {
        entry.name: entry.default for entry in SETTINGS
    }
    for entry in SETTINGS:
        assert f"\n    {entry.name} : {entry.type}\n" in doc


def test_docs_table_is_the_declaration():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "settings_table.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, "docs/evaluation.md: run scripts/settings_table.py"
    text = (ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8")
    for entry in SETTINGS:
        assert f"| `{entry.name}` |" in text


def test_session_defaults_are_the_declared_ones():
    from napari_samcam._napari._session import SamcamSession

    session = SamcamSession(None)
    assert session.context == setting("context").default
    assert session.method == setting("methods").default[0]
    assert session.segmenter_spec == setting("sam").default


@pytest.mark.parametrize("option", ["eigen_smooth", "aug_smooth"])
def test_cam_smoothing_reaches_the_job(option, tiny_phantoms, tiny_lesion_classifier):
    """``--eigen-smooth`` / ``--aug-smooth``: each map is the smoothed CAM explain() gives."""
    import numpy as np

    from napari_samcam.cli.evaluate import settings_from_args
    from napari_samcam.evaluation import load_manifest, make_spec
    from napari_samcam.evaluation.jobs import make_jobs, run_image_job
    from napari_samcam.images import read_image
    from napari_samcam.saliency import explain

    flag = setting(option).flag
    assert settings_from_args(_parser().parse_args(["m.csv", "--out", "o", flag]))[option]
    items = [item for item in load_manifest(tiny_phantoms) if item.positive][:1]
    specs = {
        smooth: make_spec(
            classifiers=[tiny_lesion_classifier],
            region_sources=["ground-truth"],
            **{option: smooth},
        )
        for smooth in (False, True)
    }
    assert option not in specs[False].config()  # earlier output folders still resume
    assert specs[True].config()[option] is True
    assert specs[True].digest() != specs[False].digest()
    maps = {}
    for smooth, spec in specs.items():
        (job,) = make_jobs(items, spec)
        (saliency,) = run_image_job(job, spec, keep_arrays=True).saliencies.values()
        maps[smooth] = saliency.map
    image = read_image(items[0].path).array
    expected = explain(image, tiny_lesion_classifier, target=1, **{option: True}).map
    np.testing.assert_allclose(maps[True], expected, atol=1e-6)
    assert np.abs(maps[True] - maps[False]).max() > 1e-3


def test_evaluate_is_the_function_and_evaluation_the_package():
    import inspect

    import napari_samcam
    import napari_samcam.evaluation.jobs  # a submodule import changes nothing
    from napari_samcam.evaluation import evaluate

    assert inspect.isfunction(napari_samcam.evaluate)
    assert napari_samcam.evaluate is evaluate
    assert inspect.ismodule(napari_samcam.evaluation)
