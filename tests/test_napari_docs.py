"""The examples of docs/napari.md run as written: in the console namespace the widget sets up,
and as a plain script with a viewer. They use the real built-in classifier and LiteMedSAM."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

# see test_qt_widget.py: triton must be imported before any viewer exists on a GPU-less machine
with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401

pytestmark = [pytest.mark.gui, pytest.mark.slow]

DOC = Path(__file__).resolve().parents[1] / "docs" / "napari.md"
EXAMPLE = re.compile(r"<!-- example: (\w+) -->\s*```python\n(.*?)```", re.S)


def examples(kind: str) -> list[str]:
    return [code for k, code in EXAMPLE.findall(DOC.read_text(encoding="utf-8")) if k == kind]


@pytest.fixture(scope="module")
def builtin_models():
    from napari_samcam.classifiers import load_classifier

    try:
        load_classifier("lesion-detector", device="cpu")
    except Exception as exc:  # the shipped weights are not in this checkout
        pytest.skip(f"built-in classifier not available: {exc}")


def test_docs_have_the_three_console_examples():
    code = "\n".join(examples("console"))
    assert "samcam_session.explain(" in code
    assert "samcam_session.segment(boxes=" in code
    assert "samcam_session.metrics()" in code
    assert len(examples("script")) == 1


def test_docs_box_is_the_sample_lesion_box():
    from napari_samcam._napari._layers import rectangle_to_box
    from napari_samcam._napari._sample_data import phantom_nodule

    shapes = next(d for d in phantom_nodule() if d[2] == "shapes")
    box = rectangle_to_box(shapes[0][0], (512, 512))
    assert f"boxes=[{box}]" in DOC.read_text(encoding="utf-8")


def test_console_examples_run(make_napari_viewer, qtbot, builtin_models, capsys):
    from napari_samcam._qt._widget import SamcamWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-samcam", "phantom-lesion")
    widget = SamcamWidget(viewer)
    viewer.window.add_dock_widget(widget)
    namespace = {"viewer": viewer}
    for entry in viewer.window._qt_viewer.console_backlog:
        for name, value in entry.items():
            # the console keeps weak references where it can
            namespace[name] = value() if _is_weakref(value) else value
    for code in examples("console"):
        exec(compile(code, str(DOC), "exec"), namespace)
    table = namespace["table"]
    assert len(table) == 1 and table["region_source"].iloc[0] == "sam-box"
    assert 0.0 <= table["energy"].iloc[0] <= 1.0
    assert "by hand" in viewer.layers
    out = capsys.readouterr().out
    assert "lesion-detector" in out and "iou" in out


def test_script_example_runs(make_napari_viewer, builtin_models, monkeypatch, tmp_path):
    import napari

    monkeypatch.setattr(napari, "Viewer", lambda *a, **k: make_napari_viewer())
    monkeypatch.setattr(napari, "run", lambda *a, **k: None)
    monkeypatch.chdir(tmp_path)
    (code,) = examples("script")
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    viewer = namespace["viewer"]
    regions = viewer.layers["phantom lesion box regions"]
    assert len(regions.features) == 1
    assert (tmp_path / "phantom-metrics.csv").is_file()
    assert np.asarray(regions.data).any()


def _is_weakref(value) -> bool:
    import weakref

    return isinstance(value, weakref.ReferenceType)
