"""Parity of the C++ core with PyTorch over randomized layers.

Every layer is drawn at random over all options; PyTorch (float64) is the
oracle. A layer PyTorch refuses must be refused by ConvServe with
INVALID_ARGUMENT; every other layer must give PyTorch's output shape exactly
and values within |y - ref| <= 1e-5 * S + 1e-6.
"""

import collections

import numpy as np
import pytest
import torch

from convserve_oracle import max_violation, random_layer, random_tensors, torch_reference
from core_capi import HALF_ISAS, INVALID_ARGUMENT, Core, CoreError

LAYERS = 1200


@pytest.fixture(scope="module")
def core():
    return Core()


def _run_parity(core, path, seed, threads):
    rng = np.random.default_rng(seed)
    seen = collections.Counter()
    mismatches = []
    computed = 0
    while computed < LAYERS:
        layer, shape = random_layer(rng)
        x, w, b = random_tensors(rng, layer, shape)
        try:
            ref, bound = torch_reference(layer, x, w, b)
        except RuntimeError as torch_error:
            # PyTorch refuses the layer: so must ConvServe.
            try:
                core.output_shape(layer, shape)
                mismatches.append(f"accepted what PyTorch refuses ({torch_error}): {layer} {shape}")
            except CoreError as error:
                if error.code != INVALID_ARGUMENT:
                    mismatches.append(f"wrong code {error.code}: {layer} {shape}")
            seen["refused"] += 1
            continue
        try:
            y = core.conv(layer, x, w, b, path=path, threads=threads)
        except CoreError as error:
            mismatches.append(f"refused what PyTorch accepts ({error}): {layer} {shape}")
            continue
        computed += 1
        for key in ("rank", "padding", "padding_mode", "activation", "data_format",
                    "weight_format", "bias"):
            seen[f"{key}={layer[key]}"] += 1
        seen["groups>1"] += layer["groups"] > 1
        seen["depthwise"] += layer["groups"] == layer["in_channels"] > 1
        seen["dilated"] += max(layer["dilation"]) > 1
        seen["strided"] += max(layer["stride"]) > 1
        if list(y.shape) != list(ref.shape):
            mismatches.append(f"shape {list(y.shape)} != PyTorch {list(ref.shape)}: {layer} {shape}")
            continue
        violation = max_violation(y, ref, bound)
        if violation > 0:
            mismatches.append(f"values off by {violation:.3g} beyond the bound: {layer} {shape}")
    print(f"\n{path} path, {threads} thread(s): {computed} layers computed, "
          f"{seen['refused']} refused by both; coverage {dict(sorted(seen.items()))}")
    # Every option must actually have been exercised.
    for option in ("rank=1", "rank=2", "rank=3", "padding=causal", "padding=same_lower",
                   "padding_mode=circular", "padding_mode=reflect", "activation=gelu",
                   "data_format=channels_last", "weight_format=hwio", "depthwise", "dilated"):
        assert seen[option] > 10, f"too few layers with {option}"
    assert not mismatches, f"{len(mismatches)} mismatches, first: " + "\n".join(mismatches[:5])


def test_reference_kernel_matches_pytorch(core):
    _run_parity(core, "reference", seed=20261125, threads=1)


@pytest.mark.parametrize("threads", [1, 2])
def test_fast_path_matches_pytorch(core, threads):
    _run_parity(core, "auto", seed=1000 + threads, threads=threads)


def _fixed_layer(rank, channels, out_channels, groups, kernel, stride, data_format, seed):
    layer = dict(rank=rank, in_channels=channels, out_channels=out_channels, groups=groups,
                 kernel=kernel, stride=stride, dilation=[1] * rank, padding="same_upper",
                 pad_begin=[], pad_end=[], padding_mode="zeros", bias=True, activation="relu",
                 data_format=data_format, weight_format="oihw" if seed % 2 else "hwio")
    spatial = [5, 19, 21][-rank:]
    shape = ([2, channels] + spatial if data_format == "channels_first"
             else [2] + spatial + [channels])
    return layer, shape


# The shapes the specialised kernels take (their ISA is this CPU's best, or
# AVX2 under CONVSERVE_MAX_ISA=avx2, the second ctest entry): depthwise 3-wide
# kernels at stride 1 (columns shared between pixels) and 2, channel counts
# around 8- and 16-lane vectors; groups of 8 x 8 channels in pairs (and an odd
# count, which stays on the generic tile).
NEW_KERNEL_LAYERS = (
    [(2, c, c, c, [3, 3], [1, s]) for c in (8, 16, 24, 32, 33, 48) for s in (1, 2)]
    + [(1, 32, 32, 32, [3], [1]), (3, 16, 16, 16, [3, 3, 3], [1, 1, 1])]
    + [(r, 8 * g, 8 * g, g, [3] * r, [s] * r) for r in (1, 2) for g in (2, 3, 32) for s in (1, 2)]
)


@pytest.mark.parametrize("index", range(len(NEW_KERNEL_LAYERS)))
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_specialised_kernel_shapes_match_pytorch(core, index, data_format):
    rank, channels, out_channels, groups, kernel, stride = NEW_KERNEL_LAYERS[index]
    layer, shape = _fixed_layer(rank, channels, out_channels, groups, kernel, stride,
                                data_format, index)
    rng = np.random.default_rng(index)
    x, w, b = random_tensors(rng, layer, shape)
    ref, bound = torch_reference(layer, x, w, b)
    for threads in (1, 2):
        y = core.conv(layer, x, w, b, path="auto", threads=threads)
        assert list(y.shape) == list(ref.shape), layer
        assert max_violation(y, ref, bound) <= 0, (layer, threads)


