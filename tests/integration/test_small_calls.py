"""The small-call lane: a Conv below --small_call_macs runs on a thread of its own, so it
completes while a long model computes on the compute threads, and its result is right
(against PyTorch in float64); with --small_call_macs=0 it waits for the long call instead.

Ordering checks only. The long model (forty 64 -> 64 channel 5x5 layers on 1x64x128x128,
134 billion MACs: seconds on one compute thread) ends in a layer whose output is one value,
so its call is seen done as soon as its computation ends.
"""

import re
import time
import urllib.request

import numpy as np
import torch
import torch.nn.functional as F

import convserve
from convserve.client import pb, to_tensor
from conftest import ServerProcess
from test_metrics import metrics_port
import test_stopping

SHAPE = (1, 64, 128, 128)
RESERVED = re.compile(r'^convserve_memory_budget_bytes\{state="reserved"\} (\S+)$', re.M)


def reserved_bytes(process):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port(process),
                                timeout=10) as page:
        return float(RESERVED.search(page.read().decode()).group(1))


class LongModel(test_stopping.LongModel):
    """Like test_stopping's (whose close() it shares): a server with metrics and the
    small-call lane unless `flags` turn it off, holding a model that ends in a one-value
    layer."""

    def __init__(self, *flags):
        self.process = ServerProcess("--drain_grace_ms=0", "--metrics_listen=127.0.0.1:0",
                                     *flags, compute_threads=1)
        self.connection = convserve.Client(self.process.target, timeout=120)
        rng = np.random.default_rng(2)
        layers = []
        for _ in range(40):
            w = rng.uniform(-0.02, 0.02, (64, 64, 5, 5)).astype(np.float32)
            layers.append(convserve.ModelLayer(
                convserve.make_layer(2, SHAPE, w.shape, padding="same"), w, None))
        w = np.ones((1, 64, 1, 1), np.float32)
        layers.append(convserve.ModelLayer(
            convserve.make_layer(2, SHAPE, w.shape, stride=SHAPE[-1]), w, None))
        self.connection.load_model("long", layers)

    def start(self):
        """Starts the long call; returns its future once it computes (holds its memory)."""
        # The LoadModel's request memory is released when gRPC is done with the call,
        # which may come moments after the client has its reply.
        deadline = time.monotonic() + 30
        while reserved_bytes(self.process) != 0:
            assert time.monotonic() < deadline, "memory still reserved with no call running"
            time.sleep(0.05)
        request = pb.RunModelRequest(name="long")
        to_tensor(np.random.default_rng(1).uniform(-1, 1, SHAPE).astype(np.float32),
                  request.input)
        future = self.connection.stub.RunModel.future(request, timeout=300)
        deadline = time.monotonic() + 60
        while reserved_bytes(self.process) == 0:
            assert time.monotonic() < deadline, "the long call never started"
            time.sleep(0.05)
        # Admitted to an idle pool: it computes now (or within moments).
        time.sleep(0.2)
        assert not future.done(), "the long call ended at once"
        return future


def small_conv_request():
    """conv_small of the load tools: 1x8x16x16 by 8 3x3 filters, padding 1, bias (147,456
    MACs). Returns the request and the expected output (PyTorch, float64)."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (1, 8, 16, 16)).astype(np.float32)
    w = rng.uniform(-1, 1, (8, 8, 3, 3)).astype(np.float32)
    b = rng.uniform(-1, 1, 8).astype(np.float32)
    request = pb.ConvRequest(layer=convserve.make_layer(2, x.shape, w.shape, bias=True, padding=1))
    for array, tensor in ((x, request.input), (w, request.weight), (b, request.bias)):
        to_tensor(array, tensor)
    expected = F.conv2d(torch.from_numpy(x.astype(np.float64)),
                        torch.from_numpy(w.astype(np.float64)),
                        torch.from_numpy(b.astype(np.float64)), padding=1).numpy()
    return request, expected


def test_a_small_conv_completes_while_a_long_model_runs():
    model = LongModel()
    try:
        long_call = model.start()
        request, expected = small_conv_request()
        response = model.connection.stub.Conv(request, timeout=120)
        assert not long_call.done(), "the small Conv completed only after the long call"
        np.testing.assert_allclose(convserve.client.from_tensor(response.output), expected,
                                   rtol=1e-5, atol=1e-5)
        assert list(long_call.result().output.shape) == [1, 1, 1, 1]
    finally:
        assert model.close() == 0


def test_without_the_lane_a_small_conv_waits_for_the_long_model():
    model = LongModel("--small_call_macs=0")
    try:
        long_call = model.start()
        request, expected = small_conv_request()
        small_call = model.connection.stub.Conv.future(request, timeout=120)
        response = small_call.result()
        assert long_call.done(), "the small Conv completed before the long call"
        np.testing.assert_allclose(convserve.client.from_tensor(response.output), expected,
                                   rtol=1e-5, atol=1e-5)
    finally:
        assert model.close() == 0
