#!/usr/bin/env bash
# The gradient sum overlapped with the backward pass against the sum after it: `bench train` as
# 2 processes x 1 thread (mpirun), NEURALSCALE_GRADIENT_BUCKET_MB=0 (after) and the default 4 MB
# buckets (overlapped), one right after the other, ROUNDS rounds per net. Prints the median step
# time of each, their ratio, and the milliseconds per step spent on the sum outside the backward
# pass (after: the whole sum; overlapped: the wait for the unfinished buckets after the pass).
#
#   benchmarks/overlap.sh [NETS] [RATIO] [ROUNDS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
nets=${1:-vgg11,mobilenetv2,preact_resnet18,resnet50}
ratio=${2:-1.0}
rounds=${3:-3}
steps=${4:-5}
swift build -c release >/dev/null
bin=.build/release/neuralscale
mpirun=(mpirun --allow-run-as-root --oversubscribe -np 2)
printf '%-16s %11s %13s %9s %9s %9s\n' net "after ms" "overlapped ms" "ratio" "sum ms" "wait ms"
for net in ${nets//,/ }; do
  after=(); over=(); sums=(); waits=()
  for _ in $(seq 1 "$rounds"); do
    line=$(NEURALSCALE_GRADIENT_BUCKET_MB=0 "${mpirun[@]}" "$bin" bench train --model "$net" --ratio "$ratio" --steps "$steps" --profile --json 2>/dev/null)
    after+=("$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stepMs"])')")
    sums+=("$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["phases"]["sumMs"])')")
    line=$("${mpirun[@]}" "$bin" bench train --model "$net" --ratio "$ratio" --steps "$steps" --profile --json 2>/dev/null)
    over+=("$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stepMs"])')")
    waits+=("$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["phases"]["sumMs"])')")
  done
  python3 - "$net" "${after[*]}" "${over[*]}" "${sums[*]}" "${waits[*]}" <<'PY'
import statistics, sys
net = sys.argv[1]
a, o, s, w = ([float(v) for v in x.split()] for x in sys.argv[2:6])
ratios = [y / x for x, y in zip(a, o)]
print(f"{net:<16} {statistics.median(a):11.1f} {statistics.median(o):13.1f} {statistics.median(ratios):9.2f} {statistics.median(s):9.1f} {statistics.median(w):9.1f}")
PY
done
