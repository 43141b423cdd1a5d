#!/usr/bin/env bash
# Set up and run the main job on the embedded default: `neuropilot demo` (no external server).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/neuropilot demo "$@"
