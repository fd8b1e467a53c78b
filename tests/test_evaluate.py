"""Dataset evaluation: rows, Dask, resume, output folder rules, summaries, CLI."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from conftest import TinyCNN, build_tiny_sam
from napari_samcam.errors import InputError, ModelNotAvailableError, OutputExistsError
from napari_samcam.evaluation import COLUMNS, evaluate

SOURCES = ("ground-truth", "box", "sam-box", "sam-saliency-box", "sam-saliency-peak")


@pytest.fixture(scope="module")
def phantom_manifest(tiny_phantoms):
    return tiny_phantoms


@pytest.fixture(scope="module")
def models(tiny_lesion_classifier):
    return {"classifiers": [tiny_lesion_classifier], "sam": build_tiny_sam(), "device": "cpu"}


def _run(manifest, out, models, **kwargs):
    options = dict(region_sources=SOURCES, n_resamples=200, plots=False, report=False)
    options.update(models)
    options.update(kwargs)
    return evaluate(manifest, out, **options)


@pytest.fixture(scope="module")
def local_result(phantom_manifest, models, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return _run(phantom_manifest, out, models, plots=True, report=True)


def test_rows_are_tidy_with_provenance(local_result, phantom_manifest):
    from napari_samcam.evaluation import load_manifest
    from napari_samcam.images import image_hash, read_image
    from napari_samcam.metrics import METRIC_NAMES

    metrics = local_result.metrics
    assert list(metrics.columns) == list(COLUMNS)
    items = load_manifest(phantom_manifest)
    positives = sum(item.positive for item in items)
    # every item: ground truth + 2 saliency sources; positives also box + sam-box
    expected = (len(items) * 3 + positives * 2) * len(METRIC_NAMES)
    assert len(metrics) == expected
    assert local_result.n_images == len(items) and local_result.n_computed == len(items)
    assert set(metrics["metric"]) == set(METRIC_NAMES)
    assert set(metrics["region_source"]) == set(SOURCES)
    for prompt in metrics["prompt"].unique():
        json.loads(prompt)
    sam_rows = metrics["region_source"].str.startswith("sam-")
    assert (metrics.loc[sam_rows, "sam_model"] != "").all()
    assert (metrics.loc[~sam_rows, "sam_model"] == "").all()
    sam_box = metrics[metrics["region_source"] == "sam-box"]
    assert all(json.loads(p)["context"] == 2.5 for p in sam_box["prompt"])
    assert set(metrics["target_class"]) == {"lesion"}  # class 1 of a 2-class model
    first = items[0]
    assert metrics["image_key"].iloc[0] == image_hash(read_image(first.path).array)
    # hit is undefined (NaN) against an empty ground truth, IoU is 0 there (CheXlocalize)
    negative = [item.index for item in items if not item.positive]
    gt = metrics[(metrics["region_source"] == "ground-truth") & metrics["item"].isin(negative)]
    assert gt[gt["metric"] == "hit"]["value"].isna().all()
    assert (gt[gt["metric"] == "iou"]["value"] == 0).all()
    # files
    out = local_result.out
    for name in ("metrics.parquet", "metrics.csv", "summary.csv", "summary.json", "report.html"):
        assert (out / name).is_file(), name
    assert len(list((out / "parts").glob("*.metrics.parquet"))) == len(items)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "metrics.parquet"), metrics)
    report = (out / "report.html").read_text()
    assert "data:image/svg+xml;base64," in report and "<table" in report
    assert list((out / "plots").glob("scatter_iou.svg"))
    summary = json.loads((out / "summary.json").read_text())
    assert {"summary", "agreement", "sam_vs_box", "regions", "config"} <= set(summary)


def test_region_table_scores_regions_against_the_truth(local_result, phantom_manifest):
    from napari_samcam.evaluation import load_manifest

    regions = local_result.regions
    assert (local_result.out / "regions.csv").is_file()
    items = {item.index: item for item in load_manifest(phantom_manifest)}
    boxes = regions[regions["region_source"] == "box"]
    assert len(boxes) == sum(item.positive for item in items.values())
    for row in boxes.itertuples(index=False):
        item = items[row.item]
        truth = item.load_mask((96, 96))
        r0, c0, r1, c1 = item.boxes[0]
        region = np.zeros_like(truth)
        region[r0:r1, c0:c1] = True
        inter = (region & truth).sum()
        assert row.dice == pytest.approx(2 * inter / (region.sum() + truth.sum()))
        assert row.truth_area == truth.sum() and row.region_area == region.sum()
    # saliency-prompted regions: one row per item and classifier
    saliency = regions[regions["region_source"] == "sam-saliency-box"]
    assert len(saliency) == len(items) and (saliency["classifier"] != "").all()
    quality = local_result.region_summary.set_index(["region_source", "group"])
    box_dice = boxes["dice"].mean()
    assert quality.loc[("box", "all"), "dice"] == pytest.approx(box_dice)
    assert quality.loc[("box", "all"), "n"] == len(boxes)


def test_dask_cluster_gives_the_same_rows(local_result, phantom_manifest, models, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        result = _run(phantom_manifest, tmp_path, models, scheduler=cluster.scheduler_address)
    # the same rows up to float32 rounding: a worker thread runs torch with its own number of
    # intra-op threads, so sums over a tensor may be taken in another order (one SAM score in
    # 110 differed by 1.1e-6 relative in a full-suite run)
    pd.testing.assert_frame_equal(result.metrics, local_result.metrics, rtol=1e-5)


def test_interrupted_run_resumes_to_the_same_table(
    local_result, phantom_manifest, models, tmp_path
):
    class Stop(Exception):
        pass

    def stop_after_two(done, total):
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        _run(phantom_manifest, tmp_path, models, progress=stop_after_two)
    assert len(list((tmp_path / "parts").glob("*.metrics.parquet"))) == 2
    assert not (tmp_path / "metrics.parquet").exists()
    calls = []
    resumed = _run(phantom_manifest, tmp_path, models, progress=lambda d, t: calls.append((d, t)))
    assert resumed.n_reused == 2 and resumed.n_computed == local_result.n_images - 2
    assert calls[0] == (0, local_result.n_images - 2)
    pd.testing.assert_frame_equal(resumed.metrics, local_result.metrics)
    # a third run computes nothing
    again = _run(phantom_manifest, tmp_path, models)
    assert again.n_computed == 0 and again.n_reused == local_result.n_images


def test_limit_then_full_run_extends(phantom_manifest, models, tmp_path):
    first = _run(phantom_manifest, tmp_path, models, limit=2)
    assert first.n_images == 2 and first.metrics["item"].nunique() == 2
    full = _run(phantom_manifest, tmp_path, models)
    assert full.n_reused == 2 and full.n_computed == full.n_images - 2


def test_output_folder_rules(phantom_manifest, models, tmp_path):
    out = tmp_path / "out"
    _run(phantom_manifest, out, models, region_sources=("ground-truth",))
    # another configuration into the same folder is refused ...
    with pytest.raises(OutputExistsError, match="overwrite"):
        _run(phantom_manifest, out, models, region_sources=("ground-truth", "box"))
    # ... unless overwrite, which starts afresh
    result = _run(phantom_manifest, out, models, region_sources=("box",), overwrite=True)
    assert result.n_reused == 0 and set(result.metrics["region_source"]) == {"box"}
    assert len(list((out / "parts").glob("*.metrics.parquet"))) == result.n_images
    # results without a config.json are not overwritten either
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.csv").write_text("x\n")
    with pytest.raises(OutputExistsError, match=r"metrics\.csv"):
        _run(phantom_manifest, other, models)
    # bad input leaves nothing behind
    bad = tmp_path / "bad.csv"
    bad.write_text("image\nmissing.png\n")
    with pytest.raises(InputError, match="row 1"):
        _run(bad, tmp_path / "never", models)
    assert not (tmp_path / "never").exists()


def test_bad_options_are_refused(phantom_manifest, models, tmp_path):
    with pytest.raises(InputError, match="region source 'sam'"):
        _run(phantom_manifest, tmp_path, models, region_sources=("sam",))
    with pytest.raises(InputError, match="threshold"):
        _run(phantom_manifest, tmp_path, models, binarization="fixed")
    with pytest.raises(InputError, match="CAM method"):
        _run(phantom_manifest, tmp_path, models, methods=("nocam",))
    with pytest.raises(InputError, match="SAM model"):
        _run(phantom_manifest, tmp_path, models | {"sam": None})
    with pytest.raises(ModelNotAvailableError, match="sam-text"):
        _run(phantom_manifest, tmp_path, models, region_sources=("sam-text",), text="nodule")
    assert not any(tmp_path.iterdir())


def test_summary_and_agreement_match_numpy(local_result):
    from napari_samcam.agreement import bootstrap_ci

    metrics, summary, agreement = (
        local_result.metrics,
        local_result.summary,
        local_result.agreement,
    )
    clf = metrics["classifier"].iloc[0]

    def values(source, metric, label=None):
        sub = metrics[
            (metrics["region_source"] == source)
            & (metrics["metric"] == metric)
            & (metrics["classifier"] == clf)
        ]
        if label is not None:
            sub = sub[sub["label"] == label]
        return sub.set_index("item")["value"]

    for source, metric, group, label in [
        ("sam-box", "energy", "all", None),
        ("ground-truth", "iou", "all", None),
        ("ground-truth", "iou", "label=0", "0"),
        ("sam-saliency-box", "dice", "label=1", "1"),
    ]:
        v = values(source, metric, label).to_numpy()
        row = summary[
            (summary["region_source"] == source)
            & (summary["metric"] == metric)
            & (summary["group"] == group)
        ].iloc[0]
        defined = v[~np.isnan(v)]
        assert row["n"] == defined.size
        assert row["mean"] == pytest.approx(defined.mean())
        ci = bootstrap_ci(defined, n_resamples=200, seed=0)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))

    for source, metric in [("sam-box", "energy"), ("box", "iou"), ("sam-saliency-box", "dice")]:
        a, b = values(source, metric), values("ground-truth", metric)
        a, b = a.align(b, join="outer")
        keep = ~(a.isna() | b.isna())
        x, y = a[keep].to_numpy(), b[keep].to_numpy()
        row = agreement[(agreement["region_source"] == source) & (agreement["metric"] == metric)]
        row = row.iloc[0]
        assert row["n"] == keep.sum() and row["n_dropped"] == (~keep).sum()
        d = x - y
        assert row["mean_abs_diff"] == pytest.approx(np.abs(d).mean())
        assert row["bias"] == pytest.approx(d.mean())
        assert row["loa_high"] == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            assert row["pearson_r"] == pytest.approx(np.corrcoef(x, y)[0, 1])

    a, b = values("sam-saliency-box", "hit"), values("ground-truth", "hit")
    a, b = a.align(b, join="outer")
    keep = ~(a.isna() | b.isna())
    x, y = a[keep].to_numpy().astype(bool), b[keep].to_numpy().astype(bool)
    row = agreement[
        (agreement["region_source"] == "sam-saliency-box") & (agreement["metric"] == "hit")
    ].iloc[0]
    n = x.size
    observed = np.mean(x == y)
    chance = (x.mean() * y.mean()) + ((1 - x.mean()) * (1 - y.mean()))
    expected = (observed - chance) / (1 - chance) if chance < 1 else math.nan
    if math.isnan(expected):
        assert math.isnan(row["kappa"])
    else:
        assert row["kappa"] == pytest.approx(expected) and n > 0
    # sam-vs-box compares the two sources' agreement with the ground truth
    versus = local_result.sam_vs_box.set_index("metric").loc["iou"]
    iou = agreement[agreement["metric"] == "iou"].set_index("region_source")
    assert versus["mad_sam-box"] == pytest.approx(iou.loc["sam-box", "mean_abs_diff"])
    assert versus["mad_box"] == pytest.approx(iou.loc["box", "mean_abs_diff"])


def test_cli_evaluate_and_resume(phantom_manifest, tmp_path, capsys):
    import torch

    from napari_samcam.cli import main

    model = tmp_path / "tiny.pt2"
    program = torch.export.export(TinyCNN.build(), (torch.zeros(1, 3, 32, 32),))
    torch.export.save(program, str(model))
    out = tmp_path / "out"
    args = ["evaluate", str(phantom_manifest), "--out", str(out), "--model", str(model)]
    args += ["--trust-checkpoint"]
    args += ["--regions", "ground-truth", "box", "--no-plots", "--quiet", "--device", "cpu"]
    args += ["--bootstrap", "100"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "computed" in printed and "mIoU" in printed
    assert (out / "metrics.csv").is_file() and (out / "report.html").is_file()
    assert main(args) == 0
    assert "0 computed" in capsys.readouterr().out
    assert main([*args[:-4], "--binarize", "percentile", "--threshold", "10"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", str(phantom_manifest), "--out", str(tmp_path / "x"), "--regions", "x"])
    assert not (tmp_path / "x").exists()


def test_cli_help_lists_everything(capsys):
    from napari_samcam.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    for option in ("--model", "--method", "--regions", "--sam", "--binarize", "--threshold"):
        assert option in text
    for option in ("--scheduler", "--workers", "--overwrite", "--limit", "sam-saliency-peak"):
        assert option in text


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
def test_real_builtins_and_litemedsam(tmp_path):
    from napari_samcam.phantoms import write_phantoms

    manifest = write_phantoms(2, tmp_path / "ph", seed=11, positive_fraction=1.0)
    result = evaluate(
        manifest,
        tmp_path / "out",
        classifiers=("lesion-detector", "shortcut-detector"),
        region_sources=("ground-truth", "sam-box", "sam-saliency-box", "sam-saliency-peak"),
        device="cpu",
        n_resamples=100,
        plots=False,
        report=False,
    )
    metrics = result.metrics
    assert set(metrics["classifier"]) == {"lesion-detector", "shortcut-detector"}
    assert metrics["classifier_version"].str.len().min() > 0
    assert (
        metrics["sam_model"][metrics["region_source"] != "ground-truth"]
        .str.startswith("litemedsam")
        .all()
    )
    # LiteMedSAM prompted by the box annotation finds the phantom lesion
    from napari_samcam.evaluation import load_manifest

    for item in load_manifest(manifest):
        mask = item.load_mask((512, 512))
        rows = metrics[(metrics["item"] == item.index) & (metrics["region_source"] == "sam-box")]
        area = rows["region_area"].iloc[0]
        assert 0.3 * mask.sum() < area < 3 * mask.sum()
    peak = metrics[
        (metrics["region_source"] == "sam-saliency-peak")
        & (metrics["classifier"] == "lesion-detector")
    ]
    prompts = peak["prompt"].map(json.loads)
    assert all("boxes" in p and "point" in p for p in prompts)  # box-only: half-maximum box
    # The shortcut detector sees no lesion evidence without its marker: a flat map, no prompt.
    flat = metrics[
        (metrics["classifier"] == "shortcut-detector")
        & (metrics["region_source"] == "sam-saliency-peak")
    ]
    for prompt, value in zip(flat["prompt"], flat["value"], strict=True):
        assert "note" in json.loads(prompt) or not np.isnan(value)


class BrightnessClip:
    """A CLIP stand-in: crops embed by mean brightness, texts with "bright" prefer bright crops."""

    name = "brightness-stand-in"
    image_size = 16
    logit_scale = 10.0

    def encode_images(self, images):
        means = np.array([float(np.mean(image)) for image in images])
        features = np.stack([means, 1.0 - means], 1) + 1e-6
        return features / np.linalg.norm(features, axis=1, keepdims=True)

    def encode_texts(self, texts):
        return np.array([[1.0, 0.0] if "bright" in t else [0.0, 1.0] for t in texts])


def test_sam_text_region_source(phantom_manifest, models, tmp_path):
    result = _run(
        phantom_manifest,
        tmp_path,
        models,
        region_sources=("ground-truth", "sam-text"),
        text="bright lesion",
        clip=BrightnessClip(),
        text_options={
            "proposals": "boxes",
            "pred_iou_thresh": 0,
            "stability_score_thresh": 0,
            "box_fit_thresh": 0,
        },
    )
    rows = result.metrics[result.metrics["region_source"] == "sam-text"]
    assert len(rows) and rows["item"].nunique() == result.n_images
    prompt = json.loads(rows["prompt"].iloc[0])
    assert prompt["text"] == "bright lesion" and prompt["clip"] == "brightness-stand-in"
    assert prompt["proposals"] == "boxes"
    assert result.config["clip"] == "brightness-stand-in"
    assert (rows["region_area"] > 0).any()


def test_plots_are_reproducible_svg_with_one_point_per_item(local_result, tmp_path):
    import xml.etree.ElementTree as ET

    from napari_samcam.evaluation.plots import PLOT_METRICS, write_plots

    first = write_plots(local_result.metrics, local_result.summary, tmp_path / "a")
    again = write_plots(local_result.metrics, local_result.summary, tmp_path / "b")
    assert set(first) == set(again) and "scatter_iou.svg" in first
    assert {name.split("_")[1][:-4] for name in first} <= set(PLOT_METRICS)
    for name, path in first.items():
        assert path.read_bytes() == again[name].read_bytes(), name  # no dates, fixed ids
    svg = first["scatter_iou.svg"].read_text()
    root = ET.fromstring(svg)
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "iou vs ground truth" in texts  # text kept as text, not glyph paths
    # one marker per item that has both a ground-truth and a sam-box IoU
    metrics = local_result.metrics
    iou = metrics[metrics["metric"] == "iou"].pivot_table(
        index="item", columns="region_source", values="value"
    )
    n_pairs = int(iou[["ground-truth", "sam-box"]].notna().all(axis=1).sum())
    sources = [s for s in dict.fromkeys(metrics["region_source"]) if s != "ground-truth"]
    svg_g = "{http://www.w3.org/2000/svg}g"
    panels = [g for g in root.iter(svg_g) if re.fullmatch(r"axes_\d+", g.get("id", ""))]
    assert len(panels) == len(sources)
    panel = panels[sources.index("sam-box")]
    points = next(g for g in panel.iter(svg_g) if g.get("id", "").startswith("PathCollection"))
    markers = points.findall(".//{http://www.w3.org/2000/svg}use")
    assert len(markers) == n_pairs > 0


def test_job_sorts_each_map_once_and_scores_like_one_region_at_a_time(
    phantom_manifest, models, monkeypatch
):
    import warnings

    import torch

    import napari_samcam.metrics as metrics
    from napari_samcam.evaluation import jobs as jobs_module
    from napari_samcam.evaluation import load_manifest
    from napari_samcam.evaluation.jobs import (
        EvalSpec,
        classifier_ref,
        make_jobs,
        run_image_job,
        sam_ref,
    )
    from napari_samcam.metrics._sorted_map import SortedMap

    sorts = []
    real_init = SortedMap.__init__

    def counting_init(self, flat):
        sorts.append(flat.size)
        real_init(self, flat)

    monkeypatch.setattr(SortedMap, "__init__", counting_init)
    spec = EvalSpec(
        classifiers=(classifier_ref(models["classifiers"][0]),),
        region_sources=SOURCES,
        sam=sam_ref(models["sam"]),
    )
    items = [item for item in load_manifest(phantom_manifest) if item.positive][:1]
    (job,) = make_jobs(items, spec)
    result = run_image_job(job, spec, keep_arrays=True)
    assert len(sorts) == len(result.saliencies) == 1  # one map, five regions: one sort
    (saliency,) = result.saliencies.values()
    frame = result.frame()
    assert set(frame["region_source"]) == set(SOURCES)
    for key, region in result.regions.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", metrics.DegenerateInputWarning)
            alone = metrics.localization_metrics(saliency.map, region.mask)
        rows = frame[frame["region_source"] == key[-1]].set_index("metric")["value"]
        for name, value in alone.items():
            assert rows[name] == value or (math.isnan(rows[name]) and math.isnan(value))
    # the metrics follow the classifier onto a CUDA device; on the CPU they stay with numpy
    loaded = jobs_module.get_classifier(spec.classifiers[0])
    assert jobs_module._metrics_device([loaded]) is None
    on_cuda = type("OnCuda", (), {"device": torch.device("cuda", 0)})()
    cuda = jobs_module._LoadedClassifier(on_cuda, 2, "")
    assert jobs_module._metrics_device([loaded, cuda]) == torch.device("cuda", 0)
