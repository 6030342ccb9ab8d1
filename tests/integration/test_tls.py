"""TLS and mutual TLS end to end: the real server with --tls_* flags, every client.

A throw-away PKI is made with the openssl CLI into pytest's tmp dir for this
module (never committed): a CA, a server certificate for localhost and
127.0.0.1, a client certificate, and a second CA with a client certificate of
its own (the "other CA").
"""

import json
import os
import signal
import subprocess
import time

import grpc
import numpy as np
import pytest

import convserve
from convserve.client import pb
from conftest import CONVCTL, REPO, SERVER_BINARY, server_is_sanitized

# Short: a handshake that cannot succeed must fail at once with UNAVAILABLE,
# not wait out this deadline.
FAST_DEADLINE_S = 5


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".crt", "-days", "2",
            "-subj", "/CN=convserve test " + name, cwd=directory)


def make_leaf(directory, name, ca, subject, extensions):
    (directory / (name + ".ext")).write_text(extensions)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", subject, cwd=directory)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", name + ".ext",
            cwd=directory)


class Pki:
    def __init__(self, directory):
        self.dir = directory
        make_ca(directory, "ca")
        make_ca(directory, "other_ca")
        make_leaf(directory, "server", "ca", "/CN=localhost",
                  "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        make_leaf(directory, "client", "ca", "/CN=convserve test client",
                  "extendedKeyUsage=clientAuth\n")
        make_leaf(directory, "stranger", "other_ca", "/CN=convserve test stranger",
                  "extendedKeyUsage=clientAuth\n")

    def path(self, name):
        return str(self.dir / name)

    def server_flags(self, mutual=False):
        flags = ["--tls_cert_file=" + self.path("server.crt"),
                 "--tls_key_file=" + self.path("server.key")]
        if mutual:
            flags.append("--tls_client_ca_file=" + self.path("ca.crt"))
        return flags


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


def small_conv(client):
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 9)
    w = np.array([1, 2, 3, 4, 5], dtype=np.float32).reshape(1, 1, 5)
    y = convserve.conv1d(x, w, padding="same", client=client)
    # Cross-correlation with 2 zeros each side, computed here independently.
    expected = np.correlate(np.pad(x.ravel(), 2), w.ravel(), mode="valid")
    np.testing.assert_array_equal(y.ravel(), expected)
    return y


def expect_unavailable(client, method="health"):
    """The call fails with UNAVAILABLE (not DEADLINE_EXCEEDED: at once) and a
    message naming the address it could not use; returns the message."""
    with pytest.raises(convserve.ConvServeError) as failure:
        if method == "health":
            client.health(timeout=FAST_DEADLINE_S)
        else:
            small_conv(client)
    assert failure.value.code == grpc.StatusCode.UNAVAILABLE, failure.value
    assert client.target in failure.value.details, failure.value
    return failure.value.details


# --- TLS ----------------------------------------------------------------------------


def test_tls_conv_is_correct_with_path_or_bytes(pki, start_server):
    process = start_server(*pki.server_flags(), "--drain_grace_ms=0")
    assert "tls=on" in process.log()
    with convserve.Client(process.target, timeout=30, tls_ca=pki.path("ca.crt")) as client:
        assert client.health() == "SERVING"
        small_conv(client)
        assert not client.server_info().auth_required
    ca_bytes = (pki.dir / "ca.crt").read_bytes()
    with convserve.Client(process.target, timeout=30, tls_ca=ca_bytes) as client:
        small_conv(client)


def test_plaintext_client_and_tls_server_refuse_each_other_fast(pki, start_server):
    tls_server = start_server(*pki.server_flags(), "--drain_grace_ms=0")
    plain_server = start_server("--drain_grace_ms=0")
    with convserve.Client(tls_server.target, timeout=FAST_DEADLINE_S) as plaintext:
        expect_unavailable(plaintext)
        expect_unavailable(plaintext, "conv")
    with convserve.Client(plain_server.target, timeout=FAST_DEADLINE_S,
                          tls_ca=pki.path("ca.crt")) as tls:
        assert "handshake failed" in expect_unavailable(tls).lower()


