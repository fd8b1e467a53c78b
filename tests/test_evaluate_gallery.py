"""What an evaluation keeps to draw its items again, the report's gallery, and reading it back."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from conftest import build_tiny_sam
from napari_samcam.evaluation import evaluate
from napari_samcam.evaluation.arrays import arrays_path, pack_job_arrays, read_job_arrays
from napari_samcam.evaluation.gallery import gallery_html, thumbnail
from napari_samcam.evaluation.stored import open_evaluation

SOURCES = ("ground-truth", "box", "sam-box", "sam-saliency-box")


@pytest.fixture(scope="module")
def phantom_manifest(tiny_phantoms):
    return tiny_phantoms


@pytest.fixture(scope="module")
def classifier(tiny_lesion_classifier):
    return tiny_lesion_classifier


def _run(manifest, out, classifier, **kwargs):
    options = dict(
        classifiers=[classifier],
        methods=("gradcam", "hirescam"),
        region_sources=SOURCES,
        sam=build_tiny_sam(),
        device="cpu",
        n_resamples=50,
        plots=False,
    )
    options.update(kwargs)
    return evaluate(manifest, out, **options)


@pytest.fixture(scope="module")
def result(phantom_manifest, classifier, tmp_path_factory):
    return _run(phantom_manifest, tmp_path_factory.mktemp("eval"), classifier)


def test_kept_arrays_redraw_the_scores(result, classifier, phantom_manifest):
    """The stored map and masks give back the stored scores; the map is explain's map."""
    from napari_samcam.evaluation import load_manifest
    from napari_samcam.images import read_image
    from napari_samcam.metrics import localization_metrics
    from napari_samcam.saliency import explain

    stored = open_evaluation(result.out)
    items = load_manifest(phantom_manifest)
    assert sorted(stored.arrays) == [item.index for item in items]
    item = items[1]
    view = stored.item_view(item.index)
    image = read_image(item.path).array
    assert view.image.shape == image.shape and view.image_name == item.image
    assert (
        view.image_key == result.metrics[result.metrics["item"] == item.index]["image_key"].iloc[0]
    )
    assert [(s["classifier"], s["cam_method"]) for s, _ in view.saliencies] == [
        (classifier.name, "gradcam"),
        (classifier.name, "hirescam"),
    ]
    for provenance, saliency_map in view.saliencies:
        fresh = explain(image, classifier, method=provenance["cam_method"], target=1)
        assert saliency_map.shape == fresh.map.shape
        np.testing.assert_allclose(saliency_map, fresh.map, atol=2e-3)
    # annotation regions once per item, saliency regions once per map
    sources = [(r["region_source"], r["cam_method"]) for r, _, _ in view.regions]
    assert sorted(sources) == sorted(
        [("ground-truth", ""), ("box", ""), ("sam-box", "")]
        + [("sam-saliency-box", m) for m in ("gradcam", "hirescam")]
    )
    areas = result.regions[result.regions["item"] == item.index]
    maps = {p["cam_method"]: m for p, m in view.saliencies}
    for record, mask, scores in view.regions:
        assert mask.shape == image.shape[:2]
        if record["region_source"] != "ground-truth":
            row = areas[
                (areas["region_source"] == record["region_source"])
                & (areas["cam_method"] == record["cam_method"])
            ]
            assert int(row["region_area"].iloc[0]) == int(mask.sum())
        for _, score in scores.iterrows():
            again = localization_metrics(maps[score["cam_method"]], mask)
            assert score["region_source"] == record["region_source"]
            assert score["energy"] == pytest.approx(again["energy"], abs=1e-3)
            assert score["hit"] == again["hit"] or np.isnan(score["hit"])
    box = [r for r, _, _ in view.regions if r["region_source"] == "box"]
    assert view.boxes == [tuple(item.boxes[0])] and box


def test_arrays_are_written_before_the_metrics_part(phantom_manifest, classifier, tmp_path):
    """The metrics part marks an image done, so it is the last file of the image written."""
    import os

    import napari_samcam.evaluation.runner as runner

    order = []
    real = os.replace

    def spy(src, dst):
        if os.path.basename(os.path.dirname(dst)) == "parts":
            order.append(os.path.basename(dst).split(".")[1])
        return real(src, dst)

    runner.os.replace = spy
    try:
        _run(phantom_manifest, tmp_path / "out", classifier, limit=1, report=False)
    finally:
        runner.os.replace = real
    assert order == ["arrays", "regions", "metrics"]


