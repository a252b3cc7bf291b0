#!/usr/bin/env python3
"""Times an ONNX model with ONNX Runtime (CPU) the way the studies measured devices: a random
input, --warmup untimed runs, then --runs timed runs, repeated in --trials fresh sessions; per
batch size the mean, median and p90 (lower-rank quantiles) per trial and over all runs, and
images/s. Memory: the resident-set increase of creating the first session and running it once
(`neuralscale bench infer` runs this script as its own process per model and batch size, so
models do not share a heap).

  python3 scripts/bench_ort.py MODEL.onnx [--batch-sizes 1,8] [--warmup 20] [--runs 80] [--trials 5]
      [--threads N] [--json]
  python3 scripts/bench_ort.py MODEL.onnx --profile [--batch-sizes 1] [--warmup 20] [--runs 80] [--json]

--profile: per-layer time from ONNX Runtime's own profiler (SessionOptions.enable_profiling) over
the --runs timed runs of one session at the first batch size: every kernel event of the optimized
graph, summed per layer (ORT names its nodes after the nodes they came from; a node's layer is
the layer of the weight it reads, else the part of its name before '/': module names in this
project's exports, fp32 and int8; an activation fused into a conv is the conv's), with the layer's multiply-accumulates counted on the model as
written (Conv: C_out*H_out*W_out*C_in/groups*k*k per image, Gemm: in*out) and the achieved GFLOP/s.

Exit 0 on success, 1 when the model cannot be loaded or run (the message names it), 2 on bad
arguments."""
import argparse, json, os, statistics, sys, tempfile, time


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def quantile(values, q):
    s = sorted(values)
    return s[int(q * (len(s) - 1))]


def layer_of(node_name):
    """The layer a node belongs to by its name: `features.0/Conv` -> `features.0`."""
    return node_name.split("/")[0] if "/" in node_name else node_name


def node_layers(graph):
    """The layer of every node of the model as written: the layer of the first weight or bias it
    reads (`features.0.weight`, `features.0.weight_dequantized`), else the layer its name says;
    a Relu or Clip right after a conv belongs to the conv (ONNX Runtime fuses them)."""
    produced = {o: n for n in graph.node for o in n.output}
    layers = {}
    for n in graph.node:
        tensors = [i for i in n.input if ".weight" in i or ".bias" in i]
        layers[n.name] = tensors[0].split(".weight")[0].split(".bias")[0] if tensors else layer_of(n.name)
    for n in graph.node:
        source = produced.get(n.input[0]) if n.input else None
        if n.op_type in ("Relu", "Clip") and source is not None and source.op_type == "Conv":
            layers[n.name] = layers[source.name]
    return layers


def optimized_layer(name, layers):
    """The layer of a node of ONNX Runtime's optimized graph: ORT names a node it makes after the
    node it came from plus suffixes (`features.1/Relu_nchwc`, `features.0/Conv_token_3`), so the
    longest original name it starts with, cut at '_', tells the layer."""
    candidate = name
    while True:
        if candidate in layers:
            return layers[candidate]
        if "_" not in candidate:
            return layer_of(name)
        candidate = candidate.rsplit("_", 1)[0]


