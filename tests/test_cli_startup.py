"""``samcam --help``, every ``samcam COMMAND --help`` and a rejected argument load no model
library: each runs in a fresh interpreter that reports the heavy modules it imported.

How long they take is measured by ``python -m benchmarks`` (the CLI row), not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from napari_samcam.cli import SUBCOMMANDS

SRC = str(Path(__file__).resolve().parents[1] / "src")

#: Modules that take seconds to import; none of them may load before a command's real work.
HEAVY = ("torch", "torchvision", "napari", "vispy", "skimage", "scipy", "pandas", "transformers")

PROBE = f"""
import contextlib, io, json, sys
from napari_samcam.cli import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(json.dumps({{"code": code, "heavy": heavy, "out": out.getvalue(), "err": err.getvalue()}}))
"""


def run_cli(*argv: str, cwd: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", ["", *SUBCOMMANDS])
def test_help_imports_no_model_library(command, tmp_path):
    result = run_cli(*([command] if command else []), "--help", cwd=tmp_path)
    assert result["code"] == 0
    assert result["heavy"] == []
    assert "usage: samcam" in result["out"]
    if command:
        assert f"samcam {command}" in result["out"]
    else:
        assert all(name in result["out"] for name in SUBCOMMANDS)


BAD_ARGUMENTS = {
    "explain a missing image": (["explain", "missing.png", "--out", "o"], "missing.png"),
    "explain an unknown CAM method": (
        ["explain", "missing.png", "--out", "o", "--method", "nope"],
        "not a CAM method",
    ),
    "segment a missing image": (
        ["segment", "missing.png", "--box", "1,2,30,40", "--out", "o"],
        "missing.png",
    ),
    "segment a 3-number box": (["segment", "x.png", "--box", "1,2,3", "--out", "o"], "box"),
    "evaluate a missing manifest": (["evaluate", "missing.csv", "--out", "o"], "missing.csv"),
    "demo with no images": (["demo", "--n", "0", "--out", "o"], "--n"),
    "phantoms with no count": (["phantoms", "--out", "o"], "--n"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_a_bad_argument_is_rejected_before_any_heavy_import(case, tmp_path):
    argv, named = BAD_ARGUMENTS[case]
    result = run_cli(*argv, cwd=tmp_path)
    assert result["code"] == 2
    assert named in result["err"]
    assert result["heavy"] == []
    assert not (tmp_path / "o").exists()  # nothing half-written
