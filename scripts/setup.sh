#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: system packages, then a virtual
# environment in .venv with every Python dependency. Quick when all is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
need_venv=""
PY=${PYTHON:-python3}
# python3-venv: Debian splits venv/ensurepip out of python3. chromium + chromium-driver: the
# studio's browser test (selenium drives /usr/bin/chromedriver; no browser is downloaded).
$PY -c "import ensurepip, venv" 2>/dev/null || need_venv=1
for pkg in fluidsynth libfluidsynth3 fluid-soundfont-gm ffmpeg chromium chromium-driver \
    ${need_venv:+python3-venv}; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.midimix-installed
# Re-install only when the dependency list changed.
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/pip install -q --upgrade pip
    # The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
    .venv/bin/pip install -q torch==2.13.0
    .venv/bin/pip install -q -e '.[dev,download,studio]'
    # basic-pitch 0.4.0 pins tensorflow and an old resampy; its ONNX model runs on
    # onnxruntime, whose real needs pyproject.toml lists, so install it without deps.
    .venv/bin/pip install -q --no-deps basic-pitch==0.4.0
    echo "$want" > "$stamp"
fi
