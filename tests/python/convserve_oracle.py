"""PyTorch oracle for ConvServe layers, shared by the core and service tests.

A layer is a plain dict (see `random_layer`). `torch_reference` computes what
PyTorch gives for it in float64, resolving padding presets by the rules of
docs/SEMANTICS.md written out here independently of the C++ code, and applying the
padding mode with torch.nn.functional.pad. Where PyTorch has a native form
(integer padding, padding="same" at stride 1) the native form is used, so the
oracle leans on PyTorch itself as much as it can.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

PRESETS = ["explicit", "valid", "same_upper", "same_lower", "causal"]
MODES = ["zeros", "reflect", "replicate", "circular"]
ACTIVATIONS = ["none", "relu", "relu6", "leaky_relu", "elu", "sigmoid", "tanh", "silu", "gelu"]
# PyTorch's defaults (F.leaky_relu's negative_slope, F.elu's alpha), which
# the proto and the core take for an unset alpha.
DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}


def activation_alpha(layer):
    """The alpha `layer` runs with: its "alpha" (absent or None: the default)
    rounded to float32, as the wire (ConvLayer.activation_alpha) and the C ABI
    carry it; None for activations without one."""
    alpha = layer.get("alpha")
    if alpha is None:
        return DEFAULT_ALPHA.get(layer["activation"])
    return float(np.float32(alpha))


def resolve_pads(layer, spatial):
    """(begin, end) per axis, by the preset rules of docs/SEMANTICS.md."""
    pads = []
    for i, n in enumerate(spatial):
        k, s, d = layer["kernel"][i], layer["stride"][i], layer["dilation"][i]
        span = d * (k - 1) + 1
        preset = layer["padding"]
        if preset == "explicit":
            pads.append((layer["pad_begin"][i], layer["pad_end"][i]))
        elif preset == "valid":
            pads.append((0, 0))
        elif preset in ("same_upper", "same_lower"):
            out = math.ceil(n / s)
            total = max(0, (out - 1) * s + span - n)
            small, large = total // 2, total - total // 2
            pads.append((small, large) if preset == "same_upper" else (large, small))
        elif preset == "causal":
            pads.append((d * (k - 1), 0))
        else:
            raise ValueError(preset)
    return pads


def _activate(y, name, alpha):
    if name == "none":
        return y
    if name == "relu":
        return F.relu(y)
    if name == "relu6":
        return F.relu6(y)
    if name == "leaky_relu":
        return F.leaky_relu(y, negative_slope=alpha)
    if name == "elu":
        return F.elu(y, alpha=alpha)
    if name == "sigmoid":
        return torch.sigmoid(y)
    if name == "tanh":
        return torch.tanh(y)
    if name == "silu":
        return F.silu(y)
    if name == "gelu":
        return F.gelu(y)
    raise ValueError(name)


def _to_channels_first(x, rank):
    return x.permute(0, rank + 1, *range(1, rank + 1))


def _to_channels_last(y, rank):
    return y.permute(0, *range(2, rank + 2), 1)


def _weight_oihw(w, layer):
    rank = layer["rank"]
    if layer["weight_format"] == "hwio":
        return w.permute(rank + 1, rank, *range(rank))
    return w


def _conv(x, w, b, layer, spatial, activation):
    """float64 conv of channels_first x, oihw w; returns channels_first y."""
    rank = layer["rank"]
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank]
    pads = resolve_pads(layer, spatial)
    mode = layer["padding_mode"]
    kwargs = dict(stride=tuple(layer["stride"]), dilation=tuple(layer["dilation"]),
                  groups=layer["groups"])
    if mode == "zeros" and all(b_ == e_ for b_, e_ in pads):
        y = conv(x, w, b, padding=tuple(p for p, _ in pads), **kwargs)
    elif (mode == "zeros" and layer["padding"] == "same_upper"
          and all(s == 1 for s in layer["stride"])):
        y = conv(x, w, b, padding="same", **kwargs)  # PyTorch's own "same"
    else:
        flat = []
        for begin, end in reversed(pads):
            flat += [begin, end]
        padded = F.pad(x, tuple(flat), mode="constant" if mode == "zeros" else mode)
        y = conv(padded, w, b, padding=0, **kwargs)
    return _activate(y, activation, activation_alpha(layer))


def torch_reference(layer, x, w, b):
    """(ref, bound): PyTorch's float64 output in the layer's data layout, and
    the tolerance 1e-5 * S + 1e-6 with S the same conv on |x|, |w|, |b|.
    Raises whatever PyTorch raises for a layer it refuses."""
    rank = layer["rank"]
    xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
    wt = _weight_oihw(torch.from_numpy(np.asarray(w, dtype=np.float64)), layer)
    bt = None if b is None else torch.from_numpy(np.asarray(b, dtype=np.float64))
    if layer["data_format"] == "channels_last":
        xt = _to_channels_first(xt, rank)
    spatial = list(xt.shape[2:])
    with torch.no_grad():
        y = _conv(xt, wt, bt, layer, spatial, layer["activation"])
        s = _conv(xt.abs(), wt.abs(), None if bt is None else bt.abs(), layer, spatial, "none")
    if layer["data_format"] == "channels_last":
        y, s = _to_channels_last(y, rank), _to_channels_last(s, rank)
    return y.contiguous().numpy(), 1e-5 * s.contiguous().numpy() + 1e-6


def max_violation(y, ref, bound):
    """Largest |y - ref| - bound (<= 0 when every element is within bound)."""
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0:
        return 0.0
    return float(np.max(np.abs(y - ref) - bound))


def random_layer(rng):
    """A random layer over every option: rank, layouts, presets, modes, groups
    (depthwise too), dilation, stride, bias, activations. Returns (layer,
    input_shape); the layer may be one PyTorch refuses."""
    rank = int(rng.integers(1, 4))
    # One layer in six is wider and larger, so that fast kernels' channel
    # blocks and spatial tiles see full blocks and every remainder.
    wide = rng.random() < 1 / 6
    if rng.random() < 0.2:  # depthwise, with a channel multiplier sometimes
        groups = int(rng.integers(1, 41 if wide else 9))
        c_in, c_out = groups, groups * int(rng.integers(1, 3))
    else:
        groups = int(rng.choice([1, 1, 1, 2, 3]))
        per_group = 40 if wide else 6
        c_in = groups * int(rng.integers(1, per_group))
        c_out = groups * int(rng.integers(1, per_group))
    max_k = {1: 6, 2: 4, 3: 3}[rank]
    max_n = {1: 70, 2: 24, 3: 9}[rank] if wide else {1: 24, 2: 11, 3: 6}[rank]
    kernel = [int(rng.integers(1, max_k + 1)) for _ in range(rank)]
    stride = [int(rng.choice([1, 1, 2, 3])) for _ in range(rank)]
    dilation = [int(rng.choice([1, 1, 2, 3])) for _ in range(rank)]
    padding = str(rng.choice(PRESETS))
    pad_begin = [int(rng.integers(0, 4)) for _ in range(rank)]
    symmetric = rng.random() < 0.5
    pad_end = list(pad_begin) if symmetric else [int(rng.integers(0, 4)) for _ in range(rank)]
    activation = str(rng.choice(ACTIVATIONS))
    layer = dict(rank=rank, in_channels=c_in, out_channels=c_out, groups=groups, kernel=kernel,
                 stride=stride, dilation=dilation, padding=padding,
                 pad_begin=pad_begin if padding == "explicit" else [],
                 pad_end=pad_end if padding == "explicit" else [],
                 padding_mode=str(rng.choice(MODES)), bias=bool(rng.random() < 0.7),
                 activation=activation,
                 data_format=str(rng.choice(["channels_first", "channels_last"])),
                 weight_format=str(rng.choice(["oihw", "hwio"])))
    if activation in DEFAULT_ALPHA and rng.random() < 0.5:
        layer["alpha"] = float(np.round(rng.uniform(0.05, 2.0), 3))
    spatial = [int(rng.integers(1, max_n + 1)) for _ in range(rank)]
    batch = int(rng.integers(1, 3))
    if layer["data_format"] == "channels_first":
        shape = [batch, c_in] + spatial
    else:
        shape = [batch] + spatial + [c_in]
    return layer, shape


def weight_shape(layer):
    kernel = layer["kernel"]
    cig = layer["in_channels"] // layer["groups"]
    if layer["weight_format"] == "oihw":
        return [layer["out_channels"], cig] + kernel
    return kernel + [cig, layer["out_channels"]]


def random_tensors(rng, layer, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(weight_shape(layer)).astype(np.float32)
    b = rng.standard_normal(layer["out_channels"]).astype(np.float32) if layer["bias"] else None
    return x, w, b
