#!/usr/bin/env python3
"""Compares an int8 QDQ ONNX model with its fp32 original in ONNX Runtime (CPU).

Usage:
    python3 scripts/verify_quantized.py FP32.onnx INT8.onnx IMAGES.npy LABELS.npy [--json]
        [--latency-runs 50] [--threads N] [--batch-size 256] [--opt-level extended|all]
        [--optimized-out PATH]
    python3 scripts/verify_quantized.py --self-test

INT8.onnx is expected in the QDQ form (opset 13) that ONNX Runtime fuses into integer kernels:
    Q(x)->DQ(x), DQ(w int8, per output channel, axis=0), DQ(b int32, scale s_x*s_w[c], zp 0)
        -> Conv -> (Relu/Clip) -> Q(y)
and likewise DQ(a), DQ(w), DQ(b) -> Gemm. IMAGES.npy is float32 [N, C, H, W] (already
normalized), LABELS.npy integer (int64) [N] (or float32 holding whole numbers).

Reports:
  1. Accuracy of both models over all N images (batches of --batch-size): top-1, and top-5 when
     there are at least 5 classes; the top-1 drop in percentage points (fp32 - int8); the top-1
     agreement between the two models; the max and mean |int8 - fp32| logit difference, also
     relative to the fp32 logits' scale (their RMS over all N x classes values).
  2. Batch-1 latency of each model (first image): sessions with intra_op_num_threads=--threads
     (default: every core, os.cpu_count()), 10 warm-up runs, then --latency-runs timed runs (0
     skips); mean and median ms. Accuracy and latency sessions use ORT's default optimization
     level (ORT_ENABLE_ALL), i.e. what a deployment gets.
  3. Which kernels ORT really runs: a session on INT8 with graph_optimization_level
     --opt-level (default ORT_ENABLE_EXTENDED) and optimized_model_filepath (--optimized-out,
     else a temporary file) writes the optimized graph; it is loaded with onnx (no checker: it
     holds com.microsoft contrib ops) and its nodes are counted:
       convs:  float   Conv, FusedConv (com.microsoft), ConvTranspose, nchwc Conv
               integer QLinearConv (ai.onnx or com.microsoft), ConvInteger, QLinearConvTranspose
       gemms:  float   Gemm, MatMul, FusedGemm, FusedMatMul
               integer QGemm, QLinearMatMul, MatMulInteger, MatMulIntegerToFloat,
                       DynamicQuantizeMatMul
     next to the numbers of Conv and Gemm/MatMul nodes in FP32, and lists the float ones by name.
     Why ORT_ENABLE_EXTENDED: the QDQ fusions (DQ->Conv->Q => QLinearConv, DQ->Gemm(->Q) =>
     com.microsoft QGemm, DQ->GlobalAveragePool->Q => QLinearGlobalAveragePool, Relu dropped
     into Q) are level-2 ("extended") transformers; at that level ORT 1.31 writes an ai.onnx
     QLinearConv that keeps the Conv's node name. ORT_ENABLE_ALL additionally runs the layout
     (NHWC) transformer, which rewrites it into a com.microsoft QLinearConv (channels_last)
     between Transposes, renames it "<name>_token_<k>", and warns that the saved model is
     specific to this machine. The integer/float decision is the same at both levels.
  4. onnx.checker.check_model(INT8, full_check=True): ok or the error.

Output: a readable summary, or with --json one JSON object with the keys
    fp32_model, int8_model, images, labels, n, classes, batch_size, threads,
    fp32_top1, fp32_top5, int8_top1, int8_top5        (fractions in [0, 1]; top5 null if < 5 classes)
    top1_drop_pp                                       (100 * (fp32_top1 - int8_top1))
    top1_agreement, max_abs_logit_diff, mean_abs_logit_diff, fp32_logit_rms,
    max_rel_logit_diff, mean_rel_logit_diff            (the diffs divided by fp32_logit_rms)
    latency {fp32: {mean_ms, median_ms, runs, batch}, int8: {...}, warmup, threads}  (null if 0 runs;
                                                       batch is 1 unless the model fixes it)
    kernels {opt_level, optimized_model (path, null if temporary), fp32_convs, fp32_gemms,
             float_convs, integer_convs, float_gemms, integer_gemms,
             float_conv_nodes, integer_conv_nodes, float_gemm_nodes, integer_gemm_nodes,
             op_counts}                                (node lists: names, or "<op>:<first output>")
    checker_ok, checker_error, onnxruntime_version, onnx_version, numpy_version, warnings

Exit status: 0 the int8 model ran (the figures say how well: this script judges nothing); 1 a
file could not be read, loaded or run (the message names it), or --self-test failed; 2 bad
arguments.

Needs onnx, onnxruntime and numpy (scripts/install-deps.sh installs the pinned versions).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

FAILED = 1
USAGE_ERROR = 2

FLOAT_CONV_OPS = {"Conv", "FusedConv", "ConvTranspose"}
INTEGER_CONV_OPS = {"QLinearConv", "ConvInteger", "QLinearConvTranspose"}
FLOAT_GEMM_OPS = {"Gemm", "MatMul", "FusedGemm", "FusedMatMul"}
INTEGER_GEMM_OPS = {"QGemm", "QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"}


class Failure(Exception):
    """A file that cannot be read, loaded or run: exit 1. The message names the file."""


def import_deps():
    try:
        import numpy
        import onnx
        import onnx.checker
        import onnxruntime
    except ImportError as e:
        raise Failure(f"{e.name} is not importable by {sys.executable}: run scripts/install-deps.sh")
    return numpy, onnx, onnxruntime


# ---------------------------------------------------------------------------------------------
# Loading

def load_images(np, path):
    try:
        a = np.load(path, allow_pickle=False)
    except OSError as e:
        raise Failure(f"{path}: cannot read images: {e.strerror or e}")
    except ValueError as e:
        raise Failure(f"{path}: not a .npy file (images): {e}")
    if a.dtype != np.float32:
        raise Failure(f"{path}: images must be float32, got {a.dtype}")
    if a.ndim != 4 or a.shape[0] == 0:
        raise Failure(f"{path}: images must be [N, C, H, W] with N > 0, got shape {list(a.shape)}")
    return np.ascontiguousarray(a)


def load_labels(np, path, n):
    try:
        a = np.load(path, allow_pickle=False)
    except OSError as e:
        raise Failure(f"{path}: cannot read labels: {e.strerror or e}")
    except ValueError as e:
        raise Failure(f"{path}: not a .npy file (labels): {e}")
    # Integers, or floats holding whole numbers (what the Swift tool's float32 .npy writer gives).
    if a.dtype.kind == "f" and a.size and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise Failure(f"{path}: labels must be integers (int64, or whole float32 numbers), got {a.dtype}")
    if a.ndim != 1 or a.shape[0] != n:
        raise Failure(f"{path}: labels must be [N] with N = {n} (the number of images), got shape {list(a.shape)}")
    return a.astype(np.int64)


def session(ort, path, what, threads=None, level=None, optimized_out=None):
    """An InferenceSession on the CPU provider; Failure naming the file if ORT refuses it."""
    if not os.path.isfile(path):
        raise Failure(f"{path}: no such file ({what})")
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    if level is not None:
        so.graph_optimization_level = level
    if optimized_out:
        so.optimized_model_filepath = optimized_out
    so.log_severity_level = 3  # no warnings on stderr (ORT_ENABLE_ALL + optimized_model_filepath warns)
    try:
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise Failure(f"{path}: onnxruntime cannot load the {what}: {type(e).__name__}: {e}")


def single_input(sess, path, what):
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise Failure(f"{path}: the {what} must have exactly one input, has {[i.name for i in inputs]}")
    return inputs[0].name


def run_batches(np, sess, path, what, x, batch_size):
    name = single_input(sess, path, what)
    fixed = sess.get_inputs()[0].shape[0]
    if isinstance(fixed, int) and fixed > 0:
        batch_size = fixed  # a fixed batch dimension: feed exactly that many (the tail is padded)
    out = []
    try:
        for i in range(0, x.shape[0], batch_size):
            chunk = x[i:i + batch_size]
            real = chunk.shape[0]
            if real < batch_size and isinstance(fixed, int) and fixed > 0:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - real, axis=0)])
            out.append(sess.run(None, {name: chunk})[0][:real])
    except Exception as e:
        raise Failure(f"{path}: onnxruntime cannot run the {what}: {type(e).__name__}: {e}")
    y = np.concatenate(out).astype(np.float32)
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise Failure(f"{path}: the {what}'s output has shape {list(y.shape)}, expected [{x.shape[0]}, classes]")
    return y


# ---------------------------------------------------------------------------------------------
# Figures

def topk_accuracy(np, logits, labels, k):
    if logits.shape[1] < k:
        return None
    if k == 1:
        return float((logits.argmax(axis=1) == labels).mean())
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def compare_logits(np, fp32, int8, labels):
    """Accuracy of both, the top-1 drop and agreement, and the logit differences."""
    a, b = fp32.astype(np.float64), int8.astype(np.float64)
    diff = np.abs(b - a)
    rms = float(np.sqrt((a * a).mean()))
    r = {
        "fp32_top1": topk_accuracy(np, fp32, labels, 1), "fp32_top5": topk_accuracy(np, fp32, labels, 5),
        "int8_top1": topk_accuracy(np, int8, labels, 1), "int8_top5": topk_accuracy(np, int8, labels, 5),
        "top1_agreement": float((fp32.argmax(axis=1) == int8.argmax(axis=1)).mean()),
        "max_abs_logit_diff": float(diff.max()), "mean_abs_logit_diff": float(diff.mean()),
        "fp32_logit_rms": rms,
    }
    r["top1_drop_pp"] = 100.0 * (r["fp32_top1"] - r["int8_top1"])
    r["max_rel_logit_diff"] = r["max_abs_logit_diff"] / rms if rms > 0 else None
    r["mean_rel_logit_diff"] = r["mean_abs_logit_diff"] / rms if rms > 0 else None
    return r


def latency(np, sess, path, what, x, runs, warmup=10):
    """Batch-1 latency on x[:1]; a model with a fixed batch size k is timed at batch k instead."""
    name = single_input(sess, path, what)
    fixed = sess.get_inputs()[0].shape[0]
    batch = fixed if isinstance(fixed, int) and fixed > 0 else 1
    x1 = np.concatenate([x[:batch], np.repeat(x[:1], max(0, batch - x.shape[0]), axis=0)])
    times = []
    try:
        for _ in range(warmup):
            sess.run(None, {name: x1})
        for _ in range(runs):
            t = time.perf_counter()
            sess.run(None, {name: x1})
            times.append((time.perf_counter() - t) * 1000.0)
    except Exception as e:
        raise Failure(f"{path}: onnxruntime cannot run the {what} at batch 1: {type(e).__name__}: {e}")
    return {"mean_ms": statistics.fmean(times), "median_ms": statistics.median(times), "runs": runs, "batch": batch}


def node_label(node):
    return node.name or f"{node.op_type}:{node.output[0] if node.output else '?'}"


def count_kernels(onnx, fp32_model, optimized_path):
    """Counts float and integer convs / gemms in ORT's optimized graph (top-level graph only)."""
    try:
        opt = onnx.load(optimized_path, load_external_data=False)  # contrib ops: no checker here
    except Exception as e:
        raise Failure(f"{optimized_path}: cannot load ORT's optimized model: {type(e).__name__}: {e}")
    r = {"fp32_convs": sum(n.op_type in ("Conv", "ConvTranspose") for n in fp32_model.graph.node),
         "fp32_gemms": sum(n.op_type in ("Gemm", "MatMul") for n in fp32_model.graph.node),
         "float_conv_nodes": [], "integer_conv_nodes": [], "float_gemm_nodes": [], "integer_gemm_nodes": [],
         "op_counts": {}}
    for n in opt.graph.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        r["op_counts"][key] = r["op_counts"].get(key, 0) + 1
        if n.op_type in FLOAT_CONV_OPS:  # also com.microsoft FusedConv and com.microsoft.nchwc Conv
            r["float_conv_nodes"].append(node_label(n))
        elif n.op_type in INTEGER_CONV_OPS:
            r["integer_conv_nodes"].append(node_label(n))
        elif n.op_type in FLOAT_GEMM_OPS:
            r["float_gemm_nodes"].append(node_label(n))
        elif n.op_type in INTEGER_GEMM_OPS:
            r["integer_gemm_nodes"].append(node_label(n))
    for k in ("float_conv", "integer_conv", "float_gemm", "integer_gemm"):
        r[k + "s"] = len(r[k + "_nodes"])
    r["op_counts"] = dict(sorted(r["op_counts"].items()))
    return r


