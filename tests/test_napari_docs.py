"""Every Python example of docs/napari.md runs as written, each in a fresh process.

A ``<!-- example: script -->`` block runs as a script: its ``napari.Viewer()`` opens a window
(under the test's X server) and its ``napari.run()`` returns once pending events are handled
instead of waiting for the window to close. A ``<!-- example: console -->`` block runs in the
namespace napari's console has once the widget is open on the *Phantom lesion* sample, after
the console blocks before it (the docs read as one console session). Each process prints the
viewer's layers afterwards; the checks below hold for the block's own output and those layers.
They use the real built-in classifier and LiteMedSAM, as the docs do.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

pytestmark = [pytest.mark.gui, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "napari.md"
BLOCK = re.compile(r"(?:<!-- example: (\w+) -->\s*)?```python\n(.*?)```", re.S)
START, LAYERS = "@@ example starts @@", "@@ layers @@"

RUNNER = textwrap.dedent(
    f"""
    import json, sys, weakref
    from pathlib import Path

    import napari
    from napari.qt import get_qapp

    napari.run = lambda *args, **kwargs: get_qapp().processEvents()
    kind, doc, *blocks = sys.argv[1:]
    namespace = {{"__name__": "__main__"}}
    if kind == "console":
        from napari_samcam._qt._widget import SamcamWidget

        viewer = napari.Viewer(show=False)
        viewer.open_sample("napari-samcam", "phantom-lesion")
        viewer.window.add_dock_widget(SamcamWidget(viewer))
        namespace["viewer"] = viewer
        for entry in viewer.window._qt_viewer.console_backlog:  # what the console receives
            for name, value in entry.items():
                namespace[name] = value() if isinstance(value, weakref.ref) else value
    for i, path in enumerate(blocks):
        if i == len(blocks) - 1:
            print({START!r}, flush=True)
        exec(compile(Path(path).read_text(), doc, "exec"), namespace)
    viewer = namespace.get("viewer")
    layers = [
        {{
            "name": layer.name,
            "type": type(layer).__name__,
            "dtype": str(getattr(layer.data, "dtype", "")),  # Shapes data: a list
            "shape": list(getattr(layer.data, "shape", (len(layer.data),))),
            "rows": len(getattr(layer, "features", ())),
        }}
        for layer in (viewer.layers if viewer is not None else [])
    ]
    print({LAYERS!r}, json.dumps(layers), flush=True)
    """
)


def doc_blocks() -> list[tuple[str, str]]:
    """``(kind, code)`` of every fenced Python block of docs/napari.md, in order."""
    return [(kind, code) for kind, code in BLOCK.findall(DOC.read_text(encoding="utf-8"))]


def _layers(out: str) -> dict[str, dict]:
    line = next(line for line in out.splitlines() if line.startswith(LAYERS))
    return {layer["name"]: layer for layer in json.loads(line[len(LAYERS) :])}


def _printed(out: str) -> str:
    """What the block itself printed (not the blocks before it, not the layer dump)."""
    text = out.split(START, 1)[1]
    return text.split(LAYERS, 1)[0].strip("\n")


def _floats(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text)]


# -- what each block must do, in the order of the docs ----------------------------------------


def check_console_explain_segment_metrics(printed, layers, folder):
    assert printed.splitlines()[0].startswith("lesion-detector ")
    assert "sam-box" in printed and "iou" in printed
    assert layers["phantom lesion box regions"]["rows"] == 1
    assert layers["phantom lesion lesion-detector gradcam [lesion]"]["dtype"] == "float32"


def check_console_plain_api(printed, layers, folder):
    (energy,) = _floats(printed)
    assert 0.0 < energy <= 1.0
    assert layers["by hand"]["type"] == "Image"


def check_console_default_image(printed, layers, folder):
    assert printed.splitlines()[0] == "phantom lesion"
    for source in ("sam-box", "sam-points", "sam-saliency-box"):
        assert source in printed
    assert (
        "phantom lesion lesion-detector gradcam [lesion]" in printed
    )  # every row scored against the map
    for kind in ("box", "point", "saliency"):  # each prompt kind in its own layer
        assert layers[f"phantom lesion {kind} regions"]["rows"] == 1
    assert not any(name.startswith("by hand ") for name in layers)


def check_script_session(printed, layers, folder):
    assert "sam-box" in printed
    assert layers["phantom lesion box regions"]["rows"] == 1
    metrics = (folder / "phantom-metrics.csv").read_text(encoding="utf-8")
    assert metrics.startswith("label,iou,dice,hit,energy,") and "sam-box" in metrics


def check_script_open_dicom(printed, layers, folder):
    assert printed == "RG1_UNCI (CR) (1955, 1841) CR"
    (layer,) = layers.values()  # one layer: the file, not the other series of its folder
    assert layer["shape"] == [1955, 1841] and layer["dtype"] == "float32"


def check_script_reader_preference(printed, layers, folder):
    assert printed.strip() == "['*.dcm', '*.dicom', '*.ima', '*.nii', '*.nii.gz']"
    saved = (folder / "napari-settings.yaml").read_text(encoding="utf-8")
    assert saved.count("napari-samcam") == 5


def check_script_mask_round_trip(printed, layers, folder):
    assert printed.split() == ["Labels", "int32", "regions", "1"]
    assert (folder / "mask.nii.gz").is_file() and (folder / "mask.json").is_file()
    assert layers["phantom lesion box regions [1]"]["type"] == "Labels"


CHECKS = [
    ("console", check_console_explain_segment_metrics),
    ("console", check_console_plain_api),
    ("console", check_console_default_image),
    ("script", check_script_session),
    ("script", check_script_open_dicom),
    ("script", check_script_reader_preference),
    ("script", check_script_mask_round_trip),
]


def test_every_python_block_is_an_example_with_a_check():
    kinds = [kind for kind, _ in doc_blocks()]
    assert kinds == [kind for kind, _ in CHECKS], "add a check to CHECKS for each new example"


def test_docs_box_is_the_sample_lesion_box():
    from napari_samcam._napari._layers import rectangle_to_box
    from napari_samcam._napari._sample_data import phantom_nodule

    shapes = next(d for d in phantom_nodule() if d[2] == "shapes")
    box = rectangle_to_box(shapes[0][0], (512, 512))
    assert f"boxes=[{box}]" in DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def builtin_models():
    from napari_samcam.classifiers import load_classifier

    try:
        load_classifier("lesion-detector", device="cpu")
    except Exception as exc:  # the shipped weights are not in this checkout
        pytest.skip(f"built-in classifier not available: {exc}")


@pytest.mark.parametrize(
    "number", range(len(CHECKS)), ids=[check.__name__[6:] for _, check in CHECKS]
)
def test_example_runs_in_a_fresh_process(number, tmp_path, builtin_models):
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs an X server (pytest-xvfb provides one)")
    blocks = doc_blocks()
    kind, code = blocks[number]
    assert kind == CHECKS[number][0]
    chain = [c for k, c in blocks[:number] if k == "console"] if kind == "console" else []
    paths = []
    for i, text in enumerate([*chain, code]):
        path = tmp_path / f"block{i}.py"
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "NAPARI_CONFIG": str(tmp_path / "napari-settings.yaml"),  # never the user's settings
    }
    out = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", RUNNER, kind, str(DOC), *paths],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    CHECKS[number][1](_printed(out.stdout), _layers(out.stdout), tmp_path)
