#!/usr/bin/env python3
"""Times single layers with ONNX Runtime (CPU), for `neuralscale bench infer --latency-table`.

  python3 scripts/layer_latency.py LAYERS.json [--threads N] [--warmup 5] [--runs 20] [--trials 3]

LAYERS.json is a list of layers, each {"in": C_in, "out": C_out, "size": H (= W), "kernel": k,
"stride": s, "groups": g, "linear": bool}. Each becomes a one-layer model at batch 1, as the
exported nets hold it: a Conv (padding k // 2, bias, BatchNorm folded in) followed by a Relu,
which ONNX Runtime fuses, or a Gemm for a linear layer (its input [1, C_in]); random weights.
Each is timed in --trials fresh sessions of --warmup untimed and --runs timed runs; its time is
the median over all timed runs of the trial with the lowest median (the least disturbed one).

Input and output are bound to buffers made once (IOBinding), as a net's intermediates are
planned by ONNX Runtime rather than copied out. The cost of a run itself (the call from Python),
which a net pays once and not per layer, is measured the same way on a model of one Relu on one
value and printed as overhead_ms; the caller subtracts it from every layer.

Prints one JSON object: {"onnxruntime_version", "threads", "overhead_ms", "ms": [one per layer]}.
Exit 0 on success, 1 when a layer cannot be built or run (the message names it), 2 on bad
arguments."""
import argparse, json, statistics, sys, time


def model_of(layer):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    cin, cout, k = layer["in"], layer["out"], layer["kernel"]
    if layer["linear"]:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout])
        w = numpy_helper.from_array(rng.standard_normal((cout, cin), dtype=np.float32) * 0.05, "w")
        b = numpy_helper.from_array(np.zeros(cout, dtype=np.float32), "b")
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)]
    else:
        size, stride, groups = layer["size"], layer["stride"], layer["groups"]
        out_size = (size - 1) // stride + 1
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, out_size, out_size])
        w = numpy_helper.from_array(rng.standard_normal((cout, cin // groups, k, k), dtype=np.float32) * 0.05, "w")
        b = numpy_helper.from_array(np.zeros(cout, dtype=np.float32), "b")
        p = k // 2
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k], strides=[stride, stride],
                                  pads=[p, p, p, p], group=groups),
                 helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "layer", [x], [y], initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("layers")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    if args.runs < 1 or args.trials < 1 or args.warmup < 0 or args.threads < 0:
        print("error: --runs and --trials must be >= 1, --warmup and --threads >= 0", file=sys.stderr)
        return 2
    try:
        with open(args.layers) as f:
            layers = json.load(f)
        assert isinstance(layers, list)
    except Exception as e:
        print(f"error: {args.layers}: not a JSON list of layers ({e})", file=sys.stderr)
        return 2
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    def time_model(data, shape, out_shape):
        x = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
        best = None
        for _ in range(args.trials):
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
            # Input and output bound to buffers made once: in a net the output is an intermediate
            # that ONNX Runtime plans, not a fresh array copied out to Python on every run.
            binding = session.io_binding()
            binding.bind_cpu_input("x", x)
            binding.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(np.empty(out_shape, dtype=np.float32)))
            for _ in range(args.warmup):
                session.run_with_iobinding(binding)
            trial = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                session.run_with_iobinding(binding)
                trial.append(1e3 * (time.perf_counter() - t0))
            m = statistics.median(trial)
            best = m if best is None else min(best, m)
        return best

    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])
    empty = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "empty", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 13)])
    empty.ir_version = 8
    overhead = time_model(empty.SerializeToString(), [1, 1], [1, 1])
    times = []
    for layer in layers:
        try:
            if layer["linear"]:
                shape, out_shape = [1, layer["in"]], [1, layer["out"]]
            else:
                o = (layer["size"] - 1) // layer["stride"] + 1
                shape, out_shape = [1, layer["in"], layer["size"], layer["size"]], [1, layer["out"], o, o]
            times.append(time_model(model_of(layer).SerializeToString(), shape, out_shape))
        except Exception as e:
            print(f"error: layer {layer}: {e}", file=sys.stderr)
            return 1
    print(json.dumps({"onnxruntime_version": ort.__version__, "threads": args.threads, "overhead_ms": overhead, "ms": times}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