def layer_macs(onnx, path):
    """Multiply-accumulates per image of every Conv and Gemm, per layer, on the model as written
    (weights directly or through a DequantizeLinear)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    g = model.graph
    shapes = {t.name: list(t.dims) for t in g.initializer}
    for v in list(g.value_info) + list(g.output) + list(g.input):
        dims = v.type.tensor_type.shape.dim
        shapes.setdefault(v.name, [d.dim_value if d.HasField("dim_value") else None for d in dims])
    for n in g.node:  # a dequantized weight has its initializer's shape
        if n.op_type == "DequantizeLinear" and n.input[0] in shapes:
            shapes[n.output[0]] = shapes[n.input[0]]
    macs, layers = {}, node_layers(g)
    for n in g.node:
        key = layers[n.name]
        if n.op_type == "Conv":
            w, y = shapes.get(n.input[1]), shapes.get(n.output[0])
            if w and y and all(d for d in y[1:]):
                macs[key] = macs.get(key, 0) + y[1] * y[2] * y[3] * w[1] * w[2] * w[3]
        elif n.op_type == "Gemm":
            w = shapes.get(n.input[1])
            if w:
                macs[key] = macs.get(key, 0) + w[0] * w[1]
    return macs


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--batch-sizes", default="1")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--runs", type=int, default=80)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ONNX Runtime's default, every core)")
    p.add_argument("--profile", action="store_true", help="per-layer times from ONNX Runtime's profiler instead of timings")
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

    def session(profile_dir=None):
        o = ort.SessionOptions()
        o.log_severity_level = 3
        if a.threads:
            o.intra_op_num_threads = a.threads
        if profile_dir:
            o.enable_profiling = True
            o.profile_file_prefix = os.path.join(profile_dir, "ort")
        try:
            return ort.InferenceSession(a.model, o, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - reported as the model's failure
            print(f"{a.model}: cannot load the model: {e}", file=sys.stderr)
            sys.exit(1)

    def run(s, x):
        try:
            s.run(None, {s.get_inputs()[0].name: x})
        except Exception as e:  # noqa: BLE001
            print(f"{a.model}: cannot run the model on a {list(x.shape)} input: {e}", file=sys.stderr)
            sys.exit(1)

    rng = np.random.default_rng(0)
    before = rss_mb()
    s = session()
    inp = s.get_inputs()[0]
    fixed = [d if isinstance(d, int) else None for d in inp.shape]
    shape = [batches[0]] + [d or 1 for d in fixed[1:]]
    run(s, rng.standard_normal(shape).astype(np.float32))
    memory = rss_mb() - before
    common = {"model": a.model, "backend": "ort", "onnxruntime_version": ort.__version__,
              "threads": a.threads or os.cpu_count(), "input_shape": shape[1:], "warmup": a.warmup, "runs": a.runs}
    if a.profile:
        import onnx
        macs = layer_macs(onnx, a.model)
        x = rng.standard_normal(shape).astype(np.float32)
        with tempfile.TemporaryDirectory(prefix="neuralscale-ort-profile-") as d:
            s = session(d)
            for _ in range(a.warmup):
                run(s, x)
            t0 = time.perf_counter()
            for _ in range(a.runs):
                run(s, x)
            wall = 1e3 * (time.perf_counter() - t0) / a.runs
            with open(s.end_profiling()) as f:
                events = json.load(f)
            original = node_layers(onnx.load(a.model, load_external_data=False).graph)
        runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"), key=lambda e: e["ts"])
        start = runs[a.warmup]["ts"] if len(runs) > a.warmup else 0  # only the timed runs
        layers = {}
        for e in events:
            if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < start:
                continue
            node = e["name"][: -len("_kernel_time")]
            key = optimized_layer(node, original)
            r = layers.setdefault(key, {"layer": key, "ops": set(), "us": 0.0})
            r["ops"].add(e.get("args", {}).get("op_name", "?"))
            r["us"] += e["dur"]
        total = sum(r["us"] for r in layers.values())
        rows = []
        for r in layers.values():
            ms = r["us"] / 1e3 / a.runs
            m = macs.get(r["layer"], 0) * shape[0]
            rows.append({"layer": r["layer"], "ops": sorted(r["ops"]), "ms": ms, "share": r["us"] / total if total else 0,
                         "macs": m, "gflops": 2 * m / (ms * 1e6) if ms > 0 and m else None})
        rows.sort(key=lambda r: -r["ms"])
        report = {**common, "batch": shape[0], "wall_ms": wall, "kernel_ms": total / 1e3 / a.runs, "layers": rows}
        if a.json:
            print(json.dumps(report))
        else:
            for r in rows:
                print(f"{r['layer']:30s} {r['ms']:9.4f} ms {100 * r['share']:5.1f}%  {','.join(r['ops'])}")
        return
    results = []
    for b in batches:
        x = rng.standard_normal([b] + shape[1:]).astype(np.float32)
        trials, every = [], []
        for t in range(a.trials):
            s = session() if t else s
            for _ in range(a.warmup):
                run(s, x)
            times = []
            for _ in range(a.runs):
                t0 = time.perf_counter()
                run(s, x)
                times.append(1e3 * (time.perf_counter() - t0))
            every += times
            trials.append({"mean_ms": statistics.fmean(times), "median_ms": quantile(times, 0.5), "p90_ms": quantile(times, 0.9)})
        mean = statistics.fmean(every)
        results.append({"batch": b, "trials": trials, "mean_ms": mean, "median_ms": quantile(every, 0.5),
                        "p90_ms": quantile(every, 0.9), "images_per_s": 1e3 * b / mean})
    report = {**common, "memory_mb": memory, "results": results}
    if a.json:
        print(json.dumps(report))
    else:
        for r in results:
            print(f"batch {r['batch']}: mean {r['mean_ms']:.3f} ms, median {r['median_ms']:.3f}, p90 {r['p90_ms']:.3f}, "
                  f"{r['images_per_s']:.1f} images/s")
        print(f"memory: {memory:.1f} MB")


if __name__ == "__main__":
    main()
