"""The ``chexlocalize`` protocol: CheXlocalize's definitions on fixtures with hand-derived values,
and ``samcam evaluate --saliency`` on CheXlocalize ``.pkl`` maps end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from chexlocalize_fixtures import SHAPE, block, write_dataset
from napari_samcam import chexlocalize
from napari_samcam.cli import main
from napari_samcam.errors import InputError
from napari_samcam.evaluation import evaluate
from napari_samcam.evaluation.summary import summarize
from napari_samcam.metrics import localization_metrics

TRUTH = block(4, 12, 4, 12)  # 64 pixels


def scores(array, truth=TRUTH):
    return chexlocalize.scores(chexlocalize.prepare(np.asarray(array, np.float32), SHAPE), truth)


def test_exact_block_map_scores_one():
    # A 0/1 map equal to the truth: Otsu keeps the block; its contour redrawn as a filled
    # polygon (outline included) is the block again: IoU 64/64 = 1; the first maximum (4, 4)
    # lies in the truth: hit 1.
    assert scores(TRUTH) == {"iou": 1.0, "iou_true_pos": 1.0, "hit": 1.0}


def test_partial_overlap_and_first_maximum_outside():
    # Map block rows/cols 0:8 against truth 4:12: intersection 4 x 4 = 16, union 64 + 64 - 16 =
    # 112, IoU 1/7. The first maximum (row-major) is (0, 0), outside the truth: hit 0.
    values = scores(block(0, 8, 0, 8))
    assert values["iou"] == pytest.approx(16 / 112)
    assert values["iou_true_pos"] == pytest.approx(16 / 112)
    assert values["hit"] == 0.0


@pytest.mark.parametrize("value", [0.0, 0.37])
def test_constant_map_is_an_empty_mask(value):
    # CheXlocalize divides 0 by 0 and gets an empty mask: IoU 0/64 = 0 with true_pos_only=False,
    # NaN with true_pos_only=True (empty prediction); its first maximum is (0, 0): a hit only if
    # the truth holds (0, 0). Our own protocol says NaN for all three.
    constant = np.full((8, 8), value, np.float32)
    values = scores(constant)
    assert values["iou"] == 0.0 and math.isnan(values["iou_true_pos"]) and values["hit"] == 0.0
    corner = block(0, 4, 0, 4)
    assert scores(constant, corner)["hit"] == 1.0
    ours = localization_metrics(np.full(SHAPE, value, np.float32), TRUTH)
    assert math.isnan(ours["iou"]) and math.isnan(ours["hit"])


def test_tied_maxima_take_the_first():
    # Two maxima of 1.0: (1, 1) outside the truth comes first in row-major order, (6, 6) inside.
    # CheXlocalize: hit 0. Our protocol counts a hit when any maximum lies inside.
    array = np.zeros(SHAPE, np.float32)
    array[1, 1] = array[6, 6] = 1.0
    assert scores(array)["hit"] == 0.0
    assert localization_metrics(array, TRUTH)["hit"] > 0


def test_one_pixel_components_dropped_and_holes_filled():
    # The block 4:12 plus an isolated pixel (0, 15): the isolated pixel's contour has one point
    # and is not drawn: IoU 64/64 = 1 (ours keeps it: 64/65).
    array = TRUTH.astype(np.float32)
    array[0, 15] = 1.0
    assert scores(array)["iou"] == 1.0
    assert localization_metrics(array, TRUTH)["iou"] == pytest.approx(64 / 65)
    # A ring (the block less its 4 x 4 centre): the hole's contour is redrawn filled, so the
    # segmentation is the whole block: IoU 1.
    ring = TRUTH.astype(np.float32)
    ring[6:10, 6:10] = 0
    assert chexlocalize.segmentation(ring).sum() == 64
    assert scores(ring)["iou"] == 1.0


def test_empty_truth():
    # No finding: IoU 0 (prediction 64 pixels, union 64) with true_pos_only=False, NaN with
    # true_pos_only=True; the hit is NaN.
    values = scores(TRUTH, np.zeros(SHAPE, bool))
    assert values["iou"] == 0.0 and math.isnan(values["iou_true_pos"])
    assert math.isnan(values["hit"])
    # and an empty prediction with an empty truth: both IoUs NaN
    empty = scores(np.zeros((4, 4), np.float32), np.zeros(SHAPE, bool))
    assert math.isnan(empty["iou"]) and math.isnan(empty["iou_true_pos"])


def test_bootstrap_keeps_nan_rows():
    # Rows [1, NaN]: a resample of two rows is all-NaN with probability 1/4, so about 250 of the
    # 1000 resampled means are NaN and sort last: the 975th value is NaN; every defined mean is
    # 1, so the mean and the 25th value are 1.
    mean, low, high = chexlocalize.bootstrap(np.array([1.0, np.nan]))
    assert mean == 1.0 and low == 1.0 and math.isnan(high)
    # Written the way CheXlocalize's eval.py computes it (pandas, seeded global numpy RNG).
    values = np.array([1.0, 0.0, np.nan, 0.25, 1.0])
    np.random.seed(0)  # noqa: NPY002 - CheXlocalize seeds the legacy global generator
    frame = pd.DataFrame({"t": values})
    means = pd.Series(
        [frame.iloc[np.random.choice(5, size=5)]["t"].mean() for _ in range(1000)]  # noqa: NPY002
    ).sort_values()
    expected = (means.mean(), means.iloc[24], means.iloc[974])
    assert chexlocalize.bootstrap(values) == pytest.approx(expected, abs=1e-12)


def test_summary_resamples_in_image_id_order():
    # Same values in another row order give another bootstrap: rows are taken in image-id order.
    frame = pd.DataFrame(
        {
            "classifier": "m",
            "cam_method": "file",
            "region_source": "ground-truth",
            "metric": "hit",
            "class": "Edema",
            "label": "1",
            "image_id": ["b", "a", "c"],
            "item": [0, 1, 2],
            "value": [1.0, 0.0, np.nan],
            "protocol": "chexlocalize",
        }
    )
    row = summarize(frame).iloc[0]
    assert row["protocol"] == "chexlocalize" and row["n"] == 2
    # sorted by image id: a=0, b=1, c=NaN
    expected = chexlocalize.bootstrap(np.array([0.0, 1.0, np.nan]))
    assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx(expected, nan_ok=True)


def _dataset(tmp_path):
    ids = ("patient1_study1_view1_frontal", "patient2_study1_view1_frontal")
    empty = np.zeros(SHAPE, bool)
    truths = {
        ids[0]: {"Edema": TRUTH, "Cardiomegaly": empty},
        ids[1]: {"Edema": TRUTH, "Cardiomegaly": TRUTH},
    }
    big = np.zeros((8, 8), np.float32)  # a half-resolution map, resized to 16 x 16
    big[2:6, 2:6] = 1.0
    maps = {
        (ids[0], "Edema"): TRUTH.astype(np.float32),
        (ids[0], "Cardiomegaly"): TRUTH.astype(np.float32),
        (ids[1], "Edema"): np.zeros((8, 8), np.float32),
        (ids[1], "Cardiomegaly"): block(0, 8, 0, 8).astype(np.float32),
    }
    return ids, write_dataset(tmp_path, truths, maps)


def test_evaluate_saliency_pkl_folder_end_to_end(tmp_path, capsys):
    ids, (gt, images, maps) = _dataset(tmp_path)
    out = tmp_path / "out"
    args = ["evaluate", str(gt), "--images", str(images), "--saliency", str(maps)]
    args += ["--regions", "ground-truth", "box", "--protocol", "chexlocalize", "--out", str(out)]
    assert main([*args, "--no-plots", "--quiet"]) == 0
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["protocol"]) == {"chexlocalize"}
    assert set(metrics["cam_method"]) == {"file"} and set(metrics["classifier"]) == {"maps"}
    truth = metrics[metrics["region_source"] == "ground-truth"]
    value = truth.set_index(["image_id", "class", "metric"])["value"]
    # image 1, Edema: map = truth: IoU 1, hit 1
    assert value[(ids[0], "Edema", "iou")] == 1.0 and value[(ids[0], "Edema", "hit")] == 1.0
    # image 1, Cardiomegaly: no finding: IoU 0 (64-pixel prediction), hit NaN
    assert value[(ids[0], "Cardiomegaly", "iou")] == 0.0
    assert math.isnan(value[(ids[0], "Cardiomegaly", "hit")])
    # image 2, Edema: all-zero map: empty mask, IoU 0, iou_true_pos NaN, hit = truth[0, 0] = 0
    assert value[(ids[1], "Edema", "iou")] == 0.0
    assert math.isnan(value[(ids[1], "Edema", "iou_true_pos")])
    assert value[(ids[1], "Edema", "hit")] == 0.0
    # image 2, Cardiomegaly: 8 x 8 map with block 0:8 -> bilinear to 16 x 16 covers rows/cols
    # 0:15 partly; the first maximum is (0, 0), outside the truth 4:12: hit 0
    assert value[(ids[1], "Cardiomegaly", "hit")] == 0.0
    # probabilities come from the pickles
    assert set(truth["probability"]) == {0.5}
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["protocol"]) == {"chexlocalize"}
    edema = summary[
        (summary["metric"] == "hit")
        & (summary["group"] == "class=Edema")
        & (summary["region_source"] == "ground-truth")
    ].iloc[0]
    # Edema hits in image-id order: [1, 0]
    expected = chexlocalize.bootstrap(np.array([1.0, 0.0]))
    assert (edema["mean"], edema["ci_low"], edema["ci_high"]) == pytest.approx(expected)
    assert "protocol <code>chexlocalize</code>" in (out / "report.html").read_text()
    assert json.loads((out / "summary.json").read_text())["protocol"] == "chexlocalize"
    # the same command resumes: nothing computed again
    capsys.readouterr()
    assert main([*args, "--no-plots", "--quiet"]) == 0
    assert "0 computed, 2 reused" in capsys.readouterr().out


def test_default_protocol_scores_file_maps_with_every_metric(tmp_path):
    ids, (gt, images, maps) = _dataset(tmp_path)
    result = evaluate(
        gt,
        tmp_path / "out",
        image_root=images,
        saliency=maps,
        region_sources=("ground-truth", "box"),
        plots=False,
        report=False,
    )
    metrics = result.metrics
    assert set(metrics["protocol"]) == {"samcam"}
    value = metrics[metrics["region_source"] == "ground-truth"].set_index(
        ["image_id", "class", "metric"]
    )["value"]
    assert value[(ids[0], "Edema", "iou")] == 1.0 and value[(ids[0], "Edema", "energy")] == 1.0
    # the all-zero map is undefined under this project's definitions
    assert math.isnan(value[(ids[1], "Edema", "iou")])
    assert math.isnan(value[(ids[1], "Edema", "hit")])
    assert {"dice", "auroc", "top_k"} <= set(metrics["metric"])
    assert len(result.agreement)  # box against ground-truth


def test_missing_map_names_the_item(tmp_path):
    ids, (gt, images, maps) = _dataset(tmp_path)
    (maps / f"{ids[1]}_Edema_map.pkl").unlink()
    with pytest.raises(Exception, match="no saliency file for image 'patient2_study1") as info:
        evaluate(gt, tmp_path / "out", image_root=images, saliency=maps, region_sources=["box"])
    assert "Edema" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_saliency_and_classifiers_are_exclusive(tmp_path):
    _, (gt, images, maps) = _dataset(tmp_path)
    with pytest.raises(InputError, match=r"either saliency= .* or classifiers="):
        evaluate(gt, tmp_path / "o", image_root=images, saliency=maps, classifiers=["x"])
    with pytest.raises(InputError, match="not a folder"):
        evaluate(gt, tmp_path / "o", image_root=images, saliency=tmp_path / "none")
    with pytest.raises(InputError, match="protocol 'chexlocalise' is unknown"):
        evaluate(gt, tmp_path / "o", image_root=images, saliency=maps, protocol="chexlocalise")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("protocol", ["samcam", "chexlocalize"])
def test_nan_reasons_name_the_cause(tmp_path, protocol):
    ids, (gt, images, maps) = _dataset(tmp_path)
    out = tmp_path / "out"
    options = dict(image_root=images, saliency=maps, region_sources=("ground-truth",))
    result = evaluate(gt, out, protocol=protocol, plots=False, report=False, **options)
    metrics = result.metrics
    # a reason exactly where a score is NaN, in the table and in the files written
    assert ((metrics["nan_reason"] != "") == metrics["value"].isna()).all()
    for written in (pd.read_parquet(out / "metrics.parquet"), pd.read_csv(out / "metrics.csv")):
        assert list(written["nan_reason"].fillna("")) == list(metrics["nan_reason"])
    why = metrics.set_index(["image_id", "class", "metric"])["nan_reason"]
    # image 1, Cardiomegaly: no finding, the region is empty: nothing to hit; IoU is 0
    assert why[(ids[0], "Cardiomegaly", "hit")] == "the region is empty"
    assert why[(ids[0], "Cardiomegaly", "iou")] == ""
    # image 2, Edema: the all-zero map
    if protocol == "samcam":
        constant = "the saliency map is constant (every pixel is 0)"
        edema = metrics[(metrics["image_id"] == ids[1]) & (metrics["class"] == "Edema")]
        assert set(edema["nan_reason"]) == {constant}
    else:
        assert why[(ids[1], "Edema", "iou_true_pos")].startswith("the map's segmentation is empty")
        assert why[(ids[1], "Edema", "iou")] == why[(ids[1], "Edema", "hit")] == ""


def test_parts_written_without_nan_reasons_resume_and_open(tmp_path):
    from napari_samcam.evaluation.stored import open_evaluation

    _, (gt, images, maps) = _dataset(tmp_path)
    out = tmp_path / "out"
    options = dict(image_root=images, saliency=maps, region_sources=("ground-truth", "box"))
    first = evaluate(gt, out, plots=False, report=False, **options)
    for part in (out / "parts").glob("*.metrics.parquet"):  # as an older version wrote them
        pd.read_parquet(part).drop(columns="nan_reason").to_parquet(part, index=False)
    (out / "metrics.parquet").unlink()
    again = evaluate(gt, out, plots=False, report=False, **options)
    assert again.n_computed == 0 and again.n_reused == first.n_images
    assert (again.metrics["nan_reason"] == "").all()
    assert again.metrics["value"].equals(first.metrics["value"])
    stored = open_evaluation(out)
    assert stored.scores.shape == stored.nan_reasons.shape
    assert (stored.nan_reasons[list(first.metrics["metric"].unique())] == "").all().all()
