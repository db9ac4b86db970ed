#!/usr/bin/python3
"""Export torchvision ImageNet models with random weights to ONNX for benchmarking.

No weights can be downloaded here, so every model uses weights=None seeded with
torch.manual_seed(0): the numbers are meaningless but the compute is identical.
Graph contract: input "input" float32 [N,3,224,224] (299x299 for inception_v3; N dynamic),
output "output" [N,1000]. --models takes any torchvision classifier (--list shows them).
Run with Debian's /usr/bin/python3.
"""
import argparse
import inspect
import os
import time
import warnings

import torch
import torchvision

MODELS = ("resnet50", "vgg16", "mobilenet_v2")  # the default set; any torchvision classifier works
INPUT_SIZE = {"inception_v3": 299}
# Without pretrained weights these two default to auxiliary heads that only training uses.
EXTRA_ARGS = {"googlenet": {"aux_logits": False, "init_weights": True},
              "inception_v3": {"aux_logits": False, "init_weights": True}}


def classifiers():
    return torchvision.models.list_models(module=torchvision.models)


def input_size(name):
    return INPUT_SIZE.get(name, 224)


def build(name):
    """Random-weight torchvision model in eval mode (also used by bench/pytorch_peer.py)."""
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None, **EXTRA_ARGS.get(name, {})).eval()


def export(name, path, fold_bn=False):
    model = build(name)
    size = input_size(name)
    # PRESERVE on an eval() module keeps BatchNormalization nodes (as in most published
    # ONNX files) so the engine's BN folding is exercised; --fold-bn lets torch fuse them.
    mode = torch.onnx.TrainingMode.EVAL if fold_bn else torch.onnx.TrainingMode.PRESERVE
    warnings.filterwarnings("ignore", message="It is recommended that constant folding")
    # Newer torch (2.9+) defaults to the dynamo exporter, which writes opset 18+;
    # the TorchScript exporter keeps opset 13, which the engine reads.
    extra = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with torch.no_grad():
        torch.onnx.export(model, torch.zeros(1, 3, size, size), path, opset_version=13,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                          do_constant_folding=True, training=mode, **extra)


def inline_identity_initializers(path):
    """Replaces `Identity(initializer)` nodes by a copy of the initializer.

    The exporter deduplicates bit-identical initializers; with random init every BN
    has weight=1, bias=0, mean=0, var=1, so ResNet-50 got ~200 such Identity nodes that
    a trained export would never contain. Undo that so the graph looks like a real one.
    """
    import onnx
    m = onnx.load(path)
    inits = {t.name: t for t in m.graph.initializer}
    keep = []
    for n in m.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[n.input[0]])
            t.name = n.output[0]
            m.graph.initializer.append(t)
        else:
            keep.append(n)
    if len(keep) != len(m.graph.node):
        del m.graph.node[:]
        m.graph.node.extend(keep)
        onnx.save(m, path)


def verify(name, path):
    """Diffs the ONNX file (NumPy reference executor) against PyTorch on one image."""
    from onnx_numpy_ref import run
    x = torch.randn(1, 3, input_size(name), input_size(name), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = build(name)(x).numpy()
    got = run(path, {"input": x.numpy()})[0]
    diff = float(abs(got - ref).max() / (abs(ref).max() + 1e-12))
    assert diff < 1e-4, f"{name}: ONNX output differs from torch (rel {diff:.2e})"
    return f"matches torch (max rel diff {diff:.1e})"


def describe(path):
    import onnx
    # load_external_data=False: only the graph is needed for the op census.
    m = onnx.load(path, load_external_data=False)
    onnx.checker.check_model(path)  # path form handles files > 2 GB protobuf limit
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return f"{os.path.getsize(path) / 2**20:.1f} MiB, {len(m.graph.node)} nodes, ops {dict(sorted(ops.items()))}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/models", help="output folder (created)")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated torchvision classifiers (default: %(default)s)")
    ap.add_argument("--list", action="store_true", help="print the torchvision classifiers and exit")
    ap.add_argument("--force", action="store_true", help="re-export existing files")
    ap.add_argument("--fold-bn", action="store_true", help="let torch fuse BN into Conv")
    ap.add_argument("--verify", action="store_true",
                    help="check each file against torch with models/onnx_numpy_ref.py (slow)")
    args = ap.parse_args()

    if args.list:
        print(" ".join(classifiers()))
        return
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in names if m not in classifiers()]
    if bad:
        ap.error(f"unknown model(s) {bad}; --list shows torchvision's classifiers")
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for name in names:
        path = os.path.join(args.out, f"{name}.onnx")
        if os.path.exists(path) and not args.force:
            print(f"{name}: {path} exists, skipping (--force to re-export)", flush=True)
            continue
        t0 = time.time()
        print(f"{name}: exporting to {path} ...", flush=True)
        tmp = path + ".tmp"  # write-then-rename so an interrupted run leaves no bad file
        export(name, tmp, args.fold_bn)
        inline_identity_initializers(tmp)
        os.replace(tmp, path)
        print(f"{name}: done in {time.time() - t0:.1f}s: {describe(path)}", flush=True)
    if args.verify:
        for name in names:
            print(f"{name}: {verify(name, os.path.join(args.out, name + '.onnx'))}", flush=True)


if __name__ == "__main__":
    main()
