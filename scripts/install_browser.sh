#!/usr/bin/env bash
# Install the browser the app's browser test drives (tests/app/test_browser.py): Debian's
# chromium, through apt, when running as root and no Chromium is there yet. Playwright
# drives this system binary (no browser download). Without root it only says what to run.
set -euo pipefail

for name in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$name" > /dev/null 2>&1; then
    echo "[install_browser] $name is installed: $(command -v "$name")"
    exit 0
  fi
done
if [ "$(id -u)" != 0 ]; then
  echo "[install_browser] no Chromium found; as root run: apt-get install -y chromium" >&2
  echo "[install_browser] (the browser test is skipped without it)" >&2
  exit 0
fi
echo "[install_browser] installing Debian's chromium (apt-get)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends chromium; then
  apt-get update
  apt-get install -y --no-install-recommends chromium
fi
command -v chromium
