#!/usr/bin/env bash
# The search's gated training step against a plain one (issue 13's "within 10%"), measured in
# alternating runs: per round plain, gated, gated, plain (`bench train --json`, 10 timed steps
# each), the round's ratio (gated step ms / plain step ms, each the mean of its two runs), and the
# median over the rounds. train-vs-torch.sh's GATED=1 times the gated step after PyTorch's run,
# minutes away from ours on a noisy machine; this pairs them.
#
#   benchmarks/gated-vs-plain.sh [NET:RATIO ...]     (builds the release binary first)
#
# Defaults: the four nets at ratios 0.25 and 1.0. ROUNDS (default 3) and STEPS (default 10).
# Prints to standard output (benchmarks/results/gated-vs-plain keeps one sitting's output).
set -euo pipefail
export LC_ALL=C  # printf's %.1f with a decimal point
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
steps=${STEPS:-10}
if ! [[ $rounds =~ ^[1-9][0-9]*$ && $steps =~ ^[1-9][0-9]*$ ]]; then
  echo "ROUNDS and STEPS must be positive integers (got ROUNDS=$rounds STEPS=$steps)" >&2
  exit 2
fi
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then
  configs=(vgg11:0.25 mobilenetv2:0.25 preact_resnet18:0.25 resnet50:0.25 vgg11:1.0 mobilenetv2:1.0 preact_resnet18:1.0 resnet50:1.0)
fi
for cfg in "${configs[@]}"; do
  if [[ $cfg != *:* ]]; then
    echo "expected NET:RATIO (e.g. vgg11:0.25), got '$cfg'" >&2
    exit 2
  fi
done
swift build -c release >&2
step_ms() {
  .build/release/neuralscale bench train --model "$1" --ratio "$2" --steps "$steps" $3 --json \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["stepMs"])'
}
for cfg in "${configs[@]}"; do
  net=${cfg%:*}
  ratio=${cfg#*:}
  ratios=()
  for r in $(seq 1 "$rounds"); do
    p1=$(step_ms "$net" "$ratio" "")
    g1=$(step_ms "$net" "$ratio" --gated)
    g2=$(step_ms "$net" "$ratio" --gated)
    p2=$(step_ms "$net" "$ratio" "")
    q=$(python3 -c "print('%.3f' % (($g1 + $g2) / ($p1 + $p2)))")
    printf '%s x%s round %d: plain %.1f %.1f ms, gated %.1f %.1f ms, gated/plain %s\n' "$net" "$ratio" "$r" "$p1" "$p2" "$g1" "$g2" "$q"
    ratios+=("$q")
  done
  median=$(python3 -c "import statistics, sys; print('%.3f' % statistics.median(map(float, sys.argv[1:])))" "${ratios[@]}")
  echo "$net x$ratio: gated/plain per round ${ratios[*]}, median $median"
done