def test_no_keep_arrays_writes_no_arrays_and_no_gallery(phantom_manifest, classifier, tmp_path):
    out = tmp_path / "out"
    _run(phantom_manifest, out, classifier, keep_arrays=False, limit=2, methods=("gradcam",))
    assert not list((out / "parts").glob("*.arrays.npz"))
    report = (out / "report.html").read_text()
    assert "<h2>Gallery</h2>" not in report and "image/jpeg" not in report
    # napari's reader says why it cannot draw the items
    from napari_samcam._napari._evaluation import read_evaluation
    from napari_samcam.errors import InputError

    assert open_evaluation(out).items() == []
    with pytest.raises(InputError, match=r"kept no arrays.*--no-keep-arrays"):
        read_evaluation(out)


def test_gallery_shows_lowest_and_highest(result):
    report = (result.out / "report.html").read_text()
    assert "<h2>Gallery</h2>" in report
    thumbs = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", report)
    # 2 methods x 4 sources, each ranked by iou and energy: 3 lowest + the rest (2) highest
    # of the items with a value (negatives have none for box and sam-box)
    wide = open_evaluation(result.out).scores
    expected = 0
    for _, group in wide.groupby(["classifier", "cam_method", "region_source"]):
        for metric in ("iou", "energy"):
            n = int(group[metric].notna().sum())
            expected += min(n, 3) + min(max(n - 3, 0), 3)
    assert len(thumbs) == expected
    jpeg = base64.b64decode(thumbs[0])
    assert jpeg[:2] == b"\xff\xd8"
    # the group's lowest IoU item is the first figure after its "lowest iou" label
    group = wide[(wide["cam_method"] == "gradcam") & (wide["region_source"] == "sam-box")]
    worst = group.sort_values("iou", kind="stable").iloc[0]
    section = report.split("gradcam · sam-box</h3>")[1]
    first = section.split("lowest iou</span>")[1].split("<figcaption>")[1]
    assert first.startswith(f"#{int(worst['item'])} ")
    assert f"iou {worst['iou']:.2f}" in first.split("</figcaption>")[0]


def test_thumbnail_draws_outlines_and_box():
    from PIL import Image

    image = np.zeros((400, 300), dtype=np.uint8)
    region = np.zeros((400, 300), dtype=bool)
    region[100:200, 100:200] = True
    data = thumbnail(image, None, region=region, boxes=[(40, 20, 360, 280)], size=160, quality=95)
    picture = np.asarray(Image.open(__import__("io").BytesIO(data)).convert("RGB"), dtype=int)
    assert picture.shape == (160, 120, 3)
    # yellow outline on the region's top edge (row 100 of 400 = row 40 of 160), dark inside
    edge, inside = picture[40, 60], picture[60, 60]
    # (JPEG's chroma subsampling blurs the colour of a 1-pixel line)
    assert edge[0] > 180 and edge[1] > 180 and edge[0] - edge[2] > 60
    assert inside.sum() < 60
    # cyan box on row 16 (40 of 400), black outside it
    top = picture[16, 60]
    assert top[2] > 180 and top[1] > 150 and top[2] - top[0] > 60
    assert picture[5, 5].sum() < 60


