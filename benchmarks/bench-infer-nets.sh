#!/usr/bin/env bash
# Inference latency and memory of the four nets at ratios 0.25 and 1.0 (fresh nets, CIFAR shape
# 3x32x32, 10 classes) on ONNX Runtime and on this tool's engine, with the engine's median latency
# as a ratio to ONNX Runtime's per net and batch size (`bench infer --backend both`: the two run
# one right after the other for each net).
#
#   ROUNDS=5 benchmarks/bench-infer-nets.sh [OUT_DIR] [extra bench infer flags...]
#
# The machine is shared and noisy (ONNX Runtime's own batch-1 latency moves 2x between minutes),
# so `bench infer` runs the two backends' trials in pairs, one right after the other (its default
# --alternate), and the whole table is measured ROUNDS times (default 5); summary.md gives, per net
# and batch, the median of all the pairs' engine/ORT ratios over all rounds and their range
# (round-<k>/ holds each round's files; a round run with --no-alternate counts its one ratio of
# medians). The studies' protocol is --warmup 20 --runs 80 --trials 5; the defaults here are
# shorter, override them as extra flags.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/bench-infer-nets}
shift $(( $# >= 1 ? 1 : 0 ))
rounds=${ROUNDS:-5}
if ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]]; then
    echo "bench-infer-nets.sh: ROUNDS must be a whole number of rounds, at least 1 (got '$rounds')" >&2
    exit 2
fi
swift build -c release >/dev/null
for k in $(seq 1 "$rounds"); do
    echo "round $k of $rounds" >&2
    .build/release/neuralscale bench infer --model vgg11,mobilenetv2,preact_resnet18,resnet50 --ratios 0.25,1.0 \
        --batch-sizes 1,32 --warmup 3 --runs 20 --trials 3 --out "$out/round-$k" "$@" >/dev/null
done
python3 - "$out" "$rounds" <<'PY'
import csv, json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
ratios, ms = {}, {}
for k in range(1, rounds + 1):
    rows = list(csv.DictReader(open(f"{out}/round-{k}/bench-infer.csv")))
    by = {(r["model"], int(r["batch"]), r["backend"]): float(r["median_ms"]) for r in rows}
    paired = {(p["model"], p["batch"]): p["ratios"] for p in json.load(open(f"{out}/round-{k}/bench-infer.json")).get("paired", [])}
    for (model, batch, backend), t in by.items():
        ms.setdefault((model, batch, backend), []).append(t)
        if backend == "swift" and (model, batch) in paired:
            ratios.setdefault((model, batch), []).extend(paired[(model, batch)])
        elif backend == "swift" and (model, batch, "ort") in by:
            ratios.setdefault((model, batch), []).append(t / by[(model, batch, "ort")])
pairs = max(len(r) for r in ratios.values()) if ratios else 0
lines = [f"Engine / ONNX Runtime median latency, {rounds} rounds, {pairs} paired trials per setting in all "
         "(below 1: the engine is faster)", "",
         "| net | batch | engine ms (median of rounds) | ORT ms | engine / ORT (median of pairs) | range |",
         "| --- | ---: | ---: | ---: | ---: | --- |"]
at_most = 0
for (model, batch), r in ratios.items():
    m = statistics.median(r)
    at_most += m <= 1
    lines.append(f"| {model} | {batch} | {statistics.median(ms[(model, batch, 'swift')]):.3f} | "
                 f"{statistics.median(ms[(model, batch, 'ort')]):.3f} | {m:.2f}x | {min(r):.2f}-{max(r):.2f} |")
lines += ["", f"engine at most ORT's latency in {at_most} of {len(ratios)} settings"]
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
