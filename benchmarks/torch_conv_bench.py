"""PyTorch counterpart of `neuralscale bench conv`: forward plus weight and input gradients of
VGG-11's eight 3x3 convolutions at their CIFAR shapes, best of N runs, GFLOP/s per layer and
FLOP-weighted total. Run it right after the Swift benchmark on the same machine.

Usage: python3 benchmarks/torch_conv_bench.py [BATCH] [ITERATIONS]   (pip install torch)
"""
import sys
import time

import torch
import torch.nn.functional as F

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 128
iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 3
layers = [(3, 64, 32), (64, 128, 16), (128, 256, 8), (256, 256, 8),
          (256, 512, 4), (512, 512, 4), (512, 512, 2), (512, 512, 2)]

torch.manual_seed(0)
total_flop, total_s = 0.0, 0.0
print(f"PyTorch {torch.__version__}, batch {batch}, {torch.get_num_threads()} threads, best of {iterations}")
for i, (cin, cout, size) in enumerate(layers):
    x = torch.randn(batch, cin, size, size, requires_grad=True)
    w = (torch.randn(cout, cin, 3, 3) * 0.05).requires_grad_()
    b = torch.zeros(cout, requires_grad=True)
    dy = torch.randn(batch, cout, size, size)
    best_f = best_b = float("inf")
    for it in range(iterations + 1):
        x.grad = w.grad = b.grad = None
        t0 = time.perf_counter()
        y = F.conv2d(x, w, b, padding=1)
        t1 = time.perf_counter()
        y.backward(dy)
        t2 = time.perf_counter()
        if it > 0:
            best_f, best_b = min(best_f, t1 - t0), min(best_b, t2 - t1)
    flop = 3 * 2 * batch * cout * cin * 9 * size * size
    total_flop += flop
    total_s += best_f + best_b
    print(f"conv{i + 1} {cin}->{cout} @{size}x{size}: fwd {best_f * 1e3:.1f} ms, bwd {best_b * 1e3:.1f} ms, "
          f"{flop / (best_f + best_b) / 1e9:.1f} GFLOP/s")
print(f"total (FLOP-weighted): {total_flop / total_s / 1e9:.1f} GFLOP/s")
