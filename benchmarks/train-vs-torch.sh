#!/usr/bin/env bash
# Training throughput against PyTorch on this machine: for each net and width ratio, our
# `bench train --json` and benchmarks/torch_train_step.py run one right after the other, three
# rounds, and the median of the per-round ratios (ours / PyTorch images/s) is printed with both
# peak resident memories. Ratios from one sitting only: the machine is noisy.
#
#   benchmarks/train-vs-torch.sh [OUT_DIR] [NETS] [RATIOS] [ROUNDS] [STEPS]
#
# Defaults: benchmarks/results/train-vs-torch, all four nets, ratios 1.0,0.25, 3 rounds, 5 steps.
# Every measurement is appended to OUT_DIR/runs.jsonl; the summary goes to OUT_DIR/summary.csv.
# Set GATED=1 to also time the search's gated step (`bench train --gated`) in each round.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/train-vs-torch}
nets=${2:-vgg11,mobilenetv2,preact_resnet18,resnet50}
ratios=${3:-1.0,0.25}
rounds=${4:-3}
steps=${5:-5}
batch=${BATCH:-128}
mkdir -p "$out"
swift build -c release >/dev/null
runs="$out/runs.jsonl"
: > "$runs"
for net in ${nets//,/ }; do
  for ratio in ${ratios//,/ }; do
    for round in $(seq 1 "$rounds"); do
      ours=$(.build/release/neuralscale bench train --model "$net" --ratio "$ratio" --batch-size "$batch" --steps "$steps" --json)
      torch=$(python3 benchmarks/torch_train_step.py "$net" "$ratio" "$batch" "$steps")
      gated=null
      if [ "${GATED:-0}" = 1 ]; then
        gated=$(.build/release/neuralscale bench train --model "$net" --ratio "$ratio" --batch-size "$batch" --steps "$steps" --gated --json)
      fi
      echo "{\"net\":\"$net\",\"ratio\":$ratio,\"round\":$round,\"ours\":$ours,\"torch\":$torch,\"gated\":$gated}" >> "$runs"
      echo "$net x$ratio round $round done" >&2
    done
  done
done
python3 - "$runs" "$out/summary.csv" <<'PY'
import csv, json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
groups = {}
for r in rows:
    groups.setdefault((r["net"], r["ratio"]), []).append(r)
fields = ["net", "ratio", "rounds", "ours_images_per_s", "torch_images_per_s", "median_ratio",
          "min_ratio", "max_ratio", "ours_peak_rss_mb", "torch_peak_rss_mb", "gated_overhead"]
table = []
for (net, ratio), rs in groups.items():
    ratios = [r["ours"]["imagesPerSecond"] / r["torch"]["images_per_s"] for r in rs]
    gated = [r["ours"]["imagesPerSecond"] / r["gated"]["imagesPerSecond"] - 1 for r in rs if r["gated"]]
    table.append({
        "net": net, "ratio": ratio, "rounds": len(rs),
        "ours_images_per_s": round(statistics.median(r["ours"]["imagesPerSecond"] for r in rs), 1),
        "torch_images_per_s": round(statistics.median(r["torch"]["images_per_s"] for r in rs), 1),
        "median_ratio": round(statistics.median(ratios), 3),
        "min_ratio": round(min(ratios), 3), "max_ratio": round(max(ratios), 3),
        "ours_peak_rss_mb": round(max(r["ours"]["peakResidentMB"] for r in rs)),
        "torch_peak_rss_mb": round(max(r["torch"]["peak_rss_mb"] for r in rs)),
        "gated_overhead": round(statistics.median(gated), 3) if gated else "",
    })
with open(sys.argv[2], "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    w.writerows(table)
print(f"{'net':<16}{'ratio':>6}{'ours img/s':>12}{'torch img/s':>13}{'median x':>10}{'range':>14}"
      f"{'ours MB':>9}{'torch MB':>10}{'gated +':>9}")
for t in table:
    g = f"{100 * t['gated_overhead']:.1f}%" if t["gated_overhead"] != "" else "-"
    print(f"{t['net']:<16}{t['ratio']:>6}{t['ours_images_per_s']:>12}{t['torch_images_per_s']:>13}"
          f"{t['median_ratio']:>10}{t['min_ratio']:>7}-{t['max_ratio']:<6}{t['ours_peak_rss_mb']:>9}"
          f"{t['torch_peak_rss_mb']:>10}{g:>9}")
PY
