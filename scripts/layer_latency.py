#!/usr/bin/env python3
"""Times single layers with ONNX Runtime (CPU), for `neuralscale bench infer --latency-table`.

  python3 scripts/layer_latency.py LAYERS.json [--threads N] [--warmup 5] [--runs 20] [--trials 3]
      [--models A.onnx B.onnx ... [--model-warmup 10] [--model-runs 40] [--model-trials 1]]

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

--models: whole nets (exported models, batch 1) timed the same way after the layers, each in
--model-trials sessions of --model-warmup and --model-runs runs; "model_ms" has one list of trial
medians per model. `bench infer --latency-table` calls this between the kinds of layer to time
its calibration and check nets in rounds spread over the whole measurement, so that the nets and
the layers meet the same machine (its speed drifts by tens of percent within an hour).

Prints one JSON object: {"onnxruntime_version", "threads", "overhead_ms", "ms": [one per layer],
"model_ms": [one list per model]}.
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
    parser.add_argument("--models", nargs="*", default=[])
    parser.add_argument("--model-warmup", type=int, default=10)
    parser.add_argument("--model-runs", type=int, default=40)
    parser.add_argument("--model-trials", type=int, default=1)
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
    def trial_medians(data, shape, out_shape, trials, warmup, runs):
        x = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
        medians = []
        for _ in range(trials):
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
            # Input and output bound to buffers made once: in a net the output is an intermediate
            # that ONNX Runtime plans, not a fresh array copied out to Python on every run.
            binding = session.io_binding()
            binding.bind_cpu_input(session.get_inputs()[0].name, x)
            binding.bind_ortvalue_output(session.get_outputs()[0].name,
                                         ort.OrtValue.ortvalue_from_numpy(np.empty(out_shape, dtype=np.float32)))
            for _ in range(warmup):
                session.run_with_iobinding(binding)
            trial = []
            for _ in range(runs):
                t0 = time.perf_counter()
                session.run_with_iobinding(binding)
                trial.append(1e3 * (time.perf_counter() - t0))
            medians.append(statistics.median(trial))
        return medians

    def time_model(data, shape, out_shape):
        return min(trial_medians(data, shape, out_shape, args.trials, args.warmup, args.runs))

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
    model_ms = []
    for path in args.models:
        try:
            import onnx
            m = onnx.load(path)
            def dims(v):
                return [d.dim_value if d.dim_value > 0 else 1 for d in v.type.tensor_type.shape.dim]
            model_ms.append(trial_medians(m.SerializeToString(), dims(m.graph.input[0]), dims(m.graph.output[0]),
                                          args.model_trials, args.model_warmup, args.model_runs))
        except Exception as e:
            print(f"error: model {path}: {e}", file=sys.stderr)
            return 1
    print(json.dumps({"onnxruntime_version": ort.__version__, "threads": args.threads, "overhead_ms": overhead, "ms": times,
                      "model_ms": model_ms}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
