#!/usr/bin/env bash
# Set everything up (idempotent), then lint, format-check, type-check and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check midimix tests benchmarks examples
.venv/bin/ruff format --check midimix tests benchmarks examples
.venv/bin/mypy
.venv/bin/pytest -q "$@"
