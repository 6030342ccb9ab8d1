"""docs/RELIABILITY.md rows 10 and 22-24: the memory budget covers a call from arrival to the
last byte sent, compressed requests are refused before they inflate, the queue is bounded and
models count what they really hold.

Memory is read from /proc/PID/status (VmRSS now, VmHWM the peak), with bounds far from both the
budget-respecting and the unbounded figures.
"""

import re
import socket
import struct
import time
import urllib.request

import grpc
import numpy as np
import pytest

import convserve
from convserve.client import pb, to_tensor
from conftest import server_is_sanitized
from test_metrics import metrics_port

MIB = 1 << 20

pytestmark = pytest.mark.skipif(
    server_is_sanitized(),
    reason="ASan's quarantine and shadow memory make RSS say nothing about the budget")


def memory_kib(pid, field):
    """VmRSS or VmHWM of process `pid`, in KiB."""
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for %d" % (field, pid))


def big_output_request():
    """A 64-byte Conv whose output is 64 MB: a 1x1 input padded to 4000 x 4000."""
    layer = convserve.make_layer(2, (1, 1, 1, 1), (1, 1, 1, 1), padding=[(1999, 2000)] * 2)
    request = pb.ConvRequest(layer=layer)
    to_tensor(np.ones((1, 1, 1, 1), np.float32), request.input)
    to_tensor(np.ones((1, 1, 1, 1), np.float32), request.weight)
    return request


def _frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(
        ">I", stream) + payload


def _literal_header(name, value):
    """HPACK: a literal header field without indexing, new name, no Huffman coding."""
    assert len(name) < 127 and len(value) < 127
    return bytes([0, len(name)]) + name + bytes([len(value)]) + value


def open_unread_call(port, method, message):
    """Sends one gRPC call over a raw HTTP/2 connection and never reads the reply: the client
    sends no WINDOW_UPDATE, so the server can send only the first 64 KiB of the response and
    has to hold the rest. Returns the socket (close it to end the call)."""
    connection = socket.create_connection(("127.0.0.1", port))
    headers = b"".join(_literal_header(name, value) for name, value in [
        (b":method", b"POST"), (b":scheme", b"http"),
        (b":path", b"/convserve.v1.ConvService/" + method), (b":authority", b"localhost"),
        (b"content-type", b"application/grpc"), (b"te", b"trailers")])
    body = b"\x00" + struct.pack(">I", len(message)) + message
    connection.sendall(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + _frame(4, 0, 0, b"")         # SETTINGS: the defaults
        + _frame(4, 1, 0, b"")         # SETTINGS ACK for the server's (sent with its preface)
        + _frame(1, 4, 1, headers)     # HEADERS, END_HEADERS, stream 1
        + _frame(0, 1, 1, body))       # DATA, END_STREAM
    return connection


