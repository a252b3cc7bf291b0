#!/usr/bin/env python3
"""Loads a neuralscale checkpoint into the PyTorch reference nets (shared/reference/models.py).

Usage:
    python3 scripts/load_in_pytorch.py CHECKPOINT.h5 [--models DIR] [--evaluate] [--data-dir DIR]
        [--batch-size 500]
    python3 scripts/load_in_pytorch.py --compare CHECKPOINT.h5 INPUT.npy LOGITS.npy [--compare ...]
        [--tolerance 1e-4] [--models DIR]

Needs torch, h5py and numpy. The net is rebuilt from the checkpoint's `net` attribute
(architecture, widths, input channels, image size, classes) out of the reference's own classes,
so its forward pass is the reference's; the weights and BN statistics then come from the
checkpoint's datasets, which carry the reference's dotted names:
  - VGG-11: the reference is a single nn.Sequential (`0.weight` ... `30.weight`); neuralscale
    names the same positions `features.<i>` and the final linear `classifier`, so those two
    prefixes are renamed;
  - MobileNetV2, PreAct ResNet-18, ResNet-50: the names are the reference's as they are.
PyTorch's BatchNorm also has a `num_batches_tracked` buffer that neuralscale does not store; it
only matters for `momentum=None` (cumulative averaging), which these nets do not use, so the
state dict is loaded with strict=False and that is the only key allowed to be missing.

Any widths load, uniform or NeuralScale: the reference classes take one ratio, so the script
builds each block with its real input and output widths and the reference's own shortcut rule
(a projection when the stride is not 1 or the widths differ), then gives every conv, BN and
linear layer the shape its tensor has in the checkpoint. Strides follow neuralscale's 64x64
rule (MobileNetV2's `tiny` stride, PreAct ResNet-18's stride-2 first stage). Nets made by pruning
surgery with channel-selection shortcuts have no reference counterpart and are refused.

--evaluate runs the test set of the checkpoint's dataset (Fashion-MNIST, CIFAR-10 or CIFAR-100,
the files `neuralscale` reads, from --data-dir or their usual place), normalized with the
checkpoint's input normalization, and prints the accuracy and mean cross-entropy: the figures
`neuralscale eval` prints for the same checkpoint.

--compare checks that the loaded net maps INPUT [N, C, H, W] to LOGITS [N, classes] (float32
.npy files, e.g. neuralscale's own outputs) in eval mode within --tolerance (largest absolute
difference, relative to the largest logit); exit status 1 when any does not.
"""
import argparse
import gzip
import json
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODELS = os.path.join(HERE, "..", "..", "shared", "reference")


def read_checkpoint(path):
    """Returns (net description, training state or None, {dotted name: float32 torch tensor})
    of a checkpoint; momentum buffers (under `momentum/`) and gates are left out."""
    with h5py.File(path, "r") as f:
        attribute = lambda name: f.attrs[name].decode() if isinstance(f.attrs[name], bytes) else str(f.attrs[name])
        if attribute("format") != "neuralscale-checkpoint":
            raise ValueError(f"{path}: not a neuralscale checkpoint")
        description = json.loads(attribute("net"))
        # The trainer's state: the UTF-8 JSON bytes of dataset meta/training (older files: an
        # attribute `training`).
        if "meta/training" in f:
            training = json.loads(bytes(f["meta/training"][()]).decode())
        else:
            training = json.loads(attribute("training")) if "training" in f.attrs else None
        state = {k: torch.from_numpy(f[k][()]) for k in f if isinstance(f[k], h5py.Dataset)}
    if any(k.startswith("gates.") for k in state):
        raise ValueError(f"{path}: a gated search state; load a checkpoint of `neuralscale train` "
                         "(or export the pruned net with `neuralscale export`)")
    return description, training, state


def reference_names(architecture, state):
    """neuralscale's dotted names -> the reference module's state_dict names."""
    if architecture != "vgg11":
        return dict(state)
    renamed = {}
    for k, v in state.items():
        renamed["30." + k[len("classifier."):] if k.startswith("classifier.") else k[len("features."):]] = v
    return renamed


