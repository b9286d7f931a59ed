#!/usr/bin/env bash
# Rebuild the embedded default model from the offline corpus, on this machine's CPU (or GPU).
#   bash scripts/build_default_model.sh            # corpus -> tokens -> train -> package -> card
# Environment knobs (defaults fit about 45 minutes on a 2-core CPU):
#   LOFI=900 CLASSICAL=300 PRESET=small STEPS=3000 BATCH=16 WORK=data/default-build
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
WORK=${WORK:-data/default-build}
LOFI=${LOFI:-900}
CLASSICAL=${CLASSICAL:-300}
PRESET=${PRESET:-small}
STEPS=${STEPS:-3000}
BATCH=${BATCH:-16}

$PY -m midimix.corpus --out-dir "$WORK/corpus" --lofi "$LOFI" --classical "$CLASSICAL"
$PY -m midimix.tokenize "$WORK/corpus" --out "$WORK/tokens"
resume=""
[ -d "$WORK/run/last" ] && resume="--resume"
$PY -m midimix.train --tokens-dir "$WORK/tokens" --run-dir "$WORK/run" --preset "$PRESET" \
    --max-steps "$STEPS" --batch-size "$BATCH" $resume
$PY scripts/package_default_model.py --run-dir "$WORK/run" --corpus "$WORK/corpus" \
    --report-dir "$WORK/report"
