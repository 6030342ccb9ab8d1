#!/usr/bin/python3
"""Dynamic batching's effect on RunModel throughput and latency, side by side.

Starts one server, loads the same small model (two 3x3 16 -> 16 layers on a
1x16x32x32 input) once per batching setting (replace=True, same weights) and
drives it with convserve_load at one concurrency, alternating the settings for
--rounds rounds; prints the median of each setting's calls/s, latency
percentiles and server CPU time per call (from /proc/PID/stat: steadier than
throughput on a shared machine) as a Markdown table, with the ratios to the
first setting. Each run is measured from its first call (no warm-up window).

  bench/batching.py --build build --concurrency 32 --duration 5 --rounds 3 \
      --settings off,8:200,16:500,32:1000

A setting is off or MAX_BATCH_SIZE:MAX_QUEUE_DELAY_US.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "client" / "python"))

import convserve  # noqa: E402

MODEL = "batching-bench"
INPUT_SHAPE = (1, 16, 32, 32)


def model_layers():
    rng = np.random.default_rng(12)
    layers = []
    for activation in ("relu", None):
        w = rng.uniform(-1, 1, (16, 16, 3, 3)).astype(np.float32) / 4
        b = rng.uniform(-1, 1, 16).astype(np.float32)
        layer = convserve.make_layer(2, INPUT_SHAPE, w.shape, bias=True, padding="same",
                                     activation=activation)
        layers.append(convserve.ModelLayer(layer, w, b))
    return layers


def parse_setting(text):
    if text == "off":
        return 0, 0
    size, delay = text.split(":")
    return int(size), int(delay)


def start_server(binary, threads, directory):
    port_file = pathlib.Path(directory) / "port"
    log = open(pathlib.Path(directory) / "server.log", "w")
    command = [str(binary), "--listen=127.0.0.1:0", "--port_file=%s" % port_file,
               "--drain_grace_ms=0"]
    if threads:
        command.append("--compute_threads=%d" % threads)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("server did not start; see %s" % log.name)
        time.sleep(0.02)
    return process, "127.0.0.1:%s" % port_file.read_text().strip()


def cpu_seconds(pid):
    """User + system CPU time the process has used, from /proc/PID/stat."""
    fields = pathlib.Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(load, target, concurrency, duration, warmup):
    command = [str(load), "--target=%s" % target, "--call=run_model", "--model=%s" % MODEL,
               "--input_shape=%s" % ",".join(map(str, INPUT_SHAPE)),
               "--concurrency=%d" % concurrency, "--duration=%s" % duration,
               "--warmup=%s" % warmup, "--format=json", "--progress=false"]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    run = json.loads(out)["runs"][0]
    total = run["total"]
    return dict(calls_per_s=run["throughput_per_s"], calls=total["calls"],
                p50=total["latency_us"]["p50"],
                p99=total["latency_us"]["p99"], errors=total["errors"],
                compute_p50=total.get("server_compute_us", {}).get("p50", float("nan")))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=str(REPO / "build"))
    parser.add_argument("--threads", type=int, default=0, help="--compute_threads (0: default)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", default="5")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settings", default="off,8:200,16:500,32:1000,32:0")
    args = parser.parse_args()
    build = pathlib.Path(args.build)
    settings = args.settings.split(",")
    results = {setting: [] for setting in settings}
    with tempfile.TemporaryDirectory(prefix="convserve_batching_") as directory:
        process, target = start_server(build / "server" / "convserve_server", args.threads,
                                       directory)
        try:
            with convserve.Client(target, timeout=60) as client:
                layers = model_layers()
                for round_index in range(args.rounds):
                    for setting in settings:
                        size, delay = parse_setting(setting)
                        client.load_model(MODEL, layers, replace=True, max_batch_size=size,
                                          max_queue_delay_us=delay)
                        cpu_before = cpu_seconds(process.pid)
                        result = run_load(build / "bench" / "load" / "convserve_load", target,
                                          args.concurrency, args.duration, "0")
                        # No warm-up window: every call the server answered is counted.
                        result["server_cpu_us_per_call"] = (
                            (cpu_seconds(process.pid) - cpu_before) / max(1, result["calls"]) * 1e6)
                        results[setting].append(result)
                        print("round %d %-9s %8.1f calls/s  p99 %8.1f us  server CPU %6.1f us/call"
                              "  errors %d" % (round_index + 1, setting, result["calls_per_s"],
                                               result["p99"], result["server_cpu_us_per_call"],
                                               result["errors"]), file=sys.stderr)
        finally:
            process.terminate()
            process.wait(timeout=60)

    def median(setting, key):
        return statistics.median(r[key] for r in results[setting])

    base = median(settings[0], "calls_per_s")
    base_cpu = median(settings[0], "server_cpu_us_per_call")
    print("| batching (max_batch_size:delay_us) | calls/s | vs %s | p50 ms | p99 ms | "
          "server CPU us/call | vs %s | server compute p50 ms | errors |"
          % (settings[0], settings[0]))
    print("|---|---|---|---|---|---|---|---|---|")
    for setting in settings:
        cpu = median(setting, "server_cpu_us_per_call")
        print("| %s | %.0f | %.2fx | %.2f | %.2f | %.0f | %.2fx | %.3f | %d |" % (
            setting, median(setting, "calls_per_s"), median(setting, "calls_per_s") / base,
            median(setting, "p50") / 1e3, median(setting, "p99") / 1e3, cpu, cpu / base_cpu,
            median(setting, "compute_p50") / 1e3, sum(r["errors"] for r in results[setting])))


if __name__ == "__main__":
    main()
