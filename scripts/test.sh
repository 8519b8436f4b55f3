#!/usr/bin/env bash
# Set up .venv with pinned versions (and, as root, the Chromium of the browser test), lint,
# and run the whole test suite (slow tests included).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_browser.sh  # Debian chromium for tests/app/test_browser.py (as root)
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
