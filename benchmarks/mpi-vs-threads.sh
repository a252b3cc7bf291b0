#!/usr/bin/env bash
# Data parallelism on one host: `bench train` as 1 process x 2 threads and as 2 processes x 1
# thread (mpirun), one right after the other, ROUNDS rounds per net; prints the median step time
# of each, their ratio, and the gradient megabytes and milliseconds the processes' sum took.
#
#   benchmarks/mpi-vs-threads.sh [NETS] [RATIO] [ROUNDS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
nets=${1:-vgg11,mobilenetv2,preact_resnet18,resnet50}
ratio=${2:-1.0}
rounds=${3:-3}
steps=${4:-5}
swift build -c release >/dev/null
bin=.build/release/neuralscale
mpirun=(mpirun --allow-run-as-root --oversubscribe -np 2)
printf '%-16s %10s %12s %8s %10s %10s\n' net "1x2 ms" "2x1 ms" "2x1/1x2" "sum MB" "sum ms"
for net in ${nets//,/ }; do
  threads=(); procs=(); sums=(); mb=0
  for _ in $(seq 1 "$rounds"); do
    threads+=("$("$bin" bench train --model "$net" --ratio "$ratio" --steps "$steps" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stepMs"])')")
    line=$("${mpirun[@]}" "$bin" bench train --model "$net" --ratio "$ratio" --steps "$steps" --profile --json 2>/dev/null)
    procs+=("$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stepMs"])')")
    sums+=("$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["phases"]["sumMs"])')")
    mb=$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["summedMB"])')
  done
  python3 - "$net" "$mb" "${threads[*]}" "${procs[*]}" "${sums[*]}" <<'PY'
import statistics, sys
net, mb = sys.argv[1], float(sys.argv[2])
t, p, s = ([float(v) for v in a.split()] for a in sys.argv[3:6])
ratios = [b / a for a, b in zip(t, p)]
print(f"{net:<16} {statistics.median(t):10.1f} {statistics.median(p):12.1f} {statistics.median(ratios):8.2f} {mb:10.1f} {statistics.median(s):10.1f}")
PY
done
