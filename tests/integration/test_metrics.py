"""--metrics_listen end to end: the real server's GET /metrics, its counts, promtool, bad HTTP.

The server is started with --metrics_listen=127.0.0.1:0 and the port it bound
is read from its start-up line ("metrics: serving GET /metrics on HOST:PORT").
Counts are checked as differences between two scrapes, so the tests of this
module may run in any order against the one server.
"""

import http.client
import re
import shutil
import socket
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest

import convserve
from convserve.client import pb, to_tensor
from conftest import SERVER_BINARY, ServerProcess

BUDGET_BYTES = 123456789
METRICS_LINE = re.compile(r"metrics: serving GET /metrics on (\S+):(\d+) \(--metrics_listen\)")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def metrics_port(process):
    match = METRICS_LINE.search(process.log())
    assert match, "no metrics start-up line in the log:\n" + process.log()
    return int(match.group(2))


@pytest.fixture(scope="module")
def server():
    process = ServerProcess("--drain_grace_ms=0", "--metrics_listen=127.0.0.1:0",
                            "--memory_budget_bytes=%d" % BUDGET_BYTES)
    try:
        process.metrics_port = metrics_port(process)
        yield process
        assert process.stop() == 0, process.log()
        assert process.lines_above_warn() == [], process.log()
    finally:
        process.cleanup()


@pytest.fixture(scope="module")
def client(server):
    with convserve.Client(server.target, timeout=120) as connection:
        yield connection


def http_request(port, method="GET", path="/metrics", body=None):
    """(status, headers dict, body text) of one HTTP request to the metrics port."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def scrape(server):
    status, headers, text = http_request(server.metrics_port)
    assert status == 200, text
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
    return text


def unescape(value):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse(text):
    """{(name, ((label, value), ...sorted)): float} of every sample line; TYPE lines checked."""
    samples = {}
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, "TYPE twice for " + name
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        match = SAMPLE.match(line)
        assert match, "not a sample line: %r" % line
        name, labels_text, value = match.groups()
        labels = tuple(sorted((k, unescape(v)) for k, v in LABEL.findall(labels_text or "")))
        key = (name, labels)
        assert key not in samples, "sample twice: %r" % line
        samples[key] = float(value)
    return samples, types


def value(samples, name, **labels):
    """The sample's value; 0 when absent (a counter not yet incremented)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def good_request(seed=0):
    rng = np.random.default_rng(seed)
    layer = convserve.make_layer(2, (1, 2, 8, 8), (3, 2, 3, 3), bias=True)
    request = pb.ConvRequest(layer=layer)
    to_tensor(rng.standard_normal((1, 2, 8, 8)), request.input)
    to_tensor(rng.standard_normal((3, 2, 3, 3)), request.weight)
    to_tensor(rng.standard_normal(3), request.bias)
    return request


