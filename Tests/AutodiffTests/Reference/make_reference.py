"""Generate PyTorch reference values for the Swift autodiff tests.

Writes these JSON files next to this script:
    conv2d.json, batchnorm.json, pool.json, loss.json, linear.json,
    activation.json, sgd.json, channels.json, batchnorm_gated.json

Each file has the form
    {"generator": "make_reference.py", "torch_version": "...", "cases": [...]}
and each case is
    {"name": str, "op": str, "attrs": {...},
     "tensors": {name: {"shape": [ints], "data": [floats, row-major]}}}

Layouts are PyTorch's own: activations NCHW, conv weights OIHW. All tensors are
float32; each value is written with the fewest decimal digits (<= 9) that
round-trip to exactly the same float32, so Float(parsed value) is exact.
For ops with a backward, a random upstream gradient `dy` is drawn and
`y.backward(dy)` gives the stored gradients (dx, dweight, dbias, ...).

Rerun (from any directory):
    python3 make_reference.py
The output is deterministic for a given torch version (seeded once below).
"""
import json
import os
import struct

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float32)
torch.manual_seed(0)

OUT_DIR = os.path.dirname(os.path.abspath(__file__))


def to_f32(v):
    return struct.unpack("f", struct.pack("f", v))[0]


def short(v):
    """Shortest decimal (as a Python float) that converts back to the same float32 value v."""
    for digits in range(6, 10):
        s = float(f"{v:.{digits}g}")
        if to_f32(s) == v:
            return s
    return v


def ser(t):
    """Serialize a tensor as {"shape", "data"} (row-major; exact float32 values, short decimals)."""
    t = t.detach()
    return {"shape": list(t.shape), "data": [short(v) for v in t.double().flatten().tolist()]}


def write(filename, cases):
    path = os.path.join(OUT_DIR, filename)
    doc = {"generator": "make_reference.py", "torch_version": torch.__version__, "cases": cases}
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"{filename}: {len(cases)} cases, {os.path.getsize(path)} bytes")


def case(name, op, attrs, **tensors):
    return {"name": name, "op": op, "attrs": attrs, "tensors": {k: ser(v) for k, v in tensors.items()}}


def leaf(t):
    return t.detach().clone().requires_grad_(True)


def backward(y):
    dy = torch.randn(y.shape)
    y.backward(dy)
    return dy


# 1. conv2d -------------------------------------------------------------------
def conv_cases():
    specs = [  # name, x shape, weight shape, stride, padding, groups, has_bias
        ("3x3_s1_p1_bias", [2, 3, 7, 5], [4, 3, 3, 3], (1, 1), (1, 1), 1, True),
        ("3x3_s2_p1_nobias", [3, 4, 9, 6], [5, 4, 3, 3], (2, 2), (1, 1), 1, False),
        ("groups2_k3x2_s21_p10", [2, 4, 7, 6], [6, 2, 3, 2], (2, 1), (1, 0), 2, True),
        ("depthwise_s2_p1", [2, 6, 7, 9], [6, 1, 3, 3], (2, 2), (1, 1), 6, True),
        ("depthwise_mult2_s1_p1", [2, 3, 6, 5], [6, 1, 3, 3], (1, 1), (1, 1), 3, False),
        ("1x1_s1_p0", [3, 5, 4, 6], [7, 5, 1, 1], (1, 1), (0, 0), 1, True),
        ("1x1_s2_p0", [2, 6, 7, 7], [4, 6, 1, 1], (2, 2), (0, 0), 1, False),
        ("7x7_s2_p3", [1, 3, 13, 11], [4, 3, 7, 7], (2, 2), (3, 3), 1, False),
    ]
    cases = []
    for name, xs, ws, stride, pad, groups, has_bias in specs:
        x, w = leaf(torch.randn(xs)), leaf(torch.randn(ws))
        b = leaf(torch.randn(ws[0])) if has_bias else None
        y = F.conv2d(x, w, b, stride=stride, padding=pad, groups=groups)
        dy = backward(y)
        t = {"x": x, "weight": w}
        if has_bias:
            t["bias"] = b
        t.update(y=y, dy=dy, dx=x.grad, dweight=w.grad)
        if has_bias:
            t["dbias"] = b.grad
        attrs = {"stride": list(stride), "padding": list(pad), "groups": groups, "has_bias": has_bias}
        cases.append(case(name, "conv2d", attrs, **t))
    return cases


