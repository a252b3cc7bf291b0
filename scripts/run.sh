#!/usr/bin/env bash
# The main job: installs dependencies and Debian's Fashion-MNIST, builds a release binary and
# trains VGG-11 at width ratio 0.25 on Fashion-MNIST for 3 epochs (about 2-3 minutes on 2 cores),
# then prints the test accuracy. Extra arguments go to `neuralscale train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh dataset-fashion-mnist
swift build -c release
out="checkpoints/demo-vgg11-fashion-mnist-$(date +%Y%m%d-%H%M%S)"
.build/release/neuralscale train --model vgg11 --dataset fashion-mnist --ratio 0.25 --epochs 3 --lr 0.05 --out "$out" "$@"
echo "results in $out (result.json, metrics.jsonl, best.h5, last.h5)"
