"""--model_repository: a server serving ONNX models exported from PyTorch out of a directory in
Triton's layout, with parity to PyTorch; versions swapped under load with no failed call; files
that fail to load listed with their reason while the old version keeps serving; rescans on
SIGHUP and by polling; bad flags exit 2.
"""

import signal
import subprocess
import threading
import time

import grpc
import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

import convserve
from conftest import SERVER_BINARY
from test_onnx import TORCH_MODELS, export, float64_with_bound

pytestmark = pytest.mark.filterwarnings("ignore:Constant folding:UserWarning")

SHAPE = (1, 3, 12, 10)


def net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
                         nn.Conv2d(6, 4, 3, stride=2), nn.SiLU()).eval()


def write(root, name, version, data):
    folder = root / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed, as a deployment tool would: never half a file.
    (folder / "model.onnx.tmp").write_bytes(data)
    (folder / "model.onnx.tmp").rename(folder / "model.onnx")


def pooled_model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2))
    return export(model, SHAPE)


def wait_serving(client, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.health(timeout=5) == "SERVING":
                return
        except convserve.ConvServeError:
            pass
        time.sleep(0.1)
    raise AssertionError("not SERVING after %d s" % timeout)


def models_by_name(client):
    listed = {}
    for info in client.list_models():
        listed.setdefault(info.name, []).append(info)
    return listed


def check_against(client, name, model, rng):
    x = rng.uniform(-1, 1, SHAPE).astype(np.float32)
    y, _ = client.run_model(name, x)
    ref, bound = float64_with_bound(model, x)
    assert y.shape == ref.shape
    assert np.max(np.abs(y - ref) - bound) <= 0, name


def wait_for(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def test_the_repository_serves_its_models_and_lists_what_it_refused(start_server, tmp_path):
    root = tmp_path / "models"
    first = net(1)
    write(root, "net", 1, export(net(0), SHAPE))
    write(root, "net", 3, export(first, SHAPE))        # the highest version is served
    write(root, "broken", 1, b"\x08\x07garbage")
    write(root, "pooled", 2, pooled_model())
    (root / "not a model").mkdir()
    process = start_server("--model_repository=%s" % root, "--drain_grace_ms=0")
    rng = np.random.default_rng(5)
    with convserve.Client(process.target, timeout=60) as client:
        wait_serving(client)
        listed = models_by_name(client)
        assert sorted(listed) == ["broken", "net", "pooled"]
        (served,) = listed["net"]
        assert served.ready and served.version == 3 and served.status == ""
        assert served.source == str(root / "net" / "3" / "model.onnx")
        assert list(served.input_shape) == list(SHAPE)
        assert list(served.output_shape) == [1, 4, 5, 4]
        (pooled,) = listed["pooled"]
        assert not pooled.ready and pooled.version == 2
        assert "unsupported nodes: MaxPool" in pooled.status
        (broken,) = listed["broken"]
        assert not broken.ready and broken.status
        check_against(client, "net", first, rng)
        with pytest.raises(convserve.ConvServeError) as refused:
            client.run_model("pooled", np.zeros(SHAPE, np.float32))
        assert refused.value.code == grpc.StatusCode.NOT_FOUND
    log = process.log()
    assert "model repository: skipped" in log and "not a model" in log
    assert process.lines_above_warn() == []


def test_residual_and_concat_graphs_are_served_with_parity(start_server, tmp_path):
    """Graphs exported from PyTorch, with residual sums and channel concatenations,
    served from the repository: each listed with its fixed shapes and equal to
    the module in float64 within the parity bound."""
    root = tmp_path / "models"
    names = ["resnet_basic_blocks_2d", "inception_concat_2d", "densenet_concat_3d_with_identity"]
    modules = {}
    for seed, name in enumerate(names):
        torch.manual_seed(100 + seed)
        build, shape, opset = TORCH_MODELS[name]
        modules[name] = (build().eval(), shape)
        write(root, name, 1, export(modules[name][0], shape, opset))
    process = start_server("--model_repository=%s" % root, "--drain_grace_ms=0")
    rng = np.random.default_rng(11)
    with convserve.Client(process.target, timeout=60) as client:
        wait_serving(client)
        listed = models_by_name(client)
        for name, (module, shape) in modules.items():
            (info,) = listed[name]
            assert info.ready and info.status == "", info.status
            x = rng.uniform(-1, 1, shape).astype(np.float32)
            ref, bound = float64_with_bound(module, x)
            assert list(info.input_shape) == list(shape)
            assert list(info.output_shape) == list(ref.shape)
            y, _ = client.run_model(name, x)
            assert y.shape == ref.shape
            assert np.max(np.abs(y - ref) - bound) <= 0, name
    assert process.lines_above_warn() == []


def test_a_config_can_allow_winograd(start_server, tmp_path):
    """config.pbtxt's `parameters` key "precision": "fast" runs the model's 3x3 stride-1 layers
    with Winograd, as LoadModelRequest.precision does; without it they stay direct."""
    root = tmp_path / "models"
    data = export(net(1), SHAPE)
    write(root, "fast", 1, data)
    write(root, "exact", 1, data)
    (root / "fast" / "config.pbtxt").write_text(
        'parameters { key: "precision" value { string_value: "fast" } }\n')
    process = start_server("--model_repository=%s" % root, "--drain_grace_ms=0")
    with convserve.Client(process.target, timeout=60) as client:
        wait_serving(client)
        listed = models_by_name(client)
        pb = convserve.client.pb
        # net(): a 3x3 stride-1 layer (reflect padding: direct), then a 3x3 stride-2 one.
        (fast,) = listed["fast"]
        assert [layer.algorithm for layer in fast.layers] == [pb.CONV_ALGORITHM_AUTO] * 2
    # A model whose first layer Winograd can run: zero padding.
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3)).eval()
    write(root, "fast", 2, export(model, SHAPE))
    write(root, "exact", 2, export(model, SHAPE))
    process.process.send_signal(signal.SIGHUP)
    with convserve.Client(process.target, timeout=60) as client:
        wait_for(lambda: models_by_name(client)["fast"][0].version == 2 and
                 models_by_name(client)["exact"][0].version == 2, "version 2")
        listed = models_by_name(client)
        assert [layer.algorithm for layer in listed["fast"][0].layers] == \
            [pb.CONV_ALGORITHM_WINOGRAD, pb.CONV_ALGORITHM_WINOGRAD]
        assert [layer.algorithm for layer in listed["exact"][0].layers] == \
            [pb.CONV_ALGORITHM_AUTO] * 2
        x = np.random.default_rng(2).uniform(-1, 1, SHAPE).astype(np.float32)
        y_fast, _ = client.run_model("fast", x)
        y_exact, _ = client.run_model("exact", x)
        assert not np.array_equal(y_fast, y_exact)
        np.testing.assert_allclose(y_fast, y_exact, rtol=1e-3, atol=1e-3)


