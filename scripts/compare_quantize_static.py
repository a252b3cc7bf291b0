#!/usr/bin/env python3
"""Quantizes an fp32 ONNX model with ONNX Runtime's own quantize_static, as a reference for the
Swift tool's int8 export, and measures both models' accuracy.

Usage:
    python3 scripts/compare_quantize_static.py FP32.onnx CALIB.npy IMAGES.npy LABELS.npy
        [--out PATH] [--activations uint8|int8] [--method minmax|entropy|percentile] [--json] [--calib-batch 32] [--batch-size 256]
        [--threads N]

  CALIB.npy   float32 [M, C, H, W]: the calibration images (the same ones the Swift tool used)
  IMAGES.npy  float32 [N, C, H, W], normalized; LABELS.npy integer (int64) [N]

Steps:
  1. onnxruntime.quantization.shape_inference.quant_pre_process (ORT's recommended
     preprocessing: symbolic + ONNX shape inference and graph optimization). If it fails, the
     failure is reported under "preprocess_error" and the original model is quantized as is.
  2. onnxruntime.quantization.quantize_static(quant_format=QDQ, per_channel=True,
     weight_type=QInt8, activation_type=QUInt8 (--activations int8: QInt8),
     calibrate_method=MinMax (--method entropy|percentile: ORT's own), reduce_range=False, default extra_options: symmetric weights,
     asymmetric activations) with a CalibrationDataReader that feeds CALIB.npy in batches of
     --calib-batch (or of the model's fixed batch size). The int8 model is written to --out (else
     a temporary file).
  3. Top-1 / top-5 accuracy of the fp32 and of ORT's int8 model on IMAGES/LABELS (CPU
     provider, default optimization level), the top-1 drop, agreement and logit differences, and
     the integer / float kernel count of ORT's int8 model (as in verify_quantized.py, at
     ORT_ENABLE_EXTENDED), so that it can be set next to the Swift tool's figures.

Output: a readable summary, or with --json one JSON object with the keys
    fp32_model, calib, images, labels, out, activations, n, m_calib, classes,
    preprocessed, preprocess_error,
    fp32_top1, fp32_top5, int8_top1, int8_top5, top1_drop_pp, top1_agreement,
    max_abs_logit_diff, mean_abs_logit_diff, fp32_logit_rms, max_rel_logit_diff, mean_rel_logit_diff,
    kernels {...as verify_quantized.py...}, onnxruntime_version, onnx_version, warnings
(accuracies are fractions in [0, 1]; top5 is null with fewer than 5 classes).

Exit status: 0 ORT's int8 model was made and ran; 1 a file could not be read, loaded, quantized or
run (the message names it); 2 bad arguments.
"""
import argparse
import contextlib
import io
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no scripts/__pycache__ from the import below
import verify_quantized as vq  # noqa: E402  (shared loading, accuracy and kernel counting)

FAILED = vq.FAILED
USAGE_ERROR = vq.USAGE_ERROR
Failure = vq.Failure


def model_input(onnx, model_path):
    try:
        model = onnx.load(model_path, load_external_data=False)
    except Exception as e:
        raise Failure(f"{model_path}: not a readable ONNX model (fp32 model): {type(e).__name__}: {e}")
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise Failure(f"{model_path}: the fp32 model must have exactly one data input, has {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    fixed = dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
    return model, inputs[0].name, fixed


def quantize(np, onnx, fp32_path, calib, out_path, activations, calib_batch, workdir, warnings, method="minmax"):
    """Runs quant_pre_process then quantize_static; returns (preprocessed, preprocess_error)."""
    try:
        from onnxruntime import quantization
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise Failure(f"onnxruntime.quantization is not importable ({e}): run scripts/install-deps.sh")
    _, input_name, fixed = model_input(onnx, fp32_path)
    batch = fixed or calib_batch

    pre = os.path.join(workdir, "fp32.pre.onnx")
    preprocessed, pre_error = False, None
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            quant_pre_process(fp32_path, pre, skip_symbolic_shape=False)
        if not os.path.isfile(pre):
            raise RuntimeError("quant_pre_process wrote no model")
        preprocessed = True
    except Exception as e:  # fall back to the original model
        pre_error = f"{type(e).__name__}: {e}".strip()
        warnings.append(f"quant_pre_process failed, quantizing {fp32_path} as is: {pre_error}")
        pre = fp32_path

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= calib.shape[0]:
                return None
            chunk = calib[self.i:self.i + batch]
            self.i += batch
            if fixed and chunk.shape[0] < batch:  # a fixed batch size: pad the tail with its last image
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - chunk.shape[0], axis=0)])
            return {input_name: chunk}

        def rewind(self):
            self.i = 0

    qtype = quantization.QuantType.QInt8 if activations == "int8" else quantization.QuantType.QUInt8
    try:
        with contextlib.redirect_stdout(log):
            quantization.quantize_static(
                pre, out_path, Reader(), quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                reduce_range=False, activation_type=qtype, weight_type=quantization.QuantType.QInt8,
                calibrate_method=METHODS[method](quantization))
    except Exception as e:
        raise Failure(f"{fp32_path}: onnxruntime's quantize_static failed: {type(e).__name__}: {e}")
    if not os.path.isfile(out_path):
        raise Failure(f"{out_path}: quantize_static wrote no model")
    return preprocessed, pre_error


# --method: ORT's calibrators (Percentile at its default 99.999).
METHODS = {"minmax": lambda q: q.CalibrationMethod.MinMax, "entropy": lambda q: q.CalibrationMethod.Entropy,
           "percentile": lambda q: q.CalibrationMethod.Percentile}