def test_calls_move_the_counts_exactly(server, client):
    before, _ = parse(scrape(server))
    good = [good_request(1), good_request(2)]
    responses = [client.stub.Conv(request, timeout=60) for request in good]
    bad = good_request(3)
    bad.input.shape[:] = [1, 2, 8]  # 3 dims for a 2-D layer
    with pytest.raises(grpc.RpcError) as error:
        client.stub.Conv(bad, timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert client.health() == "SERVING"
    info = client.server_info()
    after, types = parse(scrape(server))

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert types["convserve_requests_total"] == "counter"
    assert delta("convserve_requests_total", method="Conv", code="OK") == 2
    assert delta("convserve_requests_total", method="Conv", code="INVALID_ARGUMENT") == 1
    assert delta("convserve_requests_total", method="GetServerInfo", code="OK") == 1
    # Health is gRPC's own service, not a ConvService call.
    assert not [key for key in after if ("method", "Check") in key[1]
                or ("method", "Health") in key[1]]
    assert delta("convserve_request_duration_seconds_count", method="Conv") == 3
    # The refused Conv never reached the compute pool.
    assert delta("convserve_compute_duration_seconds_count", method="Conv") == 2
    assert delta("convserve_queue_wait_seconds_count", method="Conv") == 2
    assert delta("convserve_compute_duration_seconds_sum", method="Conv") > 0
    # Bytes: the serialized messages, exactly.
    sent = sum(request.ByteSize() for request in good) + bad.ByteSize()
    received = sum(response.ByteSize() for response in responses)
    assert delta("convserve_request_bytes_total", method="Conv", direction="in") == sent
    assert delta("convserve_request_bytes_total", method="Conv", direction="out") == received
    assert delta("convserve_request_bytes_total", method="GetServerInfo",
                 direction="out") == info.ByteSize()

    # Gauges: nothing in flight or queued once the calls have returned.
    assert value(after, "convserve_inflight_requests") == 0
    assert value(after, "convserve_queue_depth") == 0
    assert value(after, "convserve_compute_threads") == info.compute_threads
    assert value(after, "convserve_memory_budget_bytes", state="limit") == BUDGET_BYTES
    assert 0 <= value(after, "convserve_memory_budget_bytes", state="reserved") <= BUDGET_BYTES
    build = [labels for (name, labels), v in after.items()
             if name == "convserve_build_info" and v == 1]
    assert build == [tuple(sorted({"version": info.version, "commit": info.git_commit,
                                   "isa": info.kernel_tiers[0]}.items()))]
    for name in ("process_resident_memory_bytes", "process_open_fds",
                 "process_start_time_seconds", "process_cpu_seconds_total"):
        assert value(after, name) > 0, name


def test_histograms_are_consistent(server, client):
    client.stub.Conv(good_request(4), timeout=60)
    samples, types = parse(scrape(server))
    histograms = [name for name, kind in types.items() if kind == "histogram"]
    assert set(histograms) >= {"convserve_request_duration_seconds",
                               "convserve_compute_duration_seconds"}
    for name in histograms:
        series = {}
        for (sample, labels), v in samples.items():
            if sample == name + "_bucket":
                le = dict(labels)["le"]
                rest = tuple(kv for kv in labels if kv[0] != "le")
                series.setdefault(rest, []).append((float(le), v))
        assert series, name
        for rest, buckets in series.items():
            buckets.sort()
            counts = [count for _, count in buckets]
            assert counts == sorted(counts), (name, rest, buckets)  # cumulative
            assert buckets[-1][0] == float("inf")
            assert buckets[0][0] == 5e-05 and buckets[-2][0] == 30
            assert counts[-1] == samples[(name + "_count", rest)]
            assert (name + "_sum", rest) in samples


def test_models_gauges(server, client):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    layer = convserve.make_layer(2, (1, 3, 8, 8), w.shape)
    before, _ = parse(scrape(server))
    info = client.load_model("metrics-net", [convserve.ModelLayer(layer, w, None)])
    loaded, _ = parse(scrape(server))
    assert value(loaded, "convserve_models_loaded") == value(before, "convserve_models_loaded") + 1
    assert (value(loaded, "convserve_model_bytes") - value(before, "convserve_model_bytes")
            == info.weight_bytes > 0)
    client.unload_model("metrics-net")
    unloaded, _ = parse(scrape(server))
    assert value(unloaded, "convserve_models_loaded") == value(before, "convserve_models_loaded")
    assert value(unloaded, "convserve_model_bytes") == value(before, "convserve_model_bytes")


def test_promtool_accepts_the_exposition(server, client):
    client.stub.Conv(good_request(6), timeout=60)
    bad = good_request(7)
    bad.weight.shape[:] = [3, 2, 3]
    with pytest.raises(grpc.RpcError):
        client.stub.Conv(bad, timeout=60)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus): the exposition "
                    "is not checked by Prometheus' own linter")
    text = scrape(server)
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                            capture_output=True, timeout=60)
    assert result.returncode == 0, ("promtool check metrics failed (exit %d):\n%s%s"
                                    % (result.returncode, result.stdout.decode(),
                                       result.stderr.decode()))


