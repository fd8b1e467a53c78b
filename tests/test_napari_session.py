"""The widget's model, SamcamSession, on a napari ViewerModel: no Qt, no display, tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("napari")

from napari.components import ViewerModel
from napari.layers import Layer

from napari_samcam._napari._layers import META_KEY, box_to_rectangle
from napari_samcam._napari._sample_data import phantom_nodule, phantom_stack
from napari_samcam._napari._session import (
    JobCancelled,
    SamcamSession,
    Step,
    toggle_polarity,
)
from napari_samcam.errors import InputError


def _viewer(sample=phantom_nodule):
    viewer = ViewerModel()
    for data in sample():
        viewer.add_layer(Layer.create(*data))
    return viewer


@pytest.fixture
def session(tiny_classifier, tiny_segmenter):
    return SamcamSession(_viewer(), classifier=tiny_classifier, segmenter=tiny_segmenter)


def test_jobs_yield_steps_and_apply_at_the_end(session):
    job = session.explain_job("phantom lesion")
    steps = []
    try:
        while True:
            steps.append(next(job))
    except StopIteration as stop:
        apply = stop.value
    assert all(isinstance(s, Step) for s in steps)
    assert steps[0].done == 0 and steps[-1].done == steps[-1].total
    n_layers = len(session.viewer.layers)
    assert len(session.viewer.layers) == n_layers  # nothing touched before apply
    layer = apply()
    assert len(session.viewer.layers) == n_layers + 1
    assert layer.metadata[META_KEY]["kind"] == "saliency"
    assert layer.metadata[META_KEY]["image_layer"] == "phantom lesion"


def test_explain_records_provenance_and_predictions(session):
    got = []
    session.predictions_changed.connect(got.append)
    layer = session.explain()
    provenance = layer.metadata[META_KEY]["provenance"]
    assert provenance["classifier"] == "Sequential" and provenance["method"] == "gradcam"
    assert set(got[-1]) == {"cat", "dog"}
    assert sum(got[-1].values()) == pytest.approx(1.0, abs=1e-5)
    assert layer.name == f"phantom lesion Sequential gradcam [{provenance['class_name']}]"
    # explaining the other class gives its own layer
    session.target = "dog" if provenance["class_name"] == "cat" else "cat"
    other = session.explain()
    assert other is not layer and other.name != layer.name


def test_segment_with_explicit_boxes_and_metrics(session):
    session.explain()
    regions = session.segment(boxes=[(128, 366, 184, 438), (300, 100, 340, 160)])
    table = session.metrics()
    assert table["label"].tolist() == [1, 2]
    assert table["region_source"].tolist() == ["sam-box", "sam-box"]
    prompts = [json.loads(p) for p in table["prompt"]]
    assert prompts[0]["box"] == [128, 366, 184, 438]
    assert prompts[0]["context"] == 2.5
    for label, area, name in zip(table["label"], table["area"], table["layer"], strict=True):
        assert (session.viewer.layers[name].data == label).sum() == area  # nothing hidden
    assert {"iou", "dice", "hit", "energy", "auroc"} <= set(table.columns)
    assert regions.features is not None and "index" in regions.features


def test_overlapping_regions_each_keep_all_their_pixels(session):
    """The same box twice and a box inside it: three regions that overlap, none hidden."""
    session.explain()
    box, inner = (128, 366, 184, 438), (140, 380, 170, 420)
    session.segment(boxes=[box, box, inner])
    layers = session.regions_layers()
    assert [lyr.name for lyr in layers][:2] == [
        "phantom lesion box regions",
        "phantom lesion box regions 2",
    ]
    table = session.metrics()
    assert table["label"].tolist() == [1, 2, 3]
    assert table["area"].min() > 0
    for _, row in table.iterrows():
        layer = session.viewer.layers[row["layer"]]
        assert (layer.data == row["label"]).sum() == row["area"]
        assert row["label"] in layer.features["label"].tolist()
    for layer in layers:  # each layer's table lists exactly the labels it shows
        shown = set(np.unique(layer.data)) - {0}
        assert shown == set(layer.features["label"])
    # segmenting again replaces all three, in every layer of the kind
    session.segment(boxes=[box])
    assert len(session.metrics()) == 1
    assert [lyr.name for lyr in session.regions_layers()] == ["phantom lesion box regions"]
    # another prompt kind gets its own layer, labels stay unique
    session.segment(points=[(150, 400)])
    table = session.metrics()
    assert table["label"].is_unique
    assert set(table["layer"]) == {"phantom lesion box regions", "phantom lesion point regions"}


def test_segment_without_saliency_warns_and_has_no_metrics(tiny_segmenter):
    session = SamcamSession(_viewer(), segmenter=tiny_segmenter, context=None)
    with pytest.warns(UserWarning, match="click Explain"):
        session.segment(shapes="phantom lesion box")
    table = session.metrics()
    assert "iou" not in table.columns and table["saliency"].iloc[0] == ""


def test_points_prompts_use_the_positive_feature(session):
    session.explain()
    layer = session.viewer.add_points(
        np.array([[150.0, 400.0], [20.0, 20.0]]), features={"positive": [True, False]}
    )
    session.segment(points_layer=layer)
    prompt = json.loads(session.metrics()["prompt"].iloc[0])
    assert prompt["point_labels"] == [1, 0]
    assert prompt["points"] == [[150.0, 400.0], [20.0, 20.0]]


def test_toggle_polarity_flips_selected_points_or_the_default():
    viewer = ViewerModel()
    points = viewer.add_points(np.array([[1.0, 1.0], [2.0, 2.0]]))
    from napari_samcam._napari._session import bind_polarity_key

    bind_polarity_key(points)
    assert points.features["positive"].tolist() == [True, True]
    points.selected_data = {0}
    toggle_polarity(points)
    assert points.features["positive"].tolist() == [False, True]
    points.selected_data = set()
    toggle_polarity(points)  # nothing selected: new points become negative
    points.add([[3.0, 3.0]])
    assert points.features["positive"].tolist() == [False, True, False]


def test_saliency_prompt_and_its_boxes_layer(session):
    session.explain()
    session.segment(prompt="saliency")
    table = session.metrics()
    assert table["region_source"].tolist() == ["sam-saliency-box"]
    boxes = session.viewer.layers["phantom lesion saliency boxes"]
    assert len(boxes.data) == 1 and boxes.features["metrics"].iloc[0]


def test_clear_errors_before_any_work(session, tiny_segmenter, tiny_clip_folder):
    with pytest.raises(InputError, match="click Explain first"):
        session.segment(prompt="saliency")
    session.viewer.layers["phantom lesion box"].data = []
    with pytest.raises(InputError, match="draw a rectangle"):
        session.segment(shapes="phantom lesion box")
    # without a CLIP model that is what is missing, whatever the text (the field is disabled)
    with pytest.raises(InputError, match="CLIP"):
        session.segment(prompt="text", text="  ")
    with pytest.raises(InputError, match="CLIP"):
        session.segment(prompt="text", text="nodule")
    session.clip = str(tiny_clip_folder)
    with pytest.raises(InputError, match="type what to segment"):
        session.segment(prompt="text", text="  ")
    session.clip = None
    with pytest.raises(InputError, match="no layer named"):
        session.explain("nope")
    with pytest.raises(InputError, match="open an image"):
        SamcamSession(ViewerModel()).explain()


def test_cancel_from_a_core_progress_callback(session):
    job = session.segment_job(boxes=[(128, 366, 184, 438)])
    session.clear_cancel()
    next(job)  # loading SAM
    session.cancel()
    with pytest.raises(JobCancelled):
        while True:
            next(job)


def test_volume_planes_and_all_slices(tiny_classifier, tiny_segmenter):
    viewer = _viewer(phantom_stack)
    session = SamcamSession(viewer, classifier=tiny_classifier, segmenter=tiny_segmenter)
    boxes = viewer.layers["phantom stack boxes"]
    with_boxes = sorted({int(v[0, 0]) for v in boxes.data})
    saliency = session.explain(index=with_boxes[0])
    assert saliency.data.shape == (8, 512, 512)
    assert [i for i in range(8) if saliency.data[i].any()] == [with_boxes[0]]
    session.explain(all_slices=True)
    regions = session.segment(shapes=boxes, all_slices=True)
    table = session.metrics()
    assert sorted(table["slice"].astype(int)) == with_boxes
    assert regions.data.shape == (8, 512, 512)
    # a box drawn on slice 0 of a 3-D Shapes layer prompts slice 0 only
    viewer.add_shapes([box_to_rectangle((10, 10, 60, 60), (0,))], shape_type="rectangle")
    session.segment(shapes=viewer.layers[-1], index=0)
    assert "0" in session.metrics()["slice"].tolist()


def test_save_and_reopen_through_the_session(session, tmp_path):
    from napari_samcam._napari._session_io import read_session

    session.explain()
    session.segment(shapes="phantom lesion box")
    folder = session.save(tmp_path / "case.samcam")[0]
    layers = [Layer.create(*d) for d in read_session(folder)]
    assert [lyr.name for lyr in layers] == [lyr.name for lyr in session.viewer.layers]
    written = session.export_metrics(tmp_path / "m.csv")
    assert written == [str(tmp_path / "m.csv")]


def test_saliency_boxes_of_other_slices_are_kept(tiny_classifier, tiny_segmenter):
    viewer = _viewer(phantom_stack)
    session = SamcamSession(viewer, classifier=tiny_classifier, segmenter=tiny_segmenter)
    session.explain(all_slices=True)
    session.segment(prompt="saliency", index=1)
    session.segment(prompt="saliency", index=2)
    session.segment(prompt="saliency", index=2)  # again: replaces slice 2's box
    boxes = viewer.layers["phantom stack saliency boxes"]
    assert sorted(int(v[0, 0]) for v in boxes.data) == [1, 2]
    assert sorted(session.metrics()["slice"]) == ["1", "2"]


def test_default_image_stays_on_the_image_last_used(session):
    """The console sequence of docs/napari.md: a map added by hand does not become the target."""
    viewer = session.viewer
    lesion = viewer.layers["phantom lesion"]
    saliency = session.explain(lesion)
    session.segment(boxes=[(128, 366, 184, 438)])
    viewer.add_image(np.asarray(saliency.data), name="by hand")  # selected and topmost now
    assert viewer.layers.selection.active.name == "by hand"
    assert session.image is lesion

    session.segment(points=[(150, 400)])
    session.explain(all_slices=True)
    session.segment(prompt="saliency")
    session.segment(boxes=[(128, 366, 184, 438)])
    table = session.metrics()
    assert sorted(table["region_source"]) == ["sam-box", "sam-points", "sam-saliency-box"]
    assert table[["iou", "energy"]].notna().all().all()  # every row scored against the map
    assert set(table["saliency"]) == {saliency.name}
    assert "by hand regions" not in viewer.layers
    assert not any(layer.name.startswith("by hand ") for layer in viewer.layers)

    # naming a layer makes it the default; removing it falls back to the selected image
    session.image = "by hand"
    assert session.image_layer().name == "by hand"
    viewer.layers.remove("by hand")
    viewer.layers.selection.active = lesion
    assert session.image is lesion


def test_default_prompt_layers_are_the_images_own_not_the_derived_boxes(session):
    session.explain()
    session.segment(prompt="saliency")
    derived = session.viewer.layers["phantom lesion saliency boxes"]
    session.viewer.layers.selection.active = derived
    session.segment()  # boxes: the sample's box layer, not the boxes around the saliency
    boxes = session.metrics().query("region_source == 'sam-box'")["prompt"]
    assert [json.loads(p)["box"] for p in boxes] == [[128, 366, 184, 438]]
    # a fresh session never starts on a layer the plugin made, even when it is selected
    saliency = session.saliency_layer()
    session.viewer.layers.selection.active = saliency
    fresh = SamcamSession(session.viewer)
    assert fresh.image.name == "phantom lesion"
    with pytest.raises(InputError, match="is not an image layer"):
        fresh.explain(derived)


def test_unreliable_regions_are_flagged_and_warned_about(session, monkeypatch):
    """A mask that spills far outside its box is flagged in the table and named in a warning;
    a mask that fits its box is neither."""
    from napari_samcam.segment import Region

    session.explain()
    box = (128, 366, 184, 438)
    warned = []
    session.warning.connect(warned.append)

    def fake_segment(image, boxes=None, **kwargs):
        mask = np.zeros(image.shape[:2], dtype=bool)
        if spill:
            mask[:, :] = True  # the whole image for a 56 x 72 box
        else:
            mask[box[0] + 5 : box[2] - 5, box[1] + 5 : box[3] - 5] = True
        return [Region(mask=mask, source="sam-box", prompt={"box": list(box)}, score=0.9)]

    monkeypatch.setattr(session.segmenter, "segment", fake_segment)
    spill = True
    session.segment(boxes=[box])
    table = session.metrics()
    assert table["region_unreliable"].tolist() == [True]
    assert table["region_reason"].iloc[0] != ""
    assert [w for w in warned if "look unreliable" in w] == [
        w for w in warned if w.startswith("1 of 1 SAM region(s) look unreliable")
    ]
    assert any("look unreliable" in w for w in warned)
    warned.clear()
    spill = False
    session.segment(boxes=[box])
    assert session.metrics()["region_unreliable"].tolist() == [False]
    assert not any("look unreliable" in w for w in warned)


def test_prompt_layers_from_the_console_are_there_at_once_and_in_steps_from_the_widget(session):
    viewer = session.viewer
    steps = []
    shapes, points = session.add_prompt_layers(later=steps.append)
    # the widget's runner runs these a turn of the event loop apart: nothing is in the viewer yet
    assert "phantom lesion box prompts" not in viewer.layers and len(steps) == 5
    for step in steps:
        step()
    assert viewer.layers["phantom lesion box prompts"] is shapes
    assert viewer.layers["phantom lesion point prompts"] is points
    assert shapes.visible and points.visible
    assert viewer.layers.selection.active is shapes and shapes.mode == "add_rectangle"
    points.add([[10.0, 20.0]])
    assert points.features["positive"].tolist() == [True]  # new points are positive
    n = len(viewer.layers)
    again = session.add_prompt_layers()  # kept, not added twice
    assert again == (shapes, points) and len(viewer.layers) == n
