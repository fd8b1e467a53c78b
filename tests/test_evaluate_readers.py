"""Several readers per item: reader regions, the readers' own agreement, simulated readers."""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from napari_samcam.errors import InputError
from napari_samcam.evaluation.readers import (
    parse_readers_cell,
    reader_region_agreement,
    reader_regions,
    reader_score_agreement,
    source_rank,
)
from napari_samcam.phantoms import PhantomCase, simulated_reader_boxes

# item -> (class, {source: value}); R3 missed item 1; item 2's R5 score is undefined.
SCORES = {
    0: ("A", {"reader:R1": 0.2, "reader:R2": 0.4, "reader:R3": 0.9, "sam-box": 0.3}),
    1: ("A", {"reader:R1": 0.5, "reader:R2": 0.6, "sam-box": 0.55}),
    2: ("B", {"reader:R1": 0.1, "reader:R4": 0.3, "reader:R5": math.nan, "sam-box": 0.2}),
}


def _metrics() -> pd.DataFrame:
    rows = []
    for item, (cls, values) in SCORES.items():
        for source, value in values.items():
            common = {"classifier": "c", "cam_method": "gradcam", "item": item, "class": cls}
            rows.append({**common, "region_source": source, "metric": "iou", "value": value})
            rows.append({**common, "region_source": source, "metric": "hit", "value": 1.0})
    frame = pd.DataFrame(rows)
    frame["region_area"] = 10
    return frame


def _pairs(group: str, other: str | None):
    """(x, y) pairs written out by hand from SCORES, both orders for reader pairs."""
    out = []
    for cls, values in SCORES.values():
        if group != "all" and cls != group:
            continue
        readers = [v for k, v in values.items() if k.startswith("reader:") and not math.isnan(v)]
        if other is None:
            pairs = list(combinations(readers, 2))
            out += pairs + [(b, a) for a, b in pairs]
        else:
            out += [(values[other], r) for r in readers]
    return np.array(out)


def test_score_agreement_equals_hand_computed_values():
    table = reader_score_agreement(_metrics(), n_resamples=200, seed=1)
    iou = table[table["metric"] == "iou"].set_index(["group", "comparison"])
    for group in ("all", "A"):
        for comparison, other in (("reader-vs-reader", None), ("sam-box-vs-reader", "sam-box")):
            pairs = _pairs(group, other)
            row = iou.loc[(group, comparison)]
            assert row["mad"] == pytest.approx(np.abs(pairs[:, 0] - pairs[:, 1]).mean())
            assert row["pearson"] == pytest.approx(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1])
            assert row["mad_ci_low"] <= row["mad"] <= row["mad_ci_high"]
    # all: reader pairs |0.2-0.4|, |0.2-0.9|, |0.4-0.9|, |0.5-0.6|, |0.1-0.3| -> 1.7 / 5
    assert iou.loc[("all", "reader-vs-reader"), "mad"] == pytest.approx(0.34)
    assert iou.loc[("all", "reader-vs-reader"), "n_pairs"] == 5
    assert iou.loc[("all", "sam-box-vs-reader"), "mad"] == pytest.approx(1.1 / 7)
    assert iou.loc[("all", "sam-box-vs-reader"), "n_items"] == 3
    # Class B has one item: no interval can be drawn from it.
    assert math.isnan(iou.loc[("B", "reader-vs-reader"), "mad_ci_low"])
    # The same seed gives the same interval.
    again = reader_score_agreement(_metrics(), n_resamples=200, seed=1)
    pd.testing.assert_frame_equal(table, again)


def test_score_agreement_is_empty_without_readers():
    metrics = _metrics()
    assert len(reader_score_agreement(metrics[metrics["region_source"] == "sam-box"])) == 0


def _region_rows(readers_by_item: dict) -> pd.DataFrame:
    rows = []
    for item, (cls, readers) in readers_by_item.items():
        for reader, boxes in readers.items():
            prompt = json.dumps({"annotation": "reader", "reader": reader, "boxes": boxes})
            rows.append(
                {"item": item, "class": cls, "region_source": f"reader:{reader}"}
                | {"classifier": "", "prompt": prompt}
            )
    return pd.DataFrame(rows)


def test_region_agreement_is_the_box_iou_between_readers():
    regions = _region_rows(
        {
            0: ("A", {"R1": [[0, 0, 10, 10]], "R2": [[5, 0, 15, 10]], "R3": []}),
            1: ("B", {"R1": [[0, 0, 4, 4], [10, 10, 12, 12]], "R2": [[0, 0, 4, 4]]}),
            2: ("B", {"R1": [], "R2": []}),  # nobody marked it: no pair
        }
    )
    table = reader_region_agreement(regions, n_resamples=100).set_index("group")
    # item 0: R1/R2 overlap 50 of 150 pixels, R3 missed (IoU 0 twice); item 1: 16 of 20.
    assert table.loc["all", "iou"] == pytest.approx((50 / 150 + 0 + 0 + 16 / 20) / 4)
    assert table.loc["all", "missed"] == pytest.approx(2 / 4)
    assert table.loc["all", "n_pairs"] == 4 and table.loc["all", "n_items"] == 2
    assert table.loc["A", "iou"] == pytest.approx(50 / 150 / 3)
    assert table.loc["B", "iou"] == pytest.approx(0.8)


