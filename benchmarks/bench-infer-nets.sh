#!/usr/bin/env bash
# Inference latency and memory of the four nets at ratios 0.25 and 1.0 (fresh nets, CIFAR shape
# 3x32x32, 10 classes) on ONNX Runtime and on this tool's engine, with the engine's median latency
# as a ratio to ONNX Runtime's per net and batch size (`bench infer --backend both`: the two run
# one right after the other for each net).
#
#   benchmarks/bench-infer-nets.sh [OUT_DIR] [extra bench infer flags...]
#
# The studies' protocol is --warmup 20 --runs 80 --trials 5; the defaults here are shorter
# (ResNet-50 x1.0 at batch 32 takes seconds per run on the engine), override them as extra flags.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/bench-infer-nets}
shift $(( $# >= 1 ? 1 : 0 ))
swift build -c release >/dev/null
.build/release/neuralscale bench infer --model vgg11,mobilenetv2,preact_resnet18,resnet50 --ratios 0.25,1.0 \
    --batch-sizes 1,32 --warmup 3 --runs 10 --trials 3 --out "$out" "$@"
