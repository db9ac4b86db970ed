#!/usr/bin/python3
"""Tiny NumPy reference executor for the float32 ONNX graphs in this project.

onnxruntime is not packaged in Debian, so this is how exported files are checked
against PyTorch (and how golden outputs can be produced without the engine).
Covers exactly the ops our exports use; anything else raises NotImplementedError.
Usage: onnx_numpy_ref.py MODEL.onnx  -> runs the Fashion-MNIST test set if the input
is [N,1,28,28], else a random batch, and prints output statistics.
"""
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def _windows(x, kshape, strides, pads, fill):
    """[N,C,H,W] -> [N,C,Ho,Wo,kh,kw] views of the padded input."""
    t, l, b, r = pads[0], pads[1], pads[2], pads[3]
    x = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=fill)
    w = np.lib.stride_tricks.sliding_window_view(x, kshape, axis=(2, 3))
    return w[:, :, ::strides[0], ::strides[1]]


def _conv(x, w, b=None, group=1, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), **_):
    assert tuple(dilations) == (1, 1), "dilated conv not supported"
    win = _windows(x, w.shape[2:], strides, pads, 0.0)      # N,C,Ho,Wo,kh,kw
    cg, mg = w.shape[1], w.shape[0] // group
    # One BLAS tensordot per group (einsum with a group batch axis falls off BLAS).
    y = np.concatenate([
        np.tensordot(win[:, g * cg:(g + 1) * cg], w[g * mg:(g + 1) * mg],
                     axes=([1, 4, 5], [1, 2, 3])) for g in range(group)], axis=3)
    y = y.transpose(0, 3, 1, 2)                              # N,Ho,Wo,M -> N,M,Ho,Wo
    return y if b is None else y + b[None, :, None, None]


def _maxpool(x, kernel_shape, strides=None, pads=(0, 0, 0, 0), ceil_mode=0, **_):
    assert not ceil_mode, "ceil_mode not supported"
    return _windows(x, kernel_shape, strides or kernel_shape, pads, -np.inf).max(axis=(4, 5))


def _avgpool(x, kernel_shape, strides=None, pads=(0, 0, 0, 0), ceil_mode=0, **_):
    assert not ceil_mode and not any(pads), "padded/ceil AveragePool not supported"
    return _windows(x, kernel_shape, strides or kernel_shape, pads, 0.0).mean(axis=(4, 5))


def _gemm(a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    y = alpha * ((a.T if transA else a) @ (b.T if transB else b))
    return y if c is None else y + beta * c


def _bn(x, s, b, m, v, epsilon=1e-5, **_):
    k = s / np.sqrt(v + epsilon)
    return x * k[None, :, None, None] + (b - m * k)[None, :, None, None]


def _reshape(x, shape, allowzero=0):
    shape = [x.shape[i] if d == 0 and not allowzero else d for i, d in enumerate(shape)]
    return x.reshape(shape)


OPS = {
    "Conv": _conv, "MaxPool": _maxpool, "AveragePool": _avgpool, "Gemm": _gemm, "BatchNormalization": _bn,
    "Relu": lambda x: np.maximum(x, 0),
    "Clip": lambda x, lo=None, hi=None: np.clip(x, -np.inf if lo is None else lo,
                                                np.inf if hi is None else hi),
    "Add": lambda a, b: a + b,
    "Identity": lambda x: x,
    "Flatten": lambda x, axis=1: x.reshape(int(np.prod(x.shape[:axis])), -1),
    "Reshape": _reshape,
    "GlobalAveragePool": lambda x: x.mean(axis=(2, 3), keepdims=True),
}


def run(model, feeds):
    """model: onnx.ModelProto or path; feeds: {name: array}. Returns list of outputs."""
    if isinstance(model, str):
        model = onnx.load(model)
    env = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    env.update({k: np.asarray(v, np.float32) for k, v in feeds.items()})
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Constant":
            env[node.output[0]] = numpy_helper.to_array(attrs["value"])
            continue
        if node.op_type not in OPS:
            raise NotImplementedError(node.op_type)
        args = [env[i] if i else None for i in node.input]
        env[node.output[0]] = OPS[node.op_type](*args, **attrs).astype(np.float32)
    return [env[o.name] for o in model.graph.output]


def main(path):
    m = onnx.load(path)
    inp = m.graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    if dims[1:] == [1, 28, 28]:
        sys.path.insert(0, __file__.rsplit("/", 1)[0])
        from train_fashion_cnn import load_idx
        x, y = load_idx("t10k")
        logits = np.concatenate([run(m, {inp.name: x[i:i + 500].numpy()})[0]
                                 for i in range(0, len(x), 500)])
        print(f"{path}: test accuracy {(logits.argmax(1) == y.numpy()).mean():.4f}")
    else:
        x = np.random.default_rng(0).standard_normal([2] + dims[1:], dtype=np.float32)
        out = run(m, {inp.name: x})[0]
        print(f"{path}: output {out.shape}, mean {out.mean():.5f}, std {out.std():.5f}")


if __name__ == "__main__":
    main(sys.argv[1])
