#!/usr/bin/python3
"""Checks and times the engine on torchvision classifiers beyond the three benchmark models.

For each model (random weights, seed 0, exported by models/export_torchvision.py):
  - correctness: `ppml run` on two fixed random images against PyTorch eager,
    as the largest difference relative to the largest output, and argmax agreement;
  - FP32 throughput: `ppml bench engine`;
  - INT8: `ppml model quantize` (random calibration: enough for speed, not for
    accuracy), its throughput, and its agreement with `ppml run --literal-qdq`
    (the same QDQ model with Q/DQ nodes run as written, in float), which the
    INT8 path must match to within rounding.
A model the engine cannot load gets a row with the error. Progress goes to
stderr; the table to stdout. Run through bench/model_zoo.sh.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "models"))
from export_torchvision import build, classifiers, input_size  # noqa: E402

DEFAULT_MODELS = ("resnet18 densenet121 squeezenet1_1 shufflenet_v2_x1_0 efficientnet_b0 googlenet "
                  "mnasnet1_0 mobilenet_v3_small regnet_y_400mf resnext50_32x4d inception_v3 convnext_tiny swin_t")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def ppml(*args):
    """Runs build/bin/ppml; returns (ok, last line of stdout or the error)."""
    p = subprocess.run([os.path.join(ROOT, "build/bin/ppml"), *args], capture_output=True, text=True)
    if p.returncode != 0:
        lines = (p.stderr or p.stdout).strip().splitlines()
        return False, lines[-1] if lines else f"exit {p.returncode}"
    return True, p.stdout.strip().splitlines()[-1]


def compare(got, want):
    return float(np.abs(got - want).max() / (np.abs(want).max() + 1e-30)), float((got.argmax(1) == want.argmax(1)).mean())


def check(name, work, args):
    onnx_path = os.path.join(args.models_dir, f"{name}.onnx")
    subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "models/export_torchvision.py"), "--models", name,
                    "--out", args.models_dir], check=True, stdout=sys.stderr)
    x_path, got_path = os.path.join(work, f"{name}.x.npy"), os.path.join(work, f"{name}.out.npy")
    want_path = os.path.join(work, f"{name}.torch.npy")
    # PyTorch in its own process: its idle OpenMP threads would spin beside the timings.
    subprocess.run(["/usr/bin/python3", __file__, "--reference", name, x_path, want_path,
                    "--threads", str(args.threads)], check=True)
    want = np.load(want_path)
    row = {"model": name}
    ok, msg = ppml("run", "--model", onnx_path, "--input", x_path, "--output", got_path,
                   "--threads", str(args.threads))
    if not ok:
        row["error"] = msg
        return row
    row["fp32_rel_diff"], row["fp32_argmax_agree"] = compare(np.load(got_path), want)
    ok, msg = ppml("bench", "engine", "--model", onnx_path, "--batch", str(args.batch), "--seconds",
                   str(args.seconds), "--threads", str(args.threads), "--json")
    if not ok:
        row["error"] = msg
        return row
    fp32 = json.loads(msg)
    row["isa"], row["fp32_img_s"], row["fp32_gflops"] = fp32["isa"], fp32["throughput_per_s"], fp32["gflops"]

    int8_path = os.path.join(work, f"{name}.int8.onnx")
    ok, msg = ppml("model", "quantize", "--model", onnx_path, "--calib", "random:8", "--method", "minmax",
                   "--out", int8_path, "--threads", str(args.threads))
    if not ok:
        row["error"] = "quantize: " + msg
        return row
    int8_out, literal_out = os.path.join(work, f"{name}.int8.npy"), os.path.join(work, f"{name}.literal.npy")
    for extra, out in (([], int8_out), (["--literal-qdq"], literal_out)):
        ok, msg = ppml("run", "--model", int8_path, "--input", x_path, "--output", out, "--threads",
                       str(args.threads), *extra)
        if not ok:
            row["error"] = "int8 run: " + msg
            return row
    row["int8_vs_literal_rel_diff"], row["int8_vs_literal_argmax"] = compare(np.load(int8_out), np.load(literal_out))
    ok, msg = ppml("bench", "engine", "--model", int8_path, "--batch", str(args.batch), "--seconds",
                   str(args.seconds), "--threads", str(args.threads), "--json")
    if not ok:
        row["error"] = "int8 bench: " + msg
        return row
    row["int8_img_s"] = json.loads(msg)["throughput_per_s"]
    return row


def reference(name, x_path, out_path, threads):
    """Two fixed random images and PyTorch's output for them."""
    import torch
    torch.set_num_threads(threads)
    size = input_size(name)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        np.save(out_path, build(name)(x).numpy())
    np.save(x_path, x.numpy())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS, help="space-separated torchvision classifiers")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0, help="per throughput measurement")
    ap.add_argument("--models-dir", default=os.path.join(ROOT, "build/models"))
    ap.add_argument("--work", default=os.path.join(ROOT, "build/model_zoo"), help="inputs, outputs, INT8 models")
    ap.add_argument("--reference", nargs=3, metavar=("MODEL", "X_NPY", "OUT_NPY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reference:
        return reference(*args.reference, args.threads)
    names = args.models.split()
    unknown = [n for n in names if n not in classifiers()]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; models/export_torchvision.py --list shows them")
    os.makedirs(args.work, exist_ok=True)
    rows = []
    for i, name in enumerate(names, 1):
        log(f"[{i}/{len(names)}] {name}")
        rows.append(check(name, args.work, args))
        log(json.dumps(rows[-1]))
    print(f"{'model':<20} {'vs torch':>9} {'fp32 img/s':>10} {'GFLOP/s':>8} {'int8 img/s':>10} {'int8/fp32':>9} "
          f"{'int8 vs literal QDQ':>20} isa")
    for r in rows:
        if "error" in r and "fp32_img_s" not in r:
            print(f"{r['model']:<20} error: {r['error']}")
            continue
        line = (f"{r['model']:<20} {r['fp32_rel_diff']:9.1e} {r['fp32_img_s']:10.1f} {r['fp32_gflops']:8.1f} ")
        if "int8_img_s" in r:
            line += (f"{r['int8_img_s']:10.1f} {r['int8_img_s'] / r['fp32_img_s']:8.2f}x "
                     f"{r['int8_vs_literal_rel_diff']:9.1e} argmax {r['int8_vs_literal_argmax']:.1f} ")
        else:
            line += f"int8 error: {r['error']} "
        print(line + r["isa"])


if __name__ == "__main__":
    main()
