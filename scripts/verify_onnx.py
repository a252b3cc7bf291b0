#!/usr/bin/env python3
"""Verifies an exported ONNX model with its real consumers: onnx's checker and ONNX Runtime (CPU).

Usage:
    python3 scripts/verify_onnx.py MODEL.onnx INPUTS.npy LOGITS.npy [--json]
        [--max-cosine-distance 1e-4] [--min-top1-agreement 1.0] [--threads N]
    python3 scripts/verify_onnx.py --self-test

Checks, all of which must pass:
  1. onnx.checker.check_model(MODEL, full_check=True) (full_check adds strict shape inference).
  2. The graph has exactly one input that is not an initializer, of rank 4, and its first
     (batch) dimension is symbolic (`dim_param`, e.g. "N"), not a fixed number.
  3. ONNX Runtime (CPUExecutionProvider) on INPUTS gives, against LOGITS (the exporter's own
     outputs on the same inputs), per row:
       - cosine distance 1 - a.b / (|a| |b|) below --max-cosine-distance (1e-4) for every row;
       - the same argmax (top-1) in at least --min-top1-agreement of the rows (1.0 = all).
     The comparison is done in float64.
  4. The batch is really dynamic: the first row run on its own (batch 1) gives the same logits as
     in the full batch (cosine distance below the same bound). Skipped when N is 1.

Exit status: 0 passed, 1 failed (the figures say why), 2 usage or I/O error (the message names
the file).

Array files (INPUTS [N, C, H, W], LOGITS [N, classes]) are NumPy .npy, version 1.0, float32
little-endian, C order. That format is, byte for byte:
    bytes 0-5   "\\x93NUMPY"
    byte  6     0x01 (major version)
    byte  7     0x00 (minor version)
    bytes 8-9   HEADER_LEN, uint16 little-endian
    HEADER_LEN bytes of ASCII header:
        "{'descr': '<f4', 'fortran_order': False, 'shape': (100, 3, 32, 32), }"
        then spaces, then one "\\n", such that 10 + HEADER_LEN is a multiple of 64
        (a rank-1 shape is written "(5,)")
    then N*C*H*W float32 values, little-endian, row-major (last index fastest).
`write_npy_float32` below writes exactly this; `numpy.save` of a float32 array does too.

Output: one human line per check outcome, or with --json one JSON object with the keys
passed, checker_ok, dynamic_batch, batch_dim, input_name, max_cosine_distance, top1_agreement,
max_abs_diff, batch1_max_cosine_distance, n, onnxruntime_version, onnx_version, errors.

Needs onnx, onnxruntime and numpy (scripts/install-deps.sh installs the pinned versions).
"""
import argparse
import json
import os
import struct
import sys
import tempfile

USAGE_ERROR = 2
FAILED = 1


class UsageError(Exception):
    """A missing or unreadable file, or a file in the wrong format: exit 2."""


def import_deps():
    try:
        import numpy
        import onnx
        import onnx.checker
        import onnxruntime
    except ImportError as e:
        raise UsageError(f"{e.name} is not importable by {sys.executable}: run scripts/install-deps.sh")
    return numpy, onnx, onnxruntime


def write_npy_float32(path, shape, values_le_f32_bytes):
    """Writes a .npy v1.0 file of float32 values (already little-endian bytes), the format the
    Swift side writes; kept here as the executable description of the format."""
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }"
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * (pad % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("ascii"))
        f.write(values_le_f32_bytes)


def load_float32(np, path, rank, what):
    try:
        a = np.load(path, allow_pickle=False)
    except OSError as e:
        raise UsageError(f"{path}: cannot read {what}: {e.strerror or e}")
    except ValueError as e:
        raise UsageError(f"{path}: not a .npy file ({what}): {e}")
    if a.dtype != np.dtype("<f4"):
        raise UsageError(f"{path}: {what} must be float32 little-endian ('<f4'), got {a.dtype.str}")
    if a.ndim != rank:
        raise UsageError(f"{path}: {what} must have rank {rank}, got shape {list(a.shape)}")
    return a


