#!/usr/bin/env bash
# Set up (or reuse) the virtual environment at .venv and the Debian data packages.
# Idempotent: when nothing it depends on changed since the last run, it returns at once.
# Sourced by scripts/run.sh and scripts/test.sh; safe to run by itself.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
TORCH_PIN="torch==2.13.0"
# Debian packages that hold real data (photos: mate-backgrounds, gcompris-qt-data; Fashion-MNIST) and
# the browser for report screenshots.
DEB_PACKAGES="dataset-fashion-mnist mate-backgrounds gcompris-qt-data chromium"

stamp_of() {
    cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -d' ' -f1
}

missing_debs() {
    local missing=""
    for p in $DEB_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    echo "$missing"
}

setup_debs() {
    local missing
    missing="$(missing_debs)"
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        echo "[setup] installing Debian packages:$missing"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
        echo "[setup] WARNING: these Debian packages hold data the tests and the main job need:$missing" >&2
        echo "[setup]          install them with: sudo apt-get install -y$missing" >&2
    fi
}

setup_venv() {
    local want have=""
    want="$(stamp_of)"
    [ -f "$VENV/.neutronq-stamp" ] && have="$(cat "$VENV/.neutronq-stamp")"
    if [ -x "$VENV/bin/python" ] && [ "$want" = "$have" ]; then
        return 0
    fi
    echo "[setup] preparing $VENV"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    local constraints="$VENV/constraints.txt"
    echo "$TORCH_PIN" > "$constraints"
    # torch first and pinned: an unpinned torch pulls a CUDA build of several GB.
    "$VENV/bin/pip" install -q --disable-pip-version-check "$TORCH_PIN"
    "$VENV/bin/pip" install -q --disable-pip-version-check -c "$constraints" -e "$ROOT[data,test]"
    echo "$want" > "$VENV/.neutronq-stamp"
}

setup_debs
setup_venv
