"""Screenshot of napari with the SAM-CAM widget in use, for the README.

Opens the phantom lesion sample, runs the widget's Explain (built-in lesion-detector, Grad-CAM),
prompts LiteMedSAM with the sample's lesion box, shows the metrics table in napari's features
table widget and saves a screenshot of the whole window.

Usage (needs a display; on a headless machine it re-runs itself under ``xvfb-run``)::

    python scripts/screenshot.py [--out docs/images/napari-samcam.png] [--classifier SPEC]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rerun_under_xvfb() -> None:
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        sys.exit(
            "no display: run under Xvfb (apt-get install xvfb libxcb-icccm4 libxcb-keysyms1), "
            "e.g. xvfb-run -a python scripts/screenshot.py"
        )
    command = [xvfb, "-a", "-s", "-screen 0 1920x1200x24", sys.executable, *sys.argv]
    sys.exit(subprocess.call(command))


def _wait(widget, app, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while widget.runner.running:
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() > deadline:
            sys.exit("timed out waiting for the widget's job")


def _open_from_plugins_menu(viewer, title: str):
    """Open the dock widget as a user does (Plugins menu) and return it."""
    from qtpy.QtWidgets import QDockWidget

    from napari_samcam._qt._widget import SamcamWidget

    window = viewer.window._qt_window

    def actions(action):
        menu = action.menu()
        return [action] if menu is None else [a for sub in menu.actions() for a in actions(sub)]

    entry = next(
        a for top in window.menuBar().actions() for a in actions(top) if title in a.text()
    )
    entry.trigger()
    dock = next(d for d in window.findChildren(QDockWidget) if title in d.windowTitle())
    return dock.findChild(SamcamWidget)


def save_window(viewer, app, out) -> Path:
    """Let the window settle, then save a screenshot of all of it to ``out``."""
    for _ in range(50):
        app.processEvents()
        time.sleep(0.02)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "napari-samcam.png"))
    parser.add_argument("--classifier", default="lesion-detector")
    parser.add_argument("--size", default="1600x1000", help="window size WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    _rerun_under_xvfb()

    import napari
    from napari.utils.notifications import notification_manager
    from qtpy.QtWidgets import QApplication

    from napari_samcam._qt._widget import guard_triton

    guard_triton()
    errors: list[str] = []
    notification_manager.notification_ready.connect(
        lambda n: errors.append(n.message) if str(n.severity) == "error" else None
    )
    width, height = (int(v) for v in args.size.split("x"))
    viewer = napari.Viewer(title="napari-samcam", show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(width, height)
    viewer.open_sample("napari-samcam", "phantom-lesion")
    widget = _open_from_plugins_menu(viewer, "Saliency localization")
    widget.classifier.setCurrentText(args.classifier)

    widget.load_button.click()
    _wait(widget, app)
    widget.explain_button.click()
    _wait(widget, app)
    widget.segment_button.click()
    _wait(widget, app)
    if errors:
        sys.exit("the widget reported errors: " + " | ".join(errors))
    widget.table_button.click()  # napari's features table, docked below the canvas
    regions = viewer.layers["phantom lesion box regions"]
    viewer.layers["phantom lesion mask"].visible = False
    # frame the lesion and its box
    corners = viewer.layers["phantom lesion box"].data[0]
    row = float(corners[:, 0].min() + corners[:, 0].max()) / 2
    col = float(corners[:, 1].min() + corners[:, 1].max()) / 2
    viewer.camera.center = (row, (col + viewer.layers["phantom lesion"].data.shape[1] / 2) / 2)
    viewer.camera.zoom = viewer.camera.zoom * 1.5
    out = save_window(viewer, app, args.out)
    table = regions.features
    wanted = ("label", "region_source", "score", "iou", "hit", "energy")
    columns = [c for c in wanted if c in table]
    print(table[columns].to_string(index=False))
    print(f"screenshot written to {out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
