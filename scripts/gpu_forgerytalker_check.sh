#!/usr/bin/env bash
# One GPU check of ForgeryTalker at the release's size, with random weights (no release weights needed):
#   1. write the full-size model (4.9 B parameters, stored bf16) as a checkpoint folder;
#   2. `mmtt run` it at batch 16 on a generated mini-MMTT under the release's precision policy
#      (the harness's default --precision auto on CUDA: EVA fp16 autocast, T5 bf16, the rest fp32);
#   3. scripts/bench_throughput.py --device cuda: loader vs model images/s, peak GPU memory, bottleneck,
#      for ForgeryTalker and every baseline that runs without training;
#   4. the GPU-marked tests.
# Usage (repository root, environment installed): OUT=/tmp/ft-gpu bash scripts/gpu_forgerytalker_check.sh
set -euo pipefail
OUT=${OUT:-/tmp/ft-gpu}
PY=${PY:-python}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
$PY scripts/forgerytalker_random_checkpoint.py --out "$OUT/ckpts/forgerytalker" --device cuda | tee "$OUT/checkpoint.json"
$PY -m benchmark data demo --out "$OUT/data" --n 240 --quiet --json > "$OUT/data.json"
$PY -m benchmark run forgerytalker --checkpoint "$OUT/ckpts/forgerytalker" --data "$OUT/data" \
    --split test --out "$OUT/run" --device cuda --batch-size 16 --quiet --json > "$OUT/run.json"
$PY scripts/bench_throughput.py --data "$OUT/data" --device cuda --checkpoints "$OUT/ckpts" --batch-size 16 \
    --n 32 --json > "$OUT/bench.json"
$PY -m pytest tests/test_forgerytalker_release.py -m gpu -q | tee "$OUT/pytest_gpu.txt"
cat "$OUT/run.json" "$OUT/bench.json"
