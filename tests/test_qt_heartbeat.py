"""The GUI thread never stalls: every action of the dock widgets, measured with a heartbeat.

A 20 ms QTimer on the GUI thread records its ticks while an action runs, driven as a user drives
it (menu actions triggered, buttons and table rows clicked, file dialogs answered by patching
``QFileDialog``), until the action's result is shown. The longest gap between two ticks is the
longest the viewer froze. The limit is 300 ms times the CPU contention measured in the same test
(wall / CPU time of a fixed workload: about 1 on an idle machine, larger when other processes
share the cores), 3 times the longest gap measured with nothing to do (a busy machine delays
the timer itself), or 1.5 times napari's own longest stall for adding an empty Labels layer to
the same viewer, three times just before (no action that adds a layer can stall less, and its
longest turn may also hold the redraw after it; on shared virtual machines napari's own insert
varies from 0.1 to 0.35 s), whichever is largest. An action over the limit is held to the floor
measured again right after it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

from napari_samcam._napari import _sample_data
from napari_samcam._napari._layers import samcam_meta
from napari_samcam._qt._heartbeat import (
    FLOOR_FACTOR,
    cpu_contention,
    idle_gap,
    layer_insert_floor,
    process_events_for,
    stall_limit,
    worst_stall,
)

pytestmark = pytest.mark.gui

JOB_TIMEOUT_S = 180.0


def _menu_actions(action):
    menu = action.menu()
    if menu is None:
        return [action]
    return [a for sub in menu.actions() for a in _menu_actions(sub)]


def menu_entry(viewer, text: str):
    """The menu action of the viewer's window whose text contains ``text``."""
    window = viewer.window._qt_window
    actions = [a for menu in window.menuBar().actions() for a in _menu_actions(menu)]
    matches = [a for a in actions if text in a.text().replace("&", "")]
    assert matches, f"no menu entry {text!r}"
    return matches[0]


def check(stall: float, limit: float, what: str, viewer=None) -> None:
    """Fail when ``stall`` exceeds ``limit``. Over it, napari's own layer insert in ``viewer``
    is measured again first: the floor measured before the action is a sample of a machine
    whose speed changes from moment to moment, and the action is held to the floor of when it
    ran (a real regression, seconds long, is far above any floor)."""
    if stall > limit and viewer is not None:
        floor = layer_insert_floor(viewer)
        print(f"{what}: over {limit * 1000:.0f} ms; napari's insert now {floor * 1000:.0f} ms")
        limit = max(limit, FLOOR_FACTOR * floor)
    print(f"{what}: worst stall {stall * 1000:.0f} ms (limit {limit * 1000:.0f} ms)")
    assert stall <= limit, f"{what} froze the viewer for {stall:.2f} s (limit {limit:.2f} s)"


def measured_limit(viewer) -> float:
    """The stall limit of this moment in ``viewer`` (see the module's docstring), once the
    garbage that earlier tests left (closed viewers and their layers) is collected: a full
    collection of it during an action froze the GUI thread 0.1-0.35 s, the history of the test
    run rather than the action. Collections that the action's own allocations start count."""
    import gc

    gc.collect()
    floor = layer_insert_floor(viewer)
    limit = stall_limit(idle_gap(), cpu_contention(), floor)
    print(f"napari's own layer insert: {floor * 1000:.0f} ms")
    return limit


def click(qtbot, button) -> None:
    assert button.isEnabled(), f"{button.text()!r} is disabled"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def open_widget(viewer):
    """Plugins > SAM-CAM > Saliency localization; returns the dock widget's content."""
    menu_entry(viewer, "Saliency localization").trigger()
    from napari_samcam._qt._widget import SamcamWidget

    widget = viewer.window._qt_window.findChild(SamcamWidget)
    assert process_events_for(30, lambda: widget.built)  # built over a few event-loop turns
    return widget


# -- opening the dock widget, in a fresh process (nothing imported yet) ----------------------
FRESH_OPEN = textwrap.dedent(
    """
    import json, sys
    import napari
    from napari_samcam._qt._heartbeat import cpu_contention, idle_gap, worst_stall

    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window

    def actions(action):
        menu = action.menu()
        if menu is None:
            return [action]
        return [a for sub in menu.actions() for a in actions(sub)]

    entry = next(
        a for m in window.menuBar().actions() for a in actions(m)
        if "Saliency localization" in a.text()
    )
    idle, contention = idle_gap(1.0), cpu_contention()
    from napari_samcam._napari._warmup import warm_up_done
    from napari_samcam._qt._widget import SamcamWidget

    def built_and_warm():
        # the widget's warm-up thread (imports, phantoms) runs beside the GUI thread: its
        # turns at the GIL count as part of opening the widget
        widget = window.findChild(SamcamWidget)
        return widget is not None and widget.built and warm_up_done(0)

    stall = worst_stall(entry.trigger, built_and_warm, timeout_s=60, settle_s=1.0)
    print(json.dumps({"idle": idle, "contention": contention, "stall": stall,
                      "torch": "torch" in sys.modules}))
    viewer.close()
    """
)


