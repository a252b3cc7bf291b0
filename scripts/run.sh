#!/usr/bin/env bash
# The main job: installs dependencies, builds a release binary and runs the conv kernel benchmark
# (VGG-11's convolutions at CIFAR shapes against a plain sgemm). Extra arguments go to the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build -c release
.build/release/neuralscale bench conv "$@"
