#!/usr/bin/env bash
# Set up if needed, then run the whole test suite on every core (pytest-xdist: tests that share
# an expensive session fixture run in one worker, see tests/conftest.py). Extra arguments go to
# pytest (-n 0 runs in one process).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
WORKERS="$(nproc 2>/dev/null || echo 2)"
exec "$ROOT/.venv/bin/python" -m pytest -n "$WORKERS" --dist loadgroup "$@"
