#!/usr/bin/env bash
# Create .venv and install napari-samcam with its models and sample data (all from PyPI).
# Usage: bash scripts/setup.sh [extra]   (extra: testing -> test tools, PyQt6, Xvfb packages)
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

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[$extra]"
