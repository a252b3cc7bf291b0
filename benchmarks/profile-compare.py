"""Where a training step's time goes, before and after a change: per op kind, forward and
backward milliseconds from two builds' `neuralscale bench train --profile --json` (run one right
after the other on the same machine), and PyTorch's (benchmarks/torch_profile.py --json) beside
them when given.

Usage: profile-compare.py BEFORE.json AFTER.json [TORCH.json] [--markdown]

Prints one table: op kind, before fwd/bwd ms, after fwd/bwd ms, the after/before ratio of the
kind's total, PyTorch's fwd/bwd ms, and the step totals.
"""
import json
import sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
markdown = "--markdown" in sys.argv
before, after = (json.load(open(p)) for p in args[:2])
torch = json.load(open(args[2])) if len(args) > 2 else None


def kinds(report):
    return {k["kind"]: (k["forwardMs"], k["backwardMs"]) for k in report["byKind"]}


b, a = kinds(before), kinds(after)
t = {k["kind"]: (k["forward_ms"], k["backward_ms"]) for k in torch["kinds"]} if torch else {}
# PyTorch times its own kinds (relu apart from batch norm, the SGD update); ours fuse some.
order = sorted(set(b) | set(a), key=lambda k: -sum(b.get(k, (0, 0))) - sum(a.get(k, (0, 0))))
head = ["op kind", "before fwd", "before bwd", "after fwd", "after bwd", "after/before"]
if torch:
    head += ["torch fwd", "torch bwd"]
rows = []
for k in order:
    bf, bb = b.get(k, (0, 0))
    af, ab = a.get(k, (0, 0))
    ratio = f"{(af + ab) / (bf + bb):.2f}" if bf + bb > 0 else "-"
    row = [k, f"{bf:.1f}", f"{bb:.1f}", f"{af:.1f}", f"{ab:.1f}", ratio]
    if torch:
        tf, tb = t.get(k, (0, 0))
        row += [f"{tf:.1f}", f"{tb:.1f}"]
    rows.append(row)
steps = ["step (ms)", f"{before['stepMs']:.1f}", "", f"{after['stepMs']:.1f}", "", f"{after['stepMs'] / before['stepMs']:.2f}"]
if torch:
    steps += [f"{torch['step_ms']:.1f}", ""]
rows.append(steps)
title = f"{after['model']} x{after['ratio']} batch {after['batch']}, {after['threads']} threads"
if markdown:
    print(f"**{title}**\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
else:
    print(title)
    widths = [max(len(str(r[i])) for r in rows + [head]) + 2 for i in range(len(head))]
    for r in [head] + rows:
        print("".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths))))
