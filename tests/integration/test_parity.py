"""Randomized layers through the Python client against PyTorch (float64).

Each layer is drawn from a seeded generator over ranks 1-3, both data
layouts, both weight formats, every padding preset and mode, groups and
depthwise, dilation, stride, bias and every activation, in the spellings the
Python client accepts. The reference is the PyTorch oracle the core's parity
test uses too (tests/python/convserve_oracle.py), given the same layer in its
own format. Tolerance per element: |y - ref| <= 1e-5 * S + 1e-6, with S the
same convolution of |x|, |w|, |b|.

Half types on the wire (FLOAT16, BFLOAT16): the oracle takes the half values
sent, converted to float64 (torch's and numpy's own conversions), so the
float32 bound above holds for a float32 output. An output of a half type T
is the float32 result rounded to nearest even, which adds half an ulp of T:

    |y - ref| <= B + 2^(max(floor(log2(|ref| + B)), e_min) - p)

with B the float32 bound, p = 11, e_min = -14 for float16 and p = 8,
e_min = -126 for bfloat16 (p significant bits, e_min the smallest normal
exponent, below which the ulp stays 2^(e_min + 1 - p)).
"""

import pathlib
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convserve

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
from convserve_oracle import resolve_pads, torch_reference  # noqa: E402

LAYERS = 240
HALF_LAYERS = 60
SEED = 20261125
PRESETS = ["explicit_symmetric", "explicit_asymmetric", "valid", "same", "same_upper",
           "same_lower", "causal"]
MODES = ["zeros", "reflect", "replicate", "circular"]
ACTIVATIONS = [None, "relu", "relu6", "leaky_relu", "elu", "sigmoid", "tanh", "silu", "gelu"]


def oracle_padding(preset, explicit):
    """The oracle's padding fields for one of PRESETS, with the explicit
    (begin, end) pairs of the explicit presets."""
    if preset.startswith("explicit"):
        return dict(padding="explicit", pad_begin=[b for b, _ in explicit],
                    pad_end=[e for _, e in explicit])
    # The client's "same" is SAME_UPPER (docs/SEMANTICS.md).
    return dict(padding="same_upper" if preset == "same" else preset, pad_begin=[], pad_end=[])


def draw_layer(rng, index):
    """A random valid layer configuration (rejection-sampled): the client's
    arguments, and under "layer" the same layer in the oracle's format."""
    while True:
        rank = int(rng.integers(1, 4))
        kind = rng.choice(["dense", "grouped", "depthwise"], p=[0.5, 0.25, 0.25])
        if kind == "dense":
            groups, cin_pg, cout_pg = 1, int(rng.integers(1, 5)), int(rng.integers(1, 5))
        elif kind == "grouped":
            groups, cin_pg, cout_pg = int(rng.integers(2, 4)), int(rng.integers(1, 4)), int(
                rng.integers(1, 4))
        else:
            groups, cin_pg, cout_pg = int(rng.integers(1, 6)), 1, int(rng.integers(1, 4))
        max_n = {1: 24, 2: 11, 3: 6}[rank]
        max_k = {1: 6, 2: 4, 3: 3}[rank]
        n = [int(rng.integers(1, max_n + 1)) for _ in range(rank)]
        k = [int(rng.integers(1, max_k + 1)) for _ in range(rank)]
        s = [int(rng.integers(1, 4)) for _ in range(rank)]
        d = [int(rng.integers(1, 4)) if rng.random() < 0.4 else 1 for _ in range(rank)]
        preset = PRESETS[index % len(PRESETS)] if index < 4 * len(PRESETS) else str(
            rng.choice(PRESETS))
        mode = MODES[index % len(MODES)] if rng.random() < 0.6 else "zeros"
        if preset == "explicit_symmetric":
            explicit = [(p, p) for p in (int(rng.integers(0, 4)) for _ in range(rank))]
        else:
            explicit = [(int(rng.integers(0, 4)), int(rng.integers(0, 4))) for _ in range(rank)]
        layer = dict(rank=rank, kernel=k, stride=s, dilation=d, **oracle_padding(preset, explicit))
        pads = resolve_pads(layer, n)
        ok = True
        for i in range(rank):
            span = d[i] * (k[i] - 1) + 1
            begin, end = pads[i]
            if n[i] + begin + end < span:
                ok = False
            if mode == "reflect" and max(begin, end) > n[i] - 1:
                ok = False
            if mode == "circular" and max(begin, end) > n[i]:
                ok = False
        if not ok:
            continue
        activation = ACTIVATIONS[index % len(ACTIVATIONS)]
        alpha = None
        if activation in ("leaky_relu", "elu") and rng.random() < 0.5:
            alpha = float(rng.uniform(0.05, 1.5))
        if preset == "explicit_symmetric":
            padding = explicit[0][0] if rng.random() < 0.3 and len(set(explicit)) == 1 else tuple(
                p for p, _ in explicit)
        elif preset == "explicit_asymmetric":
            padding = explicit
        else:
            padding = preset
        config = dict(
            rank=rank, batch=int(rng.integers(1, 3)), groups=groups, cin=groups * cin_pg,
            cout=groups * cout_pg, n=n, k=k,
            stride=s if rng.random() < 0.7 else (s[0] if len(set(s)) == 1 else s),
            dilation=d, padding=padding, padding_mode=mode,
            bias=bool(rng.random() < 0.5), activation=activation, alpha=alpha,
            data_format=str(rng.choice(["channels_first", "channels_last"])),
            weight_format=str(rng.choice(["oihw", "hwio"])))
        layer.update(in_channels=config["cin"], out_channels=config["cout"], groups=groups,
                     padding_mode=mode, bias=config["bias"], activation=activation or "none",
                     data_format=config["data_format"], weight_format=config["weight_format"])
        if alpha is not None:
            layer["alpha"] = alpha
        config["layer"] = layer
        return config