def test_head_other_paths_and_methods(server):
    status, headers, body = http_request(server.metrics_port, "HEAD")
    assert status == 200 and body == "" and int(headers["Content-Length"]) > 0
    for path in ("/", "/metric", "/metrics/x", "/debug/pprof"):
        status, _, body = http_request(server.metrics_port, path=path)
        assert status == 404, path
        assert "only GET /metrics" in body
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        status, headers, _ = http_request(server.metrics_port, method, body=b"x")
        assert status == 405, method
        assert headers["Allow"] == "GET, HEAD"


def raw_exchange(port, data, hold_open=False):
    """Sends `data`; returns what the server answers before it closes (30 s at most)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(data)
        except OSError:
            return b"<closed while sending>"
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def assert_grpc_serves(client):
    response = client.stub.Conv(good_request(8), timeout=60)
    assert list(response.output.shape) == [1, 3, 6, 6]
    assert client.health() == "SERVING"


def test_bad_http_does_not_hurt_the_server(server, client):
    port = server.metrics_port
    assert raw_exchange(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256))
                        + b"\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert b"200 OK" not in raw_exchange(port, b"GET /metrics HTTP/1.1\r\nX-Big: "
                                         + b"a" * (4 << 20) + b"\r\n\r\n")
    assert b"200 OK" not in raw_exchange(port, b"GET /metrics HTTP/1.1\r\n"
                                         + b"X-Many: header\r\n" * 50000 + b"\r\n")
    assert raw_exchange(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n"
                        ).startswith(b"HTTP/1.1 405")

    # Slowloris: connections that start a request and trickle header bytes
    # without ever finishing it, alongside scrapes and gRPC calls.
    stop = threading.Event()
    cut = []

    def slow_client():
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            for i in range(3000):  # ~30 s at most
                if stop.is_set():
                    return
                try:
                    sock.sendall(b"X-Slow-%d: y\r\n" % i)
                except OSError:
                    cut.append(i)
                    return
                time.sleep(0.01)

    slow = [threading.Thread(target=slow_client) for _ in range(2)]
    for thread in slow:
        thread.start()
    try:
        assert_grpc_serves(client)
        for thread in slow:
            thread.join(timeout=60)
        # The server cut both trickling requests (its whole request must
        # arrive within seconds of the connection).
        assert len(cut) == 2, "the metrics port kept a trickling request open"
    finally:
        stop.set()
        for thread in slow:
            thread.join()

    assert server.process.poll() is None, server.log()
    assert_grpc_serves(client)
    samples, _ = parse(scrape(server))
    assert value(samples, "convserve_inflight_requests") == 0


def test_cannot_listen_exits_2_naming_the_flag():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        address = "127.0.0.1:%d" % taken.getsockname()[1]
        for flag, expected in (("--metrics_listen=" + address, "cannot listen on '%s'" % address),
                               ("--metrics_listen=9090", "expected HOST:PORT"),
                               ("--metrics_listen=localhost:http", "expected HOST:PORT")):
            result = subprocess.run([str(SERVER_BINARY), "--listen=127.0.0.1:0", flag],
                                    capture_output=True, timeout=60)
            output = (result.stdout + result.stderr).decode()
            assert result.returncode == 2, (flag, output)
            assert "--metrics_listen: " + expected in output, (flag, output)


def test_environment_variable_and_clean_stop(start_server):
    process = start_server("--drain_grace_ms=0",
                           env={"CONVSERVE_METRICS_LISTEN": "127.0.0.1:0"})
    assert "metrics_listen=127.0.0.1:0 (CONVSERVE_METRICS_LISTEN)" in process.log()
    port = metrics_port(process)
    status, _, text = http_request(port)
    assert status == 200 and "convserve_inflight_requests 0" in text
    # A scrape connection left open does not hold the stop up.
    idle = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        assert process.stop() == 0, process.log()
        assert "stopped" in process.log()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        idle.close()
