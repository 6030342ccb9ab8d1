#!/usr/bin/env python3
"""Soak: honest load mixed with bad calls, cancellations and model reloads, for minutes.

Starts its own convserve_server (with a memory budget), then keeps
--concurrency threads calling it with a weighted mix of actions until
--duration seconds have passed:

  good       Conv on a small 2-D layer, checked against PyTorch in float64
  model      RunModel on a loaded two-layer model, checked against PyTorch
  bad:*      one input of each docs/RELIABILITY.md row a client can send
             (rows 2-9, 11, and 10 as a budget-sized request)
  deadline   a larger Conv with a deadline too short for it (DEADLINE_EXCEEDED, or OK if quick)
  cancel     the same, cancelled by the client while in flight (CANCELLED, or OK if quick)
  reload     LoadModel(replace=True) of the model the `model` action runs
  churn      LoadModel + UnloadModel of a fresh name

Every call must end with one of its action's expected codes (and the right
numbers when OK). The server's RSS is sampled every --rss_interval seconds.
Fails (exit 1) on: an unexpected status or wrong result, a server that died
or logged an ERROR/critical line or a sanitizer report, RSS above the budget
plus the baseline and a margin, or (runs of 5 minutes or more) RSS growing
after warm-up. Prints a table of actions x codes and the RSS figures; with
--csv, writes the RSS samples there.

Usage: bench/soak.py --duration 1800 [--server build/server/convserve_server]
(scripts/soak.sh MINUTES runs it against a fresh Release build.)
"""

import argparse
import collections
import os
import pathlib
import random
import re
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "client" / "python"))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import convserve  # noqa: E402
from convserve.client import pb, to_tensor, from_tensor, load_model_request  # noqa: E402

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def torch_conv(x, w, b, **kwargs):
    """PyTorch's conv2d in float64, the oracle."""
    out = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)),
                                     torch.from_numpy(w.astype(np.float64)),
                                     None if b is None else torch.from_numpy(b.astype(np.float64)),
                                     **kwargs)
    return out.numpy()


def close_enough(got, want, x, w, **kwargs):
    """The parity bound of the test suites: 1e-5 * S + 1e-6, S the conv on |x|, |w|."""
    scale = torch_conv(np.abs(x), np.abs(w), None, **kwargs)
    return got.shape == want.shape and bool(np.all(np.abs(got - want) <= 1e-5 * scale + 1e-6))