# ORT_ENABLE_BASIC is not offered: it runs no QDQ fusion, so every conv would look float.
LEVELS = {"extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def verify(fp32_path, int8_path, images_path, labels_path, latency_runs=50, threads=None, batch_size=256,
           opt_level="extended", optimized_out=None):
    """Everything above; returns the report dict. Raises Failure naming the file that failed."""
    np, onnx, ort = import_deps()
    threads = threads or os.cpu_count() or 1
    x = load_images(np, images_path)
    labels = load_labels(np, labels_path, x.shape[0])
    for p, what in ((fp32_path, "fp32 model"), (int8_path, "int8 model")):
        if not os.path.isfile(p):
            raise Failure(f"{p}: no such file ({what})")
    try:
        fp32_model = onnx.load(fp32_path, load_external_data=False)
    except Exception as e:
        raise Failure(f"{fp32_path}: not a readable ONNX model (fp32 model): {type(e).__name__}: {e}")

    r = {"fp32_model": fp32_path, "int8_model": int8_path, "images": images_path, "labels": labels_path,
         "n": int(x.shape[0]), "classes": None, "batch_size": batch_size, "threads": threads,
         "checker_ok": False, "checker_error": None,
         "onnxruntime_version": ort.__version__, "onnx_version": onnx.__version__, "numpy_version": np.__version__,
         "warnings": []}
    try:
        onnx.checker.check_model(int8_path, full_check=True)
        r["checker_ok"] = True
    except Exception as e:  # checker errors, and protobuf's DecodeError for a corrupt file
        r["checker_error"] = f"{type(e).__name__}: {e}".strip()

    s32 = session(ort, fp32_path, "fp32 model", threads)
    s8 = session(ort, int8_path, "int8 model", threads)
    y32 = run_batches(np, s32, fp32_path, "fp32 model", x, batch_size)
    y8 = run_batches(np, s8, int8_path, "int8 model", x, batch_size)
    if y32.shape != y8.shape:
        raise Failure(f"{int8_path}: the int8 model outputs {list(y8.shape)}, the fp32 model {list(y32.shape)}")
    r["classes"] = int(y32.shape[1])
    if labels.min() < 0 or labels.max() >= r["classes"]:
        raise Failure(f"{labels_path}: labels must lie in [0, {r['classes']}), found {labels.min()}..{labels.max()}")
    r.update(compare_logits(np, y32, y8, labels))
    if r["classes"] < 5:
        r["warnings"].append(f"{r['classes']} classes: no top-5 accuracy")

    r["latency"] = None
    if latency_runs > 0:
        r["latency"] = {"fp32": latency(np, s32, fp32_path, "fp32 model", x, latency_runs),
                        "int8": latency(np, s8, int8_path, "int8 model", x, latency_runs),
                        "warmup": 10, "threads": threads}
        for k in ("fp32", "int8"):
            if r["latency"][k]["batch"] != 1:
                r["warnings"].append(f"the {k} model has a fixed batch size {r['latency'][k]['batch']}: "
                                     f"its latency is at that batch size, not batch 1")

    level = getattr(ort.GraphOptimizationLevel, LEVELS[opt_level])
    with tempfile.TemporaryDirectory() as d:
        out = optimized_out or os.path.join(d, "int8.optimized.onnx")
        session(ort, int8_path, "int8 model", threads, level, out)
        if not os.path.isfile(out):
            raise Failure(f"{out}: onnxruntime did not write the optimized int8 model")
        k = count_kernels(onnx, fp32_model, out)
    r["kernels"] = {"opt_level": LEVELS[opt_level], "optimized_model": optimized_out, **k}
    if k["float_convs"] + k["integer_convs"] != k["fp32_convs"]:
        r["warnings"].append(f"the optimized int8 graph has {k['float_convs'] + k['integer_convs']} convs, "
                             f"the fp32 model {k['fp32_convs']}")
    if k["float_convs"]:
        r["warnings"].append(f"{k['float_convs']} conv(s) still run in float: {', '.join(k['float_conv_nodes'])}")
    if k["float_gemms"]:
        r["warnings"].append(f"{k['float_gemms']} Gemm/MatMul(s) still run in float: "
                             f"{', '.join(k['float_gemm_nodes'])}")
    if not r["checker_ok"]:
        r["warnings"].append(f"onnx.checker rejects {int8_path}: {r['checker_error']}")
    return r


