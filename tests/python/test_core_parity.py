"""Parity of the C++ core with PyTorch over randomized layers.

Every layer is drawn at random over all options; PyTorch (float64) is the
oracle. A layer PyTorch refuses must be refused by ConvServe with
INVALID_ARGUMENT; every other layer must give PyTorch's output shape exactly
and values within |y - ref| <= 1e-5 * S + 1e-6.
"""

import collections

import numpy as np
import pytest

from convserve_oracle import max_violation, random_layer, random_tensors, torch_reference
from core_capi import INVALID_ARGUMENT, Core, CoreError

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
