"""Dynamic batching of RunModel calls, end to end.

Concurrent calls with different random inputs go to a model with batching on
and to the same model without; every batched reply must equal its unbatched
twin bit for bit, and PyTorch's float64 chain within the parity bound of
tests/python/convserve_oracle.py (1e-5 * S + 1e-6 per layer, S the same
convolution of |x|, |w|, |b|). Calls that share one merged run report the
same compute time: that is how the test knows batching happened.
"""

import concurrent.futures
import threading
import time

import grpc
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convserve
from convserve.client import pb

CHANNELS = 16
MAX_BATCH = 8
DELAY_US = 100_000  # long enough that concurrent calls surely meet


def model_layers(rng):
    """The two 3x3 16 -> 16 layers of the batching benchmark (the first with
    ReLU), with their float32 weights."""
    layers = []
    for activation in ("relu", None):
        w = rng.uniform(-1, 1, (CHANNELS, CHANNELS, 3, 3)).astype(np.float32) / 4
        b = rng.uniform(-1, 1, CHANNELS).astype(np.float32)
        layer = convserve.make_layer(2, (1, CHANNELS, 32, 32), w.shape, bias=True,
                                     padding="same", activation=activation)
        layers.append(convserve.ModelLayer(layer, w, b))
    return layers


def torch_chain(layers, x):
    """(ref, bound): the chain in float64, and the parity bound carried
    through it: each layer adds 1e-5 * S + 1e-6, and the error it is given
    grows by at most its |w| (S taken on |x|, |w|, |b| of the whole chain)."""
    ref = torch.from_numpy(x.astype(np.float64))
    magnitude = ref.abs()
    bound = torch.zeros_like(ref)
    for layer in layers:
        w = torch.from_numpy(layer.weight.astype(np.float64))
        b = torch.from_numpy(layer.bias.astype(np.float64))
        ref = F.conv2d(ref, w, b, padding="same")
        if layer.layer.activation == pb.ACTIVATION_RELU:
            ref = F.relu(ref)
        magnitude = F.conv2d(magnitude, w.abs(), b.abs(), padding="same")
        bound = F.conv2d(bound, w.abs(), None, padding="same") + 1e-5 * magnitude + 1e-6
    return ref.numpy(), bound.numpy()


def bits(array):
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)


def test_concurrent_calls_merge_and_equal_unbatched_runs(client):
    rng = np.random.default_rng(20261126)
    layers = model_layers(rng)
    info = client.load_model("unbatched", layers, replace=True)
    assert not info.HasField("batching")
    info = client.load_model("batched", layers, replace=True, max_batch_size=MAX_BATCH,
                             max_queue_delay_us=DELAY_US)
    assert (info.batching.max_batch_size, info.batching.max_queue_delay_us) == (MAX_BATCH,
                                                                               DELAY_US)
    listed = {m.name: m for m in client.list_models()}
    assert listed["batched"].batching.max_batch_size == MAX_BATCH

    # N = 1 and 2 (merge), one above max_batch_size (runs alone), two of
    # another size (their own batch).
    shapes = ([(1, CHANNELS, 32, 32)] * 20 + [(2, CHANNELS, 32, 32)] * 6
              + [(MAX_BATCH + 1, CHANNELS, 32, 32)] + [(1, CHANNELS, 24, 24)] * 2)
    inputs = [rng.uniform(-1, 1, shape).astype(np.float32) for shape in shapes]
    start = threading.Barrier(len(inputs))

    def run(x):
        start.wait()
        return client.run_model("batched", x)

    with concurrent.futures.ThreadPoolExecutor(len(inputs)) as pool:
        replies = list(pool.map(run, inputs))

    compute_times = {}
    for x, (y, compute_ns) in zip(inputs, replies):
        alone, _ = client.run_model("unbatched", x)
        assert y.shape == alone.shape
        assert np.array_equal(bits(y), bits(alone)), "a batched reply differs from its run alone"
        ref, bound = torch_chain(layers, x)
        assert np.all(np.abs(y - ref) <= bound), float(np.max(np.abs(y - ref) - bound))
        compute_times.setdefault(compute_ns, []).append(x.shape)
    merged = [group for group in compute_times.values() if len(group) > 1]
    assert merged, "no two calls shared a run: batching did not happen"
    for group in merged:
        assert sum(shape[0] for shape in group) <= MAX_BATCH
        assert len({shape[1:] for shape in group}) == 1, "different shapes were merged"
    client.unload_model("batched")
    client.unload_model("unbatched")