def human(r):
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"
    k = r["kernels"]
    lines = [
        f"{r['int8_model']} vs {r['fp32_model']}: n={r['n']}, {r['classes']} classes, threads={r['threads']}",
        f"  accuracy  fp32 top-1 {pct(r['fp32_top1'])} top-5 {pct(r['fp32_top5'])} | "
        f"int8 top-1 {pct(r['int8_top1'])} top-5 {pct(r['int8_top5'])} | drop {r['top1_drop_pp']:.2f} pp",
        f"  agreement top-1 {pct(r['top1_agreement'])}; |logit diff| max {r['max_abs_logit_diff']:.4g} "
        f"mean {r['mean_abs_logit_diff']:.4g} (fp32 logit RMS {r['fp32_logit_rms']:.4g}: "
        f"max {pct(r['max_rel_logit_diff'])}, mean {pct(r['mean_rel_logit_diff'])})",
    ]
    if r["latency"]:
        f, i = r["latency"]["fp32"], r["latency"]["int8"]
        lines.append(f"  latency   batch {f['batch']}/{i['batch']}, {f['runs']} runs: fp32 mean {f['mean_ms']:.3f} ms median "
                     f"{f['median_ms']:.3f} ms | int8 mean {i['mean_ms']:.3f} ms median {i['median_ms']:.3f} ms "
                     f"(x{f['median_ms'] / i['median_ms']:.2f})")
    lines.append(f"  kernels   ({k['opt_level']}) convs: fp32 model {k['fp32_convs']}, int8 integer "
                 f"{k['integer_convs']}, float {k['float_convs']}; Gemm/MatMul: fp32 model {k['fp32_gemms']}, "
                 f"int8 integer {k['integer_gemms']}, float {k['float_gemms']}")
    if k["float_conv_nodes"]:
        lines.append(f"  float convs: {', '.join(k['float_conv_nodes'])}")
    lines.append("  optimized graph ops: " + ", ".join(f"{o} x{c}" for o, c in k["op_counts"].items()))
    lines.append(f"  onnx.checker (full_check): {'ok' if r['checker_ok'] else r['checker_error']}")
    lines.append(f"  onnx {r['onnx_version']}, onnxruntime {r['onnxruntime_version']}")
    lines += [f"  warning: {w}" for w in r["warnings"]]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Self-test: a tiny fp32 Conv+Relu+GlobalAveragePool+Flatten+Gemm net made with onnx.helper, and
