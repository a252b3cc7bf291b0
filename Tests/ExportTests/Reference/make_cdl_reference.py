"""Reference critical datapath lengths (CDL) of the four nets (shared/reference/models.py), measured
on PyTorch's own ONNX export, for `neuralscale stats`. Writes `cdl.json` beside this script.

Run: python3 make_cdl_reference.py [PATH/TO/models.py] [--neuralscale PATH/TO/neuralscale]
     (pip install torch onnx; default models.py: ../shared/reference/models.py from the repo root.
     With --neuralscale, also prints `neuralscale stats --json`'s cdl next to each entry.)
Made with torch 2.15.0 (CPU), onnx 1.23.2, onnxscript 0.7.2 (for the `dynamo` fields only).

CDL = the number of nodes on the longest path from the graph input to the graph output
(initializers are not nodes). Here a node is on such a path only if one of its inputs comes from
the graph input, through other nodes; a Constant node, or a shape computation fed only by
initializers, is not.

Entries: vgg11, mobilenetv2, preact_resnet18, resnet50, uniform ratios 0.25 and 1.0, for
 - 3x32x32, 10 classes (CIFAR-10);
 - 3x64x64, 200 classes (tinyImageNet), with the nets of make_stats_reference.py (the 64x64 rules
   of shared/design/neuralscale.md for vgg11 and preact_resnet18, tiny=True for mobilenetv2).
Each: model, ratio, in_ch, image_size, classes, cdl_raw, cdl, op_counts (all nodes, normalized),
critical_path (op types along one longest path, normalized), notes, and `dynamo` if measured.

THE EXPORT. Each net in eval mode, torch.onnx.export(..., dynamo=False, opset_version=13,
do_constant_folding=True, training=TrainingMode.EVAL), input `input` [batch, C, H, W] and output
`logits` with a dynamic batch axis. The legacy TorchScript exporter (dynamo=False) still exists in
torch 2.15 and folds every BatchNorm into the Conv before it in eval mode (its ONNX eval peephole
pass), unless the Conv's output has another consumer too: PreAct ResNet-18's first block reads the
stem conv's output both through bn1 and as its identity shortcut at 32x32, so that BN stays a
BatchNormalization node there; at 64x64 the block has a 1x1 shortcut conv after bn1+relu, the stem
conv feeds bn1 alone, and it is folded (one node less).
The legacy graph also holds nodes that are not on the data path: Constant nodes for Clip's bounds
(MobileNetV2) and Identity nodes that alias initializers the exporter deduplicated (equal folded
biases or BN parameters of these freshly initialized nets); they do not change the CDL.
The default exporter (dynamo=True) needs the onnxscript package (not installed with torch); with it
(onnxscript 0.7.2) its graph optimizer folds the same BatchNorms (same CDL for every entry), but it
wrote opset 18 for every net although 13 was asked (it exports at 18 and its conversion down to
13 fails: "No Adapter From Version $16 for Identity" for VGG-11, ReduceMean's axes input for the
others), ReduceMean(axes 2,3, keepdims) for global average pooling, and a Reshape to rank 2 instead
of Flatten. When onnxscript is importable the script also exports with dynamo=True and records that
graph's CDL under `dynamo` (same normalization); the reference numbers are the legacy export's.

NORMALIZATION (cdl, op_counts, critical_path are after it; cdl_raw is before). To match the graph
`neuralscale export` writes (ReLU6 = Clip, classifier Flatten + Gemm, GlobalAveragePool, BNs after
convs folded):
 - Identity and Constant nodes are dropped (their consumers read the Identity's input);
 - a Reshape to rank 2 is a Flatten, a ReduceMean over axes 2,3 with keepdims is a
   GlobalAveragePool;
 - a BatchNormalization directly after a Conv whose output nothing else reads is dropped (folded);
 - MobileNetV2's classifier, GlobalAveragePool -> Conv 1x1 -> Flatten in PyTorch's graph, is
   counted as GlobalAveragePool -> Flatten -> Gemm (same length: the 1x1 conv on a 1x1 map is the
   Gemm, moved after the Flatten);
 - Shape/Gather/Unsqueeze/Concat/Cast nodes that only compute a shape are not on the data path
   and would not count anyway (none appear in the legacy export).
`notes` says which of these changed anything.
"""
import collections
import importlib.util
import io
import json
import os
import subprocess
import sys
import warnings

import onnx
import torch
import torch.nn as nn

