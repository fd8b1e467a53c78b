"""The widget's controls that mirror evaluation settings follow the settings' declaration."""

from __future__ import annotations

import contextlib

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

with contextlib.suppress(ImportError):  # see tests/test_qt_widget.py: triton before OpenGL
    import torch._dynamo  # noqa: F401

from napari_samcam._napari._session import SamcamSession
from napari_samcam.evaluation_settings import SETTINGS, setting

pytestmark = pytest.mark.gui


def test_mirrored_settings_have_their_declared_defaults_and_help(make_napari_viewer, qtbot):
    from qtpy.QtCore import Qt

    from napari_samcam._qt._widget import SamcamWidget

    viewer = make_napari_viewer()
    session = SamcamSession(viewer)
    widget = SamcamWidget(viewer, session=session)
    viewer.window.add_dock_widget(widget, name="SAM-CAM")
    mirrored = [entry for entry in SETTINGS if entry.widget]
    assert {e.name for e in mirrored} >= {"context", "sam_preprocess", "methods", "sam"}
    for entry in mirrored:
        assert hasattr(widget, entry.widget), entry.widget
    context = setting("context")
    assert widget.context.value == context.default == session.context
    assert widget.context.tooltip == context.help
    assert widget.sam_preprocess.tooltip == setting("sam_preprocess").help
    assert widget.method.value == setting("methods").default[0] == session.method
    # typing 0 into the box-context field means None, as the declaration says
    spin = widget.context.native
    spin.setFocus()
    qtbot.keyClick(spin, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(spin, "0")
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: session.context is None, timeout=2000)
    qtbot.keyClick(spin, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(spin, "3")
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: session.context == 3.0, timeout=2000)