@pytest.mark.slow
def test_report_stays_under_10_mb_for_1000_items(tmp_path):
    """1000 items, 3 classifiers x 2 methods x 4 sources: the gallery's size does not grow
    with the items (at most 2 x 2 x 3 thumbnails per group)."""
    import pandas as pd

    from napari_samcam.evaluation.jobs import ImageJob, JobResult, rows_frame
    from napari_samcam.evaluation.manifests import Item
    from napari_samcam.images import read_image
    from napari_samcam.phantoms import write_phantoms
    from napari_samcam.saliency import Saliency
    from napari_samcam.segment import Region

    manifest = write_phantoms(1, tmp_path / "ph", seed=1, size=256, positive_fraction=1.0)
    path = sorted((tmp_path / "ph" / "images").iterdir())[0]
    image = read_image(path).array
    rng = np.random.default_rng(0)
    out = tmp_path / "out"
    (out / "parts").mkdir(parents=True)
    classifiers, methods = ("a", "b", "c"), ("gradcam", "hirescam")
    jobs, rows = [], []
    for index in range(1000):
        item = Item(image=path.name, path=path, index=index, boxes=[(100, 100, 160, 160)])
        job = ImageJob(path, path.name, (item,), key=f"k{index:04d}")
        result = JobResult([], image=image, window=None)
        for c in classifiers:
            for m in methods:
                raw = rng.random((16, 16)).astype(np.float32)
                result.saliencies[(c, m, 1)] = Saliency(raw, raw, 1, "lesion", 0.5, m, "x", c)
                for s in SOURCES:
                    mask = np.zeros(image.shape[:2], dtype=bool)
                    mask[100 + index % 20 : 160, 90:170] = True
                    result.regions[(index, c, m, 1, s)] = Region(mask, s)
                    for metric in ("iou", "energy", "hit"):
                        rows.append(
                            dict(
                                image=path.name, image_key="x", item=index, label="1",
                                classifier=c, classifier_version="", cam_method=m,
                                target_class="lesion", probability=0.5, region_source=s,
                                prompt="{}", sam_model="", region_area=1, region_score=0.0,
                                metric=metric, value=float(rng.random()),
                                **{"class": "lesion"},
                            )
                        )  # fmt: skip
        arrays_path(out, job.key).write_bytes(pack_job_arrays(job, result))
        jobs.append(job)
    assert read_job_arrays(arrays_path(out, "k0000")).raw(0, "a", "gradcam").dtype == np.float32
    metrics = rows_frame(rows, pd)
    html = gallery_html(out, jobs, metrics)
    n_thumbs = html.count("data:image/jpeg")
    assert n_thumbs == 3 * 2 * 4 * 2 * 2 * 3
    size = len(html.encode())
    assert size < 8_000_000, size
    print(f"gallery of 1000 items, {n_thumbs} thumbnails: {size} bytes")
    assert manifest.exists()


def test_large_maps_are_kept_small_and_each_item_keeps_its_own_map(tmp_path):
    """A map read from a file (image-sized) is shrunk; two items of one image explaining
    different classes keep their own maps."""
    from napari_samcam.evaluation.jobs import ImageJob, JobResult
    from napari_samcam.evaluation.manifests import Item
    from napari_samcam.saliency import Saliency
    from napari_samcam.segment import Region

    path = tmp_path / "x.png"
    items = tuple(Item(image="x.png", path=path, index=i) for i in (0, 1))
    job = ImageJob(path, "x.png", items, key="k")
    big = np.zeros((2000, 1000), dtype=np.float32)
    big[:1000] = 1.0
    small = np.eye(4, dtype=np.float32)
    result = JobResult([], image=np.zeros((2000, 1000)), window=None)
    result.saliencies = {
        ("c", "gradcam", 0): Saliency(big, big, 0, "a", 0.5, "gradcam", "l", "c"),
        ("c", "gradcam", 1): Saliency(small, small, 1, "b", 0.5, "gradcam", "l", "c"),
    }
    mask = np.zeros((2000, 1000), dtype=bool)
    result.regions = {
        (0, "c", "gradcam", 0, "ground-truth"): Region(mask, "ground-truth"),
        (1, "c", "gradcam", 1, "ground-truth"): Region(mask, "ground-truth"),
    }
    arrays_path(tmp_path, "k").parent.mkdir()
    arrays_path(tmp_path, "k").write_bytes(pack_job_arrays(job, result))
    stored = read_job_arrays(arrays_path(tmp_path, "k"))
    first, second = stored.raw(0, "c", "gradcam"), stored.raw(1, "c", "gradcam")
    assert first.shape == (512, 256) and first[:256].min() == 1 and first[256:].max() == 0
    np.testing.assert_array_equal(second, small)
    assert [e["target_class"] for e, _ in stored.saliencies(1)] == ["b"]
