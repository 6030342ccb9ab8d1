"""convserve_load end to end: the tool against the real server, once per report format.

Each test starts convserve_server on a free loopback port (the integration suites' ServerProcess,
tests/integration/conftest.py) and runs build/bench/load/convserve_load against it for a couple
of seconds: health in a closed loop (text), conv of a bench/layers.json layer in an open loop
(json, the measured rate checked against the requested one), run_model of a loaded model (csv)
and a weighted mix (html). Then bad flags (exit 2 naming the flag), TLS with a bearer token,
several targets and connections, a stalled server whose queueing must show in open-loop
latencies (no coordinated omission), and a killed one whose failures are counted by code.
"""

import csv
import io
import json
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "client" / "python"))

import convserve  # noqa: E402
from conftest import BUILD_DIR, ServerProcess  # noqa: E402

LOAD = BUILD_DIR / "bench" / "load" / "convserve_load"
# A light layer of bench/layers.json: 0.9 MB in (weights included), 0.8 MB out, 14 MMAC.
LAYER = "resnext.g32"


def run_load(*flags, timeout=120):
    if not LOAD.exists():
        raise RuntimeError("%s not found: build the tree first" % LOAD)
    return subprocess.run([str(LOAD), *flags], capture_output=True, text=True, timeout=timeout)


def ok(result):
    assert result.returncode == 0, "exit %d\nstdout:\n%s\nstderr:\n%s" % (
        result.returncode, result.stdout, result.stderr)
    return result


@pytest.fixture(scope="module")
def server():
    process = ServerProcess("--drain_grace_ms=0")
    try:
        with convserve.Client(process.target, timeout=60) as client:
            rng = np.random.default_rng(3)
            w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
            b = rng.standard_normal(16).astype(np.float32)
            layer = convserve.make_layer(2, (1, 8, 32, 32), w.shape, bias=True, padding="same",
                                         activation="relu")
            client.load_model("block", [convserve.ModelLayer(layer, w, b)])
        yield process
    finally:
        process.stop()
        process.cleanup()


def test_health_closed_loop_text(server, tmp_path):
    output = tmp_path / "report.txt"
    result = ok(run_load("--target=" + server.target, "--call=health", "--concurrency=1,4",
                         "--duration=1.5", "--warmup=1.2", "--format=text",
                         "--output=%s" % output))
    text = output.read_text()
    assert result.stdout == ""
    for level in ("concurrency 1", "concurrency 4"):
        assert "== closed loop, %s: 1.50 s measured after 1.2 s warm-up ==" % level in text
    calls = [(int(a), int(b), int(c))
             for a, b, c in re.findall(r"calls (\d+), ok (\d+), errors (\d+);", text)]
    assert len(calls) == 2
    for total, succeeded, errors in calls:
        assert total > 0 and succeeded == total and errors == 0
    assert "== summary ==" in text
    # Progress once a second on stderr, during warm-up and the window.
    assert "concurrency 4, warm-up" in result.stderr
    assert re.search(r"concurrency 1, \d\.\d/1\.5 s: \d+ calls/s", result.stderr), result.stderr


def test_conv_open_loop_json_keeps_the_requested_rate(server, tmp_path):
    output = tmp_path / "report.json"
    rate, duration = 20, 4
    ok(run_load("--target=" + server.target, "--call=conv", "--layer=" + LAYER,
                "--rps=%d" % rate, "--arrival=constant", "--duration=%d" % duration,
                "--warmup=1", "--format=json", "--output=%s" % output))
    report = json.loads(output.read_text())
    assert report["errors"] == 0
    [run] = report["runs"]
    assert run["mode"] == "open" and run["requested_rps"] == rate
    # A constant schedule puts exactly rate * duration calls in the window.
    assert abs(run["scheduled"] - rate * duration) <= 1
    assert run["total"]["calls"] == run["scheduled"]
    assert run["total"]["errors"] == 0
    assert abs(run["throughput_per_s"] - rate) <= 0.1 * rate, run
    assert abs(run["offered_rps"] - rate) <= 0.1 * rate, run
    [conv] = run["by_call"]
    assert conv["name"] == "conv"
    latency, compute = conv["latency_us"], conv["server_compute_us"]
    assert 0 < compute["p50"] <= latency["p50"]
    assert latency["min"] <= latency["p50"] <= latency["p99"] <= latency["max"]
    assert sum(bucket[2] for bucket in run["total"]["latency_histogram_ns"]) == conv["ok"]
    assert LAYER in report["calls"]["conv"]
    assert len(run["timeline"]) >= duration