torch.set_num_threads(2)
here = os.path.dirname(os.path.abspath(__file__))
args = sys.argv[1:]
neuralscale = None
if "--neuralscale" in args:
    i = args.index("--neuralscale")
    neuralscale = args[i + 1]
    del args[i:i + 2]

MODEL_NAMES = ["vgg11", "mobilenetv2", "preact_resnet18", "resnet50"]
RATIOS = [0.25, 1.0]
SHAPES = [(3, 32, 10), (3, 64, 200)]  # (in_ch, image_size, classes)
DATASETS = {(3, 32, 10): "cifar10", (3, 64, 200): "tinyimagenet"}


# The nets exactly as make_stats_reference.py builds them.
_spec = importlib.util.spec_from_file_location(
    "make_stats_reference", os.path.join(here, "../../NetsTests/Reference/make_stats_reference.py"))
stats_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stats_reference)


models = stats_reference.load_models(args[0] if args else None)


def build(name, ratio, in_ch, size, classes):
    return stats_reference.build(models, name, ratio, in_ch, size, classes)


def export(net, x, dynamo):
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(net, (x,), f, dynamo=True, opset_version=13, input_names=["input"],
                              output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                              verbose=False)
        else:
            torch.onnx.export(net, (x,), f, dynamo=False, opset_version=13, do_constant_folding=True,
                              training=torch.onnx.TrainingMode.EVAL, input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return onnx.load_from_string(f.getvalue())


class Node:
    def __init__(self, op, inputs, outputs, attrs):
        self.op, self.inputs, self.outputs, self.attrs = op, list(inputs), list(outputs), attrs


def nodes_of(model):
    return [Node(n.op_type, n.input, n.output, {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute})
            for n in model.graph.node]


def critical_path(nodes, inputs, outputs):
    """(CDL, op types along one longest path) over nodes in topological order."""
    depth = {v: (0, None) for v in inputs}  # value -> (nodes on the longest path making it, its node)
    for k, n in enumerate(nodes):
        fed = [depth[v] for v in n.inputs if v in depth]
        if not fed:
            continue  # not reached from the input (Constant, shape of an initializer)
        d, prev = max(fed, key=lambda t: t[0])
        for o in n.outputs:
            depth[o] = (d + 1, (k, prev))
    best = max((depth[o] for o in outputs if o in depth), key=lambda t: t[0])
    path, link = [], best[1]
    while link is not None:
        k, link = link
        path.append(nodes[k].op)
    return best[0], path[::-1]


def normalize(nodes, initializers, inputs, outputs):
    """The graph rewritten as in the docstring, and notes on what changed."""
    notes = []
    rename = {}

    def r(v):
        while v in rename:
            v = rename[v]
        return v

    consumers = collections.Counter(v for n in nodes for v in n.inputs)
    for v in outputs:
        consumers[v] += 1
    producer = {o: n for n in nodes for o in n.outputs}
    out = []
    dropped = collections.Counter()
    relabeled = collections.Counter()
    for n in nodes:
        n = Node(n.op, [r(v) for v in n.inputs], n.outputs, n.attrs)
        if n.op in ("Identity", "Constant"):
            if n.op == "Identity":
                rename[n.outputs[0]] = n.inputs[0]
            dropped[n.op] += 1
            continue
        if n.op == "Reshape":
            shape = initializers.get(n.inputs[1])
            if shape is not None and len(shape) == 2:
                n.op = "Flatten"
                relabeled["Reshape->Flatten"] += 1
        if n.op == "ReduceMean":
            axes = n.attrs.get("axes")
            if axes is None and len(n.inputs) > 1:
                axes = initializers.get(n.inputs[1])
            if axes is not None and sorted(int(a) for a in axes) == [2, 3] and n.attrs.get("keepdims", 1) == 1:
                n.op = "GlobalAveragePool"
                relabeled["ReduceMean->GlobalAveragePool"] += 1
        if n.op == "BatchNormalization":
            p = producer.get(n.inputs[0])
            if p is not None and p.op == "Conv" and consumers[n.inputs[0]] == 1:
                rename[n.outputs[0]] = n.inputs[0]
                dropped["BatchNormalization after Conv (unfolded)"] += 1
                continue
        out.append(n)
    # GlobalAveragePool -> Conv 1x1 -> Flatten: the classifier conv is a Gemm after the Flatten.
    by_out = {o: n for n in out for o in n.outputs}
    for k, n in enumerate(out):
        if n.op != "Flatten":
            continue
        c = by_out.get(n.inputs[0])
        if c is None or c.op != "Conv" or list(c.attrs.get("kernel_shape", [])) != [1, 1]:
            continue
        g = by_out.get(c.inputs[0])
        if g is None or g.op != "GlobalAveragePool":
            continue
        c.op, n.op = "Flatten", "Gemm"  # same chain length, ops in our order
        relabeled["GlobalAveragePool->Conv1x1->Flatten as ->Flatten->Gemm"] += 1
    for k, v in dropped.items():
        if v:
            notes.append(f"dropped {v} {k} node(s)")
    for k, v in relabeled.items():
        notes.append(f"{k}: {v}")
    return out, [r(v) for v in outputs], notes


def measure(model):
    inits = {t.name: onnx.numpy_helper.to_array(t).tolist() for t in model.graph.initializer
             if len(t.dims) <= 1 and onnx.helper.tensor_dtype_to_np_dtype(t.data_type).kind == "i"}
    for n in model.graph.node:  # Constant nodes holding shapes/axes
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    inits[n.output[0]] = onnx.numpy_helper.to_array(a.t).tolist()
    init_names = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in init_names]
    outputs = [o.name for o in model.graph.output]
    raw = nodes_of(model)
    cdl_raw, path_raw = critical_path(raw, inputs, outputs)
    norm, norm_outputs, notes = normalize(raw, inits, inputs, outputs)
    cdl, path = critical_path(norm, inputs, norm_outputs)
    counts_raw = dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))
    counts = dict(sorted(collections.Counter(n.op for n in norm).items()))
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return dict(cdl_raw=cdl_raw, cdl=cdl, op_counts=counts, op_counts_raw=counts_raw, critical_path=path,
                critical_path_raw=path_raw, notes=notes, opset=opset)


