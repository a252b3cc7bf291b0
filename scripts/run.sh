#!/usr/bin/env bash
# The main job, on Debian's Fashion-MNIST (installed here with the other dependencies):
#  1. the NeuralScale search on VGG-11 with --preset quick (3 iterations on 5000 images, ~8 min);
#  2. a 3-epoch training of the uniform and of the NeuralScale net at ratio 0.25 (~2.5 min each);
#  3. the size of both nets (`stats`), the NeuralScale net exported to ONNX and verified with
#     ONNX Runtime (`export`), quantized to int8 and verified (`quantize`), both nets and the int8
#     model timed on ONNX Runtime and the engine (`bench infer`), and a comparison of the two runs
#     with their device figures (`report`);
#  4. where the results and plots are.
# Extra arguments go to both `neuralscale train` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh dataset-fashion-mnist
swift build -c release
bin=.build/release/neuralscale
out="checkpoints/demo-$(date +%Y%m%d-%H%M%S)"
$bin descend --model vgg11 --dataset fashion-mnist --preset quick --out "$out/descent"
$bin widths --descent "$out/descent/descent.json" --ratio 0.25
for scaling in uniform neuralscale; do
    extra=()
    [ "$scaling" = neuralscale ] && extra=(--descent "$out/descent/descent.json")
    $bin train --model vgg11 --dataset fashion-mnist --ratio 0.25 --epochs 3 --lr 0.05 \
        --scaling "$scaling" "${extra[@]}" --out "$out/$scaling" "$@"
done
$bin stats --model vgg11 --dataset fashion-mnist --ratio 0.25
$bin stats --model vgg11 --dataset fashion-mnist --ratio 0.25 --scaling neuralscale --descent "$out/descent/descent.json"
$bin export --checkpoint "$out/neuralscale/best.h5" --onnx "$out/neuralscale/vgg11.onnx"
# int8: calibrated on 1000 training images, verified on the whole test set (JSON kept for the report).
$bin quantize --checkpoint "$out/neuralscale/best.h5" --onnx "$out/neuralscale/vgg11-int8.onnx" --json > "$out/neuralscale/quantize.json"
# Latency and memory of both nets (ONNX Runtime and this tool's engine, whose outputs are checked
# against ONNX Runtime's first) and of the int8 model.
$bin bench infer --checkpoint "$out/uniform/best.h5" "$out/neuralscale/best.h5" --onnx "$out/neuralscale/vgg11-int8.onnx" \
    --batch-sizes 1,32 --trials 3 --verify --out "$out/bench"
$bin report "$out/uniform/result.json" "$out/neuralscale/result.json" --bench "$out/bench/bench-infer.json" \
    --quantize "$out/neuralscale/quantize.json" --out "$out/report"
echo
echo "search:  $out/descent/descent.json, widths-r1.0.svg (layer widths), iteration-<i>-trajectory.svg/.csv, iteration-<i>-fit.json"
echo "uniform:     $out/uniform/result.json"
echo "neuralscale: $out/neuralscale/result.json, vgg11.onnx (verified ONNX model), vgg11-int8.onnx + quantize.json (int8)"
echo "inference:   $out/bench/bench-infer.json, bench-infer.csv, latency-vs-batch.svg, memory-vs-batch.svg"
echo "comparison:  $out/report/report.md (training and device tables), accuracy-vs-params.svg, accuracy-vs-mflops.svg, widths.svg,"
echo "             latency-vs-params.svg, memory-vs-params.svg"
