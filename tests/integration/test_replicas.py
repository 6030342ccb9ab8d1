"""Several replicas of the server on 127.0.0.1 ("Deploying", README "Replicas").

- Client-side balancing: both clients spread calls round-robin over a target
  naming several replicas (ipv4:, and dns: through a local DNS server),
  within +-10 % per replica; pick_first sends them all to one.
- nginx (deploy/nginx/convserve.conf, run with the test's ports): Conv,
  health, large messages and models through the proxy.
- A replica killed (SIGKILL) mid-run: without retries the calls in flight on
  it fail UNAVAILABLE and later calls succeed; with the client's retry policy
  no call fails.

Calls per replica are counted from the server side: each replica runs with
--log_level=debug, which logs one line per successful call
(ServerProcess.calls_ok).
"""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import grpc
import numpy as np
import pytest

import convserve
from conftest import CONVCTL, REPO, ServerProcess
from local_dns import LocalDns

REPLICAS = 3
SPREAD_CALLS = 3000
NGINX_CONF = REPO / "deploy" / "nginx" / "convserve.conf"

X9 = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 9)
W5 = np.ones((1, 1, 5), np.float32)
LAYER9 = convserve.make_layer(1, X9.shape, W5.shape)  # valid padding: [15, 20, 25, 30, 35]


def start_replicas(count=REPLICAS, host="127.0.0.1", **kwargs):
    """`count` debug-logging servers; on one port of 127.0.0.1, .2, .3 with
    host="loopbacks" (for a DNS name with one address per replica)."""
    replicas = []
    try:
        for index in range(count):
            if host == "loopbacks":
                port = replicas[0].port if replicas else 0
                replicas.append(ServerProcess("--log_level=debug", "--drain_grace_ms=0",
                                              host="127.0.0.%d" % (index + 1), port=port,
                                              **kwargs))
            else:
                replicas.append(ServerProcess("--log_level=debug", "--drain_grace_ms=0",
                                              host=host, **kwargs))
    except BaseException:
        stop_replicas(replicas)
        raise
    return replicas


def stop_replicas(replicas):
    for replica in replicas:
        try:
            replica.stop()
        finally:
            replica.cleanup()


@pytest.fixture
def replicas():
    started = start_replicas()
    yield started
    stop_replicas(started)


def ipv4_target(replicas):
    return "ipv4:" + ",".join(replica.target for replica in replicas)


def served(replicas, method):
    return [replica.calls_ok(method) for replica in replicas]


def served_once_all_connected(replicas, method):
    """Per replica, the `method` calls it answered after every replica had
    answered one (from the timestamps of the debug lines): the spread once
    every connection is ready, for clients that cannot wait for that."""
    stamps = [[line[1:24] for line in replica.log().splitlines()
               if "[debug] %s from " % method in line and line.endswith(" ok")]
              for replica in replicas]
    assert all(stamps), "not every replica answered: %s" % [len(s) for s in stamps]
    all_connected = max(replica_stamps[0] for replica_stamps in stamps)
    return [sum(1 for stamp in replica_stamps if stamp > all_connected)
            for replica_stamps in stamps]


def assert_spread(counts, calls):
    """Each replica served calls / len(counts) calls within +-10 %."""
    assert sum(counts) == calls, counts
    share = calls / len(counts)
    for count in counts:
        assert abs(count - share) <= 0.1 * share, \
            "calls per replica %s: not within 10 %% of %d each" % (counts, share)


def small_conv(client):
    y, _ = client.conv(LAYER9, X9, W5)
    assert y.ravel().tolist() == [15, 20, 25, 30, 35]


def warm_up(client, replicas, method="Conv", timeout=3):
    """Calls small_conv until every replica has answered one (at most
    `timeout` s), so that the counted calls start with every connection ready
    (round_robin picks only among ready replicas). Returns the counts so far."""
    deadline = time.monotonic() + timeout
    counts = served(replicas, method)
    while not all(counts) and time.monotonic() < deadline:
        small_conv(client)
        counts = served(replicas, method)
    return counts


# --- Client-side balancing.

def test_python_client_round_robin_over_ipv4_target(replicas):
    with convserve.Client(ipv4_target(replicas), timeout=30) as client:
        before = warm_up(client, replicas)
        for _ in range(SPREAD_CALLS):
            small_conv(client)
    counts = [after - earlier for after, earlier in zip(served(replicas, "Conv"), before)]
    print("Python client, round_robin, ipv4: Conv calls per replica:", counts)
    assert_spread(counts, SPREAD_CALLS)