# 2. batchnorm ----------------------------------------------------------------
def bn_cases():
    cases = []
    for name, xs, training in [("train", [4, 3, 5, 6], True),
                               ("train_batch1_odd", [1, 5, 3, 7], True),
                               ("eval", [3, 4, 5, 5], False)]:
        c = xs[1]
        x = leaf(torch.randn(xs) * 2 + 0.5)
        w, b = leaf(torch.randn(c)), leaf(torch.randn(c))
        rm, rv = torch.randn(c), torch.rand(c) + 0.5
        rm_in, rv_in = rm.clone(), rv.clone()
        y = F.batch_norm(x, rm, rv, w, b, training=training, momentum=0.1, eps=1e-5)  # updates rm, rv in place
        dy = backward(y)
        attrs = {"training": training, "momentum": 0.1, "eps": 1e-5}
        cases.append(case(name, "batchnorm2d", attrs, x=x, weight=w, bias=b,
                          running_mean=rm_in, running_var=rv_in, y=y,
                          running_mean_out=rm, running_var_out=rv,
                          dy=dy, dx=x.grad, dweight=w.grad, dbias=b.grad))
    return cases


def gated_bn_cases():
    """act(gate * batch_norm(x)): the search's gated batch norm, one fused op in Swift.
    Seeded on its own so adding it left the other files' draws unchanged."""
    torch.manual_seed(1)
    cases = []
    for name, act, training in [("train_relu", "relu", True), ("train_relu6", "relu6", True),
                                ("eval_identity", "identity", False)]:
        x = leaf(torch.randn(3, 4, 5, 3) * 2 + 0.5)
        w, b = leaf(torch.randn(4)), leaf(torch.randn(4))
        gate = leaf(torch.tensor([1.0, 0.0, 0.7, 1.3]))
        rm, rv = torch.randn(4), torch.rand(4) + 0.5
        rm_in, rv_in = rm.clone(), rv.clone()
        z = F.batch_norm(x, rm, rv, w, b, training=training, momentum=0.1, eps=1e-5) * gate.view(1, -1, 1, 1)
        y = {"relu": F.relu, "relu6": F.relu6, "identity": lambda t: t}[act](z)
        dy = backward(y)
        attrs = {"training": training, "momentum": 0.1, "eps": 1e-5, "activation": act}
        cases.append(case(name, "batchnorm2d_gated", attrs, x=x, weight=w, bias=b, gate=gate,
                          running_mean=rm_in, running_var=rv_in, y=y,
                          dy=dy, dx=x.grad, dweight=w.grad, dbias=b.grad, dgate=gate.grad))
    return cases


# 3. pooling ------------------------------------------------------------------
def distinct(shape):
    """Well-separated distinct values (spacing 0.1) in random order: safe for finite differences."""
    n = 1
    for s in shape:
        n *= s
    return (torch.randperm(n).float() * 0.1).reshape(shape)


def pool_cases():
    cases = []
    for name, op, k, s, p, xs in [("max_k3_s2_p1", "maxpool2d", 3, 2, 1, [2, 3, 9, 7]),
                                  ("max_k2_s2_p0", "maxpool2d", 2, 2, 0, [2, 3, 8, 6]),
                                  ("avg_k2_s2_p0", "avgpool2d", 2, 2, 0, [2, 3, 8, 6]),
                                  ("avg_k3_s2_p1", "avgpool2d", 3, 2, 1, [2, 2, 7, 9])]:
        if op == "maxpool2d":
            x = leaf(distinct(xs))
            y = F.max_pool2d(x, k, s, p)
        else:
            x = leaf(torch.randn(xs))
            y = F.avg_pool2d(x, k, s, p, ceil_mode=False, count_include_pad=True)
        dy = backward(y)
        attrs = {"kernel": [k, k], "stride": [s, s], "padding": [p, p]}
        cases.append(case(name, op, attrs, x=x, y=y, dy=dy, dx=x.grad))
    x = leaf(torch.randn(3, 4, 5, 6))
    y = F.adaptive_avg_pool2d(x, 1)
    dy = backward(y)
    cases.append(case("gap", "global_avgpool", {}, x=x, y=y, dy=dy, dx=x.grad))
    return cases


# 4. cross-entropy loss -------------------------------------------------------
def loss_cases():
    cases = []
    for name, n, k, scale in [("small", 5, 7, 1.0), ("large_logits", 4, 10, 100.0), ("batch1", 1, 3, 1.0)]:
        logits = leaf(torch.randn(n, k) * scale)
        labels = torch.randint(0, k, (n,))
        loss = F.cross_entropy(logits, labels, reduction="mean")
        loss.backward()  # upstream gradient 1
        cases.append(case(name, "cross_entropy", {}, logits=logits, labels=labels,
                          loss=loss, dlogits=logits.grad))
    return cases


