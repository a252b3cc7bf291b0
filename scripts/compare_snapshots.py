#!/usr/bin/env python3
"""Compares two snapshots of scripts/graph-snapshot.sh: for every net, `stats --json` must give
the same params, MFLOPs and CDL, and the two ONNX models the same outputs under ONNX Runtime on
the same seeded random inputs (max cosine distance < 1e-6 over the batch, same top-1). Prints a
line per net; exits 1 if any differs."""
import glob, json, os, sys

import numpy as np
import onnxruntime as ort


def outputs(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0].astype(np.float64)


def main(a, b):
    failed = False
    for stats_a in sorted(glob.glob(os.path.join(a, "*.stats.json"))):
        net = os.path.basename(stats_a)[: -len(".stats.json")]
        sa = json.load(open(stats_a))
        sb = json.load(open(os.path.join(b, net + ".stats.json")))
        same_stats = all(sa[k] == sb[k] for k in ("params", "mflops", "cdl", "widths"))
        shape = [4, sa["in_channels"], sa["image_size"], sa["image_size"]]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        ya, yb = outputs(os.path.join(a, net + ".onnx"), x), outputs(os.path.join(b, net + ".onnx"), x)
        cos = 1 - (ya * yb).sum(1) / (np.linalg.norm(ya, axis=1) * np.linalg.norm(yb, axis=1))
        top1 = bool((ya.argmax(1) == yb.argmax(1)).all())
        ok = same_stats and cos.max() < 1e-6 and top1
        failed |= not ok
        print(f"{net}: {'same' if ok else 'DIFFERENT'}: params {sa['params']}/{sb['params']}, "
              f"MFLOPs {sa['mflops']}/{sb['mflops']}, CDL {sa['cdl']}/{sb['cdl']}, "
              f"max cosine distance {cos.max():.2e}, top-1 {'same' if top1 else 'differs'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
