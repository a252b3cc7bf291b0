#!/usr/bin/env python3
"""Summary of scripts/couple-residuals-check.sh: per net, the default and the coupled search's
fits (trajectory rows, R^2 of the last iteration), and for the uniform, default-NeuralScale and
coupled-NeuralScale nets at the trained ratio: shortcuts (identity / projection / selection),
params, MFLOPs, ONNX Conv nodes, test accuracy per seed and the mean. Markdown on stdout.

    scripts/couple_residuals_summary.py RESULTS_DIR MODEL...
"""
import glob
import json
import os
import statistics
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def fit_line(descent):
    its = descent["iterations"]
    last = its[-1]
    r2 = [g["rSquared"] for g in last["fit"]["groups"] if g.get("rSquared") is not None]
    rows = [len(it["trajectory"]) for it in its]
    fallback = [it["index"] for it in its if it["fit"].get("fallbackReason")]
    coupled = last["fit"].get("coupling")
    return (f"rows per iteration {rows}; last fit: R^2 mean {statistics.mean(r2):.3f}, min {min(r2):.3f}, "
            f">= 0.9 in {sum(r >= 0.9 for r in r2)}/{len(r2)} groups"
            + (f"; fell back in iterations {fallback}" if fallback else "")
            + (f"; coupled sets {coupled}" if coupled else ""))


def main():
    out, models = sys.argv[1], sys.argv[2:]
    print("# descend --couple-residuals against the default search (Fashion-MNIST, quick preset)\n")
    for m in models:
        print(f"## {m}\n")
        for mode in ("default", "coupled"):
            path = os.path.join(out, f"{m}-{mode}-descent.json")
            if os.path.exists(path):
                print(f"- search {mode}: {fit_line(load(path))}")
        print()
        print("| net | widths | shortcuts (id/proj/sel) | params | MFLOPs | ONNX Conv | test acc. per seed | mean |")
        print("|---|---|---|---|---|---|---|---|")
        for mode in ("uniform", "default", "coupled"):
            results = sorted(glob.glob(os.path.join(out, f"{m}-{mode}-s*-result.json")))
            if not results:
                continue
            accs, stats, ops = [], None, None
            for r in results:
                accs.append(100 * load(r)["testAccuracy"])
                stats = load(r.replace("-result.json", "-stats.json"))
                ops = load(r.replace("-result.json", "-onnx-ops.json"))
            s = stats["shortcuts"]
            name = {"uniform": "uniform", "default": "NeuralScale", "coupled": "NeuralScale, coupled"}[mode]
            print(f"| {name} | {stats['widths']} | {s['identity']}/{s['projection']}/{s['selection']} | {stats['params']} | "
                  f"{stats['mflops']:.2f} | {ops.get('Conv', 0)} | "
                  f"{', '.join(f'{a:.2f}%' for a in accs)} | {statistics.mean(accs):.2f}% |")
        print()


if __name__ == "__main__":
    main()
