#!/usr/bin/env bash
# The issue's check of `neuralscale prune`: VGG-11 x0.5 trained on Fashion-MNIST (3 epochs), pruned
# to half its MFLOPs, fine-tuned for 2 epochs; then `stats` (the target met), `export` (verified
# with ONNX Runtime) and the report. Output in benchmarks/results/prune/ (about 6 minutes on 2 cores).
#   scripts/prune-check.sh [DATA_DIR=/usr/share/datasets/fashion-mnist]   (release build in .build/release)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-/usr/share/datasets/fashion-mnist}
bin=.build/release/neuralscale
work=$(mktemp -d /tmp/neuralscale-prune-check-XXXXXX)
trap 'rm -rf "$work"' EXIT
out=benchmarks/results/prune
mkdir -p "$out"
{
    "$bin" train --model vgg11 --dataset fashion-mnist --ratio 0.5 --epochs 3 --lr 0.05 --data-dir "$data" --out "$work/run" 2>&1 | tail -n 1
    half=$("$bin" stats --checkpoint "$work/run/best.h5" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['mflops'] / 2)")
    echo "target: $half MFLOPs (half of the trained net's)"
    "$bin" prune --checkpoint "$work/run/best.h5" --target-mflops "$half" --fine-tune-epochs 2 --data-dir "$data" --out "$work/pruned" 2>/dev/null
    "$bin" stats --checkpoint "$work/pruned/pruned.h5"
    "$bin" export --checkpoint "$work/pruned/pruned.h5" --onnx "$work/pruned.onnx" --data-dir "$data" 2>&1 | tail -n 2
    cp "$work/pruned/prune.json" "$out/prune.json"
} | tee "$out/prune-check.txt"