def test_python_client_pick_first_uses_one_replica(replicas):
    # The same count with gRPC's default policy: the observable tells them apart.
    calls = 300
    with convserve.Client(ipv4_target(replicas), timeout=30, lb_policy="pick_first") as client:
        for _ in range(calls):
            small_conv(client)
    counts = served(replicas, "Conv")
    print("Python client, pick_first: Conv calls per replica:", counts)
    assert sorted(counts) == [0, 0, calls]


def test_convctl_round_robin_over_ipv4_target(replicas):
    result = subprocess.run(
        [str(CONVCTL), "--target=" + ipv4_target(replicas), "--repeat=%d" % SPREAD_CALLS,
         "shape", "--input_shape=1,3,32,32", "--weight_shape=8,3,3,3", "--padding=same"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "%d calls, %d ok, 0 failed" % (SPREAD_CALLS, SPREAD_CALLS) in result.stderr
    assert "[1, 8, 32, 32]" in result.stdout  # the report, printed once
    counts = served(replicas, "ValidateShape")
    # convctl cannot wait for every connection before its first call: its
    # first calls all go to the replica that connected first (a few, or over
    # a hundred on a busy machine). The spread counts the calls after that.
    steady = served_once_all_connected(replicas, "ValidateShape")
    print("convctl, round_robin, ipv4: ValidateShape calls per replica: %s, %s once every "
          "replica was connected" % (counts, steady))
    assert sum(counts) == SPREAD_CALLS
    assert sum(steady) >= 0.9 * SPREAD_CALLS, (counts, steady)
    assert_spread(steady, sum(steady))


def test_convctl_pick_first_uses_one_replica(replicas):
    result = subprocess.run(
        [str(CONVCTL), "--target=" + ipv4_target(replicas), "--lb_policy=pick_first",
         "--repeat=300", "shape", "--input_shape=1,1,9", "--weight_shape=1,1,5"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(served(replicas, "ValidateShape")) == [0, 0, 300]


def test_dns_target_with_one_address_per_replica():
    # One name, three A records (127.0.0.1, .2, .3), one replica on each, all
    # on the same port, as a DNS name for a replica set resolves in real
    # deployments. The name is served by a local DNS server named in the
    # target's authority (dns://127.0.0.1:PORT/name:port), not /etc/hosts.
    replicas = start_replicas(host="loopbacks")
    dns = LocalDns("replicas.convserve.test", ["127.0.0.%d" % (i + 1) for i in range(REPLICAS)])
    try:
        target = "dns://127.0.0.1:%d/replicas.convserve.test:%d" % (dns.port, replicas[0].port)
        calls = 600
        with convserve.Client(target, timeout=30) as client:
            before = warm_up(client, replicas)
            for _ in range(calls):
                small_conv(client)
        counts = [after - earlier for after, earlier in zip(served(replicas, "Conv"), before)]
        print("Python client, round_robin, dns (3 A records): Conv calls per replica:", counts)
        assert dns.queries >= 1
        assert_spread(counts, calls)
        result = subprocess.run(
            [str(CONVCTL), "--target=" + target, "--repeat=300", "shape",
             "--input_shape=1,1,9", "--weight_shape=1,1,5"],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert all(served(replicas, "ValidateShape")), served(replicas, "ValidateShape")
    finally:
        dns.close()
        stop_replicas(replicas)


def test_dns_localhost_target(start_server):
    # The plain form users type: dns:///localhost:PORT (one replica here:
    # localhost resolves to 127.0.0.1, and to ::1 where /etc/hosts says so,
    # where nothing listens; round_robin uses the address that connects).
    # The name must resolve on the machine (its /etc/hosts; a bare chroot has
    # none): without it there is nothing to test here, and the three-address
    # case above covers dns: with the test's own resolver.
    try:
        socket.getaddrinfo("localhost", None)
    except socket.gaierror as error:
        pytest.skip("'localhost' does not resolve on this machine: %s" % error)
    process = start_server("--drain_grace_ms=0", compute_threads=1)
    target = "dns:///localhost:%d" % process.port
    with convserve.Client(target, timeout=30) as client:
        for _ in range(20):
            small_conv(client)
        assert client.health() == "SERVING"
    result = subprocess.run([str(CONVCTL), "--target=" + target, "health"],
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout.strip()) == (0, "SERVING"), result.stderr


def test_both_clients_build_the_same_service_config():
    for lb_policy in ("round_robin", "pick_first"):
        for retries in (False, True):
            result = subprocess.run(
                [str(CONVCTL), "--lb_policy=" + lb_policy, "--retries=%s" % str(retries).lower(),
                 "service_config"], capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, result.stderr
            cpp = json.loads(result.stdout)
            python = json.loads(convserve.client.service_config(lb_policy, retries))
            assert cpp == python
            assert cpp["loadBalancingConfig"] == [{lb_policy: {}}]
            assert ("methodConfig" in cpp) == retries
    retry = json.loads(convserve.client.service_config(retries=True))["methodConfig"]
    assert len(retry) == 1
    assert sorted(name["method"] for name in retry[0]["name"]) == [
        "Conv", "RunModel", "ValidateShape"]
    assert retry[0]["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_unknown_lb_policy_is_refused():
    with pytest.raises(ValueError, match="lb_policy: expected round_robin or pick_first"):
        convserve.Client("127.0.0.1:1", lb_policy="random")
    result = subprocess.run([str(CONVCTL), "--lb_policy=random", "health"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "lb_policy: expected round_robin or pick_first, got 'random'" in result.stderr


# --- A replica dies mid-run.

# 32 -> 32 channels, 9 x 9 kernel on 32 x 32: ~85M MACs, tens of ms per call;
# the request (~460 KB) is larger than gRPC's default retry buffer (256 KiB),
# which the clients raise when retries are on.
SLOW_X = np.random.default_rng(5).uniform(-1, 1, (1, 32, 32, 32)).astype(np.float32)
SLOW_W = np.random.default_rng(6).uniform(-0.1, 0.1, (32, 32, 9, 9)).astype(np.float32)
SLOW_LAYER = convserve.make_layer(2, SLOW_X.shape, SLOW_W.shape, padding="same")
WORKERS = 6
# Replica 0 is frozen (SIGSTOP) this long before its SIGKILL: the calls sent
# to it meanwhile wait there, so that calls are surely in flight on it when it
# dies (whether one is at the very instant of a plain SIGKILL is chance).
FREEZE_S = 0.5


def kill_mid_run(replica):
    """Freezes `replica`, then kills it; returns the time of the SIGKILL."""
    replica.signal(signal.SIGSTOP)
    time.sleep(FREEZE_S)
    killed = time.monotonic()
    replica.signal(signal.SIGKILL)
    replica.process.wait(timeout=10)
    return killed


def run_through_kill(replicas, retries):
    """WORKERS threads call Conv without pause over all replicas; replica 0
    dies after 1.5 s (kill_mid_run); the run ends 2.5 s later. Returns the
    kill time and (start, end, error code or None) per call."""
    calls = []
    lock = threading.Lock()
    stop = threading.Event()
    client = convserve.Client(ipv4_target(replicas), timeout=30, retries=retries)

    def work():
        while not stop.is_set():
            start = time.monotonic()
            code = None
            try:
                y, _ = client.conv(SLOW_LAYER, SLOW_X, SLOW_W)
                assert y.shape == (1, 32, 32, 32)
            except convserve.ConvServeError as error:
                code = error.code
            with lock:
                calls.append((start, time.monotonic(), code))

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        killed = kill_mid_run(replicas[0])
        time.sleep(2.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        client.close()
    return killed, calls


def test_sigkill_without_retries_fails_only_calls_in_flight(replicas):
    killed, calls = run_through_kill(replicas, retries=False)
    failed = [call for call in calls if call[2] is not None]
    print("without retries: %d calls, %d failed: %s" % (
        len(calls), len(failed), [(round(s - killed, 3), round(e - killed, 3), c.name)
                                  for s, e, c in failed]))
    # The calls the dead replica held fail, and only with UNAVAILABLE.
    assert len(failed) >= WORKERS // 2, "too few calls were in flight on the killed replica"
    assert {call[2] for call in failed} == {grpc.StatusCode.UNAVAILABLE}
    # Only calls sent to it (while it was frozen, or in the instant the client
    # takes to see its connection close) fail; every other call succeeds.
    assert all(start < killed + 0.5 and end >= killed for start, end, _ in failed)
    later = [call for call in calls if call[0] >= killed + 0.5]
    assert len(later) >= 10, "too few calls after the kill: %d" % len(later)
    for replica in replicas[1:]:
        assert replica.process.poll() is None


def test_sigkill_with_retries_fails_no_call(replicas):
    killed, calls = run_through_kill(replicas, retries=True)
    failed = [call for call in calls if call[2] is not None]
    spanning = [call for call in calls if call[0] < killed <= call[1]]  # in flight
    print("with retries: %d calls, %d spanning the kill, %d failed" % (
        len(calls), len(spanning), len(failed)))
    assert not failed, [(round(s - killed, 3), c.name) for s, _, c in failed]
    assert len(spanning) >= WORKERS // 2
    assert len([call for call in calls if call[0] >= killed + 0.5]) >= 10


def test_sigkill_convctl_with_retries_fails_no_call(replicas, tmp_path):
    # The C++ client's retry policy: four convctl processes call Conv in a
    # loop while a replica dies; each has a call in flight on it then (sent
    # while it was frozen), which is retried on another.
    np.save(tmp_path / "x.npy", SLOW_X)
    np.save(tmp_path / "w.npy", SLOW_W)
    command = [str(CONVCTL), "--target=" + ipv4_target(replicas), "--retries", "--repeat=100",
               "conv", "--input=%s" % (tmp_path / "x.npy"), "--weight=%s" % (tmp_path / "w.npy"),
               "--padding=same"]
    processes = [subprocess.Popen(command + ["--output=%s" % (tmp_path / ("y%d.npy" % i))],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i in range(4)]
    try:
        deadline = time.monotonic() + 30
        while replicas[0].calls_ok("Conv") < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        running = [process.poll() is None for process in processes]
        kill_mid_run(replicas[0])
        outcomes = [(process.wait(timeout=120), process.stderr.read()) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert all(running), "calibration failed: convctl finished before the kill"
    for code, stderr in outcomes:
        assert code == 0, stderr
        assert "100 calls, 100 ok, 0 failed" in stderr


# --- nginx in front of the replicas.

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Nginx:
    """nginx (not the system service) running deploy/nginx/convserve.conf with
    the replicas' addresses and a free listen port, everything in a temp dir."""

    def __init__(self, upstream_targets):
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self._dir = tempfile.TemporaryDirectory(prefix="convserve_nginx_")
        self.root = pathlib.Path(self._dir.name)
        os.chmod(self.root, 0o755)  # nginx's workers drop root
        self.process = None
        for _ in range(3):  # the free port may be taken before nginx binds it
            self.port = free_port()
            self._write_config(upstream_targets)
            self.process = subprocess.Popen(
                [self.binary, "-p", str(self.root), "-c", str(self.root / "nginx.conf"),
                 "-e", str(self.root / "error.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            if self._wait_listening():
                self.target = "127.0.0.1:%d" % self.port
                return
        raise RuntimeError("nginx did not start:\n%s" % self.log())

    def _write_config(self, upstream_targets):
        text = NGINX_CONF.read_text()
        # The committed file, with only its addresses replaced: every other
        # setting (timeouts, sizes, retries to the next upstream) is tested.
        servers = re.findall(r"^( *)server 127\.0\.0\.1:\d+( [^;\n]*)?;$", text, re.M)
        assert len(servers) == 3, "expected 3 upstream server lines in %s" % NGINX_CONF
        indent, parameters = servers[0]
        lines = "".join("%sserver %s%s;\n" % (indent, target, parameters)
                        for target in upstream_targets)
        text, count = re.subn(r"(^ *server 127\.0\.0\.1:\d+[^;\n]*;\n)+", lines, text,
                              flags=re.M)
        assert count == 1, "the upstream server lines are not consecutive"
        text, count = re.subn(r"^( *)listen \d+ http2;$",
                              r"\1listen 127.0.0.1:%d http2;" % self.port, text, flags=re.M)
        assert count == 1, "expected one 'listen PORT http2;' line in %s" % NGINX_CONF
        (self.root / "convserve.conf").write_text(text)
        temp_paths = "".join("    %s_temp_path %s;\n" % (name, self.root / name)
                             for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (self.root / "nginx.conf").write_text(
            "daemon off;\n"
            "worker_processes 1;\n"
            "pid %(root)s/nginx.pid;\n"
            "error_log %(root)s/error.log info;\n"
            "events { worker_connections 512; }\n"
            "http {\n"
            "    access_log %(root)s/access.log;\n"
            "%(temp_paths)s"
            "    include %(root)s/convserve.conf;\n"
            "}\n" % {"root": self.root, "temp_paths": temp_paths})

    def _wait_listening(self):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.05)
        self.process.kill()
        self.process.wait()
        return False

    def log(self):
        path = self.root / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._dir.cleanup()


@pytest.fixture(scope="module")
def proxied():
    """(replicas, nginx): three replicas behind nginx, shared by the proxy tests."""
    if shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"):
        pytest.skip("nginx is not installed (Debian package nginx; scripts/setup.sh installs it)")
    replicas = start_replicas(compute_threads=1)
    try:
        nginx = Nginx([replica.target for replica in replicas])
        try:
            yield replicas, nginx
        finally:
            nginx.stop()
    finally:
        stop_replicas(replicas)


def test_nginx_health(proxied):
    _, nginx = proxied
    with convserve.Client(nginx.target, timeout=30) as client:
        assert client.health() == "SERVING"
        assert client.health("convserve.v1.ConvService") == "SERVING"
    result = subprocess.run([str(CONVCTL), "--target=" + nginx.target, "health"],
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout.strip()) == (0, "SERVING"), result.stderr


def test_nginx_conv_spreads_over_replicas(proxied):
    replicas, nginx = proxied
    calls = 300
    before = served(replicas, "Conv")
    with convserve.Client(nginx.target, timeout=30) as client:
        for _ in range(calls):
            small_conv(client)
    counts = [after - earlier for after, earlier in zip(served(replicas, "Conv"), before)]
    print("through nginx: Conv calls per replica:", counts)
    assert_spread(counts, calls)


def test_nginx_passes_large_messages_and_errors(proxied):
    _, nginx = proxied
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 4, 1024, 1024)).astype(np.float32)  # 16 MiB
    w = rng.standard_normal((2, 4, 1, 1)).astype(np.float32)
    with convserve.Client(nginx.target, timeout=60) as client:
        y = convserve.conv2d(x, w, client=client)
        np.testing.assert_allclose(y, np.einsum("oi,nihw->nohw", w[:, :, 0, 0], x),
                                   rtol=1e-5, atol=1e-4)
        # The server's own errors pass through unchanged.
        with pytest.raises(convserve.ConvServeError) as error:
            convserve.conv1d(X9, np.ones((1, 2, 5), np.float32), client=client)
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "weight" in error.value.details


def tiny_model():
    w = np.full((1, 1, 3), 2.0, np.float32)
    return [convserve.ModelLayer(convserve.make_layer(1, (1, 1, 9), w.shape, padding="same"),
                                 w, None)]


def test_nginx_models_loaded_on_every_replica(proxied):
    replicas, nginx = proxied
    # Today's way to share a model: load it on every replica directly.
    for replica in replicas:
        with convserve.Client(replica.target, timeout=30) as direct:
            direct.load_model("everywhere", tiny_model(), replace=True)
    before = served(replicas, "RunModel")
    with convserve.Client(nginx.target, timeout=30) as client:
        for _ in range(30):
            y, _ = client.run_model("everywhere", X9)
            assert y.ravel().tolist() == [6, 12, 18, 24, 30, 36, 42, 48, 34]
    counts = [after - earlier for after, earlier in zip(served(replicas, "RunModel"), before)]
    assert all(counts) and sum(counts) == 30, counts


def test_nginx_load_model_reaches_one_replica(proxied):
    # The limitation the model repository will lift: LoadModel through a
    # balancer lands on one replica, and RunModel elsewhere gets NOT_FOUND.
    replicas, nginx = proxied
    with convserve.Client(nginx.target, timeout=30) as client:
        client.load_model("once", tiny_model())
        codes = []
        for _ in range(6):
            try:
                client.run_model("once", X9)
                codes.append(grpc.StatusCode.OK)
            except convserve.ConvServeError as error:
                codes.append(error.code)
    holders = []
    for replica in replicas:
        with convserve.Client(replica.target, timeout=30) as direct:
            holders.append("once" in [model.name for model in direct.list_models()])
    assert holders.count(True) == 1, holders
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND}, codes
