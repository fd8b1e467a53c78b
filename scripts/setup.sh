#!/usr/bin/env bash
# Create .venv and install napari-samcam with its models and sample data (all from PyPI).
# Usage: bash scripts/setup.sh [extra]
#   extra: pyqt6 (default) | testing (test tools, PyQt6, Xvfb packages and SAM 2) | sam2
#          | headless (the core and the CLI only: no napari, no Qt)
# SAM 2 (the sam2 package) is a source distribution whose build imports torch: it is installed
# in a second step, without build isolation, against the torch installed in the first.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-pyqt6}"

if [ "$extra" = "testing" ] && ! command -v Xvfb >/dev/null 2>&1; then
  # The GUI tests run napari in a virtual X server.
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq \
    xvfb libxcb-icccm4 libxcb-keysyms1 >/dev/null
fi

first="$extra"
[ "$extra" = "sam2" ] && first="pyqt6"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$extra" = "headless" ]; then
  .venv/bin/python -m pip install -q -e .
else
  .venv/bin/python -m pip install -q -e ".[$first]"
fi
if [ "$extra" = "testing" ] || [ "$extra" = "sam2" ]; then
  # the SAM 2 tests run in CI: step two of the sam2 extra (README, "SAM 2")
  .venv/bin/python -m pip install -q wheel setuptools
  SAM2_BUILD_CUDA=0 .venv/bin/python -m pip install -q --no-build-isolation -e ".[sam2]"
fi