def test_server_name_override(pki, start_server):
    process = start_server(*pki.server_flags(), "--drain_grace_ms=0")
    with convserve.Client(process.target, timeout=FAST_DEADLINE_S, tls_ca=pki.path("ca.crt"),
                          tls_server_name="localhost") as client:
        assert client.health() == "SERVING"
    with convserve.Client(process.target, timeout=FAST_DEADLINE_S, tls_ca=pki.path("ca.crt"),
                          tls_server_name="not-this-server.example") as client:
        expect_unavailable(client)


def test_server_certificate_of_another_ca_is_refused(pki, start_server):
    process = start_server(*pki.server_flags(), "--drain_grace_ms=0")
    with convserve.Client(process.target, timeout=FAST_DEADLINE_S,
                          tls_ca=pki.path("other_ca.crt")) as client:
        expect_unavailable(client)


def test_token_over_tls(pki, start_server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    process = start_server(*pki.server_flags(), "--auth_token_file=%s" % token_file,
                           "--drain_grace_ms=0")
    with convserve.Client(process.target, timeout=30, tls_ca=pki.path("ca.crt"),
                          token="s3cret-token") as client:
        small_conv(client)
    with convserve.Client(process.target, timeout=30, tls_ca=pki.path("ca.crt"),
                          token="") as client:
        with pytest.raises(convserve.ConvServeError) as failure:
            small_conv(client)
        assert failure.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "authorization" in failure.value.details


def peak_rss_kib(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for %d" % pid)


@pytest.mark.skipif(server_is_sanitized(),
                    reason="ASan's quarantine and shadow memory make RSS say nothing here")
def test_calls_without_the_token_are_refused_before_their_body(pki, start_server, tmp_path):
    # docs/RELIABILITY.md row 15: 16 x 60 MB Conv calls without a token were read whole
    # before the handler checked the token (RSS +524 MB and more). Over TLS the token is
    # checked from the headers: the bodies are never buffered.
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    process = start_server(*pki.server_flags(), "--auth_token_file=%s" % token_file,
                           "--drain_grace_ms=0")
    request = pb.ConvRequest()
    request.input.shape[:] = [1, 1, 15 << 20]
    request.input.element_type = pb.ELEMENT_TYPE_FLOAT32
    request.input.data = bytes(60 << 20)
    message = request.SerializeToString()
    credentials = grpc.ssl_channel_credentials(root_certificates=(pki.dir / "ca.crt").read_bytes())
    with grpc.secure_channel(process.target, credentials,
                             options=[("grpc.ssl_target_name_override", "localhost"),
                                      ("grpc.max_send_message_length", 128 << 20)]) as channel:
        conv = channel.unary_unary("/convserve.v1.ConvService/Conv")
        grpc.channel_ready_future(channel).result(timeout=30)
        baseline = peak_rss_kib(process.process.pid)
        calls = [conv.future(message, timeout=120) for _ in range(16)]
        codes = [call.exception().code() if call.exception() else grpc.StatusCode.OK
                 for call in calls]
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 16, codes
    grown_mib = (peak_rss_kib(process.process.pid) - baseline) // 1024
    assert grown_mib < 100, "peak RSS grew by %d MiB for 16 refused calls" % grown_mib
    log = process.log()
    assert log.count("Conv failed: UNAUTHENTICATED") == 16, log
    assert "body not read" in log
    # Health and the token's holders are unaffected.
    with convserve.Client(process.target, timeout=30, tls_ca=pki.path("ca.crt")) as client:
        assert client.health() == "SERVING"
    with convserve.Client(process.target, timeout=30, tls_ca=pki.path("ca.crt"),
                          token="s3cret-token") as client:
        small_conv(client)


# --- Mutual TLS ---------------------------------------------------------------------


def test_mutual_tls(pki, start_server):
    process = start_server(*pki.server_flags(mutual=True), "--drain_grace_ms=0")
    assert "tls=mutual" in process.log()
    with convserve.Client(process.target, timeout=30, tls_ca=pki.path("ca.crt"),
                          tls_cert=pki.path("client.crt"),
                          tls_key=(pki.dir / "client.key").read_bytes()) as client:
        small_conv(client)
    # No client certificate.
    with convserve.Client(process.target, timeout=FAST_DEADLINE_S,
                          tls_ca=pki.path("ca.crt")) as client:
        expect_unavailable(client)
        expect_unavailable(client, "conv")
    # A client certificate another CA signed.
    with convserve.Client(process.target, timeout=FAST_DEADLINE_S, tls_ca=pki.path("ca.crt"),
                          tls_cert=pki.path("stranger.crt"),
                          tls_key=pki.path("stranger.key")) as client:
        expect_unavailable(client)
        expect_unavailable(client, "conv")
    # Plaintext.
    with convserve.Client(process.target, timeout=FAST_DEADLINE_S) as client:
        expect_unavailable(client)


def test_client_tls_arguments_are_checked(pki):
    with pytest.raises(ValueError, match="tls_key: expected the PEM private key of tls_cert"):
        convserve.Client("127.0.0.1:1", tls_cert=pki.path("client.crt"))
    with pytest.raises(ValueError, match="tls_ca: cannot read .*missing.crt"):
        convserve.Client("127.0.0.1:1", tls_ca=pki.path("missing.crt"))
    with pytest.raises(ValueError, match=r"tls_ca: expected PEM .* in the bytes given"):
        convserve.Client("127.0.0.1:1", tls_ca=b"not pem")


# --- The plaintext health port ------------------------------------------------------


@pytest.mark.parametrize("mutual", [False, True])
def test_health_port_serves_health_only(pki, start_server, tmp_path, mutual):
    port_file = tmp_path / "health.port"
    process = start_server(*pki.server_flags(mutual), "--health_listen=127.0.0.1:0",
                           "--health_port_file=%s" % port_file, "--drain_grace_ms=3000")
    port = int(port_file.read_text().strip())
    assert port != process.port
    assert "health_listen=127.0.0.1:0 (port %d, plaintext)" % port in process.log()
    with convserve.Client("127.0.0.1:%d" % port, timeout=30) as probe:
        assert probe.health() == "SERVING"
        assert probe.health("convserve.v1.ConvService") == "SERVING"
        for call in (small_conv, lambda client: client.server_info()):
            with pytest.raises(convserve.ConvServeError) as failure:
                call(probe)
            assert failure.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert "served only over TLS on --listen" in failure.value.details
            assert "--health_listen port serves grpc.health.v1 only" in failure.value.details
        # Health there follows the server: NOT_SERVING once it drains.
        process.signal(signal.SIGTERM)
        statuses = set()
        deadline = time.monotonic() + 60
        while "NOT_SERVING" not in statuses and time.monotonic() < deadline:
            statuses.add(probe.health())
            time.sleep(0.02)
        assert "NOT_SERVING" in statuses
    assert process.process.wait(timeout=60) == 0


# --- Start-up refuses bad TLS flags --------------------------------------------------


def run_server(*flags):
    return subprocess.run([str(SERVER_BINARY), "--listen=127.0.0.1:0", *flags],
                          capture_output=True, text=True, timeout=60)


def test_bad_tls_flags_exit_2_naming_the_flag(pki):
    cert, key = pki.path("server.crt"), pki.path("server.key")
    missing = pki.path("missing.crt")
    cases = [
        (["--tls_cert_file=" + missing, "--tls_key_file=" + key],
         ["--tls_cert_file: cannot open '%s'" % missing, "No such file"]),
        (["--tls_cert_file=" + cert, "--tls_key_file=" + pki.path("client.key")],
         ["--tls_key_file: the private key in '%s'" % pki.path("client.key"),
          "does not match the certificate"]),
        (["--tls_cert_file=" + cert], ["--tls_key_file: expected the PEM private key", cert]),
        (["--tls_key_file=" + key], ["--tls_cert_file: expected the PEM certificate", key]),
        (["--tls_client_ca_file=" + pki.path("ca.crt")],
         ["--tls_client_ca_file", "without --tls_cert_file and --tls_key_file"]),
        (["--tls_cert_file=" + key, "--tls_key_file=" + cert],
         ["--tls_cert_file: expected a PEM certificate", "swapped"]),
        (["--health_listen=127.0.0.1:0"], ["--health_listen: expected only with TLS on"]),
    ]
    for flags, expected in cases:
        result = run_server(*flags)
        output = result.stdout + result.stderr
        assert result.returncode == 2, (flags, output)
        for part in expected:
            assert part in output, (flags, output)


def test_tls_flags_from_the_environment(pki):
    # CONVSERVE_<FLAG> works for the TLS flags like for every other flag.
    result = subprocess.run([str(SERVER_BINARY), "--listen=127.0.0.1:0"],
                            capture_output=True, text=True, timeout=60,
                            env={"CONVSERVE_TLS_CERT_FILE": pki.path("server.crt")})
    assert result.returncode == 2
    assert "--tls_key_file: expected the PEM private key" in result.stdout + result.stderr


# --- The command-line clients ---------------------------------------------------------


def test_convctl_over_mutual_tls(pki, start_server):
    process = start_server(*pki.server_flags(mutual=True), "--drain_grace_ms=0")
    tls = ["--tls_ca_file=" + pki.path("ca.crt"), "--tls_cert_file=" + pki.path("client.crt"),
           "--tls_key_file=" + pki.path("client.key")]
    # The certificate's name through --tls_server_name (an address target, so
    # that a machine without /etc/hosts needs no resolver).
    for target, extra in [(process.target, []), (process.target, ["--tls_server_name=localhost"])]:
        result = subprocess.run([str(CONVCTL), "--target=" + target, *tls, *extra, "health"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "SERVING"
    result = subprocess.run([str(CONVCTL), "--target=" + process.target, *tls, "info"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "kernel" in result.stdout
    # Without a client certificate: refused at the handshake.
    result = subprocess.run([str(CONVCTL), "--target=" + process.target, tls[0],
                             "--timeout_s=%d" % FAST_DEADLINE_S, "health"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "UNAVAILABLE" in result.stderr.upper(), result.stderr
    # A certificate without its key: refused before connecting, naming the flag.
    result = subprocess.run([str(CONVCTL), "--target=" + process.target, tls[0], tls[1],
                             "health"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--tls_key_file: expected the PEM private key" in result.stderr, result.stderr
    result = subprocess.run([str(CONVCTL), "--target=" + process.target,
                             "--tls_ca_file=" + pki.path("missing.crt"), "health"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--tls_ca_file: cannot read '%s'" % pki.path("missing.crt") in result.stderr


def test_python_cli_over_mutual_tls(pki, start_server):
    process = start_server(*pki.server_flags(mutual=True), "--drain_grace_ms=0")
    base = ["/usr/bin/python3", "-m", "convserve", "--target", process.target,
            "--tls-ca-file", pki.path("ca.crt")]
    env = {"PYTHONPATH": str(REPO / "client" / "python")}
    result = subprocess.run(base + ["--tls-cert-file", pki.path("client.crt"), "--tls-key-file",
                                    pki.path("client.key"), "health"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "SERVING"
    result = subprocess.run(base + ["--tls-cert-file", pki.path("client.crt"), "health"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert ("--tls-key-file: expected the PEM private key of --tls-cert-file"
            in result.stderr), result.stderr


# --- The Docker HEALTHCHECK ---------------------------------------------------------


def dockerfile_healthcheck():
    """The shell command of the Dockerfile's HEALTHCHECK CMD ["sh", "-c", "..."]."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK"))
    command = json.loads(line[line.index("CMD") + 3:].strip())
    assert command[:2] == ["sh", "-c"], command
    return command[2]


def run_healthcheck(port_file, health_port_file):
    command = dockerfile_healthcheck().replace("/tmp/convserve.health_port",
                                               str(health_port_file))
    command = command.replace("/tmp/convserve.port", str(port_file))
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PATH="%s:%s" % (CONVCTL.parent,
                                                               os.environ["PATH"])))


def test_docker_healthcheck_plaintext_and_tls(pki, start_server, tmp_path):
    # The image sets CONVSERVE_HEALTH_PORT_FILE; without --health_listen the server
    # removes a stale file there, and the check uses --listen's port.
    health_port_file = tmp_path / "health_port"
    health_port_file.write_text("1\n")
    env = {"CONVSERVE_HEALTH_PORT_FILE": str(health_port_file)}
    plain = start_server("--drain_grace_ms=0", env=env)
    assert not health_port_file.exists()
    result = run_healthcheck(plain.port_file, health_port_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "SERVING"
    # Mutual TLS with a health port: the check uses the health port.
    tls = start_server(*pki.server_flags(mutual=True), "--drain_grace_ms=0",
                       env=dict(env, CONVSERVE_HEALTH_LISTEN="127.0.0.1:0"))
    assert health_port_file.exists()
    result = run_healthcheck(tls.port_file, health_port_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "SERVING"
    # Without it the plaintext check cannot pass on a TLS port.
    health_port_file.unlink()
    assert run_healthcheck(tls.port_file, health_port_file).returncode != 0
