#!/usr/bin/env bash
# The issue's check of `neuralscale prune`: VGG-11 x0.5 trained on Fashion-MNIST (3 epochs), pruned
# to half its MFLOPs, fine-tuned for 2 epochs, once as it comes and once with every width a
# multiple of 8 (--channel-multiple 8); each followed by `stats` (the target met) and `export`
# (verified with ONNX Runtime). Output in benchmarks/results/prune/ (about 9 minutes on 2 cores).
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
    for k in 1 8; do
        echo "--channel-multiple $k:"
        "$bin" prune --checkpoint "$work/run/best.h5" --target-mflops "$half" --fine-tune-epochs 2 --channel-multiple "$k" \
            --data-dir "$data" --out "$work/pruned-k$k" 2>/dev/null
        "$bin" stats --checkpoint "$work/pruned-k$k/pruned.h5" | head -n 3
        "$bin" export --checkpoint "$work/pruned-k$k/pruned.h5" --onnx "$work/pruned-k$k.onnx" --data-dir "$data" 2>&1 | tail -n 1
        cp "$work/pruned-k$k/prune.json" "$out/prune-k$k.json"
    done
} | tee "$out/prune-check.txt"