@pytest.mark.slow
def test_opening_the_dock_widget_in_a_fresh_viewer():
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", FRESH_OPEN],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch"] is False  # opening the widget does not load torch
    limit = stall_limit(result["idle"], result["contention"])
    check(result["stall"], limit, "opening the dock widget")


# -- samples -------------------------------------------------------------------------------------
SAMPLE_FUNCTIONS = {
    "phantom-lesion": "phantom_nodule",
    "phantom-marker": "phantom_marker",
    "phantom-stack": "phantom_stack",
    "chest-radiograph": "chest_radiograph",
}
SAMPLES = {
    "phantom-lesion": "Phantom lesion (chest, with box)",
    "phantom-marker": "Phantom lesion + corner marker",
    "phantom-stack": "Phantom stack",
    "chest-radiograph": "Chest radiograph",
}


@pytest.mark.parametrize("key", list(SAMPLES))
def test_opening_a_sample(make_napari_viewer, key):
    """Once the dock widget's warm-up ran (it generates the phantoms off the GUI thread)."""
    from napari_samcam._napari._warmup import warm_up_done

    viewer = make_napari_viewer(show=True)
    open_widget(viewer)
    assert process_events_for(120, lambda: warm_up_done(0))  # it starts a moment after the build
    limit = measured_limit(viewer)
    entry = menu_entry(viewer, SAMPLES[key])
    sample = getattr(_sample_data, SAMPLE_FUNCTIONS[key])()
    stall = worst_stall(entry.trigger, lambda: len(viewer.layers) == len(sample))
    # the sample's layers came one per turn of the event loop, each shown as the sample asks
    # (its mask hidden) once its steps ran
    assert [layer.name for layer in viewer.layers] == [kw["name"] for _, kw, _ in sample]
    wanted = [kw.get("visible", True) for _, kw, _ in sample]
    assert process_events_for(5, lambda: [lyr.visible for lyr in viewer.layers] == wanted)
    check(stall, limit, f"opening the {key} sample", viewer)


def test_opening_a_sample_before_the_warm_up_is_done(make_napari_viewer):
    """In a fresh process the phantoms are generated in the warm-up thread, not on the GUI
    thread, while the menu action waits for them."""
    from napari_samcam._napari import _warmup

    viewer = make_napari_viewer(show=True)
    limit = measured_limit(viewer)
    _sample_data._series.cache_clear()  # as in a fresh process: nothing generated yet
    entry = menu_entry(viewer, SAMPLES["phantom-marker"])
    if _warmup.warm_up_done(0):  # an earlier test ran it: run it again for this one
        _warmup._started.clear()
        _warmup._done.clear()
    stall = worst_stall(entry.trigger, lambda: len(viewer.layers) == 3, timeout_s=120)
    assert viewer.layers[-1].name == "phantom lesion + marker box"
    check(stall, limit, "opening a sample while the phantoms are generated", viewer)


# -- explain, segment, table, session on the phantom sample --------------------------------------
def _job_done(widget):
    return lambda: not widget.runner.running


@pytest.mark.slow
def test_explain_segment_table_and_session(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """Explain (first: loads the classifier), Segment (first: loads LiteMedSAM; then warm;
    then from saliency), Show metrics table, Save session and open it again."""
    viewer = make_napari_viewer(show=True)
    menu_entry(viewer, SAMPLES["phantom-lesion"]).trigger()
    widget = open_widget(viewer)
    limit = measured_limit(viewer)

    def run(button, what):
        stall = worst_stall(
            lambda: click(qtbot, button), _job_done(widget), timeout_s=JOB_TIMEOUT_S
        )
        assert "failed" not in widget.status.text(), widget.status.text()
        check(stall, limit, what, viewer)

    run(widget.explain_button, "Explain (first)")
    run(widget.segment_button, "Segment (first)")
    run(widget.segment_button, "Segment (warm)")
    widget.prompt_kind.native.setCurrentIndex(widget.prompt_kind.native.findData("saliency"))
    run(widget.segment_button, "Segment from saliency")
    docks = viewer.window._wrapped_dock_widgets
    stall = worst_stall(
        lambda: click(qtbot, widget.table_button),
        lambda: any("Features table" in name for name in docks),
    )
    regions = widget.session.regions_layers(viewer.layers[0])
    assert len(regions) == 2  # box and saliency regions
    assert set(viewer.layers.selection) == set(regions)
    check(stall, limit, "Show metrics table", viewer)

    folder = tmp_path / "session.samcam"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(folder), ""))
    )
    check(worst_stall(lambda: click(qtbot, widget.save_button)), limit, "Save session", viewer)
    assert folder.is_dir()

    other = make_napari_viewer(show=True)
    names = [layer.name for layer in viewer.layers]
    # what File > Open Folder does once its dialog answered and the reader chosen in napari's
    # reader dialog: the plugin's layers come one per event-loop turn
    qt_viewer = other.window._qt_viewer
    stall = worst_stall(
        lambda: qt_viewer._qt_open([str(folder)], stack=False, plugin="napari-samcam"),
        lambda: len(other.layers) == len(names),
    )
    assert [layer.name for layer in other.layers] == names
    check(stall, limit, "reopening the saved session", other)