# its hand-made QDQ int8 version in the pattern the Swift exporter writes.

def tiny_fp32_model(rng, channels=3, size=8, filters=8, classes=10):
    """The fp32 ModelProto (opset 13, input "input" [N, C, H, W], output "logits") and its params."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    p = {"w": rng.normal(0, 0.5, (filters, channels, 3, 3)).astype(np.float32),
         "b": rng.normal(0, 0.1, filters).astype(np.float32),
         "fw": rng.normal(0, 0.5, (classes, filters)).astype(np.float32),
         "fb": rng.normal(0, 0.1, classes).astype(np.float32)}
    inits = [numpy_helper.from_array(p[k], n) for k, n in
             [("w", "conv.weight"), ("b", "conv.bias"), ("fw", "fc.weight"), ("fb", "fc.bias")]]
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["conv_out"], name="conv0",
                         pads=[1, 1, 1, 1], kernel_shape=[3, 3], strides=[1, 1]),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu0"),
        helper.make_node("GlobalAveragePool", ["relu_out"], ["pool_out"], name="pool"),
        helper.make_node("Flatten", ["pool_out"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="verify_quantized self-test")
    model.ir_version = 7  # opset 13's IR version
    return model, p


def numpy_forward(p, x, upto="logits"):
    """The fp32 net in float64 NumPy (independent of ORT): "relu", "flat" or "logits"."""
    import numpy as np
    w, b = p["w"].astype(np.float64), p["b"].astype(np.float64)
    x = x.astype(np.float64)
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    relu = np.maximum(out + b[None, :, None, None], 0)
    if upto == "relu":
        return relu
    flat = relu.mean(axis=(2, 3))
    if upto == "flat":
        return flat
    return flat @ p["fw"].astype(np.float64).T + p["fb"].astype(np.float64)


def _act_qparams(np, lo, hi, signed):
    """Per-tensor asymmetric activation scale and zero point from a calibration min/max (range
    widened to contain 0, so that 0 is exact)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    qmin, qmax = (-128, 127) if signed else (0, 255)
    scale = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
    zp = int(np.clip(round(qmin - lo / scale), qmin, qmax))
    return np.float32(scale), (np.int8 if signed else np.uint8)(zp)


