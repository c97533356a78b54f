#!/usr/bin/env bash
# The main job on the embedded default: set up if needed, then quantize EfficientNet-Lite0
# (ImageNet weights) on crops of real photos, lower it for the NPU and report.
# Extra arguments go to `neutronq demo` (see `neutronq demo --help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# --force: the demo replaces its own earlier run (its output folder holds nothing else)
exec "$ROOT/.venv/bin/python" -m neutronq demo --force "$@"
