"""The Winograd path of the C++ core (algorithm "winograd") against PyTorch in float64.

Winograd F(4x4, 3x3) / F(2x2, 3x3) multiplies transformed tiles instead of the
taps themselves; its rounding error is larger than direct convolution's. The
bound this test holds it to, and the README states, is

    |y - ref| <= 1e-4 * S4 + 1e-5      (direct: 1e-5 * S + 1e-6)

with S the same convolution on |x|, |w|, |b| in float64 and S4 the largest S
over the 4x4 block of outputs (blocks aligned at output 0, as the tiles are)
that holds the element. S4, not S: every output of a tile is computed from the
whole 6x6 input tile, so an output whose own 3x3 window is small still carries
the rounding of its tile's large values. Measured over this sweep the largest
|y - ref| / S4 is about 1e-5 on small random layers and 3e-6 on the ResNet
layers (F(4x4)), 1e-7 with F(2x2): the transform coefficients (up to 8 in A^T,
5 in B^T, 1/24 in G) grow the error by 10-50x over direct. A wrong coefficient
gives errors of order S and fails the bound.
"""

import numpy as np
import pytest

from convserve_oracle import random_tensors, torch_reference, max_violation
from core_capi import INVALID_ARGUMENT, Core, CoreError

RESOURCE_EXHAUSTED = 8

LAYERS = 300
RELATIVE, ABSOLUTE = 1e-4, 1e-5

# The four ResNet-50 layers the benchmark compares (bench/layers.json).
BENCH_LAYERS = [("rn50.res2.3x3", 1, 64, 56, 64), ("rn50.res3.3x3.b8", 8, 128, 28, 128),
                ("rn50.res4.3x3", 1, 256, 14, 256), ("rn50.res5.3x3", 1, 512, 7, 512)]


@pytest.fixture(scope="module")
def core():
    return Core()


def winograd_layer(rng):
    """A random layer the Winograd path runs, over the options it keeps:
    presets and pads, layouts, weight formats, bias, activations; channels and
    extents that give partial tile groups, partial tiles and F(2x2) choices."""
    wide = rng.random() < 0.25
    c_in = int(rng.integers(1, 70 if wide else 12))
    c_out = int(rng.integers(1, 70 if wide else 12))
    padding = str(rng.choice(["explicit", "valid", "same_upper", "same_lower"]))
    pad_begin = [int(rng.integers(0, 3)) for _ in range(2)]
    pad_end = [int(rng.integers(0, 3)) for _ in range(2)]
    layer = dict(rank=2, in_channels=c_in, out_channels=c_out, groups=1, kernel=[3, 3],
                 stride=[1, 1], dilation=[1, 1], padding=padding,
                 pad_begin=pad_begin if padding == "explicit" else [],
                 pad_end=pad_end if padding == "explicit" else [], padding_mode="zeros",
                 bias=bool(rng.random() < 0.7),
                 activation=str(rng.choice(["none", "relu", "relu6", "gelu", "leaky_relu"])),
                 data_format=str(rng.choice(["channels_first", "channels_last"])),
                 weight_format=str(rng.choice(["oihw", "hwio"])), algorithm="winograd")
    spatial = [int(rng.integers(1, 40 if wide else 20)) for _ in range(2)]
    batch = int(rng.integers(1, 4))
    if layer["data_format"] == "channels_first":
        return layer, [batch, c_in] + spatial
    return layer, [batch] + spatial + [c_in]


