"""Reference params and MFLOPs of the four nets (shared/reference/models.py), counted by thop
(PyTorch-OpCounter), for `neuralscale stats`. Writes `stats.json` beside this script.

Run: python3 make_stats_reference.py [PATH/TO/models.py]
     (pip install torch thop; default models.py: ../shared/reference/models.py from the repo root)
Made with thop 0.1.1.post2209072238, torch 2.15.0 (CPU).

Entries: vgg11, mobilenetv2, preact_resnet18, resnet50, uniform ratios 0.25 and 1.0, for
 - 3x32x32, 10 classes (CIFAR-10);
 - 1x32x32, 10 classes (Fashion-MNIST, padded to 32x32 as the Swift loader does);
 - 3x64x64, 200 classes (tinyImageNet).
Each: model, ratio, in_ch, image_size, classes, params, macs, mflops (= 2 * macs / 1e6), widths
(one per width group, in the order of Architecture.uniformWidths: Int(original * ratio)), source.

64x64 inputs: models.py builds MobileNetV2's 64x64 variant itself (`tiny=True`) and ResNet-50 needs
none, but two nets need the 64x64 rules of shared/design/neuralscale.md ("Nets"), which the Swift
nets follow and models.py lacks; `source` says so for those entries:
 - vgg11: the classifier sees the flattened 2x2 map, Linear(c * 2 * 2, classes) (models.py's
   Linear(c, classes) cannot run on 64x64);
 - preact_resnet18: the first block of stage 1 has stride 2 too, so it gets a 1x1 shortcut conv
   (w0 * w0 more params than models.py's net, whose param_counts.json entries assume 32x32).

HOW THOP COUNTS (thop 0.1.1.post2209072238, `thop.profile`; read from thop/profile.py,
thop/vision/basic_hooks.py and thop/vision/calc_func.py). thop puts a forward hook on every module
whose exact type (type(m), not isinstance) is in its table, runs one forward pass in eval mode under
no_grad on the given input (here batch N = 1), and sums the per-module counts, recursing into
modules that have no rule (and into nn.Sequential / nn.ModuleList). Counts are MACs
(multiply-accumulates), summed as float64 and returned as a float. Per layer type, with x the
module's input and y its output:
 - nn.Conv2d: numel(y) * (C_in / groups) * kH * kW, i.e. N * C_out * H_out * W_out * (C_in / groups)
   * kH * kW, with C_in // groups integer division. The bias adds NOTHING (thop's count_convNd
   passes `bias` to calculate_conv2d_flops, which ignores it). Depthwise (groups = C_in): C_in / groups
   = 1.
 - nn.BatchNorm2d: 2 * numel(x), doubled when affine (the default, and all BNs here):
   4 * N * C * H * W. (count_normalization: "bn is by default fused in inference" in the comment,
   but it is counted anyway.)
 - nn.ReLU, nn.ReLU6: 0 (zero_ops). nn.LeakyReLU would be 0 too (calculate_relu_flops returns 0).
 - nn.MaxPool2d, nn.AdaptiveMaxPool2d: 0 (zero_ops).
 - nn.AvgPool2d: numel(y). nn.AdaptiveAvgPool2d (the module): int((H_in/H_out * W_in/W_out + 1) *
   numel(y)). NOT USED by these nets: models.py pools with F.adaptive_avg_pool2d, a function, so
   global average pooling counts 0.
 - nn.Linear: in_features * numel(y) = N * out_features * in_features. The bias adds nothing.
 - nn.Flatten: no rule, 0. nn.Dropout, nn.Sequential: 0.
 - Anything that is not a module call counts 0: F.relu (PreAct ResNet-18, ResNet-50),
   F.adaptive_avg_pool2d, the residual additions (`r + shortcut`), .flatten(1).
 - Params (thop's second result): sum of numel of the parameters of the modules that have a rule
   (here Conv2d, BatchNorm2d weight and bias, Linear); running statistics are buffers and do not
   count. This equals sum(p.numel() for p in model.parameters()) for these nets, which the script
   asserts.
So for these nets: MACs = sum over convs of N*C_out*H_out*W_out*(C_in/groups)*k*k
                       + sum over BNs of 4*N*C*H*W + sum over linears of N*out*in, with N = 1.
The script checks that rule against thop on every entry (`rule_macs`), so the description above is
the one the numbers follow.
"""
import importlib.util
import json
import os
import sys

import torch
import torch.nn as nn

here = os.path.dirname(os.path.abspath(__file__))


def load_models(path=None):
    """The reference nets' module (default: ../shared/reference/models.py from the repo root)."""
    spec = importlib.util.spec_from_file_location("models", path or os.path.join(here, "../../../../shared/reference/models.py"))
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)
    return models