try:
    import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    have_dynamo = True
except ImportError:
    have_dynamo = False

entries = []
for in_ch, size, classes in SHAPES:
    for name in MODEL_NAMES:
        for ratio in RATIOS:
            torch.manual_seed(0)
            net, source = build(name, ratio, in_ch, size, classes)
            net.eval()
            x = torch.randn(1, in_ch, size, size)
            m = measure(export(net, x, dynamo=False))
            notes = [f"net: {source}", f"torch.onnx.export dynamo=False, opset {m['opset']}"] + m["notes"]
            if m["op_counts_raw"] != m["op_counts"]:
                notes.append(f"raw op counts: {json.dumps(m['op_counts_raw'])}")
            if "BatchNormalization" in m["op_counts"]:
                notes.append(f"{m['op_counts']['BatchNormalization']} BatchNormalization node(s) not after a "
                             "single-consumer Conv stay")
            e = {"model": name, "ratio": ratio, "in_ch": in_ch, "image_size": size, "classes": classes,
                 "cdl_raw": m["cdl_raw"], "cdl": m["cdl"], "op_counts": m["op_counts"],
                 "critical_path": m["critical_path"], "notes": notes}
            if have_dynamo:
                try:
                    d = measure(export(net, x, dynamo=True))
                    e["dynamo"] = {"cdl_raw": d["cdl_raw"], "cdl": d["cdl"], "opset": d["opset"],
                                   "op_counts_raw": d["op_counts_raw"], "notes": d["notes"]}
                except Exception as err:  # noqa: BLE001
                    e["dynamo"] = {"error": f"{type(err).__name__}: {err}"[:300]}
            line = f"{name:16s} r={ratio:<5} {in_ch}x{size}x{size} c={classes:<3} cdl_raw={m['cdl_raw']:4d} cdl={m['cdl']:4d}"
            if "dynamo" in e and "cdl" in e["dynamo"]:
                line += f"  dynamo: raw={e['dynamo']['cdl_raw']} norm={e['dynamo']['cdl']} opset {e['dynamo']['opset']}"
            if neuralscale:
                out = subprocess.run([neuralscale, "stats", "--model", name, "--dataset", DATASETS[(in_ch, size, classes)],
                                      "--ratio", str(ratio), "--json"], capture_output=True, text=True, check=True).stdout
                ours = json.loads(out)["cdl"]
                line += f"  ours={ours} {'OK' if ours == m['cdl'] else 'DIFFERENT'}"
            print(line, flush=True)
            entries.append(e)

with open(os.path.join(here, "cdl.json"), "w") as f:
    f.write("[\n" + ",\n".join(" " + json.dumps(e) for e in entries) + "\n]\n")  # one entry a line
