"""Compares the tensors of two neuralscale checkpoints (or search states), read with h5py.

Usage: compare_checkpoints.py A.h5 B.h5 [--json]

Prints, over every dataset both files hold (weights, BN statistics, gates, momentum buffers),
the largest relative difference max|a - b| / max(max|a|, 1e-12) per tensor, the worst tensor,
and whether the two are bit-identical. Exit status 2 when the files hold different tensors or
shapes. Used by the data-parallel tests: N processes against one, and reruns with N.
"""
import json
import sys

import h5py
import numpy as np


def tensors(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f":
                out[name] = np.asarray(obj[...], dtype=np.float64)
        f.visititems(visit)
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit("usage: compare_checkpoints.py A.h5 B.h5 [--json]")
    a, b = tensors(args[0]), tensors(args[1])
    if set(a) != set(b) or any(a[k].shape != b[k].shape for k in a):
        print(f"{args[0]} and {args[1]} hold different tensors: "
              f"{sorted(set(a) ^ set(b)) or [k for k in a if a[k].shape != b[k].shape]}", file=sys.stderr)
        sys.exit(2)
    worst, worst_name, identical = 0.0, None, True
    per = {}
    for k in sorted(a):
        scale = max(float(np.abs(a[k]).max()) if a[k].size else 0.0, 1e-12)
        d = float(np.abs(a[k] - b[k]).max()) / scale if a[k].size else 0.0
        per[k] = d
        identical = identical and np.array_equal(a[k], b[k])
        if d > worst:
            worst, worst_name = d, k
    report = {"tensors": len(a), "max_relative_difference": worst, "worst": worst_name, "identical": identical}
    if "--json" in sys.argv:
        print(json.dumps(report))
    else:
        print(f"{len(a)} tensors; largest relative difference {worst:.3g} ({worst_name}); "
              f"{'bit-identical' if identical else 'not bit-identical'}")


main()
