"""A headless install (``pip install napari-samcam``, no extra) runs the core and the CLI, and
the version is written in one place."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import napari_samcam

ROOT = Path(__file__).resolve().parents[1]

#: What the ``napari`` / ``pyqt6`` extras bring and a headless install lacks.
VIEWER_PACKAGES = (
    "napari",
    "qtpy",
    "magicgui",
    "npe2",
    "vispy",
    "superqt",
    "app_model",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "PySide6",
)

BLOCKER = f"""
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {VIEWER_PACKAGES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (headless install)")
        return None

sys.meta_path.insert(0, NotInstalled())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, cwd=ROOT
    )


def test_the_blocker_blocks():
    done = _run("import napari\n")
    assert done.returncode != 0 and "headless install" in done.stderr


def test_the_core_api_imports_without_napari_or_qt():
    code = (
        "import json, napari_samcam\n"
        "core = [n for n in napari_samcam.__all__ if n not in ('SamcamSession', '__version__')]\n"
        "for name in core:\n"
        "    getattr(napari_samcam, name)\n"
        "import napari_samcam.evaluation.runner, napari_samcam.datasets, napari_samcam.demo\n"
        "print(json.dumps(len(core)))\n"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == len(napari_samcam.__all__) - 2


def test_the_cli_runs_without_napari_or_qt():
    code = (
        "import contextlib, io, json\n"
        "from napari_samcam.cli import main\n"
        "codes = []\n"
        "for argv in (['--help'], ['evaluate', '--help'], ['phantoms', '--help']):\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as exc:\n"
        "            codes.append([exc.code, 'usage: samcam' in out.getvalue()])\n"
        "print(json.dumps(codes))\n"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[0, True]] * 3


def test_napari_and_qt_are_extras_not_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {dep.split(">")[0].split("[")[0].split("=")[0] for dep in project["dependencies"]}
    assert not names & {p.lower() for p in VIEWER_PACKAGES}, names
    extras = project["optional-dependencies"]
    assert any(dep.startswith("napari>=") for dep in extras["napari"])
    assert "napari-samcam[napari]" in extras["pyqt6"]


def test_the_version_is_written_once():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    config = tomllib.loads(text)
    assert "version" not in config["project"] and "version" in config["project"]["dynamic"]
    attr = config["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "napari_samcam.__version__"
    assert napari_samcam.__version__.count(".") == 2