def test_merged_calls_keep_their_own_wire_types(client):
    # float16 / bfloat16 inputs and outputs merge with float32 ones: inputs are
    # decoded to float32 before batching, each output is encoded as its call asked.
    rng = np.random.default_rng(9)
    layers = model_layers(rng)
    client.load_model("typed-unbatched", layers, replace=True)
    client.load_model("typed-batched", layers, replace=True, max_batch_size=MAX_BATCH,
                      max_queue_delay_us=DELAY_US)
    types = [(None, None), ("float16", "float16"), ("bfloat16", None), (None, "bfloat16")] * 2
    inputs = [rng.uniform(-1, 1, (1, CHANNELS, 32, 32)).astype(np.float32) for _ in types]
    start = threading.Barrier(len(inputs))

    def run(args):
        x, (element_type, output_type) = args
        start.wait()
        return client.run_model("typed-batched", x, element_type=element_type,
                                output_type=output_type)

    with concurrent.futures.ThreadPoolExecutor(len(inputs)) as pool:
        replies = list(pool.map(run, zip(inputs, types)))
    for x, (element_type, output_type), (y, _) in zip(inputs, types, replies):
        alone, _ = client.run_model("typed-unbatched", x, element_type=element_type,
                                    output_type=output_type)
        assert y.dtype == alone.dtype and y.shape == alone.shape
        assert np.array_equal(y.view(np.uint8), alone.view(np.uint8)), (element_type, output_type)
    assert len({ns for _, ns in replies}) < len(replies), "no two calls shared a run"
    client.unload_model("typed-batched")
    client.unload_model("typed-unbatched")


@pytest.mark.parametrize("field, value, message", [
    ("max_batch_size", 1025, "batching.max_batch_size: expected 0 (batching off) to 1024 "
                             "samples, got 1025"),
    ("max_batch_size", -1, "batching.max_batch_size: expected 0 (batching off) to 1024 "
                           "samples, got -1"),
    ("max_queue_delay_us", 1_000_001, "batching.max_queue_delay_us: expected 0 to 1000000 "
                                      "microseconds (1 s), got 1000001"),
    ("max_queue_delay_us", -1, "batching.max_queue_delay_us: expected 0 to 1000000 "
                               "microseconds (1 s), got -1"),
])
def test_batching_settings_out_of_bounds_are_refused(client, field, value, message):
    settings = dict(max_batch_size=4, max_queue_delay_us=100)
    settings[field] = value
    with pytest.raises(convserve.ConvServeError) as error:
        client.load_model("refused", model_layers(np.random.default_rng(1)), **settings)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details
    assert "refused" not in [m.name for m in client.list_models()]


def test_deadline_while_waiting_spares_the_batch_mates(client):
    rng = np.random.default_rng(3)
    layers = model_layers(rng)
    client.load_model("slow-batch", layers, replace=True, max_batch_size=4,
                      max_queue_delay_us=300_000)
    x = rng.uniform(-1, 1, (1, CHANNELS, 32, 32)).astype(np.float32)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        patient = pool.submit(client.run_model, "slow-batch", x)
        time.sleep(0.02)
        with pytest.raises(convserve.ConvServeError) as error:
            client.run_model("slow-batch", x, timeout=0.05)  # waits longer than that
        assert error.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        y, _ = patient.result()
    alone = model_layers(np.random.default_rng(3))  # same weights, same draws
    ref, bound = torch_chain(alone, x)
    assert np.all(np.abs(y - ref) <= bound)
    client.unload_model("slow-batch")


def test_unload_and_replace_while_calls_wait(client):
    rng = np.random.default_rng(4)
    layers = model_layers(rng)
    client.load_model("swapped", layers, replace=True, max_batch_size=4,
                      max_queue_delay_us=300_000)
    inputs = [rng.uniform(-1, 1, (1, CHANNELS, 32, 32)).astype(np.float32) for _ in range(2)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(client.run_model, "swapped", x) for x in inputs]
        time.sleep(0.05)
        client.load_model("swapped", model_layers(np.random.default_rng(5)), replace=True,
                          max_batch_size=4, max_queue_delay_us=300_000)
        client.unload_model("swapped")
        replies = [future.result()[0] for future in waiting]
    for x, y in zip(inputs, replies):  # computed by the model they were sent to
        ref, bound = torch_chain(layers, x)
        assert np.all(np.abs(y - ref) <= bound)


def test_shutdown_runs_the_waiting_calls(start_server):
    server = start_server("--drain_grace_ms=0")
    rng = np.random.default_rng(6)
    layers = model_layers(rng)
    x = rng.uniform(-1, 1, (1, CHANNELS, 32, 32)).astype(np.float32)
    with convserve.Client(server.target, timeout=60) as client:
        client.load_model("draining", layers, max_batch_size=4, max_queue_delay_us=1_000_000)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(client.run_model, "draining", x)
            time.sleep(0.1)
            # The pool is idle: the drain must hand the waiting call to it, or
            # the server's shutdown would cancel the call.
            server.signal()
            y, _ = waiting.result()
    ref, bound = torch_chain(layers, x)
    assert np.all(np.abs(y - ref) <= bound)
    server.process.wait(timeout=120)
    assert server.process.returncode == 0, server.log()
    assert not server.lines_above_warn(), server.log()