def _fit_layers(net, state):
    """Replaces every conv, BN and linear layer by one of the shape its weight has in `state`
    (stride, padding, bias and depthwise grouping kept)."""
    for name, module in list(net.named_modules()):
        key = name + ".weight"
        if key not in state:
            continue
        shape = tuple(state[key].shape)
        if isinstance(module, nn.Conv2d):
            out, per_group = shape[0], shape[1]
            groups = 1 if module.groups == 1 else out  # depthwise stays depthwise
            new = nn.Conv2d(per_group * groups, out, shape[2:], module.stride, module.padding, groups=groups,
                            bias=module.bias is not None)
        elif isinstance(module, nn.BatchNorm2d):
            new = nn.BatchNorm2d(shape[0])
        elif isinstance(module, nn.Linear):
            new = nn.Linear(shape[1], shape[0], bias=module.bias is not None)
        else:
            continue
        parent, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, child, new)


def build_net(description, state, models_dir=DEFAULT_MODELS):
    """The reference net of `description` (eval mode), shaped to `state` (reference names) and
    loaded with it."""
    sys.path.insert(0, os.path.abspath(models_dir))
    import models as M

    arch, classes, in_ch = description["architecture"], description["classes"], description["inChannels"]
    large = description["imageSize"] >= 64
    if any(isinstance(s, list) for s in description.get("shortcuts") or []):
        raise ValueError("this net has channel-selection shortcuts (pruning surgery), which the reference nets cannot express")
    shape = lambda k: tuple(state[k].shape)
    # The smallest ratio every reference net accepts: the layers are resized below anyway.
    if arch == "vgg11":
        net = M.vgg11(num_classes=classes, in_ch=in_ch, ratio=0.125)
    elif arch == "mobilenetv2":
        net = M.MobileNetV2(num_classes=classes, in_ch=in_ch, ratio=0.125, tiny=large)
        stages = [(1, 1, 1), (6, 2, 2), (6, 3, 2), (6, 4, 2), (6, 3, 2 if large else 1), (6, 3, 2), (6, 1, 1)]
        plan = [(t, s if j == 0 else 1) for t, n, s in stages for j in range(n)]
        net.blocks = nn.Sequential(*[
            M.Bottleneck(shape(f"blocks.{b}.residual.0.weight")[1], shape(f"blocks.{b}.residual.6.weight")[0], s, t)
            for b, (t, s) in enumerate(plan)])
    elif arch == "preact_resnet18":
        net = M.PreActResNet18(num_classes=classes, in_ch=in_ch, ratio=0.125)
        stride = lambda b: 2 if b % 2 == 0 and (b // 2 > 0 or large) else 1
        net.layers = nn.Sequential(*[
            M.PreActBlock(shape(f"layers.{b}.conv1.weight")[1], shape(f"layers.{b}.conv2.weight")[0], stride(b))
            for b in range(8)])
    elif arch == "resnet50":
        net = M.ResNet50(num_classes=classes, in_ch=in_ch, ratio=0.125)
        strides = [2 if j == 0 and i > 0 else 1 for i, n in enumerate((3, 4, 6, 3)) for j in range(n)]
        net.blocks = nn.Sequential(*[
            M.Bottleneck50(shape(f"blocks.{b}.conv1.weight")[1], shape(f"blocks.{b}.conv1.weight")[0],
                           shape(f"blocks.{b}.conv3.weight")[0], s)
            for b, s in enumerate(strides)])
    else:
        raise ValueError(f"unknown architecture {arch}")
    _fit_layers(net, state)
    missing, unexpected = net.load_state_dict(state, strict=False)
    wrong = [k for k in missing if not k.endswith("num_batches_tracked")]
    if wrong or unexpected:
        raise ValueError(f"the checkpoint does not fit the reference {arch}: missing {wrong}, unexpected {unexpected}")
    return net.eval()


def load(path, models_dir=DEFAULT_MODELS):
    """(reference net in eval mode, net description, training state or None) of a checkpoint."""
    description, training, state = read_checkpoint(path)
    net = build_net(description, reference_names(description["architecture"], state), models_dir)
    return net, description, training


# --- test sets, read as neuralscale reads them -------------------------------------------------

DEFAULT_DATA = {"fashion-mnist": "/usr/share/datasets/fashion-mnist", "cifar10": "data/cifar-10-batches-bin",
                "cifar100": "data/cifar-100-binary"}


def test_set(dataset, directory):
    """(uint8 images [N, C, 32, 32], int64 labels [N]) of a dataset's test split."""
    directory = directory or DEFAULT_DATA.get(dataset)
    if dataset == "fashion-mnist":
        with gzip.open(os.path.join(directory, "t10k-images-idx3-ubyte.gz")) as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(os.path.join(directory, "t10k-labels-idx1-ubyte.gz")) as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
        padded = np.zeros((len(images), 1, 32, 32), np.uint8)  # zero-padded to 32x32, 2 pixels a side
        padded[:, 0, 2:30, 2:30] = images
        return padded, labels.astype(np.int64)
    if dataset in ("cifar10", "cifar100"):
        name, label_bytes = ("test_batch.bin", 1) if dataset == "cifar10" else ("test.bin", 2)
        raw = np.fromfile(os.path.join(directory, name), np.uint8).reshape(-1, label_bytes + 3072)
        return raw[:, label_bytes:].reshape(-1, 3, 32, 32), raw[:, label_bytes - 1].astype(np.int64)  # CIFAR-100: fine label
    raise ValueError(f"--evaluate reads fashion-mnist, cifar10 and cifar100, not {dataset}")


def normalize(images, normalization):
    """(pixel / 255 - mean[c]) / std[c], computed in float64 then rounded, as neuralscale does."""
    # The stored figures are float32 values: round to float32 first, as neuralscale reads them.
    mean = np.array(normalization["mean"], np.float32).astype(np.float64).reshape(1, -1, 1, 1)
    std = np.array(normalization["std"], np.float32).astype(np.float64).reshape(1, -1, 1, 1)
    return torch.from_numpy(((images / 255.0 - mean) / std).astype(np.float32))


def evaluate(net, images, labels, normalization, batch_size):
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = normalize(images[i:i + batch_size], normalization)
            y = torch.from_numpy(labels[i:i + batch_size])
            logits = net(x)
            correct += int((logits.argmax(1) == y).sum())
            loss += float(nn.functional.cross_entropy(logits.double(), y, reduction="sum"))
    return correct, loss / len(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", help="a checkpoint of `neuralscale train`")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="folder of the reference models.py (default: ../shared/reference)")
    parser.add_argument("--evaluate", action="store_true", help="print the test accuracy and loss of the loaded net")
    parser.add_argument("--dataset", help="evaluate on this dataset (default: the checkpoint's)")
    parser.add_argument("--data-dir", help="dataset folder (default: where neuralscale looks)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--compare", nargs=3, action="append", metavar=("CHECKPOINT", "INPUT", "LOGITS"),
                        help="check that the loaded net maps INPUT.npy to LOGITS.npy (repeatable)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="for --compare: largest |difference| / largest |logit|")
    args = parser.parse_args()
    if not args.checkpoint and not args.compare:
        parser.error("give a checkpoint, or --compare")

    failed = False
    for checkpoint, inputs, logits in args.compare or []:
        net, d, _ = load(checkpoint, args.models)
        with torch.no_grad():
            got = net(torch.from_numpy(np.load(inputs))).double()
        expected = torch.from_numpy(np.load(logits)).double()
        diff = (got - expected).abs().max().item() / max(expected.abs().max().item(), 1e-12)
        ok = got.shape == expected.shape and diff <= args.tolerance
        failed |= not ok
        print(f"{'ok' if ok else 'FAILED'} {checkpoint}: {d['architecture']} widths {d['widths']}: "
              f"max |difference| {diff:.3g} of the largest logit (tolerance {args.tolerance:g})")

    if args.checkpoint:
        net, d, training = load(args.checkpoint, args.models)
        params = sum(p.numel() for p in net.parameters())
        print(f"{args.checkpoint}: reference {d['architecture']} ({type(net).__name__}), widths {d['widths']}, "
              f"{d['inChannels']}x{d['imageSize']}x{d['imageSize']} input, {d['classes']} classes, {params} parameters; "
              "every tensor loaded (num_batches_tracked left at 0)")
        if args.evaluate:
            dataset = args.dataset or ((training or {}).get("config") or {}).get("dataset")
            normalization = (training or {}).get("inputNormalization")
            if not dataset or not normalization:
                sys.exit("error: the checkpoint holds no dataset or input normalization (not written by `neuralscale train`?)")
            images, labels = test_set(dataset, args.data_dir)
            correct, loss = evaluate(net, images, labels, normalization, args.batch_size)
            print(f"{dataset} test ({len(labels)} images) in PyTorch {torch.__version__}: accuracy "
                  f"{100 * correct / len(labels):.2f}% ({correct}/{len(labels)}), loss {loss:.6f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
