"""The trust-aware region source: its signals and decisions (numbers worked by hand), its
mechanics on a tiny random-weight SAM, and its columns in an evaluation's region table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from napari_samcam.region_trust import (
    Candidate,
    TrustRule,
    decide,
    mask_signals,
    problems,
    quality_of_region,
)
from napari_samcam.segment import Region


def _rect(shape, r0, c0, r1, c1) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def test_mask_signals_by_hand():
    box = (10, 10, 30, 50)  # 20 x 40 = 800 pixels
    # 10 x 20 inside the box plus a 10 x 5 strip to its right, outside it
    mask = _rect((64, 64), 15, 20, 25, 40) | _rect((64, 64), 15, 50, 25, 55)
    signals = mask_signals(mask, box)
    assert signals["area"] == 250
    assert signals["box_fill"] == pytest.approx(200 / 800)
    assert signals["outside"] == pytest.approx(50 / 250)
    # within the box the mask spans rows 15-25 (10 of 20) and columns 20-50 (30 of 40)
    assert signals["box_span"] == pytest.approx(min(10 / 20, 30 / 40))
    empty = mask_signals(np.zeros((64, 64), dtype=bool), box)
    assert empty == {"area": 0, "box_fill": 0.0, "box_span": 0.0, "outside": 1.0}


def test_problems_name_each_failed_check():
    rule = TrustRule(min_iou=0.8, min_stability=0.85, min_span=0.6, min_fill=0.2)
    good = {"area": 500, "box_fill": 0.6, "box_span": 0.8, "outside": 0.0}
    assert problems(0.9, 0.9, good, rule) == []
    assert problems(math.nan, math.nan, good, rule) == []  # unknown signals are not held against
    partial = dict(good, box_span=0.4)
    assert problems(0.9, 0.9, partial, rule) == ["spans 0.40 of the box < 0.6"]
    found = problems(0.5, 0.7, dict(good, outside=0.3), rule)
    assert found == [
        "predicted IoU 0.50 < 0.8",
        "stability 0.70 < 0.85",
        "0.30 of it outside the box > 0.1",
    ]
    assert problems(0.9, 0.9, dict(good, area=0), rule) == ["empty mask"]


def _candidate(output, iou, stability, span, context=2.5) -> Candidate:
    signals = {"area": 100, "box_fill": 0.5, "box_span": span, "outside": 0.0}
    return Candidate(None, output, iou, stability, context, signals)


def test_decide_keeps_chooses_or_gives_up():
    rule = TrustRule(min_iou=0.8, min_stability=0.85, min_span=0.6)
    kept = decide([_candidate(0, 0.9, 0.9, 0.8), _candidate(1, 0.95, 0.95, 0.8)], rule)
    # output 1 scores higher: 0.9025 > 0.81, so it is chosen even though output 0 passed
    assert kept.choice == 1 and kept.action == "chose output 1"
    alone = decide([_candidate(0, 0.9, 0.9, 0.8), _candidate(1, 0.95, 0.95, 0.3)], rule)
    assert alone.choice == 0 and alone.action == "kept"
    partial = [_candidate(0, 0.9, 0.9, 0.3), _candidate(2, 0.85, 0.9, 0.7)]
    chosen = decide(partial, rule)
    assert chosen.choice == 1 and chosen.action == "chose output 2"
    assert "spans 0.30 of the box" in chosen.reason
    reprompted = decide([_candidate(0, 0.9, 0.9, 0.3), _candidate(0, 0.9, 0.9, 0.7, 1.5)], rule)
    assert reprompted.action == "re-prompted (context 1.5), chose output 0"
    none = decide([_candidate(0, 0.5, 0.9, 0.3)], rule)
    assert none.choice is None and "predicted IoU 0.50" in none.reason


def test_quality_of_a_plain_sam_region_is_flagged_from_its_box():
    shape = (64, 64)
    box = [10, 10, 30, 50]
    half = Region(_rect(shape, 10, 10, 30, 25), "sam-box", {"boxes": [box]}, 0.95, "m")
    quality = quality_of_region(half)
    assert quality["region_unreliable"] is True
    assert quality["region_box_span"] == pytest.approx(15 / 40)
    assert "spans 0.38 of the box" in quality["region_reason"]
    whole = Region(_rect(shape, 12, 14, 28, 46), "sam-box", {"boxes": [box]}, 0.95, "m")
    assert quality_of_region(whole)["region_unreliable"] is False
    truth = Region(_rect(shape, 12, 14, 28, 46), "ground-truth", {"annotation": "mask"})
    assert quality_of_region(truth)["region_action"] == ""


@pytest.fixture
def blob_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 40, (80, 96)).astype(np.uint8)
    image[30:50, 40:62] = 220
    return image


def test_trusted_region_keeps_sams_mask_when_every_check_passes(tiny_segmenter, blob_image):
    from napari_samcam.trusted_box import trusted_box_region

    box = np.array([[26, 36, 54, 66]])
    lenient = TrustRule(0.0, 0.0, 0.0, 0.0, 1.0, 1.0, None)
    region = trusted_box_region(tiny_segmenter, blob_image, box, rule=lenient)
    sam = tiny_segmenter.segment(blob_image, boxes=box, context=2.5)[0]
    (record,) = region.prompt["trust"]
    if sam.mask.any():  # an empty mask fails even the lenient rule
        assert record["action"] in ("kept", "chose output 1", "chose output 2", "chose output 3")
        if record["action"] == "kept":
            assert np.array_equal(region.mask, sam.mask)
            assert region.score == pytest.approx(sam.score, abs=1e-6)
    assert region.source == "sam-trust" and region.prompt["boxes"] == box.tolist()
    assert region.prompt["trust_rule"]["min_iou"] == 0.0


def test_trusted_region_reprompts_then_falls_back_to_the_box(tiny_sam, blob_image):
    from napari_samcam.segment import load_segmenter
    from napari_samcam.trusted_box import trusted_box_region

    segmenter = load_segmenter(tiny_sam)
    strict = TrustRule(min_iou=2.0, reprompt_context=1.5)  # no predicted IoU reaches 2
    box = np.array([[26, 36, 54, 66], [5, 5, 20, 30]])
    region = trusted_box_region(segmenter, blob_image, box, rule=strict)
    expected = _rect(blob_image.shape, 26, 36, 54, 66) | _rect(blob_image.shape, 5, 5, 20, 30)
    assert np.array_equal(region.mask, expected)
    assert math.isnan(region.score)
    assert [r["action"] for r in region.prompt["trust"]] == ["fell back to the box"] * 2
    assert all("< 2" in r["reason"] or "empty" in r["reason"] for r in region.prompt["trust"])
    # two boxes x (the zoom of 2.5, then the re-prompt's 1.5): four crops embedded
    assert segmenter.encoder_calls == 4
    quality = quality_of_region(region)
    assert quality["region_action"] == "fell back to the box; fell back to the box"
    assert math.isnan(quality["region_stability"])


def test_evaluate_writes_the_trust_columns(tmp_path):
    from conftest import TinyCNN, build_tiny_sam
    from napari_samcam.classifiers import load_classifier
    from napari_samcam.evaluation import evaluate
    from napari_samcam.phantoms import write_phantoms

    manifest = write_phantoms(3, tmp_path / "ph", seed=5, size=96, positive_fraction=1)
    classifier = load_classifier(
        TinyCNN.build(seed=0), class_names=["no", "lesion"], input_size=(32, 32), device="cpu"
    )
    result = evaluate(
        manifest,
        tmp_path / "out",
        classifiers=[classifier],
        sam=build_tiny_sam(),
        device="cpu",
        region_sources=("ground-truth", "box", "sam-box", "sam-trust"),
        n_resamples=50,
        plots=False,
        report=False,
    )
    regions = pd.read_csv(tmp_path / "out" / "regions.csv", keep_default_na=False)
    trust = regions[regions["region_source"] == "sam-trust"]
    assert len(trust) == 3
    assert trust["region_action"].str.len().min() > 0  # every row says what was done
    box = regions[regions["region_source"] == "box"]
    assert set(box["region_action"]) == {""} and set(box["region_unreliable"]) == {False}
    sam = regions[regions["region_source"] == "sam-box"]
    flagged = sam["region_reason"].str.len() > 0
    assert (sam["region_unreliable"] == flagged).all()
    quality = result.region_summary
    share = quality[(quality["region_source"] == "sam-trust") & (quality["group"] == "all")]
    fell = trust["region_action"].str.contains("fell back").mean()
    assert share["fell_back"].iloc[0] == pytest.approx(fell)


def test_cli_warns_about_unreliable_regions(capsys):
    from napari_samcam.cli.evaluate import _warn_unreliable

    regions = pd.DataFrame(
        {
            "region_source": ["sam-box", "sam-box", "sam-box", "sam-trust", "box"],
            "region_unreliable": [True, False, True, False, False],
            "region_reason": ["spans 0.40 of the box < 0.6", "", "empty mask", "", ""],
            "region_action": ["kept", "kept", "kept", "fell back to the box", ""],
        }
    )
    _warn_unreliable(regions)
    printed = capsys.readouterr().out
    assert "warning: 2 of 3 sam-box regions look unreliable" in printed
    assert "spans x of the box < x" in printed and "empty mask" in printed
    assert "sam-trust: 1 of 1 regions fell back to the box" in printed


@pytest.mark.slow
def test_litemedsam_keeps_its_mask_and_its_advantage_on_a_compact_lesion():
    from napari_samcam.phantoms import generate_phantoms
    from napari_samcam.segment import load_segmenter
    from napari_samcam.trusted_box import trusted_box_region

    (case,) = generate_phantoms(1, seed=101, positive_fraction=1.0, shapes="all")
    assert case.lesion_kind == "compact"
    segmenter = load_segmenter("litemedsam")
    region = trusted_box_region(segmenter, case.image, [case.box])
    assert region.prompt["trust"][0]["action"] == "kept"
    sam = segmenter.segment(case.image, boxes=[case.box], context=2.5)[0]
    assert np.array_equal(region.mask, sam.mask)  # the kept mask is sam-box's

    def dice(mask):
        return 2 * (mask & case.mask).sum() / (mask.sum() + case.mask.sum())

    r0, c0, r1, c1 = case.box
    assert dice(region.mask) > dice(_rect(case.mask.shape, r0, c0, r1, c1)) + 0.1