class Workload:
    """The requests of every action, and their expected results, built once."""

    def __init__(self, rng):
        # good: (1, 8, 16, 16) -> (1, 16, 16, 16), 3x3, pad 1.
        self.x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
        self.w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
        self.b = rng.standard_normal(16).astype(np.float32)
        self.layer = convserve.make_layer(2, self.x.shape, self.w.shape, bias=True, padding=1)
        self.good = pb.ConvRequest(layer=self.layer)
        to_tensor(self.x, self.good.input)
        to_tensor(self.w, self.good.weight)
        to_tensor(self.b, self.good.bias)
        self.good_expected = torch_conv(self.x, self.w, self.b, padding=1)

        # model: two 3x3 layers 8 -> 8 -> 4 on (2, 8, 12, 12).
        self.model_x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
        self.model_w = [rng.standard_normal((8, 8, 3, 3)).astype(np.float32),
                        rng.standard_normal((4, 8, 3, 3)).astype(np.float32)]
        self.model_layers = [
            convserve.ModelLayer(convserve.make_layer(2, (1, 8, 12, 12), w.shape, bias=False), w,
                                 None) for w in self.model_w]
        hidden = torch_conv(self.model_x, self.model_w[0], None)
        self.model_expected = torch_conv(hidden.astype(np.float32), self.model_w[1], None)

        # deadline / cancel: about 0.4 GMAC, tens of milliseconds or more.
        big_x = rng.standard_normal((1, 64, 64, 64)).astype(np.float32)
        big_w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
        self.slow = pb.ConvRequest(
            layer=convserve.make_layer(2, big_x.shape, big_w.shape, bias=False, padding=1))
        to_tensor(big_x, self.slow.input)
        to_tensor(big_w, self.slow.weight)

        self.bad = self._bad_requests()

    def _mutated(self, change):
        request = pb.ConvRequest()
        request.CopyFrom(self.good)
        change(request)
        return request

    def _bad_requests(self):
        """(name, method, request bytes, expected codes): one per RELIABILITY row a client can send."""
        def conv(name, change, codes=(INVALID,)):
            return (name, "Conv", self._mutated(change).SerializeToString(), codes)

        def shape(dims, data=None):
            def change(request):
                request.input.shape[:] = dims
                if data is not None:
                    request.input.data = data
            return change

        def layer(**fields):
            def change(request):
                for field, value in fields.items():
                    if isinstance(value, list):
                        getattr(request.layer, field)[:] = value
                    else:
                        setattr(request.layer, field, value)
            return change

        unknown_model = pb.RunModelRequest(name="no-such-model\n[critical] FORGED")
        to_tensor(self.model_x, unknown_model.input)
        return [
            ("bad:row2-unparsable", "Conv", b"\xff\xff\xff\xff garbage", (grpc.StatusCode.INTERNAL,)),
            conv("bad:row4-missing-input", lambda r: r.ClearField("input")),
            conv("bad:row4-wrong-dtype",
                 lambda r: setattr(r.input, "element_type", pb.ELEMENT_TYPE_FLOAT64)),
            conv("bad:row5-zero-dim", shape([1, 8, 0, 16])),
            conv("bad:row6-overflow", shape([2 ** 32, 2 ** 32, 2, 1])),
            conv("bad:row7-short-payload", lambda r: setattr(r.input, "data", r.input.data[:-4])),
            conv("bad:row8-kernel-too-big", layer(kernel=[40, 40])),
            # Legal (one window per axis, as in PyTorch); it once overflowed (issue 9).
            conv("bad:row8-huge-stride", layer(stride=[2 ** 63 - 1, 1]), (OK,)),
            conv("bad:row8-negative-pad", layer(pad_begin=[-1, 0])),
            conv("bad:row8-huge-kernel-list", layer(kernel=list(range(1, 100001)))),
            conv("bad:row9-elements", layer(pad_begin=[3000, 3000], pad_end=[3000, 3000]),
                 (EXHAUSTED, INVALID)),
            ("bad:row11-unknown-model", "RunModel", unknown_model.SerializeToString(),
             (grpc.StatusCode.NOT_FOUND,)),
        ]


