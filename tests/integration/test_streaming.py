"""StreamModel end to end: a causal 1-D model streamed in random chunkings
equals RunModel on the whole signal (bitwise) and PyTorch in float64 (within
the parity bound); non-causal models are refused naming the layer; idle
streams are closed; a client cancelling mid-stream leaves the server serving."""

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convserve
from conftest import CONVCTL, REPO, ServerProcess

# (C_in, C_out, kernel, dilation, stride, activation) of the model's layers.
LAYERS = [(2, 4, 3, 1, 1, "relu"), (4, 4, 5, 2, 2, "tanh"), (4, 3, 2, 4, 1, None)]


def _model(rng, data_format, padding="causal"):
    layers = []
    for c_in, c_out, k, d, s, activation in LAYERS:
        w = rng.standard_normal((c_out, c_in, k)).astype(np.float32) / np.sqrt(c_in * k)
        b = rng.standard_normal(c_out).astype(np.float32)
        shape = (1, c_in, 8) if data_format == "channels_first" else (1, 8, c_in)
        layer = convserve.make_layer(1, shape, w.shape, bias=True, stride=s, dilation=d,
                                     padding=padding, data_format=data_format,
                                     activation=activation)
        layers.append(convserve.ModelLayer(layer, w, b))
    return layers


def _torch_chain(layers, x, data_format):
    """(ref, bound): the model in float64 by PyTorch (channels_first inside),
    and 1e-5 * S + 1e-6 with S the chain on |x| with |w|, |b| and no
    activations, which bounds how far float32 rounding can carry through it."""
    y = torch.from_numpy(x.astype(np.float64))
    s = y.abs()
    if data_format == "channels_last":
        y, s = y.permute(0, 2, 1), s.permute(0, 2, 1)
    for layer, (_, _, k, d, stride, activation) in zip(layers, LAYERS):
        w = torch.from_numpy(layer.weight.astype(np.float64))
        b = torch.from_numpy(layer.bias.astype(np.float64))
        pad = d * (k - 1)
        y = F.conv1d(F.pad(y, (pad, 0)), w, b, stride=stride, dilation=d)
        s = F.conv1d(F.pad(s, (pad, 0)), w.abs(), b.abs(), stride=stride, dilation=d)
        if activation == "relu":
            y = F.relu(y)
        elif activation == "tanh":
            y = torch.tanh(y)
    if data_format == "channels_last":
        y, s = y.permute(0, 2, 1), s.permute(0, 2, 1)
    return y.contiguous().numpy(), 1e-5 * s.contiguous().numpy() + 1e-6


def _split(x, sizes, axis):
    chunks, at = [], 0
    for size in sizes:
        if at >= x.shape[axis]:
            break
        chunks.append(np.take(x, range(at, min(at + size, x.shape[axis])), axis=axis))
        at += size
    assert at >= x.shape[axis]
    return chunks


@pytest.fixture(scope="module")
def client(server):
    with convserve.Client(server.target, timeout=60) as c:
        yield c


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_stream_equals_run_model_and_torch(client, data_format):
    rng = np.random.default_rng(11)
    layers = _model(rng, data_format)
    name = "causal-" + data_format
    client.load_model(name, layers, replace=True)
    length = 97
    axis = 2 if data_format == "channels_first" else 1
    x = rng.standard_normal((2, 2, length) if axis == 2 else (2, length, 2)).astype(np.float32)
    whole, _ = client.run_model(name, x)
    ref, bound = _torch_chain(layers, x, data_format)
    assert np.all(np.abs(whole - ref) <= bound)
    chunkings = {
        "ones": [1] * length,
        "whole": [length],
        "small": list(rng.integers(1, 5, size=length)),
        "mixed": list(rng.integers(1, 40, size=length)),
    }
    for what, sizes in chunkings.items():
        outputs = list(client.stream(name, _split(x, sizes, axis)))
        assert len(outputs) == len(_split(x, sizes, axis)), what
        # Chunks too short for a new output cell get an empty one.
        if what == "ones":
            assert any(y.shape[axis] == 0 for y in outputs)
        for y in outputs:
            assert y.shape[:axis] == whole.shape[:axis] and y.shape[axis + 1:] == \
                whole.shape[axis + 1:], what
        streamed = np.concatenate(outputs, axis=axis)
        assert streamed.shape == whole.shape, what
        assert np.array_equal(streamed, whole), what  # bitwise
        violation = np.max(np.abs(streamed - ref) - bound)
        assert violation <= 0, (what, violation)