def _weight_qparams(np, w):
    """Symmetric int8 per output channel (axis 0): scale max|w_c| / 127, values in [-127, 127]."""
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.round(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -127, 127).astype(np.int8)
    return q, scale


def tiny_qdq_model(p, calib, signed_activations=False, quantize_conv=True):
    """The QDQ int8 version of tiny_fp32_model (opset 13):
        Q/DQ(input) ; DQ(w), DQ(b) -> Conv -> Relu -> Q/DQ -> GlobalAveragePool -> Flatten -> Q/DQ
        ; DQ(fw), DQ(fb) -> Gemm -> logits (float)
    Weights symmetric int8 per output channel (axis 0), biases int32 with scale s_in * s_w[c] and
    zero point 0, activations per tensor uint8 (or int8) from calib's min/max.
    quantize_conv=False is a negative case: the conv's input is the raw float input (no Q/DQ) and
    its weight and bias stay float, so ORT must report it as a float conv. (Float weights alone are
    not enough: ORT 1.31 quantizes the constant float weight and bias of a Conv whose input and
    output are Q/DQ'd by itself and still fuses a QLinearConv.)"""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    signed = signed_activations
    s_in, z_in = _act_qparams(np, calib.min(), calib.max(), signed)
    relu = numpy_forward(p, calib, "relu")
    s_r, z_r = _act_qparams(np, relu.min(), relu.max(), signed)
    flat = relu.mean(axis=(2, 3))
    s_f, z_f = _act_qparams(np, flat.min(), flat.max(), signed)
    wq, sw = _weight_qparams(np, p["w"])
    fwq, sfw = _weight_qparams(np, p["fw"])
    bias_s = (s_in * sw).astype(np.float32)
    fbias_s = (s_f * sfw).astype(np.float32)
    i32 = np.iinfo(np.int32)
    bq = np.clip(np.round(p["b"] / bias_s), i32.min, i32.max).astype(np.int32)
    fbq = np.clip(np.round(p["fb"] / fbias_s), i32.min, i32.max).astype(np.int32)
    t = {"relu.scale": np.array(s_r), "relu.zp": np.array(z_r),
         "flat.scale": np.array(s_f), "flat.zp": np.array(z_f),
         "fc.weight.q": fwq, "fc.weight.scale": sfw, "fc.weight.zp": np.zeros(sfw.shape, np.int8),
         "fc.bias.q": fbq, "fc.bias.scale": fbias_s, "fc.bias.zp": np.zeros(fbias_s.shape, np.int32)}
    if quantize_conv:
        t.update({"input.scale": np.array(s_in), "input.zp": np.array(z_in)})
        t.update({"conv.weight.q": wq, "conv.weight.scale": sw, "conv.weight.zp": np.zeros(sw.shape, np.int8),
                  "conv.bias.q": bq, "conv.bias.scale": bias_s, "conv.bias.zp": np.zeros(bias_s.shape, np.int32)})
    else:
        t.update({"conv.weight": p["w"], "conv.bias": p["b"]})
    inits = [numpy_helper.from_array(v, k) for k, v in t.items()]

    def q(x, name):
        return [helper.make_node("QuantizeLinear", [x, f"{name}.scale", f"{name}.zp"], [f"{name}.q"]),
                helper.make_node("DequantizeLinear", [f"{name}.q", f"{name}.scale", f"{name}.zp"], [f"{name}.dq"])]

    def dq(name):
        return [helper.make_node("DequantizeLinear", [f"{name}.q", f"{name}.scale", f"{name}.zp"],
                                 [f"{name}.dq"], axis=0)]

    conv_w, conv_b = ("conv.weight.dq", "conv.bias.dq") if quantize_conv else ("conv.weight", "conv.bias")
    conv_x = "input.dq" if quantize_conv else "input"
    nodes = ((q("input", "input") + dq("conv.weight") + dq("conv.bias") if quantize_conv else [])
             + [helper.make_node("Conv", [conv_x, conv_w, conv_b], ["conv_out"], name="conv0",
                                 pads=[1, 1, 1, 1], kernel_shape=[3, 3], strides=[1, 1]),
                helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu0")]
             + q("relu_out", "relu")
             + [helper.make_node("GlobalAveragePool", ["relu.dq"], ["pool_out"], name="pool"),
                helper.make_node("Flatten", ["pool_out"], ["flat"], name="flatten", axis=1)]
             + q("flat", "flat") + dq("fc.weight") + dq("fc.bias")
             + [helper.make_node("Gemm", ["flat.dq", "fc.weight.dq", "fc.bias.dq"], ["logits"], name="fc",
                                 transB=1)])
    _, c, h, w = calib.shape
    graph = helper.make_graph(
        nodes, "tiny_int8", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", p["fw"].shape[0]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="verify_quantized self-test")
    model.ir_version = 7
    return model


def self_test():
    np, onnx, _ = import_deps()
    rng = np.random.default_rng(0)
    fp32, p = tiny_fp32_model(rng)
    calib = rng.normal(0, 1, (64, 3, 8, 8)).astype(np.float32)
    x = rng.normal(0, 1, (200, 3, 8, 8)).astype(np.float32)
    # Labels: the fp32 net's own top-1 (from NumPy, not ORT), every 10th shifted by one, so that
    # the fp32 top-1 accuracy is exactly 90%.
    labels = numpy_forward(p, x).argmax(axis=1).astype(np.int64)
    labels[::10] = (labels[::10] + 1) % 10
    failures = []

    def check(name, cond, detail=""):
        print(f"{'ok  ' if cond else 'FAIL'} {name}{': ' + detail if detail else ''}")
        if not cond:
            failures.append(name)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        f32, i8, xp, lp = (os.path.join(d, f) for f in ("fp32.onnx", "int8.onnx", "x.npy", "labels.npy"))
        onnx.save(fp32, f32)
        np.save(xp, x)
        np.save(lp, labels)
        for signed in (False, True):
            act = "int8" if signed else "uint8"
            onnx.save(tiny_qdq_model(p, calib, signed_activations=signed), i8)
            r = verify(f32, i8, xp, lp, latency_runs=5, threads=1, batch_size=64)
            k = r["kernels"]
            check(f"{act}: checker ok", r["checker_ok"], str(r["checker_error"] or ""))
            check(f"{act}: fp32 top-1 is 90%", abs(r["fp32_top1"] - 0.9) < 1e-9, f"{r['fp32_top1']}")
            check(f"{act}: int8 within quantization error",
                  r["top1_agreement"] >= 0.95 and r["max_rel_logit_diff"] < 0.1 and abs(r["top1_drop_pp"]) <= 5,
                  f"agreement {r['top1_agreement']:.3f}, max rel diff {r['max_rel_logit_diff']:.4f}, "
                  f"mean rel diff {r['mean_rel_logit_diff']:.4f}, drop {r['top1_drop_pp']:.2f} pp")
            check(f"{act}: conv runs as an integer kernel",
                  k["fp32_convs"] == 1 and k["integer_convs"] == 1 and k["float_convs"] == 0,
                  f"{k['integer_conv_nodes']} integer, {k['float_conv_nodes']} float; ops {k['op_counts']}")
            check(f"{act}: Gemm runs as an integer kernel", k["integer_gemms"] == 1 and k["float_gemms"] == 0,
                  f"{k['integer_gemm_nodes']} integer, {k['float_gemm_nodes']} float")
            check(f"{act}: latency measured", r["latency"]["int8"]["runs"] == 5 and r["latency"]["int8"]["mean_ms"] > 0)
            # The same decision at ORT_ENABLE_ALL (where the conv becomes an NHWC com.microsoft QLinearConv).
            ka = verify(f32, i8, xp, lp, latency_runs=0, threads=1, batch_size=64, opt_level="all")["kernels"]
            check(f"{act}: integer conv at ORT_ENABLE_ALL too", ka["integer_convs"] == 1 and ka["float_convs"] == 0,
                  f"ops {ka['op_counts']}")

        # Negative case: a conv fed by float (no Q/DQ on its input, float weights) must be listed as float.
        onnx.save(tiny_qdq_model(p, calib, quantize_conv=False), i8)
        k = verify(f32, i8, xp, lp, latency_runs=0, threads=1)["kernels"]
        check("float-fed conv is reported as float", k["float_conv_nodes"] == ["conv0"] and k["integer_convs"] == 0,
              f"float {k['float_conv_nodes']}, integer {k['integer_conv_nodes']}")

        # Negative case: a wrong weight scale (x4) must show up as a large logit difference.
        bad = tiny_qdq_model(p, calib)
        for t in bad.graph.initializer:
            if t.name == "conv.weight.scale":
                t.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t) * 4, t.name))
            if t.name == "conv.bias.scale":
                t.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t) * 4, t.name))
        onnx.save(bad, i8)
        r = verify(f32, i8, xp, lp, latency_runs=0, threads=1)
        check("wrong weight scale shows a large difference", r["max_rel_logit_diff"] > 0.5,
              f"max rel diff {r['max_rel_logit_diff']:.3f}, agreement {r['top1_agreement']:.3f}")

        # Failures name the file (exit 1), through main().
        absent = os.path.join(d, "absent.onnx")
        try:
            verify(f32, absent, xp, lp, latency_runs=0)
            check("missing int8 model fails", False, "no error")
        except Failure as e:
            check("missing int8 model fails naming the file", "absent.onnx" in str(e), str(e))
        with open(i8, "wb") as f:
            f.write(b"not an onnx model")
        code = main([f32, i8, xp, lp, "--latency-runs", "0", "--json"], quiet=True)
        check("corrupt int8 model exits 1", code == FAILED, f"exit {code}")
        code = main([f32, i8, xp], quiet=True)
        check("missing argument exits 2", code == USAGE_ERROR, f"exit {code}")
    print(f"self-test ({time.perf_counter() - t0:.1f} s): "
          f"{'passed' if not failures else 'FAILED: ' + ', '.join(failures)}")
    return 0 if not failures else FAILED


