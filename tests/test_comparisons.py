"""Paired comparisons: the statistics by hand, the table on a built metrics table, evaluate."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from conftest import TinyCNN, build_tiny_sam
from napari_samcam.agreement import bootstrap_ci, holm, paired_difference
from napari_samcam.errors import InputError
from napari_samcam.evaluation import comparison_table, evaluate


def test_paired_difference_by_hand():
    a = [0.5, 0.6, 0.7, 0.9, np.nan]
    b = [0.4, 0.6, 0.5, 0.5, 0.3]
    result = paired_difference(a, b, n_resamples=500, seed=1)
    # pairs 0-3 are defined: d = 0.1, 0, 0.2, 0.4
    assert result.n == 4 and result.n_dropped == 1
    assert result.mean_a == pytest.approx(0.675) and result.mean_b == pytest.approx(0.5)
    assert result.mean_diff == pytest.approx(0.175)
    # Wilcoxon drops the zero difference; the other three all positive with ranks 1, 2, 3:
    # W+ = 6, the largest of 2^3 equally likely sign patterns, so two-sided p = 2 / 8.
    assert result.p_value == pytest.approx(0.25)
    # the CI resamples the differences (pairs stay together)
    ci = bootstrap_ci(np.array([0.1, 0.0, 0.2, 0.4]), n_resamples=500, seed=1)
    assert (result.ci_low, result.ci_high) == pytest.approx((ci.low, ci.high))
    assert result.ci_low <= result.mean_diff <= result.ci_high


def test_paired_difference_degenerate_cases():
    same = paired_difference([0.2, 0.4, 0.6], [0.2, 0.4, 0.6])
    assert same.mean_diff == 0 and same.p_value == 1.0
    empty = paired_difference([np.nan, 0.1], [0.3, np.nan])
    assert empty.n == 0 and empty.n_dropped == 2 and math.isnan(empty.p_value)
    with pytest.raises(InputError, match="lengths 2 and 3"):
        paired_difference([0.1, 0.2], [0.1, 0.2, 0.3])


def test_paired_bootstrap_is_narrower_than_unpaired_for_correlated_scores():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 60)
    a, b = base + 0.05, base + rng.normal(0, 0.01, 60)
    result = paired_difference(a, b, n_resamples=400)
    assert result.ci_low > 0  # the shift is clear once pairs are kept together
    assert result.p_value < 1e-6


def test_holm_by_hand():
    # sorted defined: 0.01 -> 3 * 0.01 = 0.03; 0.03 -> 2 * 0.03 = 0.06; 0.04 -> max(0.04, 0.06)
    adjusted = holm([0.01, 0.04, 0.03, np.nan])
    np.testing.assert_allclose(adjusted[:3], [0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])
    np.testing.assert_allclose(holm([0.6, 0.5]), [1.0, 1.0])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])


def _metrics_table() -> pd.DataFrame:
    """Classifiers A (gradcam, hirescam), B and C (gradcam) on 20 items, two region sources.

    Against ground truth A scores 0.2 above B on every item (up to small noise) and C equals B;
    against sam-box A and B score the same, so the conclusion about A vs B changes with the
    region source. B lacks items 18 and 19.
    """
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 0.6, 20)
    noise = rng.normal(0, 0.01, 20)
    rows = []

    def add(classifier, method, source, values, items=range(20)):
        for i in items:
            rows.append(
                dict(
                    item=i,
                    classifier=classifier,
                    cam_method=method,
                    region_source=source,
                    metric="iou",
                    value=values[i],
                )
            )

    add("A", "gradcam", "ground-truth", base + 0.2 + noise)
    add("B", "gradcam", "ground-truth", base, items=range(18))
    add("C", "gradcam", "ground-truth", base + noise / 10)
    add("A", "hirescam", "ground-truth", base + 0.2 + noise)
    add("A", "gradcam", "sam-box", base)
    add("B", "gradcam", "sam-box", base, items=range(18))
    return pd.DataFrame(rows)


def test_comparison_table_pairs_items_and_tests():
    metrics = _metrics_table()
    table = comparison_table(metrics, n_resamples=300, holm_family="pair")
    classifiers = table[table["kind"] == "classifier"].set_index(["region_source", "a", "b"])
    ab = classifiers.loc[("ground-truth", "A", "B")]
    assert ab["n"] == 18  # B has no score for items 18 and 19
    values = metrics.pivot_table(
        index="item", columns=["classifier", "cam_method", "region_source"], values="value"
    )
    diff = values[("A", "gradcam", "ground-truth")] - values[("B", "gradcam", "ground-truth")]
    assert ab["mean_diff"] == pytest.approx(diff.dropna().mean())
    assert ab["conclusion"] == "a > b" and ab["ci_low"] > 0.15
    # three classifiers on ground truth: one narrow Holm family of three pairs
    family = table[(table["kind"] == "classifier") & (table["region_source"] == "ground-truth")]
    assert len(family) == 3
    np.testing.assert_allclose(family["p_holm"], holm(family["p_value"].to_numpy()))
    # with sam-box A and B score the same: the conclusion changes, and the table says so
    sam = classifiers.loc[("sam-box", "A", "B")]
    assert sam["conclusion"] == "no difference" and sam["p_value"] == 1.0
    assert sam["agrees_with_reference"] is False
    assert ab["agrees_with_reference"] is None
    # CAM methods of one classifier: A's gradcam and hirescam scores are identical
    methods = table[table["kind"] == "cam_method"]
    assert list(methods[["classifier", "a", "b"]].iloc[0]) == ["A", "gradcam", "hirescam"]
    assert methods["mean_diff"].iloc[0] == 0 and methods["conclusion"].iloc[0] == "no difference"


def test_comparison_table_edge_cases():
    assert len(comparison_table(_metrics_table().iloc[:0])) == 0
    one = _metrics_table()
    one = one[one["classifier"] == "C"]
    assert len(comparison_table(one)) == 0  # nothing to compare with
    with pytest.raises(InputError, match="alpha"):
        comparison_table(_metrics_table(), alpha=1.5)


def test_evaluate_writes_comparisons(tmp_path):
    from napari_samcam.classifiers import load_classifier
    from napari_samcam.phantoms import write_phantoms

    manifest = write_phantoms(4, tmp_path / "phantoms", seed=5, size=96, positive_fraction=1)
    classifiers = []
    for seed in (0, 1):
        classifier = load_classifier(
            TinyCNN.build(seed=seed),
            class_names=["no lesion", "lesion"],
            input_size=(32, 32),
            device="cpu",
        )
        classifier.name = f"tiny-{seed}"
        classifiers.append(classifier)
    result = evaluate(
        manifest,
        tmp_path / "out",
        classifiers=classifiers,
        methods=["gradcam", "hirescam"],
        sam=build_tiny_sam(),
        device="cpu",
        region_sources=("ground-truth", "box"),
        n_resamples=100,
        plots=False,
    )
    table = pd.read_csv(tmp_path / "out" / "comparison.csv", keep_default_na=False)
    assert len(table) == len(result.comparison)
    pairs = set(zip(table["kind"], table["a"], table["b"], strict=True))
    assert pairs == {
        ("classifier", "tiny-0", "tiny-1"),
        ("cam_method", "gradcam", "hirescam"),
    }
    n_metrics = result.metrics["metric"].nunique()
    # 2 methods x 2 sources (classifier pairs) + 2 classifiers x 2 sources (method pairs)
    assert len(table) == (2 * 2 + 2 * 2) * n_metrics
    # n counts the items where both sides are defined (a constant map leaves IoU undefined)
    wide = result.metrics.pivot_table(
        index="item",
        columns=["classifier", "cam_method", "region_source", "metric"],
        values="value",
        dropna=False,
    )
    row = table[(table["kind"] == "classifier") & (table["metric"] == "energy")].iloc[0]
    a = wide[("tiny-0", row["cam_method"], row["region_source"], "energy")]
    b = wide[("tiny-1", row["cam_method"], row["region_source"], "energy")]
    assert row["n"] == int((a.notna() & b.notna()).sum()) > 0
    assert row["mean_diff"] == pytest.approx((a - b).mean())
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["comparison"]) == len(table)
    report = (tmp_path / "out" / "report.html").read_text()
    assert "Paired comparisons" in report
    # the default family is the whole run: every test with a p-value is in it
    tested = int(table["p_value"].astype(str).ne("").sum())
    assert set(table["holm_family"]) == {"run"} and set(table["family_size"]) == {tested}
    assert "family_size" in report and "<code>wilcox</code>" in report


def test_holm_by_hand_over_five_tests():
    # sorted: 0.005 * 5 = 0.025; 0.01 * 4 = 0.04; 0.02 * 3 = 0.06; 0.03 * 2 = 0.06 (max 0.06);
    # 0.04 * 1 = 0.04 -> max(0.06, 0.04) = 0.06. Unadjusted, all five are < 0.05; adjusted,
    # only the two smallest are.
    adjusted = holm([0.01, 0.02, 0.03, 0.04, 0.005])
    np.testing.assert_allclose(adjusted, [0.04, 0.06, 0.06, 0.06, 0.025])


def _three_classifiers() -> pd.DataFrame:
    """A, B, C on 6 items and two metrics with Wilcoxon p-values worked by hand.

    A - B = +1..+6 (all positive, distinct): exact two-sided p = 2 / 2**6 = 0.03125.
    A - C = +1.1, +1.8, +2.7, ... (all positive): 0.03125. B - C = +0.1, -0.2, ..., -0.6: the
    only positive difference has rank 1, W = 1, p = 2 * 2 / 2**6 = 0.0625.
    """
    base = np.array([0.30, 0.50, 0.20, 0.60, 0.40, 0.70])
    step = np.arange(1, 7) * 0.01
    c_shift = np.array([-0.001, 0.002, 0.003, 0.004, 0.005, 0.006])
    rows = []
    for metric in ("iou", "energy"):
        for name, values in (("A", base + step), ("B", base), ("C", base + c_shift)):
            for item, value in enumerate(values):
                rows.append(
                    dict(
                        item=item,
                        classifier=name,
                        cam_method="gradcam",
                        region_source="ground-truth",
                        metric=metric,
                        value=value,
                    )
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("family", "size", "adjusted"),
    [
        # every comparison of the run: 6 tests; sorted p 4 x 0.03125 then 2 x 0.0625:
        # 6 * 0.03125 = 0.1875 is the running maximum for all (2 * 0.0625 = 0.125 < 0.1875)
        ("run", 6, [0.1875] * 3),
        # one metric: 3 tests; 3 * 0.03125 = 0.09375, 2 * 0.03125, 1 * 0.0625 -> all 0.09375
        ("metric", 3, [0.09375] * 3),
        ("pair", 3, [0.09375] * 3),
    ],
)
def test_comparison_families_by_hand(family, size, adjusted):
    table = comparison_table(_three_classifiers(), n_resamples=50, holm_family=family)
    iou = table[table["metric"] == "iou"].set_index(["a", "b"])
    np.testing.assert_allclose(
        iou.loc[[("A", "B"), ("A", "C"), ("B", "C")], "p_value"], [0.03125, 0.03125, 0.0625]
    )
    np.testing.assert_allclose(iou.loc[[("A", "B"), ("A", "C"), ("B", "C")], "p_holm"], adjusted)
    assert set(table["family_size"]) == {size}
    assert table["holm_family"].nunique() == 6 // size
    # unadjusted, A > B would be concluded at 0.05; within a family of 3 or 6 it is not
    assert set(table["conclusion"]) == {"no difference"}


def test_two_classifiers_form_one_test_families_only_with_the_narrow_family():
    two = _three_classifiers()
    two = two[two["classifier"] != "C"]
    narrow = comparison_table(two, n_resamples=50, holm_family="pair")
    assert set(narrow["family_size"]) == {1}
    np.testing.assert_allclose(narrow["p_holm"], narrow["p_value"])  # Holm changes nothing
    run = comparison_table(two, n_resamples=50)
    assert set(run["family_size"]) == {2}
    np.testing.assert_allclose(run["p_holm"], 2 * run["p_value"])
    with pytest.raises(InputError, match="holm_family"):
        comparison_table(two, holm_family="everything")


def test_wilcoxon_zero_handling_is_an_option():
    from scipy import stats

    # 4 zero differences among 20: "wilcox" drops them, "pratt" ranks them first
    d = np.array([0, 0, 0, 0, 1, 2, 3, -4, 5, 6, 7, -8, 9, 10, 11, 12, -13, 14, 15, 16]) / 100
    b = np.full(20, 0.5)
    wilcox = paired_difference(b + d, b, n_resamples=50).p_value
    pratt = paired_difference(b + d, b, n_resamples=50, zero_method="pratt").p_value
    assert wilcox == pytest.approx(stats.wilcoxon(d, zero_method="wilcox").pvalue)
    assert pratt == pytest.approx(stats.wilcoxon(d, zero_method="pratt").pvalue)
    assert pratt < 0.8 * wilcox  # the zeros' ranks push the others up
    # without zeros the exact distribution: 5 positive differences, p = 2 / 2**5
    five = np.array([1.0, 2.0, 3.0, 5.0, 6.0])
    assert paired_difference(five, five * 0, n_resamples=50).p_value == pytest.approx(0.0625)
    table = comparison_table(_three_classifiers(), n_resamples=50, zero_method="pratt")
    assert (table["n_zero"] == 0).all()
    with pytest.raises(InputError, match="zero_method"):
        paired_difference(b + d, b, zero_method="zsplit")


def test_family_and_zero_options_are_checked_before_any_work(tmp_path, capsys):
    from napari_samcam.cli import main

    with pytest.raises(InputError, match=r"holm_family='everything'.*--holm-family"):
        evaluate(tmp_path / "none.csv", tmp_path / "out", holm_family="everything")
    with pytest.raises(InputError, match=r"zero_method='zsplit'.*--wilcoxon-zeros"):
        evaluate(tmp_path / "none.csv", tmp_path / "out", zero_method="zsplit")
    with pytest.raises(SystemExit):
        main(["evaluate", "m.csv", "--out", str(tmp_path / "o"), "--holm-family", "all"])
    assert "--holm-family: invalid choice: 'all'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
