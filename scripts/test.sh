#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, GUI tests included (under Xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh testing
.venv/bin/python -m pytest "$@"