# Significant bits and smallest normal exponent of each half type.
HALF_TYPES = {"float16": (11, -14), "bfloat16": (8, -126)}


def rounding_bound(ref, bound, output_type):
    """The tolerance for an output of `output_type` given the float32
    tolerance `bound` (see the module docstring)."""
    if output_type == "float32":
        return bound
    precision, min_exponent = HALF_TYPES[output_type]
    _, exponent = np.frexp(np.abs(ref) + bound)  # |ref| + B in [2^(exponent-1), 2^exponent)
    return bound + np.ldexp(1.0, np.maximum(exponent - 1, min_exponent) - precision)


def to_half(array, element_type):
    """(what the client sends, its values in float64) for a float32 array sent
    as `element_type`: numpy's float16, or torch's bfloat16 as uint16 bit
    patterns. The values come from numpy and torch, not from the client."""
    if element_type == "float16":
        sent = np.asarray(array, np.float32).astype(np.float16)
        return sent, sent.astype(np.float64)
    half = torch.from_numpy(np.asarray(array, np.float32)).to(torch.bfloat16)
    return half.view(torch.int16).numpy().view(np.uint16), half.to(torch.float64).numpy()


def half_values(y, output_type):
    """A served output of `output_type` as float64, by numpy's and torch's conversions."""
    if output_type == "bfloat16":
        assert y.dtype == np.uint16
        return torch.from_numpy(y.view(np.int16)).view(torch.bfloat16).to(torch.float64).numpy()
    assert y.dtype == {"float16": np.float16, "float32": np.float32}[output_type]
    return y.astype(np.float64)


def to_channels_last(array):
    return np.transpose(array, [0] + list(range(2, array.ndim)) + [1])


def to_hwio(weight):
    return np.transpose(weight, list(range(2, weight.ndim)) + [1, 0])


