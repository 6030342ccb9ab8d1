"""docs/RELIABILITY.md row 12: draining on SIGTERM / SIGINT.

Health turns NOT_SERVING first, new calls fail UNAVAILABLE, the call in
flight completes, and the process exits 0.
"""

import math
import subprocess
import signal
import threading
import time

import grpc
import numpy as np
import pytest

import convserve
from conftest import SERVER_BINARY

DRAIN_GRACE_MS = 800


def small_conv(connection):
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 9)
    return convserve.conv1d(x, np.ones((1, 1, 5), np.float32), client=connection, timeout=10)


def load_slow_model(connection, seconds):
    """Loads a compute-heavy model and returns an input it takes ~`seconds` on.

    Forty 32 -> 32 channel 11 x 11 layers kept server-side (about 155k MACs
    per input element): a request of a few MB, which reaches the server at
    once, buys seconds of computation.
    """
    rng = np.random.default_rng(3)
    layers = []
    for _ in range(40):
        w = rng.uniform(-0.01, 0.01, (32, 32, 11, 11)).astype(np.float32)
        layers.append(convserve.ModelLayer(
            convserve.make_layer(2, (1, 32, 24, 24), w.shape, padding="same"), w, None))
    connection.load_model("slow", layers)
    # Calibrated on a batch of 4, fastest of 3 runs: a busy machine during
    # calibration must not make the real call short.
    x4 = rng.uniform(-1, 1, (4, 32, 24, 24)).astype(np.float32)
    per_item = min(connection.run_model("slow", x4)[1] for _ in range(3)) / 4e9
    batch = int(min(max(math.ceil(seconds / per_item), 1), 1024))
    return np.repeat(x4[:1], batch, axis=0)


def test_sigterm_drains(start_server):
    process = start_server("--drain_grace_ms=%d" % DRAIN_GRACE_MS, compute_threads=1)
    connection = convserve.Client(process.target, timeout=120)
    other = convserve.Client(process.target, timeout=10)
    assert connection.health() == "SERVING"
    assert other.health() == "SERVING"
    x = load_slow_model(connection, seconds=8.0)

    outcome = {}

    def in_flight():
        try:
            y, _ = connection.run_model("slow", x)
            outcome["shape"] = y.shape
        except convserve.ConvServeError as error:
            outcome["error"] = error
        outcome["finished"] = time.monotonic()

    thread = threading.Thread(target=in_flight)
    thread.start()
    time.sleep(1.0)  # the request (a few MB) reaches the server well within this
    assert thread.is_alive(), "calibration failed: the slow call finished in under 1 s"
    sent = time.monotonic()
    process.signal(signal.SIGTERM)

    # Health turns NOT_SERVING first, while the listener is still open.
    deadline = time.monotonic() + 1.0
    status = other.health()
    while status != "NOT_SERVING" and time.monotonic() < deadline:
        time.sleep(0.02)
        status = other.health()
    assert status == "NOT_SERVING"

    # New calls are refused with UNAVAILABLE (during the grace period and after).
    with pytest.raises(convserve.ConvServeError) as error:
        small_conv(other)
    assert error.value.code == grpc.StatusCode.UNAVAILABLE
    time.sleep(DRAIN_GRACE_MS / 1000.0 + 0.3)
    assert thread.is_alive(), "calibration failed: the slow call ended within the grace period: %s" % outcome
    with pytest.raises(convserve.ConvServeError) as error:
        small_conv(convserve.Client(process.target, timeout=5))
    assert error.value.code == grpc.StatusCode.UNAVAILABLE

    # The call in flight completes.
    thread.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["shape"] == (x.shape[0], 32, 24, 24)
    assert outcome["finished"] > sent
    assert process.process.wait(timeout=60) == 0
    with pytest.raises(convserve.ConvServeError) as error:
        small_conv(convserve.Client(process.target, timeout=5))
    assert error.value.code == grpc.StatusCode.UNAVAILABLE
    assert "draining" in process.log() and "stopped" in process.log()
    assert process.lines_above_warn() == []


def test_sigint_stops_cleanly(start_server):
    process = start_server("--drain_grace_ms=0")
    with convserve.Client(process.target, timeout=10) as connection:
        assert small_conv(connection).shape == (1, 1, 5)
    process.signal(signal.SIGINT)
    assert process.process.wait(timeout=30) == 0


def test_port_in_use_fails_loudly(start_server):
    process = start_server("--drain_grace_ms=0")
    clash = subprocess.run([str(SERVER_BINARY), "--listen=%s" % process.target],
                           capture_output=True, text=True, timeout=30)
    assert clash.returncode == 1
    assert "cannot listen on %s" % process.target in clash.stdout + clash.stderr


def test_bad_flags_are_refused():
    for flag in ("--log_level=loud", "--max_message_bytes=10"):
        result = subprocess.run([str(SERVER_BINARY), "--listen=127.0.0.1:0", flag],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, flag


def test_client_cancel_mid_call_leaves_server_live(start_server):
    # docs/RELIABILITY.md row 14: the caller goes away; the server stays live and
    # keeps serving others (test_stopping.py checks that the computation stops).
    process = start_server("--drain_grace_ms=0", compute_threads=1)
    connection = convserve.Client(process.target, timeout=120)
    x = load_slow_model(connection, seconds=4.0)
    request = convserve.client.pb.RunModelRequest(name="slow")
    convserve.client.to_tensor(x, request.input)
    future = connection.stub.RunModel.future(request, timeout=120)
    time.sleep(0.3)
    assert future.cancel()
    assert connection.health() == "SERVING"
    assert small_conv(connection).shape == (1, 1, 5)
    assert process.lines_above_warn() == []