# 5. linear / matmul ----------------------------------------------------------
def linear_cases():
    x, w, b = leaf(torch.randn(3, 5)), leaf(torch.randn(4, 5)), leaf(torch.randn(4))
    y = F.linear(x, w, b)  # x @ w.T + b
    dy = backward(y)
    lin = case("linear", "linear", {}, x=x, weight=w, bias=b, y=y, dy=dy,
               dx=x.grad, dweight=w.grad, dbias=b.grad)
    a, bm = leaf(torch.randn(3, 4)), leaf(torch.randn(4, 5))
    y = a @ bm
    dy = backward(y)
    mm = case("matmul", "matmul", {}, a=a, b=bm, y=y, dy=dy, da=a.grad, db=bm.grad)
    return [lin, mm]


# 6. activations --------------------------------------------------------------
def activation_cases():
    cases = []
    for op, fn in [("relu", F.relu), ("relu6", F.relu6)]:
        x = torch.randn(2, 3, 4, 5) * 4
        # keep every value at least 0.05 away from the kinks at 0 and 6
        x = torch.where(x.abs() < 0.05, torch.copysign(torch.tensor(0.1), x), x)
        x = torch.where((x - 6).abs() < 0.05, 6 + torch.copysign(torch.tensor(0.1), x - 6), x)
        assert (x.abs() >= 0.05).all() and ((x - 6).abs() >= 0.05).all()
        x = leaf(x)
        y = fn(x)
        dy = backward(y)
        cases.append(case(op, op, {}, x=x, y=y, dy=dy, dx=x.grad))
    return cases


# 7. SGD ----------------------------------------------------------------------
def sgd_cases():
    lrs = [0.1, 0.1, 0.1, 0.01, 0.01, 0.001]
    cases = []
    for name, m, wd, nesterov in [("momentum_wd", 0.9, 5e-4, False), ("nesterov", 0.9, 1e-3, True),
                                  ("plain", 0.0, 0.0, False), ("momentum_nowd", 0.9, 0.0, False)]:
        p0, p1 = leaf(torch.randn(6)), leaf(torch.randn(2, 3))
        t = {"p0_init": p0.clone(), "p1_init": p1.clone()}
        opt = torch.optim.SGD([p0, p1], lr=lrs[0], momentum=m, weight_decay=wd, nesterov=nesterov)
        for k, lr in enumerate(lrs):
            opt.param_groups[0]["lr"] = lr
            p0.grad, p1.grad = torch.randn(p0.shape), torch.randn(p1.shape)
            t[f"grad_p0_step{k}"], t[f"grad_p1_step{k}"] = p0.grad.clone(), p1.grad.clone()
            opt.step()
            t[f"p0_after_step{k}"], t[f"p1_after_step{k}"] = p0.clone(), p1.clone()
        if m > 0:
            t["p0_momentum_final"] = opt.state[p0]["momentum_buffer"]
            t["p1_momentum_final"] = opt.state[p1]["momentum_buffer"]
        attrs = {"momentum": m, "weight_decay": wd, "nesterov": nesterov, "lrs": lrs, "steps": len(lrs)}
        cases.append(case(name, "sgd", attrs, **t))
    return cases


# 8. channel selection (the shortcut of pruned residual blocks) -------------------
def channel_cases():
    # Output channel j is input channel channels[j], or zeros for -1; channel 1 is read twice,
    # so its gradient sums two outputs, and channel 3 is read by none.
    channels = [2, -1, 0, 1, 1]
    x = leaf(torch.randn(2, 4, 3, 5))
    zero = torch.zeros(2, 3, 5)
    y = torch.stack([x[:, c] if c >= 0 else zero for c in channels], dim=1)
    dy = backward(y)
    return [case("select_channels", "select_channels", {"channels": channels}, x=x, y=y, dy=dy, dx=x.grad)]


if __name__ == "__main__":
    import sys
    files = {"conv2d.json": conv_cases, "batchnorm.json": bn_cases, "pool.json": pool_cases,
             "loss.json": loss_cases, "linear.json": linear_cases, "activation.json": activation_cases,
             "sgd.json": sgd_cases, "channels.json": channel_cases,
             "batchnorm_gated.json": gated_bn_cases}
    # All files in this order (the draws of each follow the previous ones'), or only those named:
    # `python3 make_reference.py batchnorm_gated.json` (a file seeded on its own).
    for name, make in files.items():
        if len(sys.argv) == 1 or name in sys.argv[1:]:
            write(name, make())