def test_reader_regions_fill_each_readers_boxes():
    regions = reader_regions(
        {"R8": [(2, 3, 5, 7), (0, 0, 1, 1)], "R9": [(8, 8, 20, 20)], "R10": []}, (10, 10)
    )
    assert [r.source for r in regions] == ["reader:R8", "reader:R9", "reader:R10"]
    assert regions[0].area == 3 * 4 + 1 and regions[0].mask[2:5, 3:7].all()
    assert regions[1].area == 4 and regions[1].prompt["boxes"] == [[8, 8, 10, 10]]
    assert regions[2].area == 0
    assert source_rank(("box", "readers", "sam-box"), "reader:R10") == 1


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("{bad", "not JSON"),
        ("[1, 2]", "expected"),
        ('{"R1": [[5, 0, 2, 3]]}', "row1 > row0"),
        ('{"R1": [[0, 0, 2]]}', "is not"),
        ('{"R1": [[-1, 0, 2, 3]]}', "non-negative"),
        ('{"R1": 3}', "a list of boxes"),
    ],
)
def test_readers_cell_errors_name_the_row(cell, message):
    with pytest.raises(InputError, match=f"row 4, column 'readers'.*{message}"):
        parse_readers_cell(cell, "row 4")


def _case(index: int, mask: np.ndarray, label: int = 1) -> PhantomCase:
    return PhantomCase(
        index, None, label, mask, None, None, None, "chest", None, None, None, None, 0
    )


def test_simulated_readers_are_jittered_loose_and_sometimes_missed():
    mask = np.zeros((256, 256), bool)
    mask[100:140, 60:120] = True
    truth = (100, 60, 140, 120)
    draws = [simulated_reader_boxes(_case(i, mask), 3) for i in range(1500)]
    assert draws[7] == simulated_reader_boxes(_case(7, mask), 3)  # reproducible
    boxes = [b for d in draws for boxes in d.values() for b in boxes]
    missed = sum(not boxes for d in draws for boxes in d.values())
    # 4500 draws at a 10 % miss rate: 450 +- 3.3 standard deviations (20.1)
    assert 383 <= missed <= 517
    arr = np.array(boxes, dtype=float)
    # Loose: on average each side lies outside the lesion's bounding box ...
    assert np.mean(arr[:, 0] < truth[0]) > 0.7 and np.mean(arr[:, 3] > truth[3]) > 0.7
    # ... by about 20 % of the extent (margin U(0, 0.4)), with jitter of sd 8 %.
    assert np.mean(truth[0] - arr[:, 0]) / 40 == pytest.approx(0.2, abs=0.03)
    assert np.std(truth[0] - arr[:, 0]) / 40 == pytest.approx(
        np.sqrt(0.4**2 / 12 + 0.08**2), rel=0.15
    )
    # Readers of one lesion disagree, and negatives get no box.
    assert len({tuple(v[0]) for v in draws[0].values() if v}) > 1
    assert simulated_reader_boxes(_case(0, np.zeros_like(mask), 0), 2) == {"R1": [], "R2": []}
    with pytest.raises(InputError, match="readers=-1"):
        simulated_reader_boxes(_case(0, mask), -1)


def test_phantom_readers_through_samcam_evaluate(tmp_path, capsys):
    """`samcam phantoms --readers 3` then `samcam evaluate --regions ... readers`: each reader a
    region source, the inter-reader tables in the CSVs, summary.json, the report and the
    headline."""
    from napari_samcam.cli import main
    from napari_samcam.evaluation.manifests import load_manifest

    phantoms = ["phantoms", "--n", "6", "--seed", "5", "--readers", "3", "--size", "256"]
    assert main([*phantoms, "--out", str(tmp_path / "ph"), "--quiet"]) == 0
    items = load_manifest(tmp_path / "ph" / "manifest.csv")
    positives = [i for i in items if i.positive]
    assert positives and all(set(i.readers) == {"R1", "R2", "R3"} for i in positives)
    assert all(i.readers is None for i in items if not i.positive)
    out = tmp_path / "ev"
    args = ["evaluate", str(tmp_path / "ph" / "manifest.csv"), "--out", str(out), "--quiet"]
    args += ["--regions", "ground-truth", "box", "readers", "--bootstrap", "100", "--no-plots"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "readers' own agreement" in printed and "reader-vs-reader" in printed
    metrics = pd.read_parquet(out / "metrics.parquet")
    marked = {(i.index, f"reader:{r}") for i in positives for r, b in i.readers.items() if b}
    scored = metrics[metrics["region_source"].str.startswith("reader:")]
    assert set(zip(scored["item"], scored["region_source"], strict=True)) == marked
    table = pd.read_csv(out / "reader_agreement.csv")
    expected = reader_score_agreement(metrics, n_resamples=100, seed=0)
    np.testing.assert_allclose(table["mad"], expected["mad"])
    assert set(table["comparison"]) == {
        "reader-vs-reader",
        "ground-truth-vs-reader",
        "box-vs-reader",
    }
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["reader_agreement"]) == len(table)
    # Phantoms have no class: one "all" group, no group named "".
    assert [row["group"] for row in summary["reader_regions"]] == ["all"]
    assert set(table["group"]) == {"all"}
    assert "Readers' own agreement" in (out / "report.html").read_text()
