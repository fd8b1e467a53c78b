"""The public API: every name of ``napari_samcam.__all__`` loads on first use, and only then."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import napari_samcam

STUB = Path(napari_samcam.__file__).with_suffix(".pyi")


def _stub_names() -> dict[str, str]:
    """name -> the module the stub says holds it."""
    out = {}
    for node in ast.parse(STUB.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            out.update({alias.name: f"napari_samcam.{node.module}" for alias in node.names})
    return out


def test_the_stub_lists_the_public_api():
    names = _stub_names()
    assert set(napari_samcam.__all__) == {"__version__", *names}
    assert {"localization_metrics", "evaluate", "load_segmenter", "SamcamError"} <= set(names)
    assert dir(napari_samcam) == sorted(napari_samcam.__all__)


@pytest.mark.parametrize("name", sorted(_stub_names()))
def test_every_public_name_comes_from_its_module(name):
    module = _stub_names()[name]
    value = getattr(napari_samcam, name)
    if value is sys.modules.get("napari_samcam.evaluate"):  # the package, forwarding calls
        assert name == "evaluate" and callable(value)
    else:
        assert value is getattr(sys.modules[module], name)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        napari_samcam.no_such_name  # noqa: B018


def test_importing_the_package_loads_no_submodule():
    code = (
        "import json, sys, napari_samcam\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('napari_samcam.'))\n"
        "heavy = sorted(m for m in ('numpy', 'torch', 'napari') if m in sys.modules)\n"
        "napari_samcam.binarize\n"
        "after = 'napari_samcam.metrics' in sys.modules\n"
        "print(json.dumps([loaded, heavy, after]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded, heavy, after = json.loads(done.stdout)
    assert loaded == [] and heavy == []
    assert after


def test_evaluate_is_a_function_and_its_package_imports_as_usual():
    code = (
        "import napari_samcam.evaluation.runner as runner\n"
        "import napari_samcam\n"
        "from napari_samcam import evaluate\n"
        "assert evaluate is napari_samcam.evaluate and callable(evaluate)\n"
        "assert runner.evaluate is evaluate\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