def test_stream_refuses_non_causal_models(client):
    rng = np.random.default_rng(3)
    for padding, why in [("same", "depends on the signal's length"),
                         ([(1, 1)], "pad_end is 1"),
                         ("valid", "pad_begin is 0")]:
        layers = _model(rng, "channels_first")
        c_in, c_out, k, d, s, activation = LAYERS[1]
        bad = convserve.make_layer(1, (1, c_in, 8), (c_out, c_in, k), bias=True, stride=s,
                                   dilation=d, padding=padding, activation=activation)
        layers[1] = convserve.ModelLayer(bad, layers[1].weight, layers[1].bias)
        client.load_model("not-causal", layers, replace=True)
        with pytest.raises(convserve.ConvServeError) as error:
            list(client.stream("not-causal", [np.zeros((1, 2, 4), np.float32)]))
        assert error.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "model 'not-causal' layers[1] is not causal along the time axis L" in \
            error.value.details
        assert why in error.value.details


def test_stream_errors_name_the_field(client):
    rng = np.random.default_rng(4)
    client.load_model("causal-errors", _model(rng, "channels_first"), replace=True)
    with pytest.raises(convserve.ConvServeError) as error:
        list(client.stream("no-such-model", [np.zeros((1, 2, 4), np.float32)]))
    assert error.value.code == grpc.StatusCode.NOT_FOUND
    chunks = [np.zeros((1, 2, 4), np.float32), np.zeros((1, 3, 4), np.float32)]
    outputs = []
    with pytest.raises(convserve.ConvServeError) as error:
        for y in client.stream("causal-errors", chunks):
            outputs.append(y)
    assert len(outputs) == 1
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "chunk.shape: expected the stream's shape [1, 2, 4]" in error.value.details
    assert "got [1, 3, 4]" in error.value.details


def test_cancelled_stream_leaves_the_server_serving(server, client):
    rng = np.random.default_rng(5)
    client.load_model("causal-cancel", _model(rng, "channels_first"), replace=True)

    def endless():
        while True:
            yield rng.standard_normal((1, 2, 16)).astype(np.float32)

    stream = client.stream("causal-cancel", endless())
    for _ in range(3):
        next(stream)
    stream.close()  # cancels the call
    x = rng.standard_normal((1, 2, 50)).astype(np.float32)
    whole, _ = client.run_model("causal-cancel", x)
    assert np.array_equal(np.concatenate(list(client.stream("causal-cancel", [x])), axis=2),
                          whole)
    deadline = time.monotonic() + 10
    while "StreamModel from" not in server.log() or "ended: CANCELLED" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    assert server.lines_above_warn() == []


def test_idle_stream_is_closed():
    server = ServerProcess("--drain_grace_ms=0", "--stream_idle_timeout_s=1")
    try:
        with convserve.Client(server.target, timeout=60) as client:
            rng = np.random.default_rng(6)
            client.load_model("causal-idle", _model(rng, "channels_first"))

            def slow():
                yield np.zeros((1, 2, 4), np.float32)
                time.sleep(4)
                yield np.zeros((1, 2, 4), np.float32)

            outputs = []
            with pytest.raises(convserve.ConvServeError) as error:
                for y in client.stream("causal-idle", slow()):
                    outputs.append(y)
            assert len(outputs) == 1
            assert error.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "--stream_idle_timeout_s" in error.value.details
            assert error.value.request_id
            log = server.log()
            assert "StreamModel from" in log and "started on model 'causal-idle'" in log
            assert "ended: DEADLINE_EXCEEDED" in log
            assert error.value.request_id in log
            # The server goes on serving, and stops cleanly.
            assert list(client.stream("causal-idle", [np.zeros((1, 2, 4), np.float32)]))
        assert server.stop() == 0, server.log()
    finally:
        server.cleanup()


def test_flag_is_validated():
    with pytest.raises(RuntimeError) as error:
        ServerProcess("--stream_idle_timeout_s=0")
    assert "--stream_idle_timeout_s: expected a value in 1..86400" in str(error.value)


def _reserved_bytes(process):
    """convserve_memory_budget_bytes{state="reserved"}, from --metrics_listen."""
    port = int(re.search(r"serving GET /metrics on \S+:(\d+)", process.log()).group(1))
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as page:
        text = page.read().decode()
    return float(re.search(r'^convserve_memory_budget_bytes\{state="reserved"\} (\S+)$', text,
                           re.M).group(1))


def _open_stream(client, name, chunk):
    """Starts a stream that sends `chunk` and then waits: (thread, outputs,
    errors, release) -- set `release` to let the client close its side."""
    release = threading.Event()
    outputs, errors = [], []

    def chunks():
        yield chunk
        release.wait(60)

    def run():
        try:
            for y in client.stream(name, chunks()):
                outputs.append(y)
        except convserve.ConvServeError as error:
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outputs, errors, release