def test_run_model_requests_csv(server, tmp_path):
    output = tmp_path / "report.csv"
    ok(run_load("--target=" + server.target, "--call=run_model", "--model=block",
                "--input_shape=1,8,32,32", "--concurrency=2", "--requests=200", "--warmup=0.2",
                "--format=csv", "--output=%s" % output, "--noprogress"))
    rows = list(csv.DictReader(io.StringIO(output.read_text())))
    assert [row["call"] for row in rows] == ["all", "run_model"]
    for row in rows:
        assert row["mode"] == "closed" and row["concurrency"] == "2"
        assert int(row["calls"]) == 200 and int(row["ok"]) == 200 and int(row["errors"]) == 0
        assert row["errors_by_code"] == ""
        assert float(row["compute_p50_us"]) > 0
        assert float(row["latency_p50_us"]) <= float(row["latency_p99_us"])


def test_mix_poisson_html(server, tmp_path):
    output = tmp_path / "report.html"
    ok(run_load("--target=" + server.target, "--mix=health:2,conv:1,run_model:1",
                "--layer=" + LAYER, "--model=block", "--input_shape=1,8,32,32", "--rps=40",
                "--arrival=poisson", "--duration=2", "--warmup=0.5", "--format=html",
                "--output=%s" % output, "--connections=2"))
    html = output.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") == 3
    for name in ("health", "conv", "run_model"):
        assert "<td>%s</td>" % name in html
    for external in ("http:", "https:", "<script", "src=", "href=", "url("):
        assert external not in html


@pytest.mark.parametrize("flags, flag, received", [
    (["--rps=fast"], "--rps", "fast"),
    (["--concurrency=0"], "--concurrency", "0"),
    (["--format=pdf"], "--format", "pdf"),
    (["--mix=health:0"], "--mix", "health:0"),
    (["--call=train"], "--call", "train"),
    (["--rps=5", "--arrival=uniform"], "--arrival", "uniform"),
    (["--arrival=poisson"], "--arrival", "poisson"),
    (["--rps=5", "--concurrency=2"], "--rps", "5"),
    (["--duration=1", "--requests=5"], "--requests", "5"),
    (["--duration=-1"], "--duration", "-1"),
    (["--deadline_ms=soon"], "--deadline_ms", "soon"),
    (["--connections=0"], "--connections", "0"),
    (["--lb_policy=random"], "--lb_policy", "random"),
    (["--progress=maybe"], "--progress", "maybe"),
    (["--bogus=1"], "--bogus", "--bogus=1"),
    (["--call=conv", "--layer=no.such.layer"], "--layer", "no.such.layer"),
    (["--call=conv", "--layer=" + LAYER, "--layers_file=/nonexistent.json"], "--layers_file",
     "/nonexistent.json"),
    (["--call=conv", "--layer=" + LAYER, "--stride=2"], "--stride", "2"),
    (["--call=conv", "--input_shape=1,2,x", "--weight_shape=1,2,3"], "--input_shape", "1,2,x"),
    (["--call=conv", "--input_shape=1,2,9", "--weight_shape=1,2,3", "--padding=sideways"],
     "--padding", "sideways"),
    (["--call=run_model", "--input_shape=1,8,32,32"], "--model", ""),
    (["--model=block"], "--model", "block"),
    (["--token_file=/nonexistent-token"], "--token_file", "/nonexistent-token"),
    (["--tls_ca_file=/nonexistent-ca.pem"], "--tls_ca_file", "/nonexistent-ca.pem"),
    (["--tls_cert_file=/x.pem"], "--tls_key_file", ""),
    (["--output=/nonexistent-dir/report.txt"], "--output", "/nonexistent-dir/report.txt"),
    (["--target=127.0.0.1:1,127.0.0.1:banana"], "--target", "127.0.0.1:1,127.0.0.1:banana"),
    (["extra"], "argument", "extra"),
])
def test_bad_flags_exit_2_naming_flag_and_value(flags, flag, received):
    # No server: every one of these is refused before the first call.
    result = run_load("--target=127.0.0.1:1", *flags, timeout=30)
    assert result.returncode == 2, (result.returncode, result.stderr)
    message = result.stderr.strip()
    assert message.startswith("convserve_load: "), message
    assert flag in message and "expected" in message, message
    assert "'%s'" % received in message, message


