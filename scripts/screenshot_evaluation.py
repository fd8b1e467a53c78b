"""Screenshot of an evaluation opened in napari, with the Evaluation results table, for the docs.

Runs ``samcam evaluate`` (built-in lesion-detector, Grad-CAM, LiteMedSAM, the default region
sources) on N phantoms unless the output folder holds it already, opens the folder in napari
(its lowest-IoU item), docks the *Evaluation results* table, sorts it by IoU, clicks the first
``sam-box`` row and saves a screenshot of the whole window. Prints the report's size.

Usage (needs a display; on a headless machine it re-runs itself under ``xvfb-run``)::

    python scripts/screenshot_evaluation.py --work DIR [--n 12]
        [--out docs/images/napari-evaluation.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshot import _rerun_under_xvfb, save_window  # noqa: E402


def _evaluate(work: Path, n: int) -> Path:
    from napari_samcam.evaluation import evaluate
    from napari_samcam.phantoms import write_phantoms

    manifest = work / "phantoms" / "manifest.csv"
    if not manifest.exists():
        write_phantoms(n, work / "phantoms", seed=11)
    result = evaluate(manifest, work / "out", classifiers=["lesion-detector"], plots=False)
    report = result.paths["report.html"]
    print(f"{result.n_images} images; report {report.stat().st_size} bytes")
    return result.out


def _wait(app, widget, timeout_s: float = 120.0) -> None:
    """Let the results widget finish reading (it works off the GUI thread)."""
    import time

    end = time.perf_counter() + timeout_s
    while (widget.loading or widget.stored is None) and time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)
    for _ in range(20):
        app.processEvents()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for phantoms + results")
    parser.add_argument("--n", type=int, default=12, help="phantoms to evaluate")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "napari-evaluation.png"))
    parser.add_argument("--size", default="1700x1000", help="window size WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    _rerun_under_xvfb()
    folder = _evaluate(args.work, args.n)

    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    from napari_samcam._qt._widget import guard_triton

    guard_triton()
    width, height = (int(v) for v in args.size.split("x"))
    viewer = napari.Viewer(title="napari-samcam", show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(width, height)
    viewer.open(str(folder), plugin="napari-samcam")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-samcam", "Evaluation results")
    table = widget.table
    _wait(app, widget)  # the folder is read off the GUI thread; the dock widens to its columns
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    table.sortItems(headers.index("iou"))
    sources = [widget.row_key(r)["region_source"] for r in range(table.rowCount())]
    row = sources.index("sam-box")
    table.scrollToItem(table.item(row, 0))
    rect = table.visualItemRect(table.item(row, 0))
    QTest.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    _wait(app, widget)
    out = save_window(viewer, app, args.out)
    print(f"item {widget.shown_item}: {[layer.name for layer in viewer.layers]}")
    print(f"screenshot written to {out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