def block_max(s, data_format, block=4):
    """Each element replaced by the largest value of its block x block block of
    output positions (blocks aligned at 0)."""
    if data_format == "channels_last":
        s = np.moveaxis(s, -1, 1)
    n, c, h, w = s.shape
    hb, wb = -(-h // block), -(-w // block)
    padded = np.zeros((n, c, hb * block, wb * block))
    padded[:, :, :h, :w] = s
    blocks = padded.reshape(n, c, hb, block, wb, block).max(axis=(3, 5))
    out = np.repeat(np.repeat(blocks, block, axis=2), block, axis=3)[:, :, :h, :w]
    return np.moveaxis(out, 1, -1) if data_format == "channels_last" else out


def check(core, layer, shape, rng, threads=1):
    """Runs `layer` on random tensors; returns max |y - ref| / S4, asserting the bound."""
    x, w, b = random_tensors(rng, layer, shape)
    ref, direct_bound = torch_reference(layer, x, w, b)
    s = (direct_bound - 1e-6) / 1e-5  # S, from the oracle's direct bound
    s = block_max(s, layer["data_format"]) if s.size else s
    y = core.conv(layer, x, w, b, threads=threads)
    assert list(y.shape) == list(ref.shape), (layer, shape)
    violation = max_violation(y, ref, RELATIVE * s + ABSOLUTE)
    assert violation <= 0, f"off by {violation:.3g} beyond {RELATIVE} * S4 + {ABSOLUTE}: {layer} {shape}"
    error = np.abs(y.astype(np.float64) - ref)
    return float(np.max(error / np.maximum(s, 1e-30))) if error.size else 0.0


@pytest.mark.parametrize("threads", [1, 2])
def test_winograd_matches_pytorch(core, threads):
    rng = np.random.default_rng(4300 + threads)
    worst = 0.0
    computed = 0
    while computed < LAYERS:
        layer, shape = winograd_layer(rng)
        try:
            worst = max(worst, check(core, layer, shape, rng, threads))
        except RuntimeError:  # PyTorch refuses the layer (an empty output)
            continue
        computed += 1
    print(f"\n{computed} layers, {threads} thread(s): max |y - ref| / S4 = {worst:.3g}")


@pytest.mark.parametrize("name, n, c, hw, k", BENCH_LAYERS)
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_winograd_on_benchmark_layers(core, name, n, c, hw, k, data_format):
    rng = np.random.default_rng(len(name))
    layer = dict(rank=2, in_channels=c, out_channels=k, groups=1, kernel=[3, 3], stride=[1, 1],
                 dilation=[1, 1], padding="explicit", pad_begin=[1, 1], pad_end=[1, 1],
                 padding_mode="zeros", bias=True, activation="none", data_format=data_format,
                 weight_format="oihw", algorithm="winograd")
    shape = [n, c, hw, hw] if data_format == "channels_first" else [n, hw, hw, c]
    worst = check(core, layer, shape, rng)
    print(f"\n{name} {data_format}: max |y - ref| / S4 = {worst:.3g}")
    # The Winograd path ran: its rounding differs from direct convolution's.
    x, w, b = random_tensors(rng, layer, shape)
    winograd = core.conv(layer, x, w, b)
    direct = core.conv(dict(layer, algorithm="direct"), x, w, b)
    assert not np.array_equal(winograd, direct)


def test_auto_is_direct_for_a_single_layer(core):
    rng = np.random.default_rng(5)
    layer = dict(rank=2, in_channels=16, out_channels=16, groups=1, kernel=[3, 3], stride=[1, 1],
                 dilation=[1, 1], padding="explicit", pad_begin=[1, 1], pad_end=[1, 1],
                 padding_mode="zeros", bias=True, activation="none",
                 data_format="channels_first", weight_format="oihw")
    x, w, b = random_tensors(rng, layer, [1, 16, 20, 20])
    auto = core.conv(dict(layer, algorithm="auto"), x, w, b)
    direct = core.conv(dict(layer, algorithm="direct"), x, w, b)
    np.testing.assert_array_equal(auto, direct)


@pytest.mark.parametrize("change, got", [
    (dict(kernel=[5, 5]), "kernel [5, 5]"),
    (dict(stride=[2, 2]), "stride [2, 2]"),
    (dict(dilation=[1, 2]), "dilation [1, 2]"),
    (dict(groups=2), "groups 2"),
    (dict(padding_mode="reflect"), "padding_mode 'reflect'"),
    (dict(rank=1, kernel=[3], stride=[1], dilation=[1], pad_begin=[1], pad_end=[1]), "1-D"),
])
def test_winograd_refuses_layers_it_cannot_run(core, change, got):
    layer = dict(rank=2, in_channels=4, out_channels=4, groups=1, kernel=[3, 3], stride=[1, 1],
                 dilation=[1, 1], padding="explicit", pad_begin=[1, 1], pad_end=[1, 1],
                 padding_mode="zeros", bias=False, activation="none",
                 data_format="channels_first", weight_format="oihw", algorithm="winograd")
    layer.update(change)
    rank = layer["rank"]
    x = np.ones([1, 4] + [8] * rank, np.float32)
    w = np.ones([4, 4 // layer["groups"]] + layer["kernel"], np.float32)
    with pytest.raises(CoreError) as error:
        core.conv(layer, x, w, None)
    assert error.value.code == INVALID_ARGUMENT
    message = error.value.message
    assert message.startswith("algorithm: 'winograd' requires a 2-D layer with a 3x3 kernel"), message
    assert got in message, message


def test_padding_far_beyond_the_input_is_refused_not_allocated(core):
    # A 1x1 input padded by 1000 on every side: the padded copy would be 2002 x 2002 x 64 floats
    # for 64 input floats.
    layer = dict(rank=2, in_channels=64, out_channels=1, groups=1, kernel=[3, 3], stride=[1, 1],
                 dilation=[1, 1], padding="explicit", pad_begin=[1000, 1000],
                 pad_end=[1000, 1000], padding_mode="zeros", bias=False, activation="none",
                 data_format="channels_first", weight_format="oihw", algorithm="winograd")
    x = np.ones([1, 64, 1, 1], np.float32)
    w = np.ones([1, 64, 3, 3], np.float32)
    with pytest.raises(CoreError) as error:
        core.conv(layer, x, w, None)
    assert error.value.code == RESOURCE_EXHAUSTED
    assert "padded input copy" in error.value.message
    assert "algorithm 'direct'" in error.value.message


def test_an_image_gets_the_same_bits_alone_or_in_a_batch(core):
    """Dynamic batching merges calls along N: each image's output must not depend on its batch,
    not even in the tile size chosen (7x7 takes F(2x2) alone, and must in a batch of 8 too)."""
    rng = np.random.default_rng(8)
    for hw, data_format in [(7, "channels_first"), (13, "channels_last"), (30, "channels_first")]:
        layer = dict(rank=2, in_channels=24, out_channels=20, groups=1, kernel=[3, 3],
                     stride=[1, 1], dilation=[1, 1], padding="explicit", pad_begin=[1, 1],
                     pad_end=[1, 1], padding_mode="zeros", bias=True, activation="relu",
                     data_format=data_format, weight_format="oihw", algorithm="winograd")
        shape = [8, 24, hw, hw] if data_format == "channels_first" else [8, hw, hw, 24]
        x, w, b = random_tensors(rng, layer, shape)
        batch = core.conv(layer, x, w, b, threads=2)
        for n in range(8):
            alone = core.conv(layer, x[n:n + 1], w, b, threads=1)
            np.testing.assert_array_equal(batch[n:n + 1], alone, err_msg=f"image {n}, {hw}x{hw}")