def test_randomized_layers_match_pytorch(client):
    rng = np.random.default_rng(SEED)
    functions = {1: convserve.conv1d, 2: convserve.conv2d, 3: convserve.conv3d}
    covered = set()
    failures = []
    for index in range(LAYERS):
        config = draw_layer(rng, index)
        x = rng.uniform(-1, 1, [config["batch"], config["cin"]] + config["n"]).astype(np.float32)
        w = rng.uniform(-1, 1, [config["cout"], config["cin"] // config["groups"]]
                        + config["k"]).astype(np.float32)
        b = rng.uniform(-1, 1, config["cout"]).astype(np.float32) if config["bias"] else None

        x_sent = to_channels_last(x) if config["data_format"] == "channels_last" else x
        w_sent = to_hwio(w) if config["weight_format"] == "hwio" else w
        ref, bound = torch_reference(config["layer"], x_sent, w_sent, b)
        y = functions[config["rank"]](
            x_sent, w_sent, b, stride=config["stride"], padding=config["padding"],
            padding_mode=config["padding_mode"], dilation=config["dilation"],
            groups=config["groups"], data_format=config["data_format"],
            weight_format=config["weight_format"], activation=config["activation"],
            activation_alpha=config["alpha"], client=client)
        if y.shape != ref.shape:
            failures.append("layer %d %s: shape %s, expected %s" % (index, config, y.shape,
                                                                     ref.shape))
            continue
        error = np.abs(y.astype(np.float64) - ref)
        if not np.all(error <= bound):
            worst = np.unravel_index(np.argmax(error - bound), error.shape)
            failures.append("layer %d %s: |y - ref| = %g > %g at %s" % (
                index, config, error[worst], bound[worst], worst))
        padding = config["padding"]
        covered.update([
            ("rank", config["rank"]), ("layout", config["data_format"]),
            ("weights", config["weight_format"]), ("mode", config["padding_mode"]),
            ("activation", config["activation"]), ("bias", config["bias"]),
            ("preset", padding if isinstance(padding, str) else
             "asymmetric" if isinstance(padding, list) else "symmetric"),
            ("depthwise", config["groups"] == config["cin"] and config["groups"] > 1),
            ("grouped", 1 < config["groups"] < config["cin"]),
            ("strided", max(np.atleast_1d(config["stride"])) > 1),
            ("dilated", max(config["dilation"]) > 1)])
    assert not failures, "%d of %d layers differ from PyTorch:\n%s" % (
        len(failures), LAYERS, "\n".join(failures[:10]))
    expected = ({("rank", r) for r in (1, 2, 3)}
                | {("layout", f) for f in ("channels_first", "channels_last")}
                | {("weights", f) for f in ("oihw", "hwio")} | {("mode", m) for m in MODES}
                | {("activation", a) for a in ACTIVATIONS} | {("bias", True), ("bias", False)}
                | {("preset", p) for p in ("valid", "same", "same_upper", "same_lower", "causal",
                                           "asymmetric", "symmetric")}
                | {("depthwise", True), ("grouped", True), ("strided", True), ("dilated", True)})
    assert expected <= covered, "not covered: %s" % sorted(expected - covered, key=str)


def test_model_of_random_layers_matches_pytorch(client):
    # A three-layer model run server-side equals the PyTorch chain.
    rng = np.random.default_rng(SEED + 1)
    shapes = [(6, 3, 3, 3), (6, 1, 3, 3), (4, 6, 1, 1)]
    groups = [1, 6, 1]
    weights = [rng.uniform(-1, 1, s).astype(np.float32) for s in shapes]
    biases = [rng.uniform(-1, 1, s[0]).astype(np.float32) for s in shapes]
    x = rng.uniform(-1, 1, (2, 3, 12, 12)).astype(np.float32)
    layers = []
    channels = 3
    for weight, bias, group in zip(weights, biases, groups):
        layer = convserve.make_layer(2, (1, channels, 12, 12), weight.shape, bias=True,
                                     padding="same", groups=group, activation="relu")
        layers.append(convserve.ModelLayer(layer, weight, bias))
        channels = weight.shape[0]
    client.load_model("parity-chain", layers, replace=True)
    y, _ = client.run_model("parity-chain", x)
    ref = torch.from_numpy(x.astype(np.float64))
    for weight, bias, group in zip(weights, biases, groups):
        ref = F.relu(F.conv2d(ref, torch.from_numpy(weight.astype(np.float64)),
                              torch.from_numpy(bias.astype(np.float64)), padding="same",
                              groups=group))
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-4, atol=1e-5)
    client.unload_model("parity-chain")


