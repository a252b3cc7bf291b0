#!/usr/bin/env bash
# Quantizes a checkpoint's net two ways on the same calibration images and prints both
# accuracies on the whole test set: neuralscale's own QDQ export (`neuralscale quantize`) and ONNX
# Runtime's quantize_static (QDQ, per-channel int8 weights, the same --activations and --method as
# given to quantize: uint8 and MinMax by default) on the exported fp32 model.
#
#   scripts/quantize-vs-ort.sh CHECKPOINT [OUT_DIR] [extra quantize flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
checkpoint=$1 out=${2:-/tmp/neuralscale-quantize-vs-ort}
shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p "$out"
ns=.build/release/neuralscale
[ -x "$ns" ] || swift build -c release >/dev/null
"$ns" quantize --checkpoint "$checkpoint" --onnx "$out/neuralscale-int8.onnx" --save-inputs "$out" --json "$@" >"$out/neuralscale.json"
# The same calibration method and activation type for ONNX Runtime (its percentile is 99.999).
method=minmax activations=uint8 args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --method) method=${args[i + 1]} ;;
        --activations) activations=${args[i + 1]} ;;
    esac
done
python3 scripts/compare_quantize_static.py "$out/fp32.onnx" "$out/calibration.npy" "$out/test-images.npy" "$out/test-labels.npy" \
    --out "$out/ort-int8.onnx" --method "$method" --activations "$activations" --json >"$out/ort.json"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
ours = json.load(open(f"{out}/neuralscale.json"))["verification"]
ort = json.load(open(f"{out}/ort.json"))
pct = lambda x: "-" if x is None else f"{100 * x:.2f}%"
print(f"{'':24}{'top-1':>10}{'top-5':>10}{'integer convs':>16}")
print(f"{'fp32':24}{pct(ours['fp32_top1']):>10}{pct(ours['fp32_top5']):>10}")
print(f"{'neuralscale int8':24}{pct(ours['int8_top1']):>10}{pct(ours['int8_top5']):>10}"
      f"{ours['kernels']['integer_convs']:>10} of {ours['kernels']['fp32_convs']}")
print(f"{'ORT quantize_static':24}{pct(ort['int8_top1']):>10}{pct(ort['int8_top5']):>10}"
      f"{ort['kernels']['integer_convs']:>10} of {ort['kernels']['fp32_convs']}")
PY