def main(argv, quiet=False):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="Exit 0 the int8 model ran, 1 a file failed to load/run (or the self-test "
                                       "failed), 2 bad arguments. See the module docstring.")
    p.add_argument("fp32", nargs="?", help="FP32.onnx")
    p.add_argument("int8", nargs="?", help="INT8.onnx (QDQ)")
    p.add_argument("images", nargs="?", help="IMAGES.npy: float32 [N, C, H, W], normalized")
    p.add_argument("labels", nargs="?", help="LABELS.npy: int64 [N]")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--latency-runs", type=int, default=50, metavar="K", help="timed batch-1 runs (0: skip)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="intra_op_num_threads (default: every core)")
    p.add_argument("--batch-size", type=int, default=256, metavar="B", help="accuracy batch size")
    p.add_argument("--opt-level", choices=sorted(LEVELS), default="extended",
                   help="ORT optimization level of the kernel count (default: extended)")
    p.add_argument("--optimized-out", metavar="PATH", help="keep ORT's optimized int8 model here")
    p.add_argument("--self-test", action="store_true", help="check this script on a tiny hand-quantized model")
    try:
        if quiet:
            with open(os.devnull, "w") as null:
                saved, sys.stderr = sys.stderr, null
                try:
                    args = p.parse_args(argv)
                finally:
                    sys.stderr = saved
        else:
            args = p.parse_args(argv)
    except SystemExit as e:
        return USAGE_ERROR if e.code else 0

    def usage(msg):
        if not quiet:
            p.print_usage(sys.stderr)
            print(f"error: {msg}", file=sys.stderr)
        return USAGE_ERROR

    if args.latency_runs < 0:
        return usage("--latency-runs must be >= 0")
    if args.threads is not None and args.threads < 1:
        return usage("--threads must be >= 1")
    if args.batch_size < 1:
        return usage("--batch-size must be >= 1")
    try:
        if args.self_test:
            return self_test()
        if not (args.fp32 and args.int8 and args.images and args.labels):
            return usage("FP32.onnx INT8.onnx IMAGES.npy LABELS.npy are required")
        r = verify(args.fp32, args.int8, args.images, args.labels, args.latency_runs, args.threads,
                   args.batch_size, args.opt_level, args.optimized_out)
    except Failure as e:
        if not quiet:
            print(f"error: {e}", file=sys.stderr)
        return FAILED
    if not quiet:
        print(json.dumps(r) if args.json else human(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
