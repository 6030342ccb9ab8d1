"""Fixtures that run the real convserve_server binary on a free loopback port.

The server is started with --listen=127.0.0.1:0 and reports the port it bound
through --port_file, so parallel test runs never race for a port.
CONVSERVE_BUILD_DIR (set by CTest) locates the binaries; default: build/.
"""

import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "client" / "python"))

import convserve  # noqa: E402

BUILD_DIR = pathlib.Path(os.environ.get("CONVSERVE_BUILD_DIR", REPO / "build"))
SERVER_BINARY = BUILD_DIR / "server" / "convserve_server"
CONVCTL = BUILD_DIR / "client" / "convctl"
CPP_REFERENCE_EXAMPLE = BUILD_DIR / "client" / "reference_table_example"


def server_is_sanitized():
    """Whether the server binary is built with AddressSanitizer."""
    try:
        return b"__asan_init" in SERVER_BINARY.read_bytes()
    except OSError:
        return False


class ServerProcess:
    """One convserve_server process, logging to a file.

    host: the loopback address to listen on; port: 0 for a free one; env:
    variables added to the server's environment; compute_threads: None
    passes no --compute_threads flag.
    """

    def __init__(self, *flags, compute_threads=2, host="127.0.0.1", port=0, env=None):
        if not SERVER_BINARY.exists():
            raise RuntimeError("%s not found: build the tree first (CONVSERVE_BUILD_DIR=%s)"
                               % (SERVER_BINARY, BUILD_DIR))
        self._dir = tempfile.TemporaryDirectory(prefix="convserve_test_")
        self.port_file = pathlib.Path(self._dir.name) / "port"
        self.log_path = pathlib.Path(self._dir.name) / "server.log"
        self._log = open(self.log_path, "w")
        command = [str(SERVER_BINARY), "--listen=%s:%d" % (host, port),
                   "--port_file=%s" % self.port_file]
        if compute_threads is not None:
            command.append("--compute_threads=%d" % compute_threads)
        command += list(flags)
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=dict(os.environ, **(env or {})))
        deadline = time.monotonic() + 30
        while not self.port_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError("server exited with %d:\n%s" % (self.process.returncode,
                                                                   self.log()))
            if time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError("server did not start in 30 s:\n%s" % self.log())
            time.sleep(0.02)
        self.port = int(self.port_file.read_text().strip())
        self.target = "%s:%d" % (host, self.port)

    def log(self):
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def calls_ok(self, method):
        """How many `method` calls ("Conv", "ValidateShape", ...) this server
        answered OK so far; counts the per-call lines of --log_level=debug."""
        return sum(1 for line in self.log().splitlines()
                   if "[debug] %s from " % method in line and line.endswith(" ok"))

    def lines_above_warn(self):
        return [line for line in self.log().splitlines()
                if "[error]" in line or "[critical]" in line]

    def signal(self, number=signal.SIGTERM):
        self.process.send_signal(number)

    def stop(self, timeout=60):
        """SIGTERM, then the exit code (kills and fails after `timeout` s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError("server did not stop within %d s after SIGTERM:\n%s"
                                     % (timeout, self.log()))
        self._log.close()
        return self.process.returncode

    def cleanup(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._dir.cleanup()


@pytest.fixture(scope="module")
def server():
    """A server with default limits, shared by a test module."""
    process = ServerProcess("--drain_grace_ms=0")
    try:
        yield process
        assert process.stop() == 0, process.log()
    finally:
        process.cleanup()


@pytest.fixture(scope="module")
def client(server):
    with convserve.Client(server.target, timeout=120) as connection:
        yield connection


@pytest.fixture
def start_server():
    """Factory: start_server(*flags) -> ServerProcess, stopped after the test."""
    started = []

    def start(*flags, **kwargs):
        process = ServerProcess(*flags, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        try:
            process.stop()
        finally:
            process.cleanup()
