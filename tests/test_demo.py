"""``samcam demo``: mechanics with tiny models, the real result with the built-ins."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import TinyCNN, build_tiny_sam
from napari_samcam.errors import OutputExistsError


def test_demo_mechanics_with_tiny_models(tmp_path):
    from napari_samcam.classifiers import load_classifier
    from napari_samcam.demo import run_demo

    classifier = load_classifier(
        TinyCNN.build(), class_names=["no lesion", "lesion"], input_size=(32, 32), device="cpu"
    )
    calls = []
    result = run_demo(
        tmp_path,
        n=2,
        classifiers=[classifier],
        sam=build_tiny_sam(),
        device="cpu",
        n_resamples=50,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    for column in ("image", "classifier", "classifier_version", "region_source", "metric"):
        assert column in metrics
    assert set(metrics["region_source"]) == {"ground-truth", "sam-box", "sam-saliency-box"}
    assert metrics["image"].nunique() == 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"headline", "summary", "agreement", "regions", "demo"} <= set(summary)
    assert (tmp_path / "overlays" / "phantom_00000_Sequential.png").is_file()
    assert (tmp_path / "overlays" / "chest_radiograph_Sequential.png").is_file()
    radiograph = pd.read_csv(tmp_path / "radiograph.csv")
    assert set(radiograph["region_source"]) == {"sam-saliency-box"}
    assert list(result.table.columns) == ["classifier", "region_source", "hit", "energy", "iou"]
    with pytest.raises(OutputExistsError, match="overwrite"):
        run_demo(tmp_path, n=2, classifiers=[classifier], sam=build_tiny_sam(), device="cpu")


def _builtins_available() -> bool:
    try:
        from napari_samcam.builtin_classifiers import builtin_metadata

        builtin_metadata("lesion-detector")
        builtin_metadata("shortcut-detector")
    except Exception:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _builtins_available(), reason="built-in classifier weights not installed")
def test_demo_shows_the_shortcut(tmp_path, capsys):
    """The README's main job: the lesion detector localizes, the shortcut detector does not."""
    from napari_samcam.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "lesion-detector" in printed and "shortcut-detector" in printed
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["image"].nunique() == 8

    def mean(classifier, source, metric):
        rows = metrics[
            (metrics["classifier"] == classifier)
            & (metrics["region_source"] == source)
            & (metrics["metric"] == metric)
        ]
        return rows["value"].mean()

    for source in ("ground-truth", "sam-box"):
        lesion_hit = mean("lesion-detector", source, "hit")
        shortcut_hit = mean("shortcut-detector", source, "hit")
        assert lesion_hit >= 0.75 and shortcut_hit <= 0.25, (source, lesion_hit, shortcut_hit)
        lesion_energy = mean("lesion-detector", source, "energy")
        shortcut_energy = mean("shortcut-detector", source, "energy")
        assert lesion_energy > shortcut_energy + 0.2, (source, lesion_energy, shortcut_energy)
    summary = json.loads((out / "summary.json").read_text())
    headline = {(r["classifier"], r["region_source"]): r for r in summary["headline"]}
    assert headline[("lesion-detector", "ground-truth")]["hit"] == pytest.approx(
        mean("lesion-detector", "ground-truth", "hit")
    )
    overlays = sorted(p.name for p in (out / "overlays").glob("*.png"))
    assert len(overlays) == 2 * 8 + 2
    assert "chest_radiograph_lesion-detector.png" in overlays
