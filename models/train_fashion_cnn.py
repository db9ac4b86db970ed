#!/usr/bin/python3
"""Train the small Fashion-MNIST CNN served by ppml-serving and export it to ONNX.

Input contract of the exported model (no normalisation is folded in):
    input  : float32 [N,1,28,28], value = pixel / 255.0
    logits : float32 [N,10], raw scores (no softmax)
Classes (Fashion-MNIST order): T-shirt/top, Trouser, Pullover, Dress, Coat,
Sandal, Shirt, Sneaker, Bag, Ankle boot.

Importing this module only defines FashionCNN (bench/pytorch_peer.py uses it);
training runs under __main__. Run with Debian's /usr/bin/python3.
"""
import argparse
import gzip
import json
import os
import time
import warnings

import numpy as np
import torch
import torch.nn as nn

DATA_DIR = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
HERE = os.path.dirname(os.path.abspath(__file__))


class FashionCNN(nn.Module):
    def __init__(self, dropout=0.3):
        super().__init__()
        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                    nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(
            *block(1, 32), *block(32, 32), nn.MaxPool2d(2),   # 28 -> 14
            *block(32, 64), nn.MaxPool2d(2),                  # 14 -> 7
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(128, 10),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def load_idx(kind):
    """Returns (images float32 [N,1,28,28] in [0,1], labels int64 [N])."""
    with gzip.open(f"{DATA_DIR}/{kind}-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, rows, cols)
    with gzip.open(f"{DATA_DIR}/{kind}-labels-idx1-ubyte.gz", "rb") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    assert len(labels) == n
    return (torch.from_numpy(images.astype(np.float32) / 255.0),
            torch.from_numpy(labels.astype(np.int64)))


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    model.eval()
    correct = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
                  for i in range(0, len(x), batch))
    return correct / len(x)


def train(args):
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    xtr, ytr = load_idx("train")
    xte, yte = load_idx("t10k")
    print(f"train {tuple(xtr.shape)}  test {tuple(xte.shape)}  threads {args.threads}", flush=True)

    # channels_last (NHWC) is ~30% faster for oneDNN conv training on CPU.
    model = FashionCNN().to(memory_format=torch.channels_last)
    steps = (len(xtr) + args.batch - 1) // args.batch
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs,
                                                steps_per_epoch=steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    gen = torch.Generator().manual_seed(args.seed)
    t_start = time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0, total = time.time(), 0.0
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(steps):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            xb, yb = xtr[idx].contiguous(memory_format=torch.channels_last), ytr[idx]
            # Random horizontal flip: cheap augmentation, clothes are mirror-symmetric.
            flip = torch.rand(len(xb), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(xb)
        acc = evaluate(model, xte, yte)
        print(f"epoch {epoch}/{args.epochs}  loss {total / len(xtr):.4f}  "
              f"test_acc {acc:.4f}  time {time.time() - t0:.1f}s", flush=True)
    return model, acc, time.time() - t_start, xte, yte


def export(model, path):
    model = model.to(memory_format=torch.contiguous_format).eval()
    dummy = torch.zeros(1, 1, 28, 28)
    # TrainingMode.PRESERVE on an eval() module exports inference semantics but skips
    # the exporter's Conv+BatchNorm fusion (EVAL mode would fuse them), so the graph
    # keeps BatchNormalization nodes for the engine's own BN folding to handle.
    # (The exporter's constant-folding warning for PRESERVE only applies to train() modules.)
    warnings.filterwarnings("ignore", message="It is recommended that constant folding")
    torch.onnx.export(model, dummy, path, opset_version=13,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      do_constant_folding=True,
                      training=torch.onnx.TrainingMode.PRESERVE)


def check_onnx(path):
    import onnx
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    ops = sorted({n.op_type for n in m.graph.node})
    print(f"onnx ok: {path} ({os.path.getsize(path)} bytes), opset "
          f"{[(o.domain or 'ai.onnx', o.version) for o in m.opset_import]}, "
          f"{len(m.graph.node)} nodes, ops {ops}")
    return ops


def compare_with_torch(model, path, x):
    """Runs the ONNX file with the NumPy reference executor and diffs against torch."""
    from onnx_numpy_ref import run
    with torch.no_grad():
        ref = model.to(memory_format=torch.contiguous_format).eval()(x).numpy()
    got = run(path, {"input": x.numpy()})[0]
    diff = float(np.abs(got - ref).max())
    print(f"onnx vs torch on {len(x)} test images: max |diff| {diff:.2e}")
    assert diff < 1e-3 and (got.argmax(1) == ref.argmax(1)).all(), "ONNX output mismatch"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(HERE, "fashion_cnn.onnx"))
    args = ap.parse_args()

    model, acc, seconds, xte, yte = train(args)
    export(model, args.out)
    ops = check_onnx(args.out)
    compare_with_torch(model, args.out, xte[:256])
    meta = {"test_accuracy": round(acc, 4), "epochs": args.epochs,
            "train_seconds": round(seconds, 1), "threads": args.threads, "seed": args.seed,
            "input": "pixel/255 float32 [N,1,28,28]", "output": "logits float32 [N,10]",
            "opset": 13, "onnx_ops": ops, "torch_version": torch.__version__}
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
