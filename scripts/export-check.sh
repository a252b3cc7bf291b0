#!/usr/bin/env bash
# Exports and verifies (onnx checker + ONNX Runtime on 100 real test images) every net at ratios
# 0.25 and 1.0, uniform and NeuralScale, on Fashion-MNIST. The nets are briefly trained (one epoch
# on a few hundred images at a low learning rate: real BN statistics, not a good model) and the NeuralScale widths come
# from a fast one-iteration search per net; what is checked is the export, not the accuracy.
# Prints one line per net, then a table. Takes about 15 minutes on 2 cores.
#
#   scripts/export-check.sh [OUT_DIR]     (default /tmp/neuralscale-export-check)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/neuralscale-export-check}
mkdir -p "$out"
swift build -c release >/dev/null || exit 1
ns=.build/release/neuralscale

rows=()
for model in vgg11 mobilenetv2 preact_resnet18 resnet50; do
    descent="$out/$model-descent"
    if [ ! -f "$descent/descent.json" ]; then
        "$ns" descend --model "$model" --dataset fashion-mnist --preset quick --iterations 1 --subset 1000 \
            --prune-count 50 --prune-every 2 --out "$descent" >"$out/$model-descent.log" 2>&1
    fi
    for ratio in 0.25 1.0; do
        for scaling in uniform neuralscale; do
            run="$out/$model-$scaling-r$ratio"
            extra=()
            [ "$scaling" = neuralscale ] && extra=(--descent "$descent/descent.json")
            if [ ! -f "$run/best.h5" ] && ! "$ns" train --model "$model" --dataset fashion-mnist --ratio "$ratio" \
                    --scaling "$scaling" "${extra[@]}" --epochs 1 --subset 512 --lr 0.02 --val-split 0.05 --out "$run" \
                    >"$run.log" 2>&1; then
                echo "$model $scaling r$ratio: training failed, see $run.log"
                rows+=("| $model | $scaling | $ratio | training failed ($run.log) | | | | |")
                continue
            fi
            report=$("$ns" export --checkpoint "$run/best.h5" --onnx "$run.onnx" --json 2>&1) || true
            echo "$model $scaling r$ratio: $report"
            rows+=("$(python3 - "$model" "$scaling" "$ratio" "$report" <<'EOF'
import json, sys
model, scaling, ratio, report = sys.argv[1:]
try:
    r = json.loads(report.splitlines()[-1])
except (ValueError, IndexError):
    print(f"| {model} | {scaling} | {ratio} | export failed: {report.strip()[:120]} | | | | |")
    sys.exit(0)
v = r["verification"]
f = lambda x, spec: "n/a" if x is None else format(x, spec)
print(f"| {model} | {scaling} | {ratio} | {'pass' if v['passed'] else 'FAIL: ' + '; '.join(v['errors'])} | "
      f"{f(v['max_cosine_distance'], '.2e')} | {f(v['top1_agreement'] and 100 * v['top1_agreement'], '.0f')}% | "
      f"{f(v['max_abs_diff'], '.2e')} | {r['bytes'] / 1e6:.1f} MB |")
EOF
)")
        done
    done
done
echo
echo "| net | scaling | ratio | verification | max cosine distance | top-1 agreement | max abs diff | size |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
