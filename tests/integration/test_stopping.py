"""docs/RELIABILITY.md rows 12-14: a deadline, a cancel, a lost client or the shutdown timeout
stops the computation itself within a work item, not only the call.

One server with one compute thread holds a model of forty 64 -> 64 channel 5x5 layers; on a
[1, 64, 256, 256] input (270 billion MACs) it computes for seconds. Each test stops that
computation early and checks, with generous bounds, that the server's CPU time (from
/proc/PID/stat) and the wait of a tiny call right after are a fraction of a full run's.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest

import convserve
from convserve.client import pb, to_tensor
from conftest import REPO, ServerProcess

LAYERS = 40
SHAPE = (1, 64, 256, 256)
# How long after a call starts its 16 MiB request has arrived and its computation runs.
COMPUTING = 1.5
# server/main.cc gives gRPC's Shutdown() this long once the calls have been stopped.
SHUTDOWN_GRACE_S = 1.0


def cpu_seconds(pid):
    """User + system CPU time of process `pid` so far (fields 14 and 15 of /proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tiny_conv(connection):
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 9)
    return convserve.conv1d(x, np.ones((1, 1, 5), np.float32), client=connection, timeout=60)


def run_request():
    request = pb.RunModelRequest(name="long")
    to_tensor(np.random.default_rng(1).uniform(-1, 1, SHAPE).astype(np.float32), request.input)
    return request


class LongModel:
    """A server holding the long model, and how long (CPU and wall) one full run takes."""

    def __init__(self, *flags, calibrate=True):
        # --small_call_macs=0: the tiny call after a stop queues behind whatever still computes.
        self.process = ServerProcess("--drain_grace_ms=0", "--small_call_macs=0", *flags,
                                     compute_threads=1)
        self.connection = convserve.Client(self.process.target, timeout=120)
        rng = np.random.default_rng(2)
        layers = []
        for _ in range(LAYERS):
            w = rng.uniform(-0.02, 0.02, (64, 64, 5, 5)).astype(np.float32)
            layers.append(convserve.ModelLayer(
                convserve.make_layer(2, SHAPE, w.shape, padding="same"), w, None))
        self.connection.load_model("long", layers)
        self.request = run_request()
        if not calibrate:
            return
        cpu = cpu_seconds(self.process.process.pid)
        start = time.monotonic()
        self.connection.stub.RunModel(self.request, timeout=300)
        self.full_wall = time.monotonic() - start
        self.full_cpu = cpu_seconds(self.process.process.pid) - cpu

    def close(self):
        self.connection.close()
        try:
            return self.process.stop()
        finally:
            self.process.cleanup()


@pytest.fixture(scope="module")
def long_model():
    model = LongModel()
    try:
        # Below a second the comparisons below would measure noise.
        assert model.full_cpu > 1.5, "a full run took only %.2f CPU s" % model.full_cpu
        yield model
    finally:
        assert model.close() == 0


def assert_stopped_early(model, cpu_before, what):
    """A tiny call right away finishes, and the server's CPU time since `cpu_before` is, long
    before a full run's (both bounds: half of the full run's)."""
    start = time.monotonic()
    assert tiny_conv(model.connection).shape == (1, 1, 5)
    waited = time.monotonic() - start
    spent = cpu_seconds(model.process.process.pid) - cpu_before
    assert waited < model.full_wall / 2, (
        "after %s a tiny call waited %.2f s (a full run: %.2f s)" % (what, waited, model.full_wall))
    assert spent < model.full_cpu / 2, (
        "after %s the server spent %.2f CPU s (a full run: %.2f)" % (what, spent, model.full_cpu))


def test_row13_deadline_stops_the_computation(long_model):
    cpu = cpu_seconds(long_model.process.process.pid)
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as error:
        long_model.connection.stub.RunModel(long_model.request, timeout=1.0)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - start < long_model.full_wall / 2
    assert_stopped_early(long_model, cpu, "a 1 s deadline")
    # The server says why it stopped, at WARN (the caller's deadline, not a fault).
    deadline = time.monotonic() + 10
    while "DEADLINE_EXCEEDED: the call's deadline passed" not in long_model.process.log():
        assert time.monotonic() < deadline, long_model.process.log()
        time.sleep(0.05)


def test_row14_cancel_stops_the_computation(long_model):
    cpu = cpu_seconds(long_model.process.process.pid)
    future = long_model.connection.stub.RunModel.future(long_model.request, timeout=120)
    time.sleep(COMPUTING)
    assert future.cancel()
    assert_stopped_early(long_model, cpu, "a cancel")


def test_row14_killed_client_stops_the_computation(long_model, tmp_path):
    # A client process that dies mid-call: its connection breaks, gRPC cancels the call.
    script = tmp_path / "client.py"
    script.write_text(
        "import sys\n"
        "sys.path.insert(0, %r)\n"
        "sys.path.insert(0, %r)\n"
        "import test_stopping, convserve\n"
        "connection = convserve.Client(%r, timeout=120)\n"
        "print('calling', flush=True)\n"
        "connection.stub.RunModel(test_stopping.run_request(), timeout=120)\n"
        % (str(REPO / "client" / "python"), os.path.dirname(__file__), long_model.process.target))
    client = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "calling"
        time.sleep(COMPUTING)
        client.send_signal(signal.SIGKILL)
        client.wait()
        # Counted from the kill: the second the call computed before it is not the point.
        cpu = cpu_seconds(long_model.process.process.pid)
        assert_stopped_early(long_model, cpu, "the client was killed")
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()


def test_row12_shutdown_timeout_stops_the_computation(long_model):
    # The same model and threads as long_model's server, whose full run is the yardstick.
    model = LongModel("--shutdown_timeout_s=1", calibrate=False)
    try:
        outcome = {}

        def in_flight():
            try:
                model.connection.stub.RunModel(model.request, timeout=120)
                outcome["code"] = grpc.StatusCode.OK
            except grpc.RpcError as error:
                outcome["code"] = error.code()
                outcome["details"] = error.details()

        call = threading.Thread(target=in_flight)
        call.start()
        time.sleep(COMPUTING)
        start = time.monotonic()
        model.process.signal(signal.SIGTERM)
        model.process.process.wait(timeout=120)
        exited = time.monotonic() - start
        call.join(timeout=60)
        assert model.process.process.returncode == 0, model.process.log()
        # --shutdown_timeout_s=1, then the computation stops within a work item, then gRPC's
        # Shutdown gets its fixed second (server/main.cc) to send what is in flight; without
        # stopping, the exit also waits for the rest of the run (full run - COMPUTING).
        left = long_model.full_wall - COMPUTING
        assert exited < 1.0 + SHUTDOWN_GRACE_S + left / 2, (
            "exited %.2f s after SIGTERM (the rest of a full run: %.2f s)" % (exited, left))
        assert outcome.get("code") == grpc.StatusCode.UNAVAILABLE, outcome
        assert "--shutdown_timeout_s" in outcome["details"]
    finally:
        model.close()