@pytest.mark.parametrize("path", ["reference", "auto"])
def test_non_finite_inputs_follow_ieee_like_pytorch(core, path):
    """NaN and Inf in the input give the outputs PyTorch gives (docs/RELIABILITY.md row 17)."""
    rng = np.random.default_rng(17)
    checked = 0
    while checked < 150:
        layer, shape = random_layer(rng)
        x, w, b = random_tensors(rng, layer, shape)
        flat = x.reshape(-1)
        picks = rng.choice(flat.size, size=max(1, flat.size // 50), replace=False)
        flat[picks] = rng.choice([np.nan, np.inf, -np.inf], size=picks.size)
        if layer["padding"] == "valid" and rng.random() < 0.5:
            # No padded taps: a non-finite weight meets only real inputs.
            w.reshape(-1)[rng.integers(w.size)] = np.inf
        try:
            ref, bound = torch_reference(layer, x, w, b)
        except RuntimeError:
            continue
        y = core.conv(layer, x, w, b, path=path).astype(np.float64)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(ref), err_msg=f"NaN pattern: {layer}")
        np.testing.assert_array_equal(np.isposinf(y), np.isposinf(ref), err_msg=f"+Inf: {layer}")
        np.testing.assert_array_equal(np.isneginf(y), np.isneginf(ref), err_msg=f"-Inf: {layer}")
        finite = np.isfinite(ref)
        assert max_violation(y[finite], ref[finite], bound[finite]) <= 0, layer
        checked += 1


# The float16 / bfloat16 conversions of tensors on the wire (core/half.h),
# every ISA this CPU runs, against numpy's float16 and torch's bfloat16.

ALL_BITS = np.arange(65536, dtype=np.uint32).astype(np.uint16)


def _isas(core):
    """The conversion ISAs this CPU runs, by name."""
    return [name for name, isa in HALF_ISAS.items()
            if core.half_to_float("float16", ALL_BITS[:1], isa) is not None]


def _assert_same_bits(got, expected, values, what):
    """got == expected bit for bit, except that a NaN need only be a NaN."""
    nan = np.isnan(values)
    bad = np.flatnonzero((got != expected) & ~nan)
    assert bad.size == 0, "%s: %d differ, first float32 bits %#x: got %#x, expected %#x" % (
        what, bad.size, values.view(np.uint32)[bad[0]], got[bad[0]], expected[bad[0]])


def _float16_encode_inputs(rng):
    """Every float16 value, one float32 ulp either side, the midpoints between
    neighbours and one float32 ulp either side of them, plus random float32
    bit patterns of every exponent."""
    values = ALL_BITS.view(np.float16).astype(np.float64)
    finite = np.sort(values[np.isfinite(values)])
    finite = np.append(finite, 65536.0)  # past 65504: the tie to infinity at 65520
    mids = ((finite[:-1] + finite[1:]) / 2).astype(np.float32)  # exact: 12 bits
    with np.errstate(invalid="ignore"):  # NaN to float32
        points = np.concatenate([values.astype(np.float32), mids])
    around = [np.nextafter(points, np.float32(np.inf)), np.nextafter(points, np.float32(-np.inf))]
    random = rng.integers(0, 2 ** 32, 2 ** 20, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return np.concatenate([points] + around + [random])


@pytest.mark.parametrize("half_type", ["float16", "bfloat16"])
def test_half_decode_is_exact_for_every_value(core, half_type):
    if half_type == "float16":
        expected = ALL_BITS.view(np.float16).astype(np.float32)
    else:
        expected = torch.from_numpy(ALL_BITS.view(np.int16)).view(torch.bfloat16).float().numpy()
    for isa in _isas(core):
        got = core.half_to_float(half_type, ALL_BITS, HALF_ISAS[isa])
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        finite = ~np.isnan(expected)
        np.testing.assert_array_equal(got[finite].view(np.uint32),
                                      expected[finite].view(np.uint32), err_msg=isa)


def test_float16_encode_rounds_like_numpy(core):
    values = _float16_encode_inputs(np.random.default_rng(16))
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).view(np.uint16)
    for isa in _isas(core):
        for in_place in (False, True):
            got = core.float_to_half("float16", values, HALF_ISAS[isa], in_place)
            _assert_same_bits(got, expected, values, "%s in_place=%s" % (isa, in_place))
            assert np.all(np.isnan(ALL_BITS.view(np.float16)[got[np.isnan(values)]]))


def test_bfloat16_encode_rounds_like_torch(core):
    rng = np.random.default_rng(17)
    high = ALL_BITS.astype(np.uint32) << 16
    # Every bfloat16 value with the dropped half below, at and above the tie,
    # and random.
    lows = [0, 0x7FFF, 0x8000, 0x8001, 0xFFFF]
    values = np.concatenate([high | low for low in lows]
                            + [high | rng.integers(0, 0x10000, high.size).astype(np.uint32),
                               rng.integers(0, 2 ** 32, 2 ** 20, dtype=np.uint64).astype(
                                   np.uint32)]).view(np.float32)
    expected = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    for isa in _isas(core):
        for in_place in (False, True):
            got = core.float_to_half("bfloat16", values, HALF_ISAS[isa], in_place)
            _assert_same_bits(got, expected, values, "%s in_place=%s" % (isa, in_place))
            assert np.all((got[np.isnan(values)] & 0x7FC0) == 0x7FC0)  # quiet NaN