class Soak:
    def __init__(self, args, target):
        self.args = args
        self.target = target
        self.rng = np.random.default_rng(args.seed)
        self.work = Workload(self.rng)
        self.counts = collections.Counter()  # (action, code name) -> calls
        self.unexpected = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20)])
        self.client = convserve.Client(target)
        self.client.load_model("soak-model", self.work.model_layers)
        self.actions = [
            ("good", 30), ("model", 15), ("bad", 30), ("deadline", 5), ("cancel", 5),
            ("reload", 3), ("churn", 2)]

    def _method(self, name):
        return self.channel.unary_unary("/convserve.v1.ConvService/" + name,
                                        request_serializer=None, response_deserializer=None)

    def record(self, action, code, problem=None):
        with self.lock:
            self.counts[(action, code.name)] += 1
            if problem is not None and len(self.unexpected) < 50:
                self.unexpected.append("%s: %s" % (action, problem))

    def expect(self, action, code, allowed, details=""):
        if code in allowed:
            self.record(action, code)
        else:
            self.record(action, code, "got %s (%s), expected one of %s"
                        % (code.name, details[:300], [c.name for c in allowed]))

    def call(self, action, method, payload, allowed, timeout=30):
        try:
            response = self._method(method)(payload, timeout=timeout)
            self.expect(action, OK, allowed)
            return response
        except grpc.RpcError as error:
            self.expect(action, error.code(), allowed, error.details() or "")
            return None

    def one(self, rng):
        weights = [w for _, w in self.actions]
        action = self.actions[rng.choice(len(self.actions), p=np.array(weights) / sum(weights))][0]
        work = self.work
        if action == "good":
            raw = self.call("good", "Conv", work.good.SerializeToString(), (OK,))
            if raw is not None:
                response = pb.ConvResponse.FromString(raw)
                if not close_enough(from_tensor(response.output), work.good_expected, work.x,
                                    work.w, padding=1):
                    self.record("good", OK, "Conv output differs from PyTorch's")
        elif action == "model":
            request = pb.RunModelRequest(name="soak-model")
            to_tensor(work.model_x, request.input)
            raw = self.call("model", "RunModel", request.SerializeToString(), (OK,))
            if raw is not None:
                output = from_tensor(pb.RunModelResponse.FromString(raw).output)
                if output.shape != work.model_expected.shape or not np.allclose(
                        output, work.model_expected, rtol=1e-4, atol=1e-3):
                    self.record("model", OK, "RunModel output differs from PyTorch's")
        elif action == "bad":
            name, method, payload, allowed = work.bad[rng.integers(len(work.bad))]
            self.call(name, method, payload, allowed)
        elif action == "deadline":
            self.call("deadline", "Conv", work.slow.SerializeToString(),
                      (OK, grpc.StatusCode.DEADLINE_EXCEEDED, EXHAUSTED),
                      timeout=float(rng.uniform(0.001, 0.05)))
        elif action == "cancel":
            future = self._method("Conv").future(work.slow.SerializeToString(), timeout=30)
            time.sleep(float(rng.uniform(0, 0.02)))
            future.cancel()
            try:
                future.result()
                self.record("cancel", OK)
            except grpc.FutureCancelledError:
                self.record("cancel", grpc.StatusCode.CANCELLED)
            except grpc.RpcError as error:
                self.expect("cancel", error.code(), (EXHAUSTED,), error.details() or "")
        elif action == "reload":
            request = load_model_request("soak-model", work.model_layers, replace=True)
            self.call("reload", "LoadModel", request.SerializeToString(), (OK,))
        elif action == "churn":
            name = "churn-%d" % rng.integers(1 << 30)
            request = load_model_request(name, work.model_layers)
            if self.call("churn", "LoadModel", request.SerializeToString(), (OK, EXHAUSTED)):
                unload = pb.UnloadModelRequest(name=name)
                self.call("churn", "UnloadModel", unload.SerializeToString(), (OK,))

    def worker(self, seed):
        rng = np.random.default_rng(seed)
        while not self.stop.is_set():
            try:
                self.one(rng)
            except Exception as error:  # a bug in the soak itself counts too
                self.record("soak", grpc.StatusCode.UNKNOWN, "exception: %r" % error)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--server", default=str(REPO / "build" / "server" / "convserve_server"))
    parser.add_argument("--budget_bytes", type=int, default=256 << 20,
                        help="the server's --memory_budget_bytes")
    parser.add_argument("--rss_interval", type=float, default=10)
    parser.add_argument("--rss_margin_mb", type=float, default=192,
                        help="RSS allowed above baseline + budget (gRPC buffers, the heap's "
                             "free memory kept for reuse, thread stacks)")
    parser.add_argument("--csv", help="write the RSS samples (seconds, MB) here")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    if b"__asan_init" in pathlib.Path(args.server).read_bytes():
        # AddressSanitizer keeps freed memory in quarantine (256 MB by default).
        args.rss_margin_mb += 512
    workdir = tempfile.TemporaryDirectory(prefix="convserve_soak_")
    port_file = pathlib.Path(workdir.name) / "port"
    log_path = pathlib.Path(workdir.name) / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [args.server, "--listen=127.0.0.1:0", "--port_file=%s" % port_file,
             "--memory_budget_bytes=%d" % args.budget_bytes, "--max_message_bytes=%d" % (64 << 20),
             "--log_level=warn"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                print("soak: the server did not start:\n" + log_path.read_text())
                return 1
            time.sleep(0.05)
        target = "127.0.0.1:" + port_file.read_text().strip()
        baseline_mb = rss_kb(server.pid) / 1024
        soak = Soak(args, target)
        threads = [threading.Thread(target=soak.worker, args=(args.seed * 1000 + i,), daemon=True)
                   for i in range(args.concurrency)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        samples = []  # (seconds, MB)
        while time.monotonic() - start < args.duration and server.poll() is None:
            time.sleep(min(args.rss_interval, max(0.0, args.duration - (time.monotonic() - start))))
            if server.poll() is None:
                samples.append((time.monotonic() - start, rss_kb(server.pid) / 1024))
                print("soak: %6.0f s  RSS %7.1f MB  calls %d" % (
                    samples[-1][0], samples[-1][1], sum(soak.counts.values())), flush=True)
        soak.stop.set()
        for thread in threads:
            thread.join(60)
        alive = server.poll() is None
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
    log_text = log_path.read_text()

    failures = list(soak.unexpected)
    if not alive:
        failures.append("the server died during the soak (exit %s)" % server.returncode)
    elif server.returncode != 0:
        failures.append("the server exited with %d after SIGTERM" % server.returncode)
    for line in log_text.splitlines():
        # The level is the line's second bracket: a WARN line may quote a
        # caller's "[critical]" (escaped, on its own line).
        level = re.match(r"\[[^\]]*\] \[(\w+)\]", line)
        if level:
            bad = level.group(1) in ("error", "critical")
        else:
            bad = "[error]" in line or "[critical]" in line
        if bad or "Sanitizer" in line or "runtime error" in line:
            failures.append("server log: " + line[:300])
            break
    rss = [mb for _, mb in samples]
    limit_mb = baseline_mb + args.budget_bytes / (1 << 20) + args.rss_margin_mb
    if rss and max(rss) > limit_mb:
        failures.append("RSS reached %.1f MB, above baseline %.1f + budget %.1f + margin %.1f MB"
                        % (max(rss), baseline_mb, args.budget_bytes / (1 << 20),
                           args.rss_margin_mb))
    if args.duration >= 300 and len(rss) >= 6:
        # After warm-up (the first third), the last third may not sit above
        # the middle third by more than 10 % (+ 8 MB): that would be a leak.
        third = len(rss) // 3
        middle = max(rss[third:2 * third])
        last = max(rss[2 * third:])
        if last > middle * 1.10 + 8:
            failures.append("RSS grew after warm-up: max %.1f MB in the middle third, %.1f MB in "
                            "the last" % (middle, last))
    if args.csv:
        with open(args.csv, "w") as out:
            out.write("seconds,rss_mb\n")
            for seconds, mb in samples:
                out.write("%.1f,%.1f\n" % (seconds, mb))

    total = sum(soak.counts.values())
    print("\nsoak: %d calls in %.0f s (%.0f calls/s) at concurrency %d against %s"
          % (total, args.duration, total / max(args.duration, 1e-9), args.concurrency, target))
    for (action, code), count in sorted(soak.counts.items()):
        print("  %-28s %-20s %8d" % (action, code, count))
    if rss:
        print("soak: RSS baseline %.1f MB, start %.1f, end %.1f, max %.1f (limit %.1f) MB"
              % (baseline_mb, rss[0], rss[-1], max(rss), limit_mb))
    if failures:
        print("\nsoak: FAILED")
        for failure in failures[:20]:
            print("  " + failure)
        return 1
    print("soak: passed (no unexpected status, RSS within bounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