def compare(fp32_path, calib_path, images_path, labels_path, out=None, activations="uint8", calib_batch=32,
            batch_size=256, threads=None, method="minmax"):
    np, onnx, ort = vq.import_deps()
    threads = threads or os.cpu_count() or 1
    if not os.path.isfile(fp32_path):
        raise Failure(f"{fp32_path}: no such file (fp32 model)")
    calib = vq.load_images(np, calib_path)
    x = vq.load_images(np, images_path)
    labels = vq.load_labels(np, labels_path, x.shape[0])
    if calib.shape[1:] != x.shape[1:]:
        raise Failure(f"{calib_path}: calibration images are {list(calib.shape[1:])}, the images "
                      f"{list(x.shape[1:])}")
    r = {"fp32_model": fp32_path, "calib": calib_path, "images": images_path, "labels": labels_path, "out": out,
         "activations": activations, "method": method, "n": int(x.shape[0]), "m_calib": int(calib.shape[0]), "classes": None,
         "onnxruntime_version": ort.__version__, "onnx_version": onnx.__version__, "warnings": []}
    with tempfile.TemporaryDirectory() as d:
        int8_path = out or os.path.join(d, "int8.ort_static.onnx")
        r["preprocessed"], r["preprocess_error"] = quantize(np, onnx, fp32_path, calib, int8_path, activations,
                                                            calib_batch, d, r["warnings"], method)
        s32 = vq.session(ort, fp32_path, "fp32 model", threads)
        s8 = vq.session(ort, int8_path, "int8 model from quantize_static", threads)
        y32 = vq.run_batches(np, s32, fp32_path, "fp32 model", x, batch_size)
        y8 = vq.run_batches(np, s8, int8_path, "int8 model from quantize_static", x, batch_size)
        if y32.shape != y8.shape:
            raise Failure(f"{int8_path}: ORT's int8 model outputs {list(y8.shape)}, the fp32 model {list(y32.shape)}")
        r["classes"] = int(y32.shape[1])
        if labels.min() < 0 or labels.max() >= r["classes"]:
            raise Failure(f"{labels_path}: labels must lie in [0, {r['classes']}), "
                          f"found {labels.min()}..{labels.max()}")
        r.update(vq.compare_logits(np, y32, y8, labels))
        opt = os.path.join(d, "int8.optimized.onnx")
        vq.session(ort, int8_path, "int8 model from quantize_static", threads,
                   ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, opt)
        fp32_model = onnx.load(fp32_path, load_external_data=False)
        r["kernels"] = {"opt_level": "ORT_ENABLE_EXTENDED", **vq.count_kernels(onnx, fp32_model, opt)}
    if r["classes"] < 5:
        r["warnings"].append(f"{r['classes']} classes: no top-5 accuracy")
    return r


def human(r):
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"
    k = r["kernels"]
    pre = "preprocessed" if r["preprocessed"] else f"NOT preprocessed ({r['preprocess_error']})"
    lines = [
        f"{r['fp32_model']}: ORT quantize_static (QDQ, per-channel int8 weights, {r['activations']} activations, "
        f"MinMax on {r['m_calib']} images, {pre}){' -> ' + r['out'] if r['out'] else ''}",
        f"  fp32        top-1 {pct(r['fp32_top1'])}  top-5 {pct(r['fp32_top5'])}   (n={r['n']}, {r['classes']} classes)",
        f"  ORT int8    top-1 {pct(r['int8_top1'])}  top-5 {pct(r['int8_top5'])}   drop {r['top1_drop_pp']:.2f} pp, "
        f"agreement {pct(r['top1_agreement'])}, max rel logit diff {pct(r['max_rel_logit_diff'])}",
        f"  kernels     convs: integer {k['integer_convs']}, float {k['float_convs']} (fp32 model {k['fp32_convs']}); "
        f"Gemm/MatMul: integer {k['integer_gemms']}, float {k['float_gemms']} (fp32 model {k['fp32_gemms']})",
        f"  onnx {r['onnx_version']}, onnxruntime {r['onnxruntime_version']}",
    ]
    return "\n".join(lines + [f"  warning: {w}" for w in r["warnings"]])


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="Exit 0 ok, 1 a file failed to load/quantize/run, 2 bad arguments.")
    p.add_argument("fp32", help="FP32.onnx")
    p.add_argument("calib", help="CALIB.npy: float32 [M, C, H, W] calibration images")
    p.add_argument("images", help="IMAGES.npy: float32 [N, C, H, W], normalized")
    p.add_argument("labels", help="LABELS.npy: int64 [N]")
    p.add_argument("--out", metavar="PATH", help="keep ORT's int8 QDQ model here")
    p.add_argument("--activations", choices=["uint8", "int8"], default="uint8",
                   help="activation type: QUInt8 (default) or QInt8")
    p.add_argument("--method", choices=sorted(METHODS), default="minmax", help="ORT's calibration method")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--calib-batch", type=int, default=32, metavar="B", help="calibration batch size")
    p.add_argument("--batch-size", type=int, default=256, metavar="B", help="accuracy batch size")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="intra_op_num_threads (default: every core)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return USAGE_ERROR if e.code else 0
    for name in ("calib_batch", "batch_size", "threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.print_usage(sys.stderr)
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return USAGE_ERROR
    try:
        r = compare(args.fp32, args.calib, args.images, args.labels, args.out, args.activations, args.calib_batch,
                    args.batch_size, args.threads, args.method)
    except Failure as e:
        print(f"error: {e}", file=sys.stderr)
        return FAILED
    print(json.dumps(r) if args.json else human(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
