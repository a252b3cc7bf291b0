#!/usr/bin/env bash
# What hardware-friendly widths buy on this CPU: MobileNetV2 and ResNet-50 at ratios 0.25 and 0.5,
# the uniform widths as they are against the same P with every width a multiple of 8 and of 16
# (`--channel-multiple`, as `stats --ratio R --channel-multiple K` gives them), timed at batch 1
# on ONNX Runtime and on the engine (`bench infer`). The machine is noisy: the three settings of a
# (net, ratio) run one right after the other, for --rounds rounds, and the script prints the
# median over rounds of each setting's latency divided by the unrounded one's.
#
#   [NETS="mobilenetv2 resnet50"] [RATIOS="0.25 0.5"] benchmarks/channel-multiple.sh [ROUNDS=3] [THREADS=0]
#   (release build in .build/release; results in benchmarks/results/channel-multiple/<ratios>/)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
threads=${2:-0}
bin=.build/release/neuralscale
nets=${NETS:-mobilenetv2 resnet50}
ratios=${RATIOS:-0.25 0.5}
out=benchmarks/results/channel-multiple/r${ratios// /-}
mkdir -p "$out"
raw="$out/raw.jsonl"
: > "$raw"
for r in $(seq 1 "$rounds"); do
    for net in $nets; do
        for ratio in $ratios; do
            for k in 1 8 16; do
                flags=()
                [ "$k" = 1 ] || flags=(--channel-multiple "$k")
                "$bin" bench infer --model "$net" --ratios "$ratio" "${flags[@]}" --batch-sizes 1 --warmup 20 --runs 80 --trials 3 \
                    --threads "$threads" --json 2>/dev/null |
                    python3 -c "import json,sys; d=json.load(sys.stdin); [print(json.dumps({'round': $r, 'net': '$net', 'ratio': $ratio, 'k': $k, 'backend': t['backend'], 'median_ms': t['median_ms'], 'params': t.get('params')})) for t in d['timings']]" >> "$raw"
            done
            echo "round $r/$rounds: $net x$ratio done" >&2
        done
    done
done
python3 - "$raw" <<'PY' | tee "$out/summary.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: (r["net"], r["ratio"], r["backend"], r["round"])
base = {key(r): r["median_ms"] for r in rows if r["k"] == 1}
print("| net | ratio | backend | params (K=1 / 8 / 16) | ms K=1 | K=8 / K=1 | K=16 / K=1 |")
print("|---|---:|---|---|---:|---:|---:|")
for net in sorted({r["net"] for r in rows}):
    for ratio in sorted({r["ratio"] for r in rows}):
        for backend in ["ort", "swift"]:
            sel = [r for r in rows if r["net"] == net and r["ratio"] == ratio and r["backend"] == backend]
            if not sel:
                continue
            params = [next((r["params"] for r in sel if r["k"] == k), None) for k in (1, 8, 16)]
            ms1 = statistics.median(r["median_ms"] for r in sel if r["k"] == 1)
            ratios = [statistics.median(r["median_ms"] / base[key(r)] for r in sel if r["k"] == k) for k in (8, 16)]
            print(f"| {net} | {ratio} | {backend} | {' / '.join(str(p) for p in params)} | {ms1:.3f} | {ratios[0]:.2f} | {ratios[1]:.2f} |")
PY
