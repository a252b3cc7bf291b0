#!/usr/bin/env bash
# Snapshots what a net's inference graph produces, to check a refactor of the graph, the export
# or the counts: for every net at ratio 0.25, uniform and NeuralScale (widths from a fast
# one-iteration search), briefly trained on Fashion-MNIST, it writes `stats --json` and the
# exported ONNX model (--no-verify) into DIR/NAME. The trained checkpoints are kept in DIR and
# reused, so a second snapshot with another build sees the same weights; compare two snapshots
# with scripts/compare_snapshots.py DIR/A DIR/B (same params, MFLOPs and CDL; ONNX Runtime
# outputs within a cosine distance of 1e-6 on the same random inputs).
#
#   scripts/graph-snapshot.sh DIR NAME     (uses .build/release/neuralscale; build it first)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$1 name=$2
ns=.build/release/neuralscale
mkdir -p "$dir/$name"
for model in vgg11 mobilenetv2 preact_resnet18 resnet50; do
    descent="$dir/$model-descent"
    [ -f "$descent/descent.json" ] || "$ns" descend --model "$model" --dataset fashion-mnist --preset quick --iterations 1 \
        --subset 1000 --prune-count 50 --prune-every 2 --out "$descent" >"$dir/$model-descent.log" 2>&1
    for scaling in uniform neuralscale; do
        run="$dir/$model-$scaling"
        extra=()
        [ "$scaling" = neuralscale ] && extra=(--descent "$descent/descent.json")
        [ -f "$run/best.h5" ] || "$ns" train --model "$model" --dataset fashion-mnist --ratio 0.25 --scaling "$scaling" \
            "${extra[@]}" --epochs 1 --subset 256 --lr 0.02 --val-split 0.05 --out "$run" >"$run.log" 2>&1
        "$ns" stats --checkpoint "$run/best.h5" --json >"$dir/$name/$model-$scaling.stats.json"
        "$ns" export --checkpoint "$run/best.h5" --onnx "$dir/$name/$model-$scaling.onnx" --no-verify >/dev/null
        echo "$model $scaling: $(cat "$dir/$name/$model-$scaling.stats.json")"
    done
done
