"""Test helper: runs an int8 QDQ model and its fp32 original under ONNX Runtime on the same inputs
and prints JSON: onnx.checker's verdict, the cosine distance and relative max difference of the
int8 logits from the fp32 logits, top-1 agreement, and the op types of ORT's optimized int8
graph (ORT_ENABLE_EXTENDED, CPU), counted."""
import collections, json, sys, tempfile, os

import numpy as np
import onnx
import onnxruntime as ort

int8_path, fp32_path, inputs_path = sys.argv[1:4]
x = np.load(inputs_path)
checker = "ok"
try:
    onnx.checker.check_model(onnx.load(int8_path), full_check=True)
except Exception as e:  # noqa: BLE001 - reported, not raised
    checker = str(e)


def run(path, optimized=None):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    if optimized:
        options.optimized_model_filepath = optimized
    s = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0].astype(np.float64)


# The optimized graph goes to a folder removed on exit (each test run used to leave one behind).
with tempfile.TemporaryDirectory(prefix="neuralscale-check-qdq-") as d:
    optimized = os.path.join(d, "optimized.onnx")
    q, f = run(int8_path, optimized), run(fp32_path)
    ops = collections.Counter(n.op_type for n in onnx.load(optimized).graph.node)
cos = 1 - (q * f).sum(1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(f, axis=1) + 1e-30)
print(json.dumps({"checker": checker, "max_cosine_distance": float(cos.max()),
                  "max_relative_diff": float(np.abs(q - f).max() / (np.abs(f).max() + 1e-30)),
                  "top1_agreement": float((q.argmax(1) == f.argmax(1)).mean()), "optimized_ops": dict(ops)}))
