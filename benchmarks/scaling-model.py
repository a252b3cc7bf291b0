"""A model of data-parallel training across hosts, from measurements on one: what N hosts of
this kind would reach at 10 and 25 Gbit/s.

Usage: scaling-model.py [NET=STEP_MS:PARAMS ...]

Per step each host computes its 1/N of the batch (the one-host step time over N: the work is
split evenly, and the global batch stays the same) and then sums the gradients: the sum sends and
receives 2 (N-1)/N times the gradient's bytes per host (an alltoall of shares, then an allgather
of the summed shares; 4 bytes per parameter), at the link's rate, plus 2 (N - 1) message
latencies of 50 us. With the sum after the backward pass (NEURALSCALE_GRADIENT_BUCKET_MB=0) the
step is their total; overlapped (the default: 4 MB buckets started as the backward pass completes
them) the sum hides behind the backward pass, taken as 2/3 of the step, except the last bucket's
share, which starts when the pass ends. Printed as step ms and speed-up over one host.

    scaling-model.py [--after] [NET=STEP_MS:PARAMS ...]    (--after: the sum after the pass)
"""
import sys

# Measured on the 2-core development machine (bench train, batch 128, 1 process x 2 threads).
measured = {"vgg11": (368.3, 9231114), "mobilenetv2": (404.7, 2333410), "preact_resnet18": (1355.2, 11172170),
            "resnet50": (519.4, 23528522)}
after = "--after" in sys.argv
for arg in (a for a in sys.argv[1:] if a != "--after"):
    name, rest = arg.split("=")
    ms, params = rest.split(":")
    measured[name] = (float(ms), int(params))

links = {"10 Gbit/s": 10e9 / 8, "25 Gbit/s": 25e9 / 8}
hosts = [1, 2, 4, 8, 16]
print("| net | MB per step | link | " + " | ".join(f"{n} host{'s' if n > 1 else ''}" for n in hosts) + " |")
print("|---|---:|---|" + "---:|" * len(hosts))
for net, (ms, params) in measured.items():
    grad = 4 * params
    for link, rate in links.items():
        cells = []
        for n in hosts:
            comm = 0 if n == 1 else 2 * (n - 1) / n * grad / rate * 1e3 + 2 * (n - 1) * 0.05
            backward = 2 / 3 * ms / n
            last = comm * min(1.0, 4 * 2**20 / grad)
            step = ms / n + (comm if after else max(last, comm - backward))
            cells.append(f"{step:.0f} ms ({ms / step:.1f}x)")
        print(f"| {net} | {grad / 1e6:.1f} | {link} | " + " | ".join(cells) + " |")
