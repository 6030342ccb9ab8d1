"""How the server is configured and what it says about itself: GetServerInfo
(both clients and both CLIs), CONVSERVE_<FLAG> environment variables with an
explicit flag winning, the default compute threads, --help and --version, and
the start-up checks of every flag (exit code 2 naming the flag)."""

import os
import pathlib
import re
import subprocess
import sys
import time

import pytest

import convserve
from conftest import BUILD_DIR, CONVCTL, REPO, SERVER_BINARY, ServerProcess


def project_version():
    text = (REPO / "CMakeLists.txt").read_text()
    return re.search(r"project\(ConvServe VERSION ([0-9.]+)", text).group(1)


def cpu_flags():
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def expected_tiers():
    """Kernel tiers from /proc/cpuinfo, not from the server's own code."""
    flags = cpu_flags()
    if not {"avx2", "fma"} <= flags:
        return ["reference"]
    if "avx512f" in flags and os.environ.get("CONVSERVE_MAX_ISA") != "avx2":
        return ["avx512f", "avx2"]
    return ["avx2"]


def build_type():
    cache = (BUILD_DIR / "CMakeCache.txt").read_text()
    kind = re.search(r"^CMAKE_BUILD_TYPE:\w+=(.*)$", cache, re.M).group(1)
    if re.search(r"^CONVSERVE_SANITIZE:BOOL=ON$", cache, re.M):
        kind += "+asan+ubsan"
    return kind


