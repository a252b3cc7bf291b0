"""PyTorch's side of `neuralscale bench train --profile`: where a training step's time goes in
PyTorch on this CPU, by op kind, from torch.profiler.

Usage: torch_profile.py MODEL [RATIO] [BATCH] [STEPS] [--json]

Runs two warm-up steps, then STEPS profiled SGD steps (forward, backward, update) on a random
CIFAR-shaped batch, as benchmarks/torch_train_step.py times them, and prints per op kind the
milliseconds per step of the forward ops and of their backward (autograd) nodes, with the
share of the step. Kinds are named as `bench train --profile` names them (conv2d,
conv2d_grouped, batchnorm2d, relu, add, maxpool2d, ...), so the two tables line up; ops this
script does not map keep PyTorch's name. Times are self CPU time of top-level ops, so nothing is
counted twice.
"""
import json
import os
import sys
from collections import defaultdict

import torch
import torch.nn as nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "reference"))
from models import MODELS  # noqa: E402

args = [a for a in sys.argv[1:] if not a.startswith("--")]
as_json = "--json" in sys.argv
name = args[0]
ratio = float(args[1]) if len(args) > 1 else 1.0
batch = int(args[2]) if len(args) > 2 else 128
steps = int(args[3]) if len(args) > 3 else 5

torch.manual_seed(0)
model = MODELS[name](num_classes=10, ratio=ratio).train()
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
x = torch.randn(batch, 3, 32, 32)
y = torch.randint(0, 10, (batch,))
loss_fn = nn.CrossEntropyLoss()

# Grouped convolutions are timed apart, as in our profile: remember which conv calls are grouped
# by the order they run in.
grouped_convs = {id(m) for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1}


def step():
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    opt.step()


step()
step()

# Time each module's forward and its backward (via hooks) with the same clock as the profiler
# would, to split grouped from dense convs: the profiler's event names do not say.
KIND = {
    "aten::convolution": "conv2d", "aten::_convolution": "conv2d", "aten::mkldnn_convolution": "conv2d",
    "aten::conv2d": "conv2d", "aten::thnn_conv2d": "conv2d", "aten::_slow_conv2d_forward": "conv2d",
    "aten::convolution_backward": "conv2d", "ConvolutionBackward0": "conv2d",
    "aten::batch_norm": "batchnorm2d", "aten::native_batch_norm": "batchnorm2d",
    "aten::_batch_norm_impl_index": "batchnorm2d", "NativeBatchNormBackward0": "batchnorm2d",
    "aten::native_batch_norm_backward": "batchnorm2d", "aten::_native_batch_norm_legit": "batchnorm2d",
    "aten::_native_batch_norm_legit_functional": "batchnorm2d",
    "aten::relu": "relu", "aten::relu_": "relu", "ReluBackward0": "relu", "aten::threshold_backward": "relu",
    "aten::hardtanh": "relu6", "aten::hardtanh_": "relu6", "HardtanhBackward0": "relu6",
    "aten::hardtanh_backward": "relu6",
    "aten::add": "add", "aten::add_": "add", "AddBackward0": "add",
    "aten::max_pool2d": "maxpool2d", "aten::max_pool2d_with_indices": "maxpool2d",
    "MaxPool2DWithIndicesBackward0": "maxpool2d", "aten::max_pool2d_with_indices_backward": "maxpool2d",
    "aten::adaptive_avg_pool2d": "global_avgpool", "aten::mean": "global_avgpool",
    "MeanBackward1": "global_avgpool", "AdaptiveAvgPool2DBackward0": "global_avgpool",
    "aten::_adaptive_avg_pool2d": "global_avgpool", "aten::_adaptive_avg_pool2d_backward": "global_avgpool",
    "aten::linear": "linear", "aten::addmm": "linear", "AddmmBackward0": "linear", "aten::mm": "linear",
    "aten::cross_entropy_loss": "cross_entropy", "aten::log_softmax": "cross_entropy",
    "aten::nll_loss_nd": "cross_entropy", "LogSoftmaxBackward0": "cross_entropy",
    "NllLossBackward0": "cross_entropy",
    "aten::flatten": "reshape", "aten::view": "reshape", "aten::reshape": "reshape",
    "Optimizer.step#SGD.step": "sgd_update", "aten::_foreach_add_": "sgd_update",
    "aten::_foreach_mul_": "sgd_update", "aten::_foreach_add": "sgd_update",
    "Optimizer.zero_grad#SGD.zero_grad": "zero_grad",
}

with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(steps):
        step()

# Top-level events only (no parent), split into forward and backward by the autograd thread:
# backward nodes run under "autograd::engine::evaluate_function: XBackward0".
totals = defaultdict(lambda: [0.0, 0.0])  # kind -> [forward ms, backward ms]
step_ms = 0.0
for e in prof.events():
    if e.cpu_parent is not None:
        continue
    ms = e.cpu_time_total / 1000.0 / steps
    label = e.name
    backward = False
    if label.startswith("autograd::engine::evaluate_function: "):
        label = label.split(": ", 1)[1]
        backward = True
    kind = KIND.get(label, label)
    if kind == "conv2d":
        # A grouped conv's forward runs aten::convolution with groups > 1: the profiler keeps
        # no attributes, so use the input shape's channel count against the weight's.
        shapes = e.input_shapes if hasattr(e, "input_shapes") else None
        if shapes and len(shapes) > 1 and shapes[0] and shapes[1] and len(shapes[0]) == 4 and len(shapes[1]) == 4:
            if shapes[1][1] != shapes[0][1]:
                kind = "conv2d_grouped"
    totals[kind][1 if backward else 0] += ms
    step_ms += ms

rows = sorted(totals.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
result = {
    "model": name, "ratio": ratio, "batch": batch, "threads": torch.get_num_threads(), "steps": steps,
    "step_ms": step_ms, "torch": torch.__version__,
    "kinds": [{"kind": k, "forward_ms": f, "backward_ms": b, "share": (f + b) / step_ms} for k, (f, b) in rows],
}
if as_json:
    print(json.dumps(result))
else:
    print(f"PyTorch {torch.__version__} {name} ratio={ratio} batch={batch} threads={torch.get_num_threads()} "
          f"step={step_ms:.1f}ms (profiled)")
    print(f"{'op kind':<28}{'fwd ms':>10}{'bwd ms':>10}{'share':>8}")
    for k, (f, b) in rows:
        print(f"{k:<28}{f:>10.2f}{b:>10.2f}{100 * (f + b) / step_ms:>7.1f}%")
