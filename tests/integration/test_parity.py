"""Randomized layers through the Python client against PyTorch (float64).

Each layer is drawn from a seeded generator over ranks 1-3, both data
layouts, both weight formats, every padding preset and mode, groups and
depthwise, dilation, stride, bias and every activation, in the spellings the
Python client accepts. The reference is the PyTorch oracle the core's parity
test uses too (tests/python/convserve_oracle.py), given the same layer in its
own format. Tolerance per element: |y - ref| <= 1e-5 * S + 1e-6, with S the
same convolution of |x|, |w|, |b|.
"""

import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F

import convserve

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
from convserve_oracle import resolve_pads, torch_reference  # noqa: E402

LAYERS = 240
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