# Original width of every group, in the order of Sources/Nets/Models/*.swift (`originalWidths`).
ORIGINAL_WIDTHS = {
    "vgg11": [64, 128, 256, 256, 512, 512, 512, 512],
    "mobilenetv2": [32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320, 1280],
    "preact_resnet18": [64] + [w for p in (64, 128, 256, 512) for w in (p, p, p, p)],
    "resnet50": [64] + [w for n, p in zip((3, 4, 6, 3), (64, 128, 256, 512)) for _ in range(n) for w in (p, p, 4 * p)],
}
MODEL_NAMES = ["vgg11", "mobilenetv2", "preact_resnet18", "resnet50"]
RATIOS = [0.25, 1.0]
SHAPES = [(3, 32, 10), (1, 32, 10), (3, 64, 200)]  # (in_ch, image_size, classes)


def build(models, name, ratio, in_ch, size, classes):
    """The reference net, and where it comes from (also used by make_cdl_reference.py)."""
    if size == 32 or name == "resnet50":
        return models.MODELS[name](num_classes=classes, in_ch=in_ch, ratio=ratio), "models.py"
    if name == "mobilenetv2":
        return models.MobileNetV2(num_classes=classes, in_ch=in_ch, ratio=ratio, tiny=True), "models.py (tiny=True)"
    side = size // 32
    if name == "vgg11":
        net = models.vgg11(num_classes=classes, in_ch=in_ch, ratio=ratio)
        last = len(net) - 1
        net[last] = nn.Linear(net[last].in_features * side * side, classes)
        return net, f"models.py, classifier on the flattened {side}x{side} map (design/neuralscale.md)"
    if name == "preact_resnet18":
        net = models.PreActResNet18(num_classes=classes, in_ch=in_ch, ratio=ratio)
        w0 = net.conv1.out_channels
        net.layers[0] = models.PreActBlock(w0, w0, 2)
        return net, "models.py, first block stride 2 for 64x64 (design/neuralscale.md)"
    raise ValueError(name)


def rule_macs(net, x):
    """MACs by the rules in the docstring, counted independently of thop."""
    total = 0
    unknown = set()

    def hook(m, inputs, y):
        nonlocal total
        x = inputs[0]
        if type(m) is nn.Conv2d:
            total += y.numel() * (x.shape[1] // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif type(m) is nn.BatchNorm2d:
            total += 4 * x.numel()
        elif type(m) is nn.Linear:
            total += m.in_features * y.numel()
        elif type(m) in (nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.Flatten):
            pass
        else:
            unknown.add(type(m).__name__)

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    assert not unknown, f"no rule written for {unknown}"
    return total


def main():
    import thop

    models = load_models(sys.argv[1] if len(sys.argv) > 1 else None)
    entries = []
    for in_ch, size, classes in SHAPES:
        for name in MODEL_NAMES:
            for ratio in RATIOS:
                net, source = build(models, name, ratio, in_ch, size, classes)
                net.eval()
                params = sum(p.numel() for p in net.parameters())
                x = torch.randn(1, in_ch, size, size)
                expected = rule_macs(net, x)
                macs, thop_params = thop.profile(net, inputs=(x,), verbose=False)
                assert macs == int(macs) and int(macs) == expected, (name, ratio, size, macs, expected)
                assert int(thop_params) == params, (name, ratio, size, thop_params, params)
                entries.append({
                    "model": name, "ratio": ratio, "in_ch": in_ch, "image_size": size, "classes": classes,
                    "params": params, "macs": int(macs), "mflops": 2 * int(macs) / 1e6,
                    "widths": [int(w * ratio) for w in ORIGINAL_WIDTHS[name]], "source": source,
                })
                print(f"{name:16s} r={ratio:<5} {in_ch}x{size}x{size} c={classes:<3} params={params:>9} "
                      f"MFLOPs={2 * macs / 1e6:10.3f}  {source}")

    with open(os.path.join(here, "stats.json"), "w") as f:
        f.write("[\n" + ",\n".join(" " + json.dumps(e) for e in entries) + "\n]\n")  # one entry a line

    # Params against the reference counts (keyed model/in_channels/classes/ratio, for 32x32 inputs).
    with open(os.path.join(os.path.dirname(os.path.abspath(models.__file__)), "param_counts.json")) as f:
        counts = json.load(f)["counts"]
    mismatches = []
    for e in entries:
        key = f"{e['model']}/{e['in_ch']}/{e['classes']}/{e['ratio']}"
        if key in counts:
            same = counts[key] == e["params"]
            print(f"param_counts.json {key} ({e['image_size']}x{e['image_size']}): {counts[key]} "
                  f"{'==' if same else '!='} {e['params']}")
            if not same and e["image_size"] == 32:
                mismatches.append(key)
    if mismatches:
        sys.exit(f"params differ from param_counts.json at 32x32 for {mismatches}")


if __name__ == "__main__":
    main()
