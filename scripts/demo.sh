#!/usr/bin/env bash
# Set everything up (idempotent), then generate a lo-fi/classical mix with the embedded model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m midimix.generate --genre-mix lofi=0.7,classical=0.3 --out-dir out "$@"