def _half_sweep(client, element_type, output_type, seed, layers):
    """Random layers with x, w and b sent as `element_type` and the output
    asked as `output_type` (None: the input's). Returns the failures, the
    float32 outputs of the same layers and their oracle (ref, bound)."""
    rng = np.random.default_rng(seed)
    functions = {1: convserve.conv1d, 2: convserve.conv2d, 3: convserve.conv3d}
    served_type = output_type or element_type
    failures, float32_runs = [], []
    for index in range(layers):
        config = draw_layer(rng, index)
        x = rng.uniform(-1, 1, [config["batch"], config["cin"]] + config["n"])
        w = rng.uniform(-1, 1, [config["cout"], config["cin"] // config["groups"]] + config["k"])
        x_sent = to_channels_last(x) if config["data_format"] == "channels_last" else x
        w_sent = to_hwio(w) if config["weight_format"] == "hwio" else w
        x_sent, x_values = to_half(x_sent, element_type)
        w_sent, w_values = to_half(w_sent, element_type)
        b_sent = b_values = None
        if config["bias"]:
            b_sent, b_values = to_half(rng.uniform(-1, 1, config["cout"]), element_type)
        ref, bound = torch_reference(config["layer"], x_values, w_values, b_values)
        arguments = dict(stride=config["stride"], padding=config["padding"],
                         padding_mode=config["padding_mode"], dilation=config["dilation"],
                         groups=config["groups"], data_format=config["data_format"],
                         weight_format=config["weight_format"], activation=config["activation"],
                         activation_alpha=config["alpha"], client=client,
                         element_type=element_type)
        conv = functions[config["rank"]]
        y = half_values(conv(x_sent, w_sent, b_sent, output_type=output_type, **arguments),
                        served_type)
        tolerance = rounding_bound(ref, bound, served_type)
        if y.shape != ref.shape or not np.all(np.abs(y - ref) <= tolerance):
            failures.append("layer %d %s: max |y - ref| - bound = %g" % (
                index, config, np.max(np.abs(y - ref) - tolerance) if y.shape == ref.shape
                else np.inf))
        if served_type != "float32":
            y32 = conv(x_sent, w_sent, b_sent, output_type="float32", **arguments)
            float32_runs.append((y32, ref, bound))
    return failures, float32_runs


@pytest.mark.parametrize("element_type", ["float16", "bfloat16"])
@pytest.mark.parametrize("output_type", [None, "float32"])
def test_half_types_on_the_wire_match_pytorch(client, element_type, output_type):
    failures, _ = _half_sweep(client, element_type, output_type, SEED + 7, HALF_LAYERS)
    assert not failures, "%d of %d layers beyond the bound:\n%s" % (
        len(failures), HALF_LAYERS, "\n".join(failures[:10]))


def test_half_output_bound_catches_truncation(client):
    """The bound is tight enough to tell rounding from truncation: the float32
    outputs of the same layers, truncated to bfloat16 instead of rounded,
    break it, while torch's rounding of them keeps it."""
    failures, runs = _half_sweep(client, "bfloat16", None, SEED + 7, HALF_LAYERS)
    assert not failures
    truncated_failures = rounded_failures = 0
    for y32, ref, bound in runs:
        tolerance = rounding_bound(ref, bound, "bfloat16")
        truncated = (y32.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
        rounded = torch.from_numpy(y32).to(torch.bfloat16).to(torch.float64).numpy()
        truncated_failures += not np.all(np.abs(truncated - ref) <= tolerance)
        rounded_failures += not np.all(np.abs(rounded - ref) <= tolerance)
    assert rounded_failures == 0
    assert truncated_failures > len(runs) // 2, (truncated_failures, len(runs))


@pytest.mark.parametrize("output_type", [None, "float32", "bfloat16"])
def test_model_with_half_weights_and_input_matches_pytorch(client, output_type):
    # bfloat16 weights at load, a float16 input: the layers pass float32 on.
    rng = np.random.default_rng(SEED + 2)
    shapes = [(6, 3, 3, 3), (6, 1, 3, 3), (4, 6, 1, 1)]
    groups = [1, 6, 1]
    weights = [to_half(rng.uniform(-1, 1, s), "bfloat16") for s in shapes]
    biases = [to_half(rng.uniform(-1, 1, s[0]), "bfloat16") for s in shapes]
    x_sent, x_values = to_half(rng.uniform(-1, 1, (2, 3, 12, 12)), "float16")
    layers = []
    channels = 3
    for (weight, _), (bias, _), group in zip(weights, biases, groups):
        layer = convserve.make_layer(2, (1, channels, 12, 12), weight.shape, bias=True,
                                     padding="same", groups=group, activation="relu")
        layers.append(convserve.ModelLayer(layer, weight, bias))
        channels = weight.shape[0]
    client.load_model("parity-half", layers, replace=True, element_type="bfloat16")
    y, _ = client.run_model("parity-half", x_sent, output_type=output_type)
    served_type = output_type or "float16"
    ref = torch.from_numpy(x_values)
    for (_, weight), (_, bias), group in zip(weights, biases, groups):
        ref = F.relu(F.conv2d(ref, torch.from_numpy(weight), torch.from_numpy(bias),
                              padding="same", groups=group))
    ref = ref.numpy()
    # The model test's float32 tolerance (rtol 1e-4, atol 1e-5), plus rounding.
    tolerance = rounding_bound(ref, 1e-5 + 1e-4 * np.abs(ref), served_type)
    error = np.abs(half_values(y, served_type) - ref)
    assert np.all(error <= tolerance), np.max(error - tolerance)
    client.unload_model("parity-half")


def test_client_bfloat16_rounding_matches_torch():
    values = np.random.default_rng(3).standard_normal(100000).astype(np.float32)
    special = np.array([0x3F808000, 0x3F818000, 0x7F7FFFFF, 0x00008000, 0x7F800000, 0xFF800000,
                        0x80000000, 0x7F800001], np.uint32).view(np.float32)
    values = np.concatenate([values, special])
    expected = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    got = convserve.client.float32_to_bfloat16_bits(values)
    finite = ~np.isnan(values)
    np.testing.assert_array_equal(got[finite], expected[finite])
    assert np.all(np.isnan(convserve.client.bfloat16_bits_to_float32(got[~finite])))
    np.testing.assert_array_equal(convserve.client.bfloat16_bits_to_float32(got[finite]),
                                  torch.from_numpy(expected[finite].view(np.int16)).view(
                                      torch.bfloat16).float().numpy())
