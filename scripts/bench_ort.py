#!/usr/bin/env python3
"""Times an ONNX model with ONNX Runtime (CPU) the way the studies measured devices: a random
input, --warmup untimed runs, then --runs timed runs, repeated in --trials fresh sessions; per
batch size the mean, median and p90 (lower-rank quantiles) per trial and over all runs, and images/s. Memory: the
resident-set increase of creating the first session and running it once (this script is run as
its own process per model, so models do not share a heap).

  python3 scripts/bench_ort.py MODEL.onnx [--batch-sizes 1,8] [--warmup 20] [--runs 80] [--trials 5]
      [--threads N] [--json]

Exit 0 on success, 1 when the model cannot be loaded or run (the message names it), 2 on bad
arguments."""
import argparse, json, os, statistics, sys, time


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--batch-sizes", default="1")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--runs", type=int, default=80)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ONNX Runtime's default, every core)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    try:
        batches = [int(b) for b in a.batch_sizes.split(",")]
    except ValueError:
        p.error(f"--batch-sizes must be comma-separated integers, got {a.batch_sizes!r}")
    if any(b < 1 for b in batches) or a.runs < 1 or a.trials < 1 or a.warmup < 0 or a.threads < 0:
        p.error("batch sizes, --runs and --trials must be >= 1; --warmup and --threads >= 0")
    import numpy as np
    import onnxruntime as ort

    def session():
        o = ort.SessionOptions()
        if a.threads:
            o.intra_op_num_threads = a.threads
        try:
            return ort.InferenceSession(a.model, o, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - reported as the model's failure
            print(f"{a.model}: cannot load the model: {e}", file=sys.stderr)
            sys.exit(1)

    before = rss_mb()
    s = session()
    inp = s.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    rng = np.random.default_rng(0)
    try:
        s.run(None, {inp.name: rng.standard_normal(shape).astype(np.float32)})
    except Exception as e:  # noqa: BLE001
        print(f"{a.model}: cannot run the model: {e}", file=sys.stderr)
        sys.exit(1)
    memory = rss_mb() - before
    results = []
    for b in batches:
        x = rng.standard_normal([b] + shape[1:]).astype(np.float32)
        trials, every = [], []
        for t in range(a.trials):
            s = session() if t else s
            for _ in range(a.warmup):
                s.run(None, {inp.name: x})
            times = []
            for _ in range(a.runs):
                t0 = time.perf_counter()
                s.run(None, {inp.name: x})
                times.append(1e3 * (time.perf_counter() - t0))
            every += times
            trials.append({"mean_ms": statistics.fmean(times), "median_ms": sorted(times)[int(0.5 * (len(times) - 1))],
                           "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))]})
        mean = statistics.fmean(every)
        results.append({"batch": b, "trials": trials, "mean_ms": mean, "median_ms": sorted(every)[int(0.5 * (len(every) - 1))],
                        "p90_ms": sorted(every)[int(0.9 * (len(every) - 1))], "images_per_s": 1e3 * b / mean})
    report = {"model": a.model, "backend": "ort", "onnxruntime_version": ort.__version__, "threads": a.threads or os.cpu_count(),
              "memory_mb": memory, "warmup": a.warmup, "runs": a.runs, "results": results}
    if a.json:
        print(json.dumps(report))
    else:
        for r in results:
            print(f"batch {r['batch']}: mean {r['mean_ms']:.3f} ms, median {r['median_ms']:.3f}, p90 {r['p90_ms']:.3f}, "
                  f"{r['images_per_s']:.1f} images/s")
        print(f"memory: {memory:.1f} MB")


if __name__ == "__main__":
    main()
