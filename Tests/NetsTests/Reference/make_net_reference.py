"""PyTorch reference outputs of the four nets (shared/reference/models.py) at small uniform
ratios, for NetsTests.testForwardAndGradientsMatchPyTorch.

For every net: random weights (BN weight, bias and running statistics randomized too, so eval
mode is a real test), an input batch, the logits in eval and in train mode, the loss
(cross-entropy, train mode) and the gradients of the loss with respect to the first and last
weight, all computed in float64, plus PyTorch's own float32 error on each (`noise`). Writes `nets.json` (names, shapes, offsets) and `nets.bin` (float32, little-endian).

Run: python3 make_net_reference.py   (pip install torch; uses shared/reference/models.py)
"""
import copy
import json
import os
import struct
import sys

import torch
import torch.nn as nn

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "../../../../shared/reference"))
from models import MODELS  # noqa: E402

# (model, ratio, image size). ResNet-50's stride-32 trunk leaves 1x1 maps at 32x32, where train-mode
# BN normalizes over only the batch: 64x64 inputs keep its statistics well conditioned.
# MobileNetV2 also at 64x64, where its 96-wide stage takes stride 2 (the reference's `tiny`).
CASES = [("vgg11", 0.0625, 32), ("mobilenetv2", 0.0625, 32), ("mobilenetv2", 0.0625, 64),
         ("preact_resnet18", 0.0625, 32), ("resnet50", 0.03125, 64)]

torch.manual_seed(0)
blob = bytearray()
manifest = {"generator": "make_net_reference.py", "torch_version": torch.__version__, "cases": []}


def put(t):
    """Appends a tensor to the blob; returns its entry."""
    global blob
    data = t.detach().contiguous().float().flatten().tolist()
    entry = {"shape": list(t.shape), "offset": len(blob) // 4, "count": len(data)}
    blob += struct.pack(f"<{len(data)}f", *data)
    return entry


for name, ratio, size in CASES:
    extra = {"tiny": True} if name == "mobilenetv2" and size == 64 else {}
    m = MODELS[name](num_classes=10, in_ch=3, ratio=ratio, **extra)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.2)
                mod.running_mean.normal_(0, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
            elif isinstance(mod, (nn.Conv2d, nn.Linear)):
                fan_in = mod.weight[0].numel()
                mod.weight.normal_(0, (2.0 / fan_in) ** 0.5)
                if mod.bias is not None:
                    mod.bias.normal_(0, 0.1)
    state = {k: put(v) for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    x = torch.randn(4, 3, size, size)
    labels = torch.tensor([1, 7, 3, 0])
    # The expected values are computed in float64 (the exact answer for these float32 weights).
    # The same net in float32 gives PyTorch's own rounding error, stored as `noise`: train-mode
    # batch norm over the few values of a tiny late feature map can amplify rounding a lot, and
    # the Swift test allows its float32 result that much (x4) on top of a tight relative bound.
    results = {}
    for dtype in (torch.float64, torch.float32):
        net = copy.deepcopy(m).to(dtype)
        net.eval()
        eval_logits = net(x.to(dtype))
        net.train()
        train_logits = net(x.to(dtype))
        loss = nn.functional.cross_entropy(train_logits, labels)
        loss.backward()
        params = [(k, p) for k, p in net.named_parameters() if p.dim() > 1]
        grads = {params[0][0]: params[0][1].grad, params[-1][0]: params[-1][1].grad}
        results[dtype] = (eval_logits, train_logits, loss, grads)
    exact, single = results[torch.float64], results[torch.float32]

    def noise(a, b):
        return (a.double() - b.double()).abs().max().item()

    manifest["cases"].append({
        "model": name, "ratio": ratio, "size": size, "state": state, "x": put(x), "labels": labels.tolist(),
        "eval_logits": put(exact[0]), "train_logits": put(exact[1]), "loss": exact[2].item(),
        "grads": {k: put(v) for k, v in exact[3].items()},
        "noise": {"eval_logits": noise(exact[0], single[0]), "train_logits": noise(exact[1], single[1]),
                  **{k: noise(v, single[3][k]) for k, v in exact[3].items()}},
    })

with open(os.path.join(here, "nets.bin"), "wb") as f:
    f.write(blob)
with open(os.path.join(here, "nets.json"), "w") as f:
    json.dump(manifest, f, indent=1)
print(f"nets.bin: {len(blob)} bytes, {len(manifest['cases'])} nets")
