#!/usr/bin/env bash
# The issue's comparison of `descend --couple-residuals` with the default search: for each residual
# net, a quick search (--preset quick: base ratio 0.25, 3 iterations on 5000 images) both ways on
# Fashion-MNIST, then the NeuralScale net of each at --ratio trained from scratch with two seeds
# (and the uniform net at the same ratio), each exported to ONNX. scripts/couple_residuals_summary.py
# prints the fits, the nets' shortcuts, sizes, ONNX node counts and test accuracies.
# Output in benchmarks/results/couple-residuals/ (PreAct ResNet-18 with SUBSET=20000 EPOCHS=2: about
# 80 minutes on 2 cores, most of it the two searches).
#   scripts/couple-residuals-check.sh [DATA_DIR=/usr/share/datasets/fashion-mnist]
#   environment: MODELS ("preact_resnet18 mobilenetv2"), RATIO (0.25), EPOCHS (3), SEEDS ("1 2"),
#                SUBSET (train on that many images; default all), WORK (a folder to keep the runs
#                in; a rerun resumes or skips what is there)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-/usr/share/datasets/fashion-mnist}
models=${MODELS:-preact_resnet18 mobilenetv2}
ratio=${RATIO:-0.25}
epochs=${EPOCHS:-3}
seeds=${SEEDS:-1 2}
work=${WORK:-/tmp/neuralscale-couple-residuals}
subset=(); [ -n "${SUBSET:-}" ] && subset=(--subset "$SUBSET")
bin=.build/release/neuralscale
out=benchmarks/results/couple-residuals
mkdir -p "$out" "$work"
swift build -c release >/dev/null

for m in $models; do
    for mode in default coupled; do
        dir="$work/$m-$mode"
        flag=(); [ "$mode" = coupled ] && flag=(--couple-residuals)
        if [ ! -f "$dir/descent/descent.json" ]; then
            resume=(); [ -f "$dir/descent/state.h5" ] && resume=(--resume)
            echo "== search $m $mode" >&2
            "$bin" descend --model "$m" --dataset fashion-mnist --preset quick "${flag[@]}" "${resume[@]}" \
                --data-dir "$data" --out "$dir/descent" > "$dir.descend.log" 2>&1
        fi
        cp "$dir/descent/descent.json" "$out/$m-$mode-descent.json"
    done
    for mode in uniform default coupled; do
        for seed in $seeds; do
            run="$work/$m-$mode-s$seed"
            if [ ! -f "$run/result.json" ]; then
                scaling=(--scaling neuralscale --descent "$work/$m-$mode/descent/descent.json")
                [ "$mode" = uniform ] && scaling=(--scaling uniform)
                resume=(); [ -f "$run/last.h5" ] && resume=(--resume)
                echo "== train $m $mode seed $seed" >&2
                "$bin" train --model "$m" --dataset fashion-mnist --ratio "$ratio" "${scaling[@]}" --epochs "$epochs" --lr 0.05 \
                    --seed "$seed" "${subset[@]}" "${resume[@]}" --data-dir "$data" --out "$run" > "$run.train.log" 2>&1
            fi
            cp "$run/result.json" "$out/$m-$mode-s$seed-result.json"
            "$bin" stats --checkpoint "$run/best.h5" --json > "$out/$m-$mode-s$seed-stats.json"
            [ -f "$run/model.onnx" ] || "$bin" export --checkpoint "$run/best.h5" --onnx "$run/model.onnx" --data-dir "$data" \
                > "$run.export.log" 2>&1
            python3 -c "
import collections, json, onnx, sys
m = onnx.load(sys.argv[1])
print(json.dumps(dict(collections.Counter(n.op_type for n in m.graph.node)), sort_keys=True))" "$run/model.onnx" \
                > "$out/$m-$mode-s$seed-onnx-ops.json"
            tail -n 1 "$run.export.log" > "$out/$m-$mode-s$seed-export.txt"
        done
    done
done
python3 scripts/couple_residuals_summary.py "$out" $models | tee "$out/summary.md"
