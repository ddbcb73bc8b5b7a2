#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the real-browser test (tests/test_browser.py).
# Idempotent: does nothing when `chromium` is already on PATH. Needs root (or passwordless sudo) for apt.
# Playwright (from PyPI, the `test` extra) drives this system browser; `playwright install` is not used.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium already installed: $(command -v chromium)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: apt-get not found; install Chromium with your system's package manager" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_browser.sh: not root and no passwordless sudo; run: sudo apt-get install chromium" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium
echo "chromium installed: $(command -v chromium)"