def test_unreachable_server_exits_1_naming_the_call():
    result = run_load("--target=127.0.0.1:1", "--deadline_ms=2000", timeout=30)
    assert result.returncode == 1
    assert "the first health call" in result.stderr and "UNAVAILABLE" in result.stderr


def test_tls_and_token(tmp_path):
    from test_tls import Pki  # the TLS suite's throw-away PKI (openssl CLI)
    pki = Pki(tmp_path)
    token = tmp_path / "token"
    token.write_text("load-test-token\n")
    process = ServerProcess(*pki.server_flags(mutual=True), "--auth_token_file=%s" % token,
                            "--drain_grace_ms=0")
    try:
        # The address, not 'localhost' (a bare machine may not resolve it);
        # the certificate's name is checked through --tls_server_name.
        tls = ["--target=127.0.0.1:%d" % process.port, "--tls_server_name=localhost",
               "--tls_ca_file=" + pki.path("ca.crt"),
               "--tls_cert_file=" + pki.path("client.crt"),
               "--tls_key_file=" + pki.path("client.key")]
        common = ["--call=conv", "--input_shape=1,1,9", "--weight_shape=1,1,5",
                  "--padding=same", "--requests=50", "--warmup=0", "--format=json"]
        report = json.loads(ok(run_load(*tls, *common, "--token_file=%s" % token)).stdout)
        assert report["runs"][0]["total"]["ok"] == 50
        assert "TLS" in report["settings"]["security"]
        assert "bearer token" in report["settings"]["security"]
        # Health needs no token; conv does, and says so before any load.
        refused = run_load(*tls, *common)
        assert refused.returncode == 1
        assert "UNAUTHENTICATED" in refused.stderr
        # Plaintext against the TLS port fails the handshake.
        plain = run_load("--target=127.0.0.1:%d" % process.port, "--deadline_ms=3000")
        assert plain.returncode == 1 and "UNAVAILABLE" in plain.stderr
    finally:
        process.stop()
        process.cleanup()


def test_several_targets_and_connections_reach_every_server():
    first = ServerProcess("--drain_grace_ms=0", "--log_level=debug")
    second = ServerProcess("--drain_grace_ms=0", "--log_level=debug")
    try:
        # A host name among the targets where the machine resolves one (a bare
        # chroot has no /etc/hosts).
        try:
            socket.getaddrinfo("localhost", None)
            host = "localhost"
        except socket.gaierror:
            host = "127.0.0.1"
        targets = "127.0.0.1:%d,%s:%d" % (first.port, host, second.port)
        report = json.loads(ok(run_load(
            "--target=" + targets, "--lb_policy=round_robin", "--connections=3", "--call=conv",
            "--input_shape=1,2,16", "--weight_shape=4,2,3", "--with_bias", "--requests=120",
            "--warmup=0", "--concurrency=4", "--format=json")).stdout)
        assert report["runs"][0]["total"]["ok"] == 120
        assert report["settings"]["target"].startswith(targets + " (ipv4:127.0.0.1:")
        assert report["settings"]["connections"] == "3, lb_policy round_robin"
        # Both replicas answered a fair share (round robin over 2 addresses, 3 channels).
        calls = [first.calls_ok("Conv"), second.calls_ok("Conv")]
        assert sum(calls) >= 120 and min(calls) >= 20, calls
    finally:
        for process in (first, second):
            process.stop()
            process.cleanup()