def test_row10_slow_readers_stay_within_the_budget(start_server):
    # 20 callers that never read a 64 MB output: without the budget covering the unsent
    # output until the call is done, RSS reached 20 x 64 MB = 1.28 GB. With
    # --memory_budget_bytes=256 MiB four outputs fit; the other calls get RESOURCE_EXHAUSTED
    # and nothing more is allocated.
    budget = 256 * MIB
    process = start_server("--memory_budget_bytes=%d" % budget, "--drain_grace_ms=0",
                           "--log_level=debug", compute_threads=1)
    pid = process.process.pid
    message = big_output_request().SerializeToString()
    assert len(message) < 100
    baseline = memory_kib(pid, "VmRSS")
    sockets = []
    try:
        # One after another, each once the one before is computed (or refused): a call's
        # computation ending must not free the budget its unsent output still holds.
        for sent in range(1, 21):
            sockets.append(open_unread_call(process.port, b"Conv", message))
            deadline = time.monotonic() + 30
            while (process.calls_ok("Conv")
                   + process.log().count("failed: RESOURCE_EXHAUSTED")) < sent:
                assert time.monotonic() < deadline, (
                    "call %d was neither computed nor refused within 30 s (peak RSS %d MiB):\n%s"
                    % (sent, memory_kib(pid, "VmHWM") // 1024, process.log()))
                time.sleep(0.05)
        with convserve.Client(process.target, timeout=60) as connection:
            with pytest.raises(grpc.RpcError) as error:
                connection.stub.Conv(big_output_request(), timeout=60)
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--memory_budget_bytes=%d" % budget in error.value.details()
        grown = memory_kib(pid, "VmHWM") - baseline
        # The budget plus room for gRPC, the allocator and the process's own growth.
        assert grown < (budget + 128 * MIB) // 1024, (
            "peak RSS grew by %d MiB with a budget of %d MiB (%d calls computed)"
            % (grown // 1024, budget // MIB, process.calls_ok("Conv")))
        assert process.calls_ok("Conv") == 4, process.log()  # 4 x 64 MB fit in 256 MiB
    finally:
        for connection in sockets:
            connection.close()
    # Once the callers are gone their calls end and release their reservations.
    with convserve.Client(process.target, timeout=60) as connection:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = connection.stub.Conv(big_output_request(), timeout=60)
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                assert time.monotonic() < deadline, "the reservations were never released"
                time.sleep(0.2)
        assert list(response.output.shape) == [1, 1, 4000, 4000]


def test_row22_compressed_requests_are_refused_before_inflating(start_server):
    # 128 MiB of zeros travel gzip-compressed as about 128 KiB; a server that inflates first
    # holds all 128 MiB before it can compare them with --max_message_bytes.
    process = start_server("--max_message_bytes=%d" % (16 * MIB), "--drain_grace_ms=0")
    pid = process.process.pid
    request = pb.ConvRequest(layer=convserve.make_layer(2, (1, 1, 1, 1), (1, 1, 1, 1)))
    request.input.shape[:] = [1, 1, 8192, 4096]
    request.input.element_type = pb.ELEMENT_TYPE_FLOAT32
    request.input.data = bytes(128 * MIB)
    before = memory_kib(pid, "VmHWM")
    channel = grpc.insecure_channel(process.target, compression=grpc.Compression.Gzip)
    try:
        stub = convserve.client.pb_grpc.ConvServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.Conv(request, timeout=60)
    finally:
        channel.close()
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED, error.value
    assert "gzip" in error.value.details() and "disabled" in error.value.details()
    grown = memory_kib(pid, "VmHWM") - before
    assert grown < 32 * 1024, "peak RSS grew by %d MiB for a refused request" % (grown // 1024)
    # Uncompressed calls are served as before.
    with convserve.Client(process.target, timeout=60) as connection:
        assert connection.health() == "SERVING"
        y, _ = connection.conv(convserve.make_layer(2, (1, 1, 2, 2), (1, 1, 1, 1)),
                               np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 1, 1), np.float32))
        assert y.shape == (1, 1, 2, 2)


def slow_conv_request():
    """A Conv of 168 billion MACs (64 -> 64 channels, 25x25, 256 x 256): many seconds on one
    thread, unless cancelled (it stops within a work item then)."""
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (1, 64, 256, 256)).astype(np.float32)
    w = rng.uniform(-0.01, 0.01, (64, 64, 25, 25)).astype(np.float32)
    request = pb.ConvRequest(layer=convserve.make_layer(2, x.shape, w.shape, padding="same"))
    to_tensor(x, request.input)
    to_tensor(w, request.weight)
    return request


def big_input_request():
    """A Conv with a 15 MiB input and a 4-byte output (kernel 1, stride beyond the input)."""
    length = 15 * MIB // 4
    request = pb.ConvRequest(layer=convserve.make_layer(1, (1, 1, length), (1, 1, 1),
                                                        stride=16 * MIB))
    request.input.shape[:] = [1, 1, length]
    request.input.element_type = pb.ELEMENT_TYPE_FLOAT32
    request.input.data = bytes(4 * length)
    to_tensor(np.ones((1, 1, 1), np.float32), request.weight)
    return request


def test_row10_queued_requests_are_charged(start_server):
    # 24 calls with 60 MiB inputs and 4-byte outputs queued behind one slow call held
    # 1.51 GB: their requests were never charged. Here, at a quarter of the scale: 24 calls
    # of 15 MiB (30 MiB charged each: wire bytes and parsed message) behind a slow call
    # charged 78 MiB; one fits in a 128 MiB budget beside it, the others get
    # RESOURCE_EXHAUSTED as they arrive and free their bytes at once (uncharged, they held
    # 720 MiB).
    budget = 128 * MIB
    # --small_call_macs=0: these 1-MAC calls queue behind the slow one instead of running
    # beside it on the small-call lane.
    process = start_server("--memory_budget_bytes=%d" % budget, "--drain_grace_ms=0",
                           "--small_call_macs=0", compute_threads=1)
    pid = process.process.pid
    baseline = memory_kib(pid, "VmRSS")
    with convserve.Client(process.target, timeout=120) as connection:
        slow = connection.stub.Conv.future(slow_conv_request(), timeout=120)
        time.sleep(1.0)  # the slow call computes now; the others queue behind it
        request = big_input_request()
        calls = [connection.stub.Conv.future(request, timeout=120) for _ in range(24)]
        # Until every request has arrived: the refusals stop growing.
        deadline = time.monotonic() + 60
        refused, still = 0, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - still < 3.0:
            now = process.log().count("failed: RESOURCE_EXHAUSTED")
            if now != refused:
                refused, still = now, time.monotonic()
            time.sleep(0.1)
        grown = memory_kib(pid, "VmHWM") - baseline
        slow.cancel()  # the queued calls run now
        codes = []
        for call in calls:
            try:
                assert list(call.result().output.shape) == [1, 1, 1]
                codes.append("OK")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                assert "--memory_budget_bytes" in error.details()
                codes.append("RESOURCE_EXHAUSTED")
    assert "RESOURCE_EXHAUSTED" in codes, codes
    assert grown < (budget + 128 * MIB) // 1024, (
        "peak RSS grew by %d MiB with a budget of %d MiB" % (grown // 1024, budget // MIB))


def gauge(process, name):
    """A gauge's value, scraped from the server's --metrics_listen port."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port(process),
                                timeout=10) as page:
        text = page.read().decode()
    return float(re.search(r"^%s (\S+)$" % name, text, re.M).group(1))


def test_row10_queue_is_bounded(start_server):
    # --small_call_macs=0: the small calls queue behind the slow one (the small-call lane's
    # own bound is unit-tested in tests/server/compute_pool_test.cc).
    process = start_server("--max_queued_calls=2", "--drain_grace_ms=0",
                           "--metrics_listen=127.0.0.1:0", "--small_call_macs=0",
                           compute_threads=1)
    with convserve.Client(process.target, timeout=120) as connection:
        slow = connection.stub.Conv.future(slow_conv_request(), timeout=120)
        small = pb.ConvRequest(layer=convserve.make_layer(2, (1, 1, 2, 2), (1, 1, 1, 1)))
        to_tensor(np.ones((1, 1, 2, 2), np.float32), small.input)
        to_tensor(np.ones((1, 1, 1, 1), np.float32), small.weight)
        # The slow call's 27 MB take a while to arrive and decode on a busy
        # machine; small calls sent before it computes just run. Keep sending
        # them until two wait in the queue and stay there: only the slow call
        # computes that long (a moment's depth of 2 can be the slow call
        # itself waiting behind a small one).
        queued = []
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "the queue never held 2 calls:\n" + process.log()
            depth = gauge(process, "convserve_queue_depth")
            if depth == 2:
                time.sleep(0.3)
                if gauge(process, "convserve_queue_depth") == 2:
                    break
            elif depth < 2:
                queued.append(connection.stub.Conv.future(small, timeout=120))
                time.sleep(0.1)
        with pytest.raises(grpc.RpcError) as error:
            connection.stub.Conv(small, timeout=120)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max_queued_calls=2" in error.value.details()
        slow.cancel()
        for call in queued:
            assert list(call.result().output.shape) == [1, 1, 2, 2]


def tiny_layers(count):
    w = np.ones((1, 1, 1, 1), np.float32)
    return [convserve.ModelLayer(convserve.make_layer(2, (1, 1, 4, 4), w.shape), w, None)] * count


def test_row20_models_count_their_bookkeeping(start_server):
    # 1000 layers of 4 weight bytes each hold megabytes (about 3 KB per layer), not 4 KB.
    process = start_server("--max_model_bytes=%d" % MIB, "--drain_grace_ms=0")
    with convserve.Client(process.target, timeout=120) as connection:
        with pytest.raises(convserve.ConvServeError) as error:
            connection.load_model("many", tiny_layers(1000))
        assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max_model_bytes=%d" % MIB in error.value.details
        assert "per layer" in error.value.details
        assert connection.load_model("few", tiny_layers(100)).name == "few"


def test_row20_model_and_layer_counts_are_capped(start_server):
    process = start_server("--max_models=3", "--max_layers_per_model=8", "--drain_grace_ms=0")
    with convserve.Client(process.target, timeout=120) as connection:
        with pytest.raises(convserve.ConvServeError) as error:
            connection.load_model("deep", tiny_layers(9))
        assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ("the model has 9 layers, more than the server's limit of 8 layers per model "
                "(--max_layers_per_model)") in error.value.details
        for name in ("a", "b", "c"):
            connection.load_model(name, tiny_layers(8))
        with pytest.raises(convserve.ConvServeError) as error:
            connection.load_model("d", tiny_layers(1))
        assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "3 models are loaded, the server's limit (--max_models=3)" in error.value.details
        connection.load_model("a", tiny_layers(2), replace=True)  # replacing adds none
        connection.unload_model("b")
        connection.load_model("d", tiny_layers(1))
        assert [model.name for model in connection.list_models()] == ["a", "c", "d"]


def test_row20_millions_of_layers_are_refused_before_parsing(start_server):
    # A 56 MB LoadModel of two million 1x1 layers parsed, decoded and packed into 2.8 GB of
    # RSS. Its layers are counted on the wire: refused before the message is parsed.
    process = start_server("--drain_grace_ms=0")
    pid = process.process.pid
    w = np.ones((1, 1, 1, 1), np.float32)
    model_layer = pb.ModelLayer(layer=convserve.make_layer(2, (1, 1, 4, 4), w.shape))
    to_tensor(w, model_layer.weight)
    one_layer = pb.LoadModelRequest(layers=[model_layer]).SerializeToString()
    layers = 2_000_000
    message = pb.LoadModelRequest(name="deep").SerializeToString() + one_layer * layers
    assert len(message) > 40 * MIB
    before = memory_kib(pid, "VmHWM")
    with grpc.insecure_channel(process.target, options=[
            ("grpc.max_send_message_length", -1)]) as channel:
        load = channel.unary_unary("/convserve.v1.ConvService/LoadModel")  # bytes as they are
        with pytest.raises(grpc.RpcError) as error:
            load(message, timeout=120)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.value
    assert ("the model has %d layers, more than the server's limit of 1024 layers per model "
            "(--max_layers_per_model)" % layers) in error.value.details()
    grown = memory_kib(pid, "VmHWM") - before
    # The wire bytes, once or twice over (gRPC's receive buffers), not the parsed layers.
    assert grown < 4 * len(message) // 1024, (
        "peak RSS grew by %d MiB for a %d MiB request" % (grown // 1024, len(message) // MIB))