def run(command, timeout=60, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


def test_server_info_reports_version_build_tiers_threads_and_limits(start_server):
    server = start_server("--max_macs=123456789", "--memory_budget_bytes=99999999",
                          compute_threads=1)
    with convserve.Client(server.target, timeout=30) as client:
        info = client.server_info()
    assert info.version == project_version()
    assert re.fullmatch(r"[0-9a-f]{12}|unknown", info.git_commit), info.git_commit
    assert info.build_type == build_type()
    assert list(info.kernel_tiers) == expected_tiers()
    assert info.compute_threads == 1
    assert info.limits.max_macs == 123456789
    assert info.limits.memory_budget_bytes == 99999999
    assert info.limits.max_message_bytes == 256 << 20  # the default
    assert info.limits.max_elements == 1 << 28
    assert info.limits.max_model_bytes == 1 << 30
    assert info.limits.max_queued_calls == 256
    assert info.limits.max_models == 1024
    assert info.limits.max_layers_per_model == 1024
    assert info.limits.small_call_macs == 1 << 20
    assert info.limits.stream_idle_timeout_s == 300
    assert not info.auth_required


def test_both_clis_print_the_same_server_info(start_server):
    server = start_server()
    cpp = run([str(CONVCTL), "--target=%s" % server.target, "info"])
    python = run([sys.executable, "-m", "convserve", "--target", server.target, "info"],
                 cwd=REPO / "client" / "python")
    assert cpp.returncode == 0, cpp.stderr
    assert python.returncode == 0, python.stderr
    assert cpp.stdout == python.stdout
    assert "kernel_tiers: %s\n" % ", ".join(expected_tiers()) in cpp.stdout
    assert "version: %s\n" % project_version() in cpp.stdout
    assert "max_queued_calls: 256\n" in cpp.stdout
    assert "stream_idle_timeout_s: 300\n" in cpp.stdout


def test_environment_sets_flags_and_an_explicit_flag_wins(start_server):
    server = start_server("--max_elements=5000000", compute_threads=None,
                          env={"CONVSERVE_MAX_MACS": "424242", "CONVSERVE_MAX_ELEMENTS": "7",
                               "CONVSERVE_COMPUTE_THREADS": "1"})
    with convserve.Client(server.target, timeout=30) as client:
        info = client.server_info()
    assert info.limits.max_macs == 424242
    assert info.limits.max_elements == 5000000  # the flag, not CONVSERVE_MAX_ELEMENTS=7
    assert info.compute_threads == 1
    # The start-up line says where each configured value came from.
    log = server.log()
    assert "max_macs=424242 (CONVSERVE_MAX_MACS)" in log
    assert "max_elements=5000000 (--max_elements)" in log
    assert "compute_threads=1 (CONVSERVE_COMPUTE_THREADS)" in log


def test_a_bad_environment_value_stops_start_up_naming_the_variable():
    result = run([str(SERVER_BINARY), "--listen=127.0.0.1:0"],
                 env=dict(os.environ, CONVSERVE_MAX_MACS="lots"))
    assert result.returncode == 2
    assert "CONVSERVE_MAX_MACS (--max_macs): cannot use 'lots'" in result.stdout + result.stderr


def test_default_compute_threads_follow_the_affinity_mask(start_server, tmp_path):
    # Without --compute_threads the pool has one thread per CPU the process may
    # use, not per core of the host: pinned to one CPU, it has one.
    server = start_server(compute_threads=None)
    with convserve.Client(server.target, timeout=30) as client:
        assert client.server_info().compute_threads == len(os.sched_getaffinity(0))
    cpu = sorted(os.sched_getaffinity(0))[0]
    port_file = tmp_path / "port"
    pinned = subprocess.Popen(
        [str(SERVER_BINARY), "--listen=127.0.0.1:0", "--port_file=%s" % port_file],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert pinned.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        target = "127.0.0.1:%s" % port_file.read_text().strip()
        with convserve.Client(target, timeout=30) as client:
            assert client.server_info().compute_threads == 1
    finally:
        pinned.terminate()
        assert pinned.wait(timeout=60) == 0


def test_help_lists_the_servers_flags_and_the_environment():
    result = run([str(SERVER_BINARY), "--help"])
    text = result.stdout + result.stderr
    for flag in ("--listen", "--compute_threads", "--max_message_bytes", "--memory_budget_bytes",
                 "--auth_token_file", "--shutdown_timeout_s"):
        assert flag in text
    assert "CONVSERVE_<FLAG>" in text
    assert "No flags matched" not in text


def test_version_names_version_commit_and_build_type():
    result = run([str(SERVER_BINARY), "--version"])
    assert result.returncode == 0
    assert result.stdout.startswith("convserve_server %s (commit " % project_version())
    assert "%s build" % build_type() in result.stdout
    assert "Debug build" not in result.stdout or build_type() == "Debug"


BAD_FLAGS = [
    # (flag, what the message must say besides the flag's name)
    ("--listen=127.0.0.1:99999", "a port in 0..65535"),
    ("--listen=127.0.0.1", "host:port"),
    ("--listen=::1:50051", "IPv6 address in brackets"),
    ("--listen=[::1:50051", "IPv6 address in brackets"),
    ("--compute_threads=100000", "got 100000"),
    ("--compute_threads=-1", "got -1"),
    ("--port_file=/nonexistent-directory/port", "No such file or directory"),
    ("--health_listen=127.0.0.1:99999", "a port in 0..65535"),
    ("--drain_grace_ms=-1", "got -1"),
    ("--shutdown_timeout_s=-5", "got -5"),
    ("--shutdown_timeout_s=100000", "got 100000"),
    ("--max_message_bytes=10", "1024..2147483647"),
    ("--max_connection_idle_s=-1", "got -1"),
    ("--max_connection_age_s=-1", "got -1"),
    ("--handshake_timeout_s=0", "got 0"),
    ("--keepalive_time_s=0", "got 0"),
    ("--max_concurrent_streams=0", "got 0"),
]


@pytest.mark.parametrize("flag,fragment", BAD_FLAGS, ids=[f for f, _ in BAD_FLAGS])
def test_a_bad_flag_stops_start_up_naming_it(flag, fragment):
    name = flag.split("=", 1)[0]
    command = [str(SERVER_BINARY), flag]
    if name != "--listen":
        command.append("--listen=127.0.0.1:0")
    try:
        result = run(command, timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError("%s was accepted: the server started serving" % flag)
    text = result.stdout + result.stderr
    assert result.returncode == 2, text
    assert name + ":" in text and fragment in text, text
    assert "serving on" not in text


def test_a_bad_flag_from_the_environment_is_named_too():
    result = run([str(SERVER_BINARY), "--listen=127.0.0.1:0"], timeout=20,
                 env=dict(os.environ, CONVSERVE_COMPUTE_THREADS="100000"))
    assert result.returncode == 2
    assert "--compute_threads: expected 0 (one per usable CPU) to" in result.stdout + result.stderr
