"""torch.nn.functional-style convolution functions served by ConvServe.

    conv2d(x, w, b=None, stride=1, padding=0, padding_mode="zeros", dilation=1, groups=1,
           data_format="channels_first", weight_format="oihw", activation=None,
           activation_alpha=None, *, client=None, target=None, timeout=None)

padding: an int (same on every axis, both ends), a tuple of ints (one per
axis, both ends), a list of (begin, end) pairs (one per axis), or one of
"valid", "same" (= "same_upper": TF/Keras/ONNX SAME_UPPER, PyTorch "same" at
stride 1), "same_upper", "same_lower", "causal".
weight_format: "oihw" = (C_out, C_in/groups, *K) (PyTorch) or
"hwio" = (*K, C_in/groups, C_out) (Keras); the same names serve 1-D and 3-D.
"""

import numbers
import os
import threading

import numpy as np

from convserve.client import DEFAULT_TARGET, Client, _element_type, _is_torch, as_array, pb

_PADDING_PRESETS = {
    "valid": pb.PADDING_PRESET_VALID,
    "same": pb.PADDING_PRESET_SAME_UPPER,
    "same_upper": pb.PADDING_PRESET_SAME_UPPER,
    "same_lower": pb.PADDING_PRESET_SAME_LOWER,
    "causal": pb.PADDING_PRESET_CAUSAL,
}
_PADDING_MODES = {
    "zeros": pb.PADDING_MODE_ZEROS,
    "reflect": pb.PADDING_MODE_REFLECT,
    "replicate": pb.PADDING_MODE_REPLICATE,
    "circular": pb.PADDING_MODE_CIRCULAR,
}
_ACTIVATIONS = {
    None: pb.ACTIVATION_NONE,
    "none": pb.ACTIVATION_NONE,
    "linear": pb.ACTIVATION_NONE,
    "relu": pb.ACTIVATION_RELU,
    "relu6": pb.ACTIVATION_RELU6,
    "leaky_relu": pb.ACTIVATION_LEAKY_RELU,
    "elu": pb.ACTIVATION_ELU,
    "sigmoid": pb.ACTIVATION_SIGMOID,
    "tanh": pb.ACTIVATION_TANH,
    "silu": pb.ACTIVATION_SILU,
    "swish": pb.ACTIVATION_SILU,
    "gelu": pb.ACTIVATION_GELU,
}
_DATA_FORMATS = {
    "channels_first": pb.DATA_LAYOUT_CHANNELS_FIRST,
    "ncw": pb.DATA_LAYOUT_CHANNELS_FIRST, "nchw": pb.DATA_LAYOUT_CHANNELS_FIRST,
    "ncdhw": pb.DATA_LAYOUT_CHANNELS_FIRST,
    "channels_last": pb.DATA_LAYOUT_CHANNELS_LAST,
    "nwc": pb.DATA_LAYOUT_CHANNELS_LAST, "nhwc": pb.DATA_LAYOUT_CHANNELS_LAST,
    "ndhwc": pb.DATA_LAYOUT_CHANNELS_LAST,
}
_WEIGHT_FORMATS = {
    "oihw": pb.WEIGHT_LAYOUT_OIHW, "oiw": pb.WEIGHT_LAYOUT_OIHW, "oidhw": pb.WEIGHT_LAYOUT_OIHW,
    "hwio": pb.WEIGHT_LAYOUT_HWIO, "wio": pb.WEIGHT_LAYOUT_HWIO, "dhwio": pb.WEIGHT_LAYOUT_HWIO,
}


_ALGORITHMS = {
    None: pb.CONV_ALGORITHM_AUTO,
    "auto": pb.CONV_ALGORITHM_AUTO,
    "direct": pb.CONV_ALGORITHM_DIRECT,
    "winograd": pb.CONV_ALGORITHM_WINOGRAD,
}


def _choice(table, name, value):
    key = value.lower() if isinstance(value, str) else value
    if key not in table:
        choices = ", ".join(repr(k) for k in table if k is not None)
        raise ValueError("%s: expected one of %s, got %r" % (name, choices, value))
    return table[key]


def _per_axis(name, value):
    """int or sequence of ints -> list of ints (validated by the server)."""
    if isinstance(value, numbers.Integral):
        return [int(value)]
    try:
        return [int(v) for v in value]
    except TypeError:
        raise ValueError("%s: expected an int or a sequence of ints, got %r" % (name, value))