@pytest.mark.slow
def test_explain_the_radiograph(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    menu_entry(viewer, SAMPLES["chest-radiograph"]).trigger()
    widget = open_widget(viewer)
    limit = measured_limit(viewer)
    stall = worst_stall(
        lambda: click(qtbot, widget.explain_button), _job_done(widget), timeout_s=JOB_TIMEOUT_S
    )
    assert any(samcam_meta(layer).get("kind") == "saliency" for layer in viewer.layers)
    check(stall, limit, "Explain the 1955 x 1841 radiograph", viewer)


# -- the evaluation results widget ---------------------------------------------------------------
def _click_row(qtbot, table, row: int) -> None:
    table.scrollToItem(table.item(row, 0))
    rect = table.visualItemRect(table.item(row, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def _results_widget(viewer, evaluation, monkeypatch):
    """Plugins > SAM-CAM > Evaluation results, its Open button answering with ``evaluation``."""
    from napari_samcam._qt._results import ResultsWidget

    menu_entry(viewer, "Evaluation results").trigger()
    widget = viewer.window._qt_window.findChild(ResultsWidget)
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(evaluation.out))
    )
    return widget


def _item_shown(widget):
    return lambda: widget.shown_item is not None and not widget.loading


def test_opening_an_evaluation_folder(make_napari_viewer, qtbot, tiny_evaluation, monkeypatch):
    viewer = make_napari_viewer(show=True)
    widget = _results_widget(viewer, tiny_evaluation, monkeypatch)
    limit = measured_limit(viewer)
    stall = worst_stall(lambda: click(qtbot, widget.open_button), _item_shown(widget))
    assert widget.table.rowCount() > 0
    check(stall, limit, "opening an evaluation folder", viewer)


def test_clicking_rows_of_the_results_table(
    make_napari_viewer, qtbot, tiny_evaluation, monkeypatch
):
    viewer = make_napari_viewer(show=True)
    widget = _results_widget(viewer, tiny_evaluation, monkeypatch)
    click(qtbot, widget.open_button)
    qtbot.waitUntil(_item_shown(widget), timeout=60000)
    limit = measured_limit(viewer)
    table = widget.table
    items = {}
    for row in range(table.rowCount()):
        items.setdefault(widget.row_key(row)["item"], row)
    assert len(items) >= 3
    for item, row in list(items.items())[::-1]:

        def shown(item=item):
            return widget.shown_item == item and not widget.loading and widget.focused

        stall = worst_stall(lambda row=row: _click_row(qtbot, table, row), shown)
        image = next(
            layer
            for layer in viewer.layers
            if layer.metadata.get("samcam_evaluation", {}).get("kind") == "image"
        )
        assert image.metadata["samcam_evaluation"]["item"] == item
        check(stall, limit, f"clicking a row of item {item}", viewer)


# -- an 8000 x 8000 image ------------------------------------------------------------------------
@pytest.mark.slow
def test_explain_segment_and_prompt_layers_on_an_8000_pixel_image(make_napari_viewer, qtbot):
    """A 64-megapixel image: its saliency map is 256 MB of float32 and its regions layer 128 MB;
    Explain (the built-in classifier), Segment (the image's first regions layer, LiteMedSAM),
    Segment again (the layer updated in place) and Add prompt layers."""
    import numpy as np

    viewer = make_napari_viewer(show=True)
    pixels = np.random.default_rng(0).integers(0, 256, (8000, 8000), dtype=np.uint8)
    viewer.add_image(pixels, name="large")
    viewer.add_shapes(
        [np.array([[2400.0, 2400.0], [4800.0, 4800.0]])], shape_type="rectangle", name="large box"
    )
    widget = open_widget(viewer)
    limit = measured_limit(viewer)

    def run(button, what):
        stall = worst_stall(
            lambda: click(qtbot, button), _job_done(widget), timeout_s=JOB_TIMEOUT_S
        )
        assert "done" in widget.status.text(), widget.status.text()
        check(stall, limit, what, viewer)

    run(widget.explain_button, "Explain an 8000 x 8000 image")
    run(widget.segment_button, "Segment an 8000 x 8000 image (first)")
    run(widget.segment_button, "Segment an 8000 x 8000 image (again)")
    saliency = next(lyr for lyr in viewer.layers if samcam_meta(lyr).get("kind") == "saliency")
    assert saliency.multiscale and saliency.visible
    regions = viewer.layers["large box regions"]
    assert regions.visible and regions.data.dtype == np.uint16
    assert len(regions.features) == 1

    stall = worst_stall(
        lambda: click(qtbot, widget.prompt_layers_button),
        lambda: "large box prompts" in viewer.layers and not widget.runner.running,
    )
    assert widget.shapes.value is viewer.layers["large box prompts"]
    assert widget.points.value is viewer.layers["large point prompts"]
    check(stall, limit, "Add prompt layers on an 8000 x 8000 image", viewer)