def cosine_distances(np, a, b):
    """1 - cos(a_i, b_i) per row, in float64. Two zero rows are at distance 0, one zero row at 1."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 1.0 - dot / (na * nb)
    d = np.where((na == 0) & (nb == 0), 0.0, np.where((na == 0) | (nb == 0), 1.0, d))
    return d


def verify(model_path, inputs_path, logits_path, max_cos=1e-4, min_top1=1.0, threads=0):
    """Runs every check; returns the report dict (report["passed"] says the outcome).
    Raises UsageError for missing or malformed files."""
    np, onnx, ort = import_deps()
    if not os.path.isfile(model_path):
        raise UsageError(f"{model_path}: no such file (model)")
    x = load_float32(np, inputs_path, 4, "inputs [N, C, H, W]")
    expected = load_float32(np, logits_path, 2, "logits [N, classes]")
    if x.shape[0] != expected.shape[0] or x.shape[0] == 0:
        raise UsageError(f"{inputs_path}, {logits_path}: {x.shape[0]} inputs but {expected.shape[0]} logit rows")

    r = {"passed": False, "checker_ok": False, "dynamic_batch": False, "batch_dim": None, "input_name": None,
         "max_cosine_distance": None, "top1_agreement": None, "max_abs_diff": None,
         "batch1_max_cosine_distance": None, "n": int(x.shape[0]),
         "onnxruntime_version": ort.__version__, "onnx_version": onnx.__version__, "errors": []}
    errors = r["errors"]

    try:
        onnx.checker.check_model(model_path, full_check=True)
        r["checker_ok"] = True
    except Exception as e:  # the checker's own errors, and protobuf's DecodeError for a corrupt file
        errors.append(f"onnx.checker: {type(e).__name__}: {e}".strip())

    try:
        model = onnx.load(model_path, load_external_data=False)
    except Exception as e:
        errors.append(f"{model_path}: not a readable ONNX model: {type(e).__name__}: {e}")
        return r
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        errors.append(f"the graph must have exactly one data input, has {len(inputs)}: {[i.name for i in inputs]}")
        return r
    inp = inputs[0]
    r["input_name"] = inp.name
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != 4:
        errors.append(f"input {inp.name!r} has rank {len(dims)}, expected 4 [N, C, H, W]")
    elif dims[0].HasField("dim_param") and dims[0].dim_param:
        r["dynamic_batch"], r["batch_dim"] = True, dims[0].dim_param
    else:
        r["batch_dim"] = dims[0].dim_value if dims[0].HasField("dim_value") else None
        errors.append(f"input {inp.name!r} has a fixed batch dimension ({r['batch_dim']}), not a symbolic one")

    try:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        got = session.run(None, {inp.name: x})[0]
        one = session.run(None, {inp.name: x[:1]})[0] if x.shape[0] > 1 else None
    except Exception as e:
        errors.append(f"onnxruntime: {type(e).__name__}: {e}")
        return r
    if got.shape != expected.shape:
        errors.append(f"onnxruntime's output has shape {list(got.shape)}, the expected logits {list(expected.shape)}")
        return r

    # A zeroed net (an empty search state, say) agrees with anything that also outputs zeros:
    # that proves nothing, so constant expected logits fail.
    if np.ptp(expected.astype(np.float64), axis=1).max() == 0:
        errors.append("every row of the expected logits is constant (a zeroed or empty net?): nothing to compare")
    cos = cosine_distances(np, got, expected)
    r["max_cosine_distance"] = float(cos.max())
    r["top1_agreement"] = float((got.argmax(axis=1) == expected.argmax(axis=1)).mean())
    r["max_abs_diff"] = float(np.abs(got.astype(np.float64) - expected).max())
    if not r["max_cosine_distance"] < max_cos:
        worst = int(cos.argmax())
        errors.append(f"max cosine distance {r['max_cosine_distance']:.3g} (row {worst}) is not below {max_cos:g}")
    if r["top1_agreement"] < min_top1:
        errors.append(f"top-1 agreement {r['top1_agreement']:.2%} is below {min_top1:.2%}")
    if one is not None:
        r["batch1_max_cosine_distance"] = float(cosine_distances(np, one, got[:1]).max())
        if not r["batch1_max_cosine_distance"] < max_cos:
            errors.append(f"the first row alone (batch 1) differs from the full batch: cosine distance "
                          f"{r['batch1_max_cosine_distance']:.3g}")
    r["passed"] = not errors
    return r


def human(model_path, r):
    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)
    batch = f"batch dim {r['batch_dim']!r} ({'dynamic' if r['dynamic_batch'] else 'NOT dynamic'})"
    line = (f"{'PASS' if r['passed'] else 'FAIL'} {model_path}: checker {'ok' if r['checker_ok'] else 'FAILED'}, "
            f"{batch}, n={r['n']}, max cosine distance {fmt(r['max_cosine_distance'], '.3g')}, "
            f"top-1 agreement {fmt(r['top1_agreement'], '.2%')}, max |diff| {fmt(r['max_abs_diff'], '.3g')}, "
            f"batch-1 cosine distance {fmt(r['batch1_max_cosine_distance'], '.3g')}; "
            f"onnx {r['onnx_version']}, onnxruntime {r['onnxruntime_version']}")
    return "\n".join([line] + [f"  {e}" for e in r["errors"]])


# ---------------------------------------------------------------------------------------------
# Self-test: a tiny Conv+Relu+GlobalAveragePool+Flatten+Gemm model made with onnx.helper, whose
# expected logits come from a direct NumPy implementation (float64), not from ONNX Runtime.

def _tiny_model(onnx, np, rng, batch_dim="N"):
    from onnx import TensorProto, helper, numpy_helper
    w = rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, 4).astype(np.float32)
    fw = rng.normal(0, 0.5, (10, 4)).astype(np.float32)
    fb = rng.normal(0, 0.1, 10).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w, "features.0.weight"), (b, "features.0.bias"), (fw, "classifier.weight"), (fb, "classifier.bias")]]
    nodes = [
        helper.make_node("Conv", ["input", "features.0.weight", "features.0.bias"], ["c"], pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3], strides=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "classifier.weight", "classifier.bias"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch_dim, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch_dim, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="verify_onnx self-test")
    model.ir_version = 7  # opset 13's IR version
    return model, (w, b, fw, fb)


def _numpy_forward(np, x, params):
    w, b, fw, fb = (p.astype(np.float64) for p in params)
    x = x.astype(np.float64)
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    out = np.maximum(out + b[None, :, None, None], 0).mean(axis=(2, 3))
    return out @ fw.T + fb


def self_test():
    np, onnx, _ = import_deps()
    rng = np.random.default_rng(0)
    model, params = _tiny_model(onnx, np, rng)
    x = rng.normal(0, 1, (16, 3, 8, 8)).astype(np.float32)
    expected = _numpy_forward(np, x, params).astype(np.float32)
    failures = []

    def expect(name, want_pass, r):
        ok = r["passed"] == want_pass
        print(f"{'ok  ' if ok else 'FAIL'} {name}: passed={r['passed']} "
              f"max_cos={r['max_cosine_distance']} top1={r['top1_agreement']} errors={r['errors']}")
        if not ok:
            failures.append(name)

    with tempfile.TemporaryDirectory() as d:
        mpath, xpath, ypath = (os.path.join(d, f) for f in ("m.onnx", "x.npy", "y.npy"))
        onnx.save(model, mpath)
        write_npy_float32(xpath, x.shape, x.astype("<f4").tobytes())
        # Our writer must agree byte for byte with numpy.save.
        np.save(os.path.join(d, "ref.npy"), x)
        with open(xpath, "rb") as f1, open(os.path.join(d, "ref.npy"), "rb") as f2:
            if f1.read() != f2.read():
                failures.append("write_npy_float32 differs from numpy.save")
                print("FAIL write_npy_float32 differs from numpy.save")
        write_npy_float32(ypath, expected.shape, expected.astype("<f4").tobytes())
        expect("exact logits pass", True, verify(mpath, xpath, ypath))

        # Noise well below the bound still passes (the bound is not tighter than float32 needs).
        np.save(ypath, (expected * (1 + 1e-5 * rng.standard_normal(expected.shape))).astype(np.float32))
        expect("tiny noise passes", True, verify(mpath, xpath, ypath))

        # One row turned around: the cosine distance of that row is 2, and its top-1 changes.
        bad = expected.copy()
        bad[3] = -bad[3]
        np.save(ypath, bad)
        expect("negated row fails", False, verify(mpath, xpath, ypath))

        # Noise of 5% of each row's norm: top-1 may survive, the cosine bound must not.
        bad = expected + 0.05 * np.linalg.norm(expected, axis=1, keepdims=True) * rng.standard_normal(expected.shape)
        np.save(ypath, bad.astype(np.float32))
        expect("5% noise fails", False, verify(mpath, xpath, ypath))

        # A fixed batch dimension fails even with the right logits.
        fixed, _ = _tiny_model(onnx, np, np.random.default_rng(0), batch_dim=16)
        onnx.save(fixed, mpath)
        np.save(ypath, expected)
        expect("fixed batch dim fails", False, verify(mpath, xpath, ypath))

        # A missing file is a usage error naming the file.
        try:
            verify(os.path.join(d, "absent.onnx"), xpath, ypath)
            failures.append("missing model raised nothing")
        except UsageError as e:
            print(f"ok   missing model: {e}")
            if "absent.onnx" not in str(e):
                failures.append("missing model message does not name the file")
    print(f"self-test: {'passed' if not failures else 'FAILED: ' + ', '.join(failures)}")
    return 0 if not failures else FAILED


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="Exit 0 passed, 1 failed, 2 usage/IO error. See the module docstring.")
    p.add_argument("model", nargs="?", help="MODEL.onnx")
    p.add_argument("inputs", nargs="?", help="INPUTS.npy: float32 [N, C, H, W]")
    p.add_argument("logits", nargs="?", help="LOGITS.npy: float32 [N, classes], the exporter's outputs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--max-cosine-distance", type=float, default=1e-4)
    p.add_argument("--min-top1-agreement", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime's intra-op threads (0: its default, every core)")
    p.add_argument("--self-test", action="store_true", help="check this script on a tiny model")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return USAGE_ERROR if e.code else 0
    try:
        if args.self_test:
            return self_test()
        if not (args.model and args.inputs and args.logits):
            p.print_usage(sys.stderr)
            print("error: MODEL.onnx INPUTS.npy LOGITS.npy are required", file=sys.stderr)
            return USAGE_ERROR
        if args.threads < 0:
            raise UsageError(f"--threads must be >= 0, got {args.threads}")
        r = verify(args.model, args.inputs, args.logits, args.max_cosine_distance, args.min_top1_agreement, args.threads)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_ERROR
    print(json.dumps(r) if args.json else human(args.model, r))
    return 0 if r["passed"] else FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