def _wait_released(server, timeout=10):
    """Waits for the server's budget to hold nothing: a unary call's memory is released when
    gRPC is done with it, which may come moments after the client has its reply."""
    deadline = time.monotonic() + timeout
    while _reserved_bytes(server) != 0:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.02)


def test_stream_state_is_counted_in_the_memory_budget():
    server = ServerProcess("--drain_grace_ms=0", "--metrics_listen=127.0.0.1:0")
    try:
        with convserve.Client(server.target, timeout=60) as client:
            rng = np.random.default_rng(7)
            client.load_model("causal-budget", _model(rng, "channels_first"))
            _wait_released(server)
            thread, outputs, errors, release = _open_stream(
                client, "causal-budget", np.zeros((8, 2, 4), np.float32))
            deadline = time.monotonic() + 30
            while not outputs:
                assert time.monotonic() < deadline and not errors, (errors, server.log())
                time.sleep(0.02)
            # The tails: 8 x (2 x 2 + 4 x 8 + 4 x 4) floats, and the stream's overhead.
            reserved = _reserved_bytes(server)
            assert 8 * (2 * 2 + 4 * 8 + 4 * 4) * 4 <= reserved <= 64 * 1024, reserved
            release.set()
            thread.join(60)
            assert not errors, errors
            _wait_released(server)
        assert server.stop() == 0, server.log()
    finally:
        server.cleanup()
    small = ServerProcess("--drain_grace_ms=0", "--memory_budget_bytes=4096")
    try:
        with convserve.Client(small.target, timeout=60) as client:
            client.load_model("causal-budget", _model(np.random.default_rng(7), "channels_first"))
            with pytest.raises(convserve.ConvServeError) as error:
                list(client.stream("causal-budget", [np.zeros((1, 2, 4), np.float32)]))
            assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "StreamModel (the stream's state)" in error.value.details
            assert "--memory_budget_bytes=4096" in error.value.details
        assert small.stop() == 0, small.log()
    finally:
        small.cleanup()


def test_drain_ends_open_streams():
    server = ServerProcess("--drain_grace_ms=0")
    try:
        with convserve.Client(server.target, timeout=60) as client:
            rng = np.random.default_rng(8)
            client.load_model("causal-drain", _model(rng, "channels_first"))
            thread, outputs, errors, release = _open_stream(
                client, "causal-drain", np.zeros((1, 2, 4), np.float32))
            deadline = time.monotonic() + 30
            while not outputs:
                assert time.monotonic() < deadline and not errors, (errors, server.log())
                time.sleep(0.02)
            started = time.monotonic()
            server.signal()
            thread.join(30)
            assert errors and errors[0].code == grpc.StatusCode.UNAVAILABLE, errors
            assert "shutting down" in errors[0].details
            release.set()
            assert server.process.wait(timeout=30) == 0, server.log()
            assert time.monotonic() - started < 20
            assert "ended: UNAVAILABLE" in server.log()
    finally:
        server.cleanup()


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_both_clis_stream_a_npy_file(server, client, tmp_path, data_format):
    rng = np.random.default_rng(9)
    name = "causal-cli-" + data_format
    client.load_model(name, _model(rng, data_format), replace=True)
    axis = 2 if data_format == "channels_first" else 1
    x = rng.standard_normal((1, 2, 45) if axis == 2 else (1, 45, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    whole, _ = client.run_model(name, x)
    for cli, command in (("convctl", [str(CONVCTL)]),
                         ("python", [sys.executable, "-m", "convserve"])):
        output = tmp_path / (cli + ".npy")
        result = subprocess.run(
            command + ["--target=%s" % server.target, "stream", "--model=" + name,
                       "--input=%s" % (tmp_path / "x.npy"), "--output=%s" % output,
                       "--chunk=7", "--data_format=" + data_format],
            capture_output=True, text=True, timeout=60,
            env=dict(os.environ, PYTHONPATH=str(REPO / "client" / "python")))
        assert result.returncode == 0, result.stderr
        assert "(7 chunks)" in result.stdout, result.stdout
        assert np.array_equal(np.load(output), whole), cli
        result = subprocess.run(
            command + ["--target=%s" % server.target, "stream", "--model=" + name,
                       "--input=%s" % (tmp_path / "x.npy"), "--output=%s" % output,
                       "--chunk=0"],
            capture_output=True, text=True, timeout=60,
            env=dict(os.environ, PYTHONPATH=str(REPO / "client" / "python")))
        assert result.returncode == 1 and "--chunk: expected at least 1 cell, got 0" in \
            result.stderr, (cli, result.stderr)
