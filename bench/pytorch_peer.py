#!/usr/bin/python3
"""PyTorch CPU peer benchmark: the plaintext baseline ppml-serving is compared against.

Runs the same architectures as the engine benchmarks (random weights, seed 0) in
PyTorch's fastest stock CPU inference path: TorchScript trace -> freeze ->
optimize_for_inference (Conv+BN folding, oneDNN/MKLDNN layouts), under inference_mode.
Progress goes to stderr; the last stdout line is one JSON object.
Run with Debian's /usr/bin/python3 (scripts/install-torch.sh installs torch).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "models"))



def log(msg):
    print(msg, file=sys.stderr, flush=True)


def build(name):
    """Returns (eval-mode model with random seed-0 weights, per-image input shape)."""
    if name == "fashion_cnn":
        from train_fashion_cnn import FashionCNN  # architecture only; no training on import
        torch.manual_seed(0)
        return FashionCNN().eval(), (1, 28, 28)
    from export_torchvision import build as build_tv, input_size
    return build_tv(name), (3, input_size(name), input_size(name))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    from export_torchvision import classifiers
    ap.add_argument("--model", choices=("fashion_cnn",) + tuple(classifiers()), required=True,
                    metavar="fashion_cnn|TORCHVISION_CLASSIFIER")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0, help="measured duration")
    ap.add_argument("--warmup", type=int, default=5,
                    help="untimed iterations (the JIT profiles and optimises in the first ones)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    model, shape = build(args.model)
    x = torch.randn((args.batch,) + shape, generator=torch.Generator().manual_seed(0))

    with torch.inference_mode():
        t0 = time.perf_counter()
        # trace rather than script: works for every model here and yields the same graph.
        jit = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
        log(f"{args.model}: traced+frozen+optimized in {time.perf_counter() - t0:.1f}s; "
            f"batch {args.batch}, threads {args.threads}, mkldnn {torch.backends.mkldnn.is_available()}")
        for i in range(args.warmup):
            t = time.perf_counter()
            jit(x)
            log(f"warmup {i + 1}/{args.warmup}: {1e3 * (time.perf_counter() - t):.1f} ms")

        lat = []
        start = time.perf_counter()
        while not lat or time.perf_counter() - start < args.seconds:
            t = time.perf_counter()
            jit(x)
            lat.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - start

    lat_ms = np.array(lat) * 1e3
    result = {
        "framework": "pytorch", "torch_version": torch.__version__,
        "model": args.model, "batch": args.batch, "threads": args.threads, "precision": "fp32",
        "throughput_per_s": round(args.batch * len(lat) / elapsed, 2),
        "latency_ms_p50": round(float(np.percentile(lat_ms, 50)), 3),
        "latency_ms_p99": round(float(np.percentile(lat_ms, 99)), 3),
        "mkldnn": torch.backends.mkldnn.is_available(), "iterations": len(lat),
    }
    log(f"{len(lat)} iterations in {elapsed:.1f}s: {result['throughput_per_s']} images/s, "
        f"p50 {result['latency_ms_p50']} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
