#!/usr/bin/env python3
"""Lists what a neuralscale checkpoint holds, read with h5py only (no neuralscale needed).

Usage:
    python3 scripts/inspect_checkpoint.py CHECKPOINT.h5 [--json]

A checkpoint (written by `neuralscale train`, `descend` or the tests) is an HDF5 file:
  - every parameter and buffer of the net is a float32 dataset at the root under its
    PyTorch-style dotted name (`features.0.weight`, `layers.3.bn1.running_mean`), in the layout
    PyTorch uses (conv weights [out, in / groups, kh, kw], linear weights [out, in]);
  - `momentum/<name>` holds the SGD momentum buffer of each parameter that has one;
  - a search state (`descend`'s state.h5) also holds the pruning gates `gates.<i>`;
  - `meta/training` is a uint8 dataset holding UTF-8 JSON: the run's settings, history and the
    input normalization (`train`), or the search state (`descend`); older checkpoints hold it as
    the root attribute `training`;
  - root attributes are strings: `format` ("neuralscale-checkpoint"), `version` ("1"), and JSON
    objects `net` (architecture, widths, inChannels, imageSize, classes) and `optimizer` (epoch,
    stepCount, learningRate).
  - datasets carry HDF5's Fletcher32 checksum (h5py verifies it on read).

Prints the attributes (the net description in full, the optimizer position, a summary of the
training state) and every dataset with its shape. With --json prints one JSON object instead:
    {"file": ..., "attributes": {name: value, JSON attributes parsed},
     "training": the parsed training state (from `meta/training` or the old attribute) or null,
     "datasets": {name: {"shape": [...], "dtype": "float32", "sum": float64 sum of the values,
                         "checksum": float64 sum of x[i] * (1 + i % 1000) over the values in
                                     C order (i from 0), "head": the first 4 values}}}
`sum` and `checksum` let another program compare values without dumping them (the checksum
changes when values move). `datasets` lists every dataset in the file, `meta/training` too.

Exit status: 0, or 2 when the file cannot be read (the message names it).
"""
import json
import sys


def _text(value):
    """An HDF5 string attribute (fixed-length bytes or str) as str."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if hasattr(value, "tobytes") and getattr(value, "dtype", None) is not None and value.dtype.kind == "S":
        return value.tobytes().decode("utf-8")
    return str(value)


TRAINING = "meta/training"


def _json(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def read(path):
    """Returns (attributes, training, datasets) of the checkpoint at `path`: attributes as str or
    parsed JSON, the training state parsed (None when there is none), datasets as
    {name: numpy array}."""
    import h5py
    import numpy as np

    attributes, datasets, training = {}, {}, None
    with h5py.File(path, "r") as f:
        for name, value in f.attrs.items():
            text = _text(value)
            try:
                attributes[name] = json.loads(text) if name in ("net", "optimizer", "training") else text
            except json.JSONDecodeError:
                attributes[name] = text

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                datasets[name] = np.asarray(obj[()])

        f.visititems(visit)
        if TRAINING in f:
            value = f[TRAINING][()]
            text = value.tobytes().decode("utf-8") if isinstance(value, np.ndarray) and value.dtype == np.uint8 else _text(value)
            training = _json(text)
        elif "training" in attributes:
            training = attributes["training"]
    return attributes, training, datasets


def natural(name):
    """Sort key: `features.4` before `features.11`."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in name.split(".")]


def summary(array):
    import numpy as np

    flat = array.astype(np.float64).ravel()
    weights = 1.0 + (np.arange(flat.size) % 1000)
    return {"shape": list(array.shape), "dtype": str(array.dtype), "sum": float(flat.sum()),
            "checksum": float((flat * weights).sum()), "head": [float(v) for v in flat[:4]]}


def main(argv):
    args = [a for a in argv if a != "--json"]
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    path = args[0]
    try:
        attributes, training, datasets = read(path)
    except ImportError as e:
        print(f"error: {e}; install h5py and numpy (scripts/install-deps.sh does)", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {path}: cannot read it as HDF5: {e}", file=sys.stderr)
        return 2

    if "--json" in argv:
        json.dump({"file": path, "attributes": attributes, "training": training,
                   "datasets": {name: summary(a) for name, a in sorted(datasets.items())}}, sys.stdout)
        print()
        return 0

    print(f"{path}: format {attributes.get('format', '?')}, version {attributes.get('version', '?')}")
    net = attributes.get("net")
    if isinstance(net, dict):
        print(f"net: {net.get('architecture')}, {net.get('inChannels')}x{net.get('imageSize')}x{net.get('imageSize')} input, "
              f"{net.get('classes')} classes")
        print(f"  widths: {net.get('widths')}")
        for extra in ("shortcuts", "expansions"):
            if net.get(extra) is not None:
                print(f"  {extra}: {net[extra]}")
    if "optimizer" in attributes:
        print(f"optimizer: {attributes['optimizer']}")
    if isinstance(training, dict) and "completedEpochs" in training:  # written by `neuralscale train`
        config = training.get("config", {})
        print(f"training: {config.get('dataset')}, {config.get('scaling')} ratio {config.get('ratio')}, seed {config.get('seed')}, "
              f"{training.get('completedEpochs')}/{config.get('epochs')} epochs, best epoch {training.get('bestEpoch')} "
              f"(validation accuracy {training.get('bestValidationAccuracy')})")
        if training.get("inputNormalization"):
            n = training["inputNormalization"]
            print(f"  input normalization: mean {n.get('mean')}, std {n.get('std')}")
    elif isinstance(training, dict) and "completed" in training:  # written by `neuralscale descend`
        config = training.get("config", {})
        print(f"search state: {config.get('model')} on {config.get('dataset')}, "
              f"{len(training.get('completed') or [])}/{config.get('iterations')} iterations done")
        current = training.get("current")
        if isinstance(current, dict):
            pruner = current.get("pruner") or {}
            print(f"  iteration {current.get('iteration')}: epoch {current.get('epoch')}, batch {current.get('batch')}, "
                  f"{pruner.get('steps')} pruning steps, {len(pruner.get('trajectory') or [])} trajectory rows")
    elif isinstance(training, dict):
        print(f"training state with the keys {', '.join(sorted(training))} (a search state of `neuralscale descend`?)")
    if training is not None and not isinstance(training, dict):
        print(f"training state (not JSON): {str(training)[:200]}")
    weights = {k: v for k, v in datasets.items() if not k.startswith(("momentum/", "meta/"))}
    momentum = {k: v for k, v in datasets.items() if k.startswith("momentum/")}
    count = sum(int(v.size) for k, v in weights.items()
                if not k.endswith(("running_mean", "running_var")) and not k.startswith("gates."))
    print(f"{len(weights)} tensors ({count} parameters, BN running statistics and gates aside), "
          f"{len(momentum)} momentum buffers")
    width = max((len(k) for k in weights), default=0)
    for name in sorted(weights, key=natural):
        print(f"  {name.ljust(width)}  {list(weights[name].shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