def test_a_stalled_server_shows_in_open_loop_latency():
    """SIGSTOP the server for 1 s of a 3 s open loop at 50 calls/s, with at most 2 calls in
    flight: the sender has to wait, and the calls due meanwhile go out late. Latency counts
    from the schedule, so they report the stall; a tool timing from the actual send would see
    fast calls only."""
    process = ServerProcess("--drain_grace_ms=0")
    try:
        def stall():
            time.sleep(1.5)
            process.signal(signal.SIGSTOP)
            time.sleep(1.0)
            process.signal(signal.SIGCONT)

        staller = threading.Thread(target=stall)
        staller.start()
        result = ok(run_load("--target=" + process.target, "--call=health", "--rps=50",
                             "--duration=3", "--warmup=0.5", "--max_in_flight=2",
                             "--format=json", "--noprogress"))
        staller.join()
        [run] = json.loads(result.stdout)["runs"]
        assert abs(run["scheduled"] - 150) <= 1
        assert run["total"]["calls"] == run["scheduled"] and run["total"]["errors"] == 0
        latency = run["total"]["latency_us"]
        # A third of the calls were due in the stall: they waited up to 1 s, half of them
        # more than 0.5 s.
        assert latency["max"] >= 700e3, latency
        assert latency["p90"] >= 300e3, latency
        assert run["send_lag_us"]["max"] >= 500e3, run["send_lag_us"]
        # Every call due in the window was still sent, late, and counted.
        assert run["total"]["ok"] == run["scheduled"]
    finally:
        process.signal(signal.SIGCONT)
        process.stop()
        process.cleanup()


def test_errors_are_counted_by_code_and_exit_1():
    """The server is killed 1 s into the window: the calls after fail UNAVAILABLE, are counted
    by code (not timed), the report is still written, and the exit status is 1."""
    process = ServerProcess("--drain_grace_ms=0")
    try:
        killer = threading.Timer(1.5, process.process.kill)
        killer.start()
        result = run_load("--target=" + process.target, "--call=health", "--concurrency=2",
                          "--duration=2", "--warmup=0.5", "--deadline_ms=1000", "--format=json",
                          "--noprogress")
        killer.join()
        assert result.returncode == 1, result.stderr
        [run] = json.loads(result.stdout)["runs"]
        total = run["total"]
        assert total["ok"] > 0 and total["errors"] > 0
        assert total["errors_by_code"].get("UNAVAILABLE", 0) > 0, total["errors_by_code"]
        assert sum(total["errors_by_code"].values()) == total["errors"]
        assert total["calls"] == total["ok"] + total["errors"]
        assert total["latency_us"]["count"] == total["ok"]
        assert "calls failed" in result.stderr
    finally:
        process.stop()
        process.cleanup()


def test_interrupt_writes_the_report_so_far(server):
    process = subprocess.Popen([str(LOAD), "--target=" + server.target, "--call=health",
                                "--rps=100,200", "--duration=60", "--warmup=0.5",
                                "--format=json", "--noprogress"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    report = json.loads(stdout)
    assert "later levels not run" in report["settings"]["interrupted"]
    [run] = report["runs"]
    assert 0.5 < run["window_s"] < 10
    assert run["total"]["ok"] > 0 and run["total"]["errors"] == 0
    assert abs(run["offered_rps"] - 100) <= 10, run