def _set_padding(layer, padding):
    if isinstance(padding, str):
        layer.padding = _choice(_PADDING_PRESETS, "padding", padding)
        return
    layer.padding = pb.PADDING_PRESET_EXPLICIT
    if isinstance(padding, numbers.Integral):
        layer.pad_begin[:] = [int(padding)]
        layer.pad_end[:] = [int(padding)]
        return
    items = list(padding)
    if items and all(isinstance(item, numbers.Integral) for item in items):
        layer.pad_begin[:] = [int(v) for v in items]
        layer.pad_end[:] = [int(v) for v in items]
        return
    try:
        pairs = [(int(begin), int(end)) for begin, end in items]
    except (TypeError, ValueError):
        raise ValueError("padding: expected an int, a tuple of ints, a list of (begin, end) "
                         "pairs or one of %s, got %r" % (", ".join(_PADDING_PRESETS), padding))
    layer.pad_begin[:] = [begin for begin, _ in pairs]
    layer.pad_end[:] = [end for _, end in pairs]


def make_layer(rank, input_shape, weight_shape, bias=False, stride=1, padding=0,
               padding_mode="zeros", dilation=1, groups=1, data_format="channels_first",
               weight_format="oihw", activation=None, activation_alpha=None, algorithm=None):
    """Builds the convserve.v1.ConvLayer for a `rank`-D conv of these shapes.

    Channel counts and kernel extents are read from the shapes (as PyTorch's
    functional API does); everything else is checked by the server.
    algorithm: "auto" (default: direct, unless the layer's model is loaded with
    precision="fast"), "direct" or "winograd" (3x3, stride 1, dilation 1, one
    group, zero padding; within 1e-4 * S + 1e-5 instead of 1e-5 * S + 1e-6).
    """
    if rank not in (1, 2, 3):
        raise ValueError("rank: expected 1, 2 or 3, got %r" % (rank,))
    layer = pb.ConvLayer(spatial_rank=rank, groups=int(groups), bias=bool(bias))
    layer.data_layout = _choice(_DATA_FORMATS, "data_format", data_format)
    layer.weight_layout = _choice(_WEIGHT_FORMATS, "weight_format", weight_format)
    weight_shape = tuple(int(d) for d in weight_shape)
    input_shape = tuple(int(d) for d in input_shape)
    if len(weight_shape) != rank + 2:
        legend = ("(C_out, C_in/groups, *kernel)" if layer.weight_layout == pb.WEIGHT_LAYOUT_OIHW
                  else "(*kernel, C_in/groups, C_out)")
        raise ValueError("w: expected %d dims %s for a %d-D conv with weight_format=%r, got "
                         "shape %s" % (rank + 2, legend, rank, weight_format, weight_shape))
    if layer.weight_layout == pb.WEIGHT_LAYOUT_OIHW:
        layer.out_channels = weight_shape[0]
        layer.kernel[:] = weight_shape[2:]
    else:
        layer.out_channels = weight_shape[-1]
        layer.kernel[:] = weight_shape[:-2]
    if len(input_shape) >= 2:
        layer.in_channels = (input_shape[1] if layer.data_layout == pb.DATA_LAYOUT_CHANNELS_FIRST
                             else input_shape[-1])
    layer.stride[:] = _per_axis("stride", stride)
    layer.dilation[:] = _per_axis("dilation", dilation)
    _set_padding(layer, padding)
    layer.padding_mode = _choice(_PADDING_MODES, "padding_mode", padding_mode)
    layer.activation = _choice(_ACTIVATIONS, "activation", activation)
    if activation_alpha is not None:
        layer.activation_alpha = float(activation_alpha)
    layer.algorithm = _choice(_ALGORITHMS, "algorithm", algorithm)
    return layer


_default_clients = {}
_default_clients_lock = threading.Lock()


def _client(client, target):
    """The client to use: `client`, or the process's shared one for `target`.

    Without client=, one Client per target is kept for the process: opening
    a channel per call would cost a TCP and HTTP/2 handshake every time.
    """
    if client is not None:
        return client
    target = target or os.environ.get("CONVSERVE_TARGET", DEFAULT_TARGET)
    with _default_clients_lock:
        if target not in _default_clients:
            _default_clients[target] = Client(target=target)
        return _default_clients[target]


