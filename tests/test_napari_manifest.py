"""napari lists the plugin's contributions, and the layering rule holds (napari side has no Qt)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("napari")
npe2 = pytest.importorskip("npe2")

PLUGIN = "napari-samcam"


@pytest.fixture(scope="module")
def pm():
    manager = npe2.PluginManager.instance()
    manager.discover()
    return manager


def test_manifest_is_valid_and_its_callables_import(pm):
    manifest = pm.get_manifest(PLUGIN)
    manifest.validate_imports()
    assert manifest.display_name == "SAM-CAM"


def test_napari_lists_reader_writers_widget_and_samples(pm, tmp_path):
    from napari.plugins import _npe2

    for name in ("scan.dcm", "scan.nii.gz", "scan.nii"):
        assert PLUGIN in _npe2.get_readers(str(tmp_path / name)), name
    assert PLUGIN in _npe2.get_readers(str(tmp_path))  # folders: DICOM series and sessions
    assert PLUGIN not in _npe2.get_readers(str(tmp_path / "photo.png"))
    assert PLUGIN not in _npe2.get_readers(str(tmp_path / "photo.tif"))

    writer, path = pm.get_writer("mask.nii.gz", ["labels"], PLUGIN)
    assert writer is not None and writer.command == f"{PLUGIN}.write_labels"
    writer, _ = pm.get_writer("saliency.tif", ["image"], PLUGIN)
    assert writer.command == f"{PLUGIN}.write_image"
    writer, _ = pm.get_writer("metrics.csv", ["labels"], PLUGIN)
    assert writer.command == f"{PLUGIN}.write_features"
    # the session writer: a ".samcam" folder (no plugin named), or any folder for the plugin
    writer, _ = pm.get_writer("case.samcam", ["image", "image", "labels", "shapes"])
    assert writer.command == f"{PLUGIN}.write_session"
    writer, path = pm.get_writer(str(tmp_path / "case"), ["image", "labels"], PLUGIN)
    assert writer.command == f"{PLUGIN}.write_session" and path == str(tmp_path / "case")

    widgets = [w for w in pm.iter_widgets() if w.plugin_name == PLUGIN]
    assert [w.display_name for w in widgets] == ["Saliency localization", "Evaluation results"]
    samples = dict(pm.iter_sample_data())[PLUGIN]
    assert {s.key for s in samples} >= {"phantom-lesion", "chest-radiograph"}


def test_napari_side_imports_no_qt():
    code = textwrap.dedent(
        """
        import sys
        import napari_samcam._napari._layers
        import napari_samcam._napari._reader
        import napari_samcam._napari._sample_data
        import napari_samcam._napari._session
        import napari_samcam._napari._writer
        qt = sorted(m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt5', 'PyQt6',
                    'PySide2', 'PySide6', 'magicgui', 'superqt'))
        print(','.join(qt))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip() == ""
