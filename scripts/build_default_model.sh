#!/usr/bin/env bash
# Rebuild the embedded default model from the offline corpus on this machine's CPU (or GPU):
#   bash scripts/build_default_model.sh      # corpus -> tokens -> train -> compare -> package
# Every step is resumable: run it again after an interruption and it goes on where it stopped
# (training runs in calls of CHUNK steps, each ending with its state saved in run/last).
# The trained model replaces the embedded one only if benchmarks/compare_models.py finds it
# better on every figure (PACKAGE=0: train only). Knobs (environment): LOFI, CLASSICAL (-1: all
# scores), POSITIONS and VELOCITIES (the tokenizer's grid per beat and velocity bins), PRESET,
# STEPS, BATCH, MAX_SEQ_LEN, WARMUP, DROPOUT, EVAL_EVERY, CHUNK, THREADS, DEVICE, HARDWARE (for
# the model card), WORK, PACKAGE, OLD_TOKENS (a token data set of the embedded model's
# vocabulary, for comparing a model of another grid: its NLL is then read on the music both
# vocabularies write, docs/train.md).
# CPU recipe (the defaults): 10,000 steps of 16 x 256 tokens (41 M tokens, about four passes
# over the transposed training pieces), dropout 0.1, about 80 min of training on 2 cores when
# nothing else runs (9,000 tokens/s). 256-token chunks learned more per note than 512 at the
# same tokens per step (benchmarks/bench_bpe.py, docs/train.md). Its first run (82 min, part
# of it beside other work) is the embedded model: better than the model before it on every
# figure once calibration maps were logistic fits (README, MODEL_CARD.md). GPU recipe:
#   STEPS=8000 BATCH=32 MAX_SEQ_LEN=512 DROPOUT=0 WARMUP=200 EVAL_EVERY=500 CHUNK=8000 DEVICE=cuda HARDWARE="..." \
#       bash scripts/build_default_model.sh
# (validation loss 0.70 in 4 min on an H100; its raw mix leaned to lo-fi: packaging fits a
# calibration map to whichever model was trained, before comparing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
WORK=${WORK:-data/default-build}
LOFI=${LOFI:-1500}
CLASSICAL=${CLASSICAL:--1}
POSITIONS=${POSITIONS:-4}  # 16th-note grid (a finer one keeps more of the lo-fi: README)
VELOCITIES=${VELOCITIES:-8}
PRESET=${PRESET:-small}
STEPS=${STEPS:-10000}
BATCH=${BATCH:-16}
MAX_SEQ_LEN=${MAX_SEQ_LEN:-256}
WARMUP=${WARMUP:-300}
DROPOUT=${DROPOUT:-0.1}  # several passes over the data
EVAL_EVERY=${EVAL_EVERY:-1000}
DEVICE=${DEVICE:-auto}
HARDWARE=${HARDWARE:-}
CHUNK=${CHUNK:-500}  # training steps per call: each call ends with its state saved in run/last

$PY -m midimix.corpus --out-dir data/corpus --lofi "$LOFI" --classical "$CLASSICAL" --quiet
$PY -m midimix.tokenize data/corpus --out "$WORK/tokens" --workers 2 --no-progress \
    --positions-per-beat "$POSITIONS" --num-velocities "$VELOCITIES"
while :; do
    # One thread per process while the machine is busy (two would fight over one core);
    # THREADS= fixes it (one thread trains at about 80% of two's speed on this CPU).
    load=$(cut -d' ' -f1 /proc/loadavg)
    threads=${THREADS:-$(awk -v l="$load" 'BEGIN { print (l > 2.5) ? 1 : 0 }')}
    resume=""; [ -d "$WORK/run/last" ] && resume="--resume"
    $PY -m midimix.train --tokens-dir "$WORK/tokens" --run-dir "$WORK/run" --preset "$PRESET" \
        --max-steps "$STEPS" --batch-size "$BATCH" --max-seq-len "$MAX_SEQ_LEN" --lr 1e-3 --warmup-steps "$WARMUP" --dropout "$DROPOUT" \
        --eval-every "$EVAL_EVERY" --stop-after-steps "$CHUNK" --threads "$threads" \
        --device "$DEVICE" --no-progress $resume \
        | tee "$WORK/train-last.txt"
    grep -q "train: done" "$WORK/train-last.txt" && break
done
[ "${PACKAGE:-1}" = 1 ] || exit 0  # PACKAGE=0: train only, package later
$PY scripts/package_default_model.py --run-dir "$WORK/run" --corpus data/corpus --work "$WORK" \
    ${HARDWARE:+--hardware "$HARDWARE"} ${OLD_TOKENS:+--old-tokens-dir "$OLD_TOKENS"}
