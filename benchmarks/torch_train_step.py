"""PyTorch's side of benchmarks/train-vs-torch.sh: images/s of SGD training steps on random
CIFAR-shaped batches, as shared/reference/torch_train_bench.py measures them, with a width ratio
and the peak resident memory of the process.

Usage: torch_train_step.py MODEL RATIO [BATCH] [STEPS]
Prints one JSON line: model, ratio, batch, threads, step_ms, images_per_s, peak_rss_mb."""
import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "reference"))
from models import MODELS  # noqa: E402

name, ratio = sys.argv[1], float(sys.argv[2])
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 128
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 5
torch.manual_seed(0)
model = MODELS[name](num_classes=10, ratio=ratio).train()
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
x = torch.randn(batch, 3, 32, 32)
y = torch.randint(0, 10, (batch,))
loss_fn = nn.CrossEntropyLoss()


def step():
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    opt.step()


step()
step()
start = time.perf_counter()
for _ in range(steps):
    step()
dt = (time.perf_counter() - start) / steps
print(json.dumps({"model": name, "ratio": ratio, "batch": batch, "threads": torch.get_num_threads(),
                  "step_ms": dt * 1e3, "images_per_s": batch / dt,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