def _as_sent(value, name, element_type):
    """float16 arrays, and bfloat16 tensors or bit patterns, as they are; other real
    floating-point values as float32 (as_array refuses the rest)."""
    if _is_torch(value):
        return value  # to_tensor converts it, and the answer comes back as torch
    array, natural = as_array(value, name, _element_type("element_type", element_type))
    return array if natural is not None else array.astype(np.float32)


def _conv(rank, x, w, b, stride, padding, padding_mode, dilation, groups, data_format,
          weight_format, activation, activation_alpha, client, target, timeout,
          element_type=None, output_type=None):
    x = _as_sent(x, "x", element_type)
    w = _as_sent(w, "w", element_type)
    layer = make_layer(rank, tuple(x.shape), tuple(w.shape), b is not None, stride, padding,
                       padding_mode, dilation, groups, data_format, weight_format, activation,
                       activation_alpha)
    y, _ = _client(client, target).conv(layer, x, w, b, timeout=timeout,
                                        element_type=element_type, output_type=output_type)
    return y


def conv1d(x, w, b=None, stride=1, padding=0, padding_mode="zeros", dilation=1, groups=1,
           data_format="channels_first", weight_format="oihw", activation=None,
           activation_alpha=None, *, client=None, target=None, timeout=None,
           element_type=None, output_type=None):
    """1-D convolution: x (N, C_in, L) or (N, L, C_in); w (C_out, C_in/g, k) or (k, C_in/g, C_out)."""
    return _conv(1, x, w, b, stride, padding, padding_mode, dilation, groups, data_format,
                 weight_format, activation, activation_alpha, client, target, timeout,
                 element_type, output_type)


def conv2d(x, w, b=None, stride=1, padding=0, padding_mode="zeros", dilation=1, groups=1,
           data_format="channels_first", weight_format="oihw", activation=None,
           activation_alpha=None, *, client=None, target=None, timeout=None,
           element_type=None, output_type=None):
    """2-D convolution: x (N, C_in, H, W) or (N, H, W, C_in); w OIHW or HWIO.

    For every convNd: float16 arrays travel as float16 (half the bytes) and
    the answer comes back as float16 unless output_type= says otherwise
    ("float32", "float16", "bfloat16"); element_type="bfloat16" sends the
    arrays as bfloat16 (uint16 arrays as bit patterns, see
    convserve.client.to_tensor). The server computes in float32.
    """
    return _conv(2, x, w, b, stride, padding, padding_mode, dilation, groups, data_format,
                 weight_format, activation, activation_alpha, client, target, timeout,
                 element_type, output_type)


def conv3d(x, w, b=None, stride=1, padding=0, padding_mode="zeros", dilation=1, groups=1,
           data_format="channels_first", weight_format="oihw", activation=None,
           activation_alpha=None, *, client=None, target=None, timeout=None,
           element_type=None, output_type=None):
    """3-D convolution: x (N, C_in, D, H, W) or (N, D, H, W, C_in); w OIDHW or DHWIO."""
    return _conv(3, x, w, b, stride, padding, padding_mode, dilation, groups, data_format,
                 weight_format, activation, activation_alpha, client, target, timeout,
                 element_type, output_type)


def validate(input_shape, weight_shape, bias=False, stride=1, padding=0, padding_mode="zeros",
             dilation=1, groups=1, data_format="channels_first", weight_format="oihw",
             activation=None, activation_alpha=None, enforce_framework=None, *, client=None,
             target=None, timeout=None):
    """The server's shape report (convserve.v1.ShapeReport) for a layer, without computing it.

    The rank comes from weight_shape (rank + 2 dims). enforce_framework: None,
    "pytorch", "keras" or "onnx" (refuse what that framework would refuse).
    Print it with format_report(report).
    """
    rank = len(tuple(weight_shape)) - 2
    layer = make_layer(rank, input_shape, weight_shape, bias, stride, padding, padding_mode,
                       dilation, groups, data_format, weight_format, activation,
                       activation_alpha)
    return _client(client, target).validate(layer, input_shape, enforce_framework,
                                                     timeout=timeout)
