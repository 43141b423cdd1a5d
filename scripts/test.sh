#!/usr/bin/env bash
# Set up and run the whole test suite (unit, integration, end-to-end).
# The Prometheus collector is tested against a real Prometheus and the HTML report in a real
# browser: Debian's prometheus and chromium packages are installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
command -v git >/dev/null || missing+=(git)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
scripts/setup.sh dev
exec .venv/bin/python -m pytest "$@"
