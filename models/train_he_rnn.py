#!/usr/bin/python3
"""Train the HE-friendly-RNN study models (SimpleRNN and GRU) on Fashion-MNIST and export them to ONNX.

Each image is read as a sequence: its 28 rows are 28 time steps of 28 pixels.
  he_rnn.onnx : nn.RNN(28, 32, tanh)  -> last hidden -> Linear(32, 10)   (ONNX op RNN)
  he_gru.onnx : nn.GRU(28, 32)        -> last hidden -> Linear(32, 10)   (ONNX op GRU)
Input contract (as common/dataset.h loads it, nothing folded in):
    input  : float32 [N,1,28,28], value = pixel / 255.0
    logits : float32 [N,10], raw scores (no softmax)

The issue's method used MNIST digits; Debian ships Fashion-MNIST only
(package dataset-fashion-mnist), so these models are trained on it.

Pre-activation range: the method fits tanh/sigmoid on [-8, 8], so a
pre-activation far outside that interval breaks any polynomial there. A
small penalty on |pre-activation| beyond --range-limit (computed by
unrolling the cell in PyTorch with the cell's own weights) keeps the trained
model inside the interval; the plain nn.RNN/nn.GRU is what gets exported.
Run with Debian's /usr/bin/python3.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train_fashion_cnn import evaluate, load_idx, check_onnx  # noqa: E402  (same data loader, same checks)

HIDDEN, STEPS, FEATURES, CLASSES = 32, 28, 28, 10


class SequenceClassifier(nn.Module):
    """Rows as time steps through one recurrent cell, last hidden state -> logits."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell
        if cell == "rnn":
            self.rnn = nn.RNN(FEATURES, HIDDEN, nonlinearity="tanh", batch_first=True)
        elif cell == "gru":
            self.rnn = nn.GRU(FEATURES, HIDDEN, batch_first=True)
        else:
            raise ValueError(cell)
        self.fc = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x):
        seq = x.reshape(x.shape[0], STEPS, FEATURES)
        _, h_last = self.rnn(seq)           # h_last [1, N, H]
        return self.fc(h_last[0])

    def preactivations(self, x):
        """All tanh/sigmoid inputs of the unrolled cell (for the range penalty)."""
        seq = x.reshape(x.shape[0], STEPS, FEATURES)
        w_ih, w_hh = self.rnn.weight_ih_l0, self.rnn.weight_hh_l0
        b_ih, b_hh = self.rnn.bias_ih_l0, self.rnn.bias_hh_l0
        h = torch.zeros(x.shape[0], HIDDEN)
        pres = []
        for t in range(STEPS):
            gi = seq[:, t] @ w_ih.T + b_ih
            gh = h @ w_hh.T + b_hh
            if self.cell == "rnn":
                pre = gi + gh
                h = torch.tanh(pre)
                pres.append(pre)
            else:  # PyTorch GRU gate order r, z, n
                ir, iz, inn = gi.chunk(3, 1)
                hr, hz, hn = gh.chunk(3, 1)
                r = torch.sigmoid(ir + hr)
                z = torch.sigmoid(iz + hz)
                pre_n = inn + r * hn
                n = torch.tanh(pre_n)
                h = (1 - z) * n + z * h
                pres += [ir + hr, iz + hz, pre_n]
        return torch.cat(pres, 1)


def train(args, cell, xtr, ytr, xte, yte):
    torch.manual_seed(args.seed)
    model = SequenceClassifier(cell)
    steps = (len(xtr) + args.batch - 1) // args.batch
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)
    t_start = time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0, total = time.time(), 0.0
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(steps):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            xb, yb = xtr[idx], ytr[idx]
            loss = loss_fn(model(xb), yb)
            if args.range_weight > 0 and i % args.range_every == 0:
                # Penalise pre-activations beyond the fit interval (a sub-batch is enough).
                pre = model.preactivations(xb[:64])
                loss = loss + args.range_weight * torch.relu(pre.abs() - args.range_limit).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            total += loss.item() * len(xb)
        acc = evaluate(model, xte, yte)
        print(f"{cell} epoch {epoch}/{args.epochs}  loss {total / len(xtr):.4f}  test_acc {acc:.4f}  "
              f"time {time.time() - t0:.1f}s", flush=True)
    return model.eval(), acc, time.time() - t_start


@torch.no_grad()
def range_report(model, x):
    pre = model.preactivations(x)
    a = pre.abs()
    return {"max_abs_preactivation": round(float(a.max()), 3),
            "fraction_beyond_8": float((a > 8).float().mean())}


def export(model, path):
    dummy = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(model, dummy, path, opset_version=14, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, do_constant_folding=True)


def compare_with_torch(model, path, x):
    from onnx_numpy_ref import run  # models/onnx_numpy_ref.py may not know RNN/GRU: fall back to onnxruntime-free check
    with torch.no_grad():
        ref = model(x).numpy()
    try:
        got = run(path, {"input": x.numpy()})[0]
    except Exception as e:  # the reference executor lacks the op: nothing to compare with here
        print(f"onnx numeric check skipped ({type(e).__name__}: {e}); ppml he search checks it in C++")
        return None
    diff = float(np.abs(got - ref).max())
    print(f"onnx vs torch on {len(x)} test images: max |diff| {diff:.2e}")
    assert diff < 1e-3, "ONNX output mismatch"
    return diff


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="rnn,gru")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--range-limit", type=float, default=6.0)
    ap.add_argument("--range-weight", type=float, default=0.1)
    ap.add_argument("--range-every", type=int, default=4, help="apply the range penalty every K batches")
    ap.add_argument("--out-dir", default=HERE)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    xtr, ytr = load_idx("train")
    xte, yte = load_idx("t10k")
    for cell in args.cells.split(","):
        model, acc, seconds = train(args, cell, xtr, ytr, xte, yte)
        path = os.path.join(args.out_dir, f"he_{cell}.onnx")
        export(model, path)
        ops = check_onnx(path)
        compare_with_torch(model, path, xte[:64])
        meta = {"test_accuracy": round(acc, 4), "cell": cell, "hidden": HIDDEN, "steps": STEPS,
                "epochs": args.epochs, "batch": args.batch, "lr": args.lr, "range_every": args.range_every,
                "train_seconds": round(seconds, 1), "threads": args.threads,
                "seed": args.seed, "range_limit": args.range_limit, "range_weight": args.range_weight,
                **range_report(model, xte[:2000]),
                "dataset": "Fashion-MNIST (Debian dataset-fashion-mnist; the method used MNIST digits)",
                "input": "pixel/255 float32 [N,1,28,28], rows are time steps", "output": "logits float32 [N,10]",
                "opset": 14, "onnx_ops": ops, "torch_version": torch.__version__}
        with open(os.path.splitext(path)[0] + ".json", "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
        print(json.dumps(meta), flush=True)


if __name__ == "__main__":
    main()
