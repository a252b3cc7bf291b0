#!/usr/bin/env python3
"""PyTorch CPU baseline replicating
`neuralscale train --model vgg11 --dataset fashion-mnist --ratio 0.25 --epochs 3 --lr 0.05`.

Usage: python3 torch_fashion_mnist.py [--seed S] [--init default|kaiming]
"""
import argparse, copy, gzip, math, os, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# shared/reference sits beside the project folder.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../shared/reference"))
from models import vgg11  # noqa: E402

DATA_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(prefix):
    x = read_idx(os.path.join(DATA_DIR, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(DATA_DIR, f"{prefix}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)  # N,1,28,28
    x = F.pad(x, (2, 2, 2, 2))  # zero-pad to 32x32
    return x, torch.from_numpy(y.astype(np.int64))


def kaiming_init(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def random_crop(x, gen, pad=4):
    """Per-image random 32x32 crop from the image zero-padded by `pad` on each side."""
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]  # n,h,1
    cols = (ox[:, None] + torch.arange(w))[:, None, :]  # n,1,w
    idx = torch.arange(n)[:, None, None]
    return xp[:, 0][idx, rows, cols].unsqueeze(1) if c == 1 else \
        torch.stack([xp[:, k][idx, rows, cols] for k in range(c)], 1)


def random_hflip(x, gen, p=0.5):
    flip = torch.rand(x.shape[0], generator=gen) < p
    x = x.clone()
    x[flip] = x[flip].flip(-1)
    return x


def random_erasing(x, gen, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0):
    """torchvision.transforms.RandomErasing (defaults) applied independently per image."""
    n, c, h, w = x.shape
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    x = x.clone()
    apply = (torch.rand(n, generator=gen) < p).tolist()
    for k in range(n):
        if not apply[k]:
            continue
        for _ in range(10):
            erase_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=gen).item()
            aspect = math.exp(torch.empty(1).uniform_(log_r[0], log_r[1], generator=gen).item())
            eh = int(round(math.sqrt(erase_area * aspect)))
            ew = int(round(math.sqrt(erase_area / aspect)))
            if not (eh < h and ew < w):
                continue
            i = torch.randint(0, h - eh + 1, (1,), generator=gen).item()
            j = torch.randint(0, w - ew + 1, (1,), generator=gen).item()
            x[k, :, i:i + eh, j:j + ew] = value
            break
    return x


@torch.no_grad()
def evaluate(model, x, y, mean, std, bs=1000):
    model.eval()
    correct = 0
    for s in range(0, x.shape[0], bs):
        out = model((x[s:s + bs] - mean) / std)
        correct += (out.argmax(1) == y[s:s + bs]).sum().item()
    return correct / x.shape[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", choices=["default", "kaiming"], default="default")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    x_all, y_all = load_split("train")
    x_test, y_test = load_split("t10k")
    perm = torch.randperm(x_all.shape[0], generator=gen)
    n_train = int(0.8 * x_all.shape[0])
    tr, va = perm[:n_train], perm[n_train:]
    x_tr, y_tr, x_va, y_va = x_all[tr], y_all[tr], x_all[va], y_all[va]
    mean = x_tr.mean().item()
    std = x_tr.std().item()
    print(f"train={len(tr)} val={len(va)} test={len(y_test)} mean={mean:.4f} std={std:.4f}", flush=True)

    model = vgg11(num_classes=10, in_ch=1, ratio=0.25)
    if args.init == "kaiming":
        kaiming_init(model)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1, 2], gamma=0.1)
    crit = nn.CrossEntropyLoss()

    best_acc, best_state = -1.0, None
    epoch_times = []
    for epoch in range(args.epochs):
        t0 = time.time()
        model.train()
        order = torch.randperm(n_train, generator=gen)
        tot_loss, tot_correct, seen = 0.0, 0, 0
        lr = opt.param_groups[0]["lr"]
        for s in range(0, n_train, args.batch):
            idx = order[s:s + args.batch]
            xb, yb = x_tr[idx], y_tr[idx]
            xb = random_crop(xb, gen)
            xb = random_hflip(xb, gen)
            xb = (xb - mean) / std
            xb = random_erasing(xb, gen)
            out = model(xb)
            loss = crit(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_loss += loss.item() * yb.shape[0]
            tot_correct += (out.argmax(1) == yb).sum().item()
            seen += yb.shape[0]
        sched.step()
        train_time = time.time() - t0
        val_acc = evaluate(model, x_va, y_va, mean, std)
        dt = time.time() - t0
        epoch_times.append(dt)
        print(f"epoch {epoch} lr={lr:g} train_loss={tot_loss / seen:.4f} train_acc={tot_correct / seen:.4f} "
              f"val_acc={val_acc:.4f} train_s={train_time:.1f} total_s={dt:.1f}", flush=True)
        if val_acc > best_acc:
            best_acc, best_state = val_acc, copy.deepcopy(model.state_dict())

    model.load_state_dict(best_state)
    test_acc = evaluate(model, x_test, y_test, mean, std)
    print(f"best_val_acc={best_acc:.4f} mean_epoch_s={sum(epoch_times) / len(epoch_times):.1f}")
    print(f"test_accuracy={test_acc:.4f} seed={args.seed} init={args.init}")


if __name__ == "__main__":
    main()