def test_a_new_version_is_swapped_in_under_load_without_a_failed_call(start_server, tmp_path):
    root = tmp_path / "models"
    old, new = net(1), net(2)
    write(root, "net", 1, export(old, SHAPE))
    process = start_server("--model_repository=%s" % root, "--drain_grace_ms=0")
    x = np.random.default_rng(6).uniform(-1, 1, SHAPE).astype(np.float32)
    expected = {}
    for version, model in ((1, old), (2, new)):
        expected[version] = float64_with_bound(model, x)
    failures, answers = [], {1: 0, 2: 0}
    stop = threading.Event()

    def caller():
        with convserve.Client(process.target, timeout=60) as client:
            while not stop.is_set():
                try:
                    y, _ = client.run_model("net", x)
                except convserve.ConvServeError as error:
                    failures.append(error)
                    continue
                matches = [v for v, (ref, bound) in expected.items()
                           if np.max(np.abs(y - ref) - bound) <= 0]
                if len(matches) != 1:
                    failures.append("an answer matching neither version")
                else:
                    answers[matches[0]] += 1

    with convserve.Client(process.target, timeout=60) as client:
        wait_serving(client)
        callers = [threading.Thread(target=caller) for _ in range(4)]
        for thread in callers:
            thread.start()
        try:
            wait_for(lambda: answers[1] > 20, "calls on version 1")
            write(root, "net", 2, export(new, SHAPE))
            process.signal(signal.SIGHUP)
            wait_for(lambda: models_by_name(client)["net"][0].version == 2, "version 2")
            seen = answers[2]
            wait_for(lambda: answers[2] > seen + 20, "calls on version 2")
            # A broken version 3 leaves version 2 serving, and is listed with its reason.
            write(root, "net", 3, b"not a model")
            process.signal(signal.SIGHUP)
            wait_for(lambda: len(models_by_name(client)["net"]) == 2, "version 3 refused")
            ready, refused = models_by_name(client)["net"]
            assert ready.ready and ready.version == 2
            assert not refused.ready and refused.version == 3 and refused.status
            seen = answers[2]
            wait_for(lambda: answers[2] > seen + 20, "calls on version 2 after the refusal")
        finally:
            stop.set()
            for thread in callers:
                thread.join()
    assert failures == []
    assert "received SIGHUP: reading the model repository again" in process.log()


def test_polling_picks_up_new_and_removed_models(start_server, tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    process = start_server("--model_repository=%s" % root, "--model_repository_poll_s=1",
                           "--drain_grace_ms=0")
    with convserve.Client(process.target, timeout=60) as client:
        wait_serving(client)
        assert client.list_models() == []
        write(root, "late", 1, export(net(3), SHAPE))
        wait_for(lambda: "late" in models_by_name(client), "the new model")
        check_against(client, "late", net(3), np.random.default_rng(7))
        (root / "late" / "1" / "model.onnx").unlink()
        wait_for(lambda: "late" not in models_by_name(client), "the model's removal")


def test_a_file_above_max_model_bytes_is_refused(start_server, tmp_path):
    root = tmp_path / "models"
    data = export(net(1), SHAPE)
    write(root, "net", 1, data)
    process = start_server("--model_repository=%s" % root,
                           "--max_model_bytes=%d" % (len(data) - 1), "--drain_grace_ms=0")
    with convserve.Client(process.target, timeout=60) as client:
        wait_serving(client)
        (refused,) = client.list_models()
        assert not refused.ready
        assert "--max_model_bytes" in refused.status


def test_a_file_larger_than_a_message_is_served(start_server, tmp_path):
    # Files are bounded by --max_model_bytes only: --max_message_bytes is about the wire.
    root = tmp_path / "models"
    data = export(net(1), SHAPE)
    assert len(data) > 1024
    write(root, "net", 1, data)
    process = start_server("--model_repository=%s" % root, "--max_message_bytes=1024",
                           "--drain_grace_ms=0")
    with convserve.Client(process.target, timeout=60) as client:
        wait_serving(client)
        (served,) = client.list_models()
        assert served.ready, served.status


@pytest.mark.parametrize("flags, message", [
    (["--model_repository=/nonexistent/models"], "--model_repository: expected a directory"),
    (["--model_repository_poll_s=5"], "--model_repository_poll_s: expected only with"),
    (["--model_repository=/tmp", "--model_repository_poll_s=-1"],
     "--model_repository_poll_s: expected 0"),
])
def test_bad_repository_flags_exit_2(flags, message):
    result = subprocess.run([str(SERVER_BINARY), "--listen=127.0.0.1:0"] + flags,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stdout + result.stderr
