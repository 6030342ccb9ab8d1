"""Every RPC through the Python client, the CLIs and the examples, against the real server."""

import os
import subprocess
import sys

import grpc
import numpy as np
import pytest

import convserve
from convserve import _stubs
from convserve.client import pb
from conftest import CONVCTL, CPP_REFERENCE_EXAMPLE, REPO

# docs/SEMANTICS.md: input 1..9, one channel, kernel of ones, no bias, Conv1D.
REFERENCE_TABLE = {
    (5, 1): ([15, 20, 25, 30, 35], [6, 10, 15, 20, 25, 30, 35, 30, 24]),
    (5, 2): ([15, 25, 35], [6, 15, 25, 35, 24]),
    (6, 1): ([21, 27, 33, 39], [10, 15, 21, 27, 33, 39, 35, 30, 24]),
    (6, 2): ([21, 33], [10, 21, 33, 35, 24]),
}


@pytest.mark.parametrize("k,s", sorted(REFERENCE_TABLE))
def test_reference_table(client, k, s):
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 9)
    w = np.ones((1, 1, k), dtype=np.float32)
    valid, same_upper = REFERENCE_TABLE[(k, s)]
    assert convserve.conv1d(x, w, stride=s, padding="valid", client=client).ravel().tolist() == valid
    assert convserve.conv1d(x, w, stride=s, padding="same_upper",
                            client=client).ravel().tolist() == same_upper
    # Keras spelling, channels_last and the Keras kernel layout give the same numbers.
    y = convserve.conv1d(x.transpose(0, 2, 1), w.transpose(2, 1, 0), stride=s, padding="same",
                         data_format="channels_last", weight_format="hwio", client=client)
    assert y.shape == (1, len(same_upper), 1)
    assert y.ravel().tolist() == same_upper


def test_functions_without_client_use_target_or_environment(server, monkeypatch):
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 9)
    w = np.ones((1, 1, 5), np.float32)
    expected = REFERENCE_TABLE[(5, 1)][0]
    assert convserve.conv1d(x, w, target=server.target).ravel().tolist() == expected
    monkeypatch.setenv("CONVSERVE_TARGET", server.target)
    assert convserve.conv1d(x, w).ravel().tolist() == expected
    assert list(convserve.validate(x.shape, w.shape).output_shape) == [1, 1, 5]


def test_local_argument_errors_are_value_errors():
    x = np.zeros((1, 1, 9), np.float32)
    with pytest.raises(ValueError, match="padding_mode"):
        convserve.conv1d(x, np.ones((1, 1, 3), np.float32), padding_mode="mirror")
    with pytest.raises(ValueError, match="w: expected 3 dims"):
        convserve.conv1d(x, np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match="activation"):
        convserve.conv1d(x, np.ones((1, 1, 3), np.float32), activation="softmax")


def test_health_serving(client):
    assert client.health() == "SERVING"
    assert client.health("convserve.v1.ConvService") == "SERVING"


def test_health_unknown_service_is_not_found(client):
    with pytest.raises(convserve.ConvServeError) as error:
        client.health("no.such.Service")
    assert error.value.code == grpc.StatusCode.NOT_FOUND


def test_conv_response_carries_timing_and_kernel(client):
    x = np.random.default_rng(1).standard_normal((2, 3, 10, 12)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = np.arange(4, dtype=np.float32)
    layer = convserve.make_layer(2, x.shape, w.shape, bias=True, padding=1)
    y, response = client.conv(layer, x, w, b)
    assert y.shape == (2, 4, 10, 12)
    assert response.compute_time_ns > 0
    assert response.kernel
    assert list(response.output.shape) == [2, 4, 10, 12]


def test_validate_shape_report(client):
    report = convserve.validate((1, 3, 224, 224), (64, 3, 7, 7), bias=True, stride=2, padding=3,
                                client=client)
    assert list(report.output_shape) == [1, 64, 112, 112]
    assert list(report.weight_shape) == [64, 3, 7, 7]
    assert list(report.bias_shape) == [64]
    assert report.parameters == 64 * 3 * 49 + 64
    assert report.macs == 1 * 64 * 112 * 112 * 3 * 49
    assert report.flops == 2 * report.macs
    assert len(report.axes) == 2
    axis = report.axes[0]
    assert (axis.input, axis.kernel, axis.stride, axis.pad_begin, axis.pad_end) == (224, 7, 2, 3, 3)
    assert (axis.span, axis.padded, axis.output, axis.unread_cells) == (7, 230, 112, 1)
    assert "112" in axis.derivation
    assert [v.framework for v in report.frameworks] == [
        pb.FRAMEWORK_PYTORCH, pb.FRAMEWORK_KERAS, pb.FRAMEWORK_ONNX]
    assert report.frameworks[0].accepted and report.frameworks[0].equivalent
    text = convserve.format_report(report)
    assert "PyTorch" in text and "Keras" in text and "ONNX" in text


def test_validate_shape_keras_same_even_kernel(client):
    # docs/SEMANTICS.md: Keras "same", k = 6, s = 1 pads (2, 3); PyTorch cannot say it.
    report = convserve.validate((1, 9, 1), (6, 1, 1), padding="same", data_format="channels_last",
                                weight_format="hwio", client=client)
    assert (report.axes[0].pad_begin, report.axes[0].pad_end) == (2, 3)
    assert list(report.output_shape) == [1, 9, 1]


def test_validate_shape_invalid_gives_core_message(client):
    with pytest.raises(convserve.ConvServeError) as error:
        convserve.validate((3, 224, 224), (64, 3, 7, 7), client=client)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "input" in error.value.details and "[3, 224, 224]" in error.value.details


def test_validate_shape_enforce_framework(client):
    # k = 6, s = 2 on 9 cells resolves to pads (2, 3), which PyTorch's layer
    # cannot express; unenforced the layer is fine.
    report = convserve.validate((1, 1, 9), (1, 1, 6), stride=2, padding="same", client=client)
    assert not report.frameworks[0].accepted and report.frameworks[0].reason
    with pytest.raises(convserve.ConvServeError) as error:
        convserve.validate((1, 1, 9), (1, 1, 6), stride=2, padding="same",
                           enforce_framework="pytorch", client=client)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT


def _two_layer_model(rng):
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    b1 = rng.standard_normal(8).astype(np.float32)
    w2 = rng.standard_normal((4, 8, 1, 1)).astype(np.float32)
    layer1 = convserve.make_layer(2, (1, 3, 16, 16), w1.shape, bias=True, padding="same",
                                  activation="relu")
    layer2 = convserve.make_layer(2, (1, 8, 16, 16), w2.shape, stride=2)
    return [convserve.ModelLayer(layer1, w1, b1), convserve.ModelLayer(layer2, w2, None)]


def test_models_load_run_list_unload(client):
    rng = np.random.default_rng(7)
    layers = _two_layer_model(rng)
    info = client.load_model("tiny-net", layers)
    assert info.name == "tiny-net"
    assert len(info.layers) == 2
    assert info.parameters == 8 * 3 * 9 + 8 + 4 * 8
    assert "tiny-net" in [m.name for m in client.list_models()]

    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    y, compute_ns = client.run_model("tiny-net", x)
    hidden, _ = client.conv(layers[0].layer, x, layers[0].weight, layers[0].bias)
    expected, _ = client.conv(layers[1].layer, hidden, layers[1].weight)
    assert y.shape == (2, 4, 8, 8)
    assert compute_ns > 0
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)

    with pytest.raises(convserve.ConvServeError) as error:
        client.load_model("tiny-net", layers)
    assert error.value.code == grpc.StatusCode.ALREADY_EXISTS
    client.load_model("tiny-net", layers, replace=True)

    client.unload_model("tiny-net")
    assert "tiny-net" not in [m.name for m in client.list_models()]
    with pytest.raises(convserve.ConvServeError) as error:
        client.run_model("tiny-net", x)
    assert error.value.code == grpc.StatusCode.NOT_FOUND
    assert "tiny-net" in error.value.details


def test_load_model_checks_layer_chaining(client):
    rng = np.random.default_rng(8)
    layers = _two_layer_model(rng)
    bad_second = convserve.ModelLayer(
        convserve.make_layer(2, (1, 5, 16, 16), (4, 5, 1, 1)),
        np.zeros((4, 5, 1, 1), np.float32), None)
    with pytest.raises(convserve.ConvServeError) as error:
        client.load_model("broken", [layers[0], bad_second])
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "layers[1].layer.in_channels: expected 8" in error.value.details
    with pytest.raises(convserve.ConvServeError) as error:
        client.load_model("bad name!", layers)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "name" in error.value.details


def _reflection_request(target, request):
    reflection_pb2 = _stubs.load_generated(
        os.path.join("grpc", "reflection", "v1alpha", "reflection_pb2.py"),
        "convserve_test_reflection_pb2")
    with grpc.insecure_channel(target) as channel:
        call = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        return list(call(iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=10))


def test_reflection_lists_services(server):
    responses = _reflection_request(server.target, {"list_services": ""})
    names = {service.name for service in responses[0].list_services_response.service}
    assert {"convserve.v1.ConvService", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_reflection_describes_the_api(server):
    responses = _reflection_request(server.target,
                                    {"file_containing_symbol": "convserve.v1.ConvService"})
    files = responses[0].file_descriptor_response.file_descriptor_proto
    assert files and any(b"ConvRequest" in f for f in files)


# --- Command-line clients and examples ------------------------------------

def _run(command, env=None, **kwargs):
    env = env or dict(os.environ, PYTHONPATH=str(REPO / "client" / "python"))
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, **kwargs)


def test_convctl_health_shape_conv(server, tmp_path):
    target = "--target=%s" % server.target
    result = _run([str(CONVCTL), target, "health"])
    assert result.returncode == 0 and result.stdout.strip() == "SERVING", result.stderr

    result = _run([str(CONVCTL), target, "shape", "--input_shape=1,9,1", "--weight_shape=6,1,1",
                   "--data_format=channels_last", "--weight_format=hwio", "--padding=same"])
    assert result.returncode == 0, result.stderr
    assert "9+2+3" in result.stdout  # the per-axis derivation shows the (2, 3) padding
    assert "PyTorch" in result.stdout and "Keras    accepts" in result.stdout

    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 9)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", np.ones((1, 1, 5), np.float32))
    np.save(tmp_path / "b.npy", np.full((1,), 0.5, np.float32))
    result = _run([str(CONVCTL), target, "conv", "--input=%s" % (tmp_path / "x.npy"),
                   "--weight=%s" % (tmp_path / "w.npy"), "--bias=%s" % (tmp_path / "b.npy"),
                   "--output=%s" % (tmp_path / "y.npy"), "--padding=same"])
    assert result.returncode == 0, result.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.float32 and y.shape == (1, 1, 9)
    assert y.ravel().tolist() == [v + 0.5 for v in REFERENCE_TABLE[(5, 1)][1]]

    result = _run([str(CONVCTL), target, "conv", "--input=%s" % (tmp_path / "x.npy"),
                   "--weight=%s" % (tmp_path / "w.npy"), "--output=%s" % (tmp_path / "y.npy"),
                   "--stride=0"])
    assert result.returncode == 1
    assert "INVALID_ARGUMENT" in result.stderr and "stride" in result.stderr

    np.save(tmp_path / "x64.npy", x.astype(np.float64))
    result = _run([str(CONVCTL), target, "conv", "--input=%s" % (tmp_path / "x64.npy"),
                   "--weight=%s" % (tmp_path / "w.npy"), "--output=%s" % (tmp_path / "y.npy")])
    assert result.returncode != 0 and "'<f4'" in result.stderr


def test_clis_send_the_auth_token(start_server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("cli-token\n")
    process = start_server("--auth_token_file=%s" % token_file, "--drain_grace_ms=0")
    shape = ["--input_shape=1,1,9", "--weight_shape=1,1,5"]
    result = _run([str(CONVCTL), "--target=%s" % process.target, "shape"] + shape)
    assert result.returncode == 1 and "UNAUTHENTICATED" in result.stderr
    result = _run([str(CONVCTL), "--target=%s" % process.target,
                   "--auth_token_file=%s" % token_file, "shape"] + shape)
    assert result.returncode == 0, result.stderr
    base = [sys.executable, "-m", "convserve", "--target", process.target]
    shape = ["shape", "--input-shape", "1,1,9", "--weight-shape", "1,1,5"]
    result = _run(base + shape)
    assert result.returncode == 1 and "UNAUTHENTICATED" in result.stderr
    result = _run(base + ["--auth-token-file", str(token_file)] + shape)
    assert result.returncode == 0, result.stderr


def test_python_cli(server, tmp_path):
    base = [sys.executable, "-m", "convserve", "--target", server.target]
    result = _run(base + ["health"])
    assert result.returncode == 0 and result.stdout.strip() == "SERVING", result.stderr
    result = _run(base + ["shape", "--input-shape", "1,3,224,224", "--weight-shape", "64,3,7,7",
                          "--stride", "2", "--padding", "3", "--bias"])
    assert result.returncode == 0, result.stderr
    assert "[1, 64, 112, 112]" in result.stdout
    np.save(tmp_path / "x.npy", np.arange(1, 10, dtype=np.float32).reshape(1, 1, 9))
    np.save(tmp_path / "w.npy", np.ones((1, 1, 6), np.float32))
    result = _run(base + ["conv", "--input", str(tmp_path / "x.npy"), "--weight",
                          str(tmp_path / "w.npy"), "--output", str(tmp_path / "y.npy"),
                          "--stride", "2", "--padding", "same"])
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "y.npy").ravel().tolist() == REFERENCE_TABLE[(6, 2)][1]
    result = _run(base + ["models"])
    assert result.returncode == 0, result.stderr


def _both_clis(args, env=None):
    """Runs the same command line through convctl and the Python CLI."""
    python_cli = [sys.executable, "-m", "convserve"]
    return [_run(command + args, env=env) for command in ([str(CONVCTL)], python_cli)]


def test_the_two_clis_take_the_same_command_lines(server, tmp_path):
    target = "--target=%s" % server.target
    # convctl's spelling, options before and after the command.
    shape = ["shape", "--input_shape=1,3,16,16", "--weight_shape=8,3,3,3", "--with_bias",
             "--stride=2", "--padding=1:2,0:1", "--padding_mode=reflect", "--dilation=1,2",
             "--activation=relu", target]
    convctl, python_cli = _both_clis([target] + shape[:-1])
    assert convctl.returncode == 0 and python_cli.returncode == 0, convctl.stderr + python_cli.stderr
    assert convctl.stdout == python_cli.stdout
    assert "[1, 8, 9, 7]" in convctl.stdout  # (16+3-3)/2+1 = 9; (16+1-5)/2+1 = 7
    convctl, python_cli = _both_clis(shape + ["--enforce=keras"])
    assert convctl.returncode == python_cli.returncode == 1
    assert "Keras would refuse" in convctl.stderr and "Keras would refuse" in python_cli.stderr
    for bad in (["--padding_mode=mirror"], ["--data_format=nchw"], ["--activation=swish"]):
        convctl, python_cli = _both_clis(shape[:-1] + bad + [target])
        assert convctl.returncode != 0 and python_cli.returncode != 0, bad
        value = bad[0].split("=")[1]
        assert value in convctl.stderr and value in python_cli.stderr, (bad, python_cli.stderr)

    x = np.random.default_rng(3).standard_normal((1, 2, 11)).astype(np.float32)
    w = np.random.default_rng(4).standard_normal((4, 2, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    outputs = []
    for name, command in (("convctl", [str(CONVCTL)]),
                          ("python", [sys.executable, "-m", "convserve"])):
        result = _run(command + [target, "conv", "--input=%s" % (tmp_path / "x.npy"),
                                 "--weight=%s" % (tmp_path / "w.npy"),
                                 "--output=%s" % (tmp_path / (name + ".npy")),
                                 "--padding=2:1", "--stride=2", "--activation=relu"])
        assert result.returncode == 0, result.stderr
        outputs.append(np.load(tmp_path / (name + ".npy")))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (2, 1)))
    expected = np.maximum(0, np.stack([
        np.einsum("ck,ock->o", padded[0, :, i:i + 3], w.astype(np.float64))
        for i in range(0, padded.shape[2] - 2, 2)], axis=-1))[None]
    np.testing.assert_allclose(outputs[0], expected, rtol=1e-5, atol=1e-5)


def test_the_two_clis_read_the_same_environment(start_server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("env-token\n")
    process = start_server("--auth_token_file=%s" % token_file, "--drain_grace_ms=0")
    env = dict(os.environ, PYTHONPATH=str(REPO / "client" / "python"),
               CONVSERVE_TARGET=process.target)
    env.pop("CONVSERVE_TOKEN", None)
    for result in _both_clis(["health"], env):  # the target from the environment
        assert result.returncode == 0 and result.stdout.strip() == "SERVING", result.stderr
    for result in _both_clis(["models"], env):
        assert result.returncode == 1 and "UNAUTHENTICATED" in result.stderr
    env["CONVSERVE_TOKEN"] = "env-token"
    for result in _both_clis(["models"], env):
        assert result.returncode == 0, result.stderr


def test_examples_reproduce_reference_table(server):
    result = _run([str(CPP_REFERENCE_EXAMPLE), "--target=%s" % server.target])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all values match" in result.stdout
    result = _run([sys.executable, str(REPO / "client" / "python" / "examples" /
                                       "reference_table.py"), server.target])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all values match" in result.stdout


def test_log_has_nothing_above_warn(server):
    # Every failure above was the client's; none may be logged as an error.
    assert server.lines_above_warn() == []


def test_precision_fast_runs_auto_3x3_layers_with_winograd(client):
    rng = np.random.default_rng(11)
    layers = _two_layer_model(rng)  # a 3x3 stride-1 layer, then a 1x1 stride-2 one
    request = convserve.client.load_model_request("fast-net", layers)
    request.precision = pb.PRECISION_FAST
    info = client.stub.LoadModel(request, timeout=30).model
    assert [layer.algorithm for layer in info.layers] == [pb.CONV_ALGORITHM_WINOGRAD,
                                                          pb.CONV_ALGORITHM_AUTO]
    exact = client.load_model("exact-net", layers)
    assert [layer.algorithm for layer in exact.layers] == [pb.CONV_ALGORITHM_AUTO] * 2
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    y_fast, _ = client.run_model("fast-net", x)
    y_exact, _ = client.run_model("exact-net", x)
    np.testing.assert_allclose(y_fast, y_exact, rtol=1e-4, atol=1e-4)
    assert not np.array_equal(y_fast, y_exact)  # Winograd ran
    client.unload_model("fast-net")
    client.unload_model("exact-net")

    request.precision = 7
    with pytest.raises(grpc.RpcError) as error:
        client.stub.LoadModel(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "precision: expected PRECISION_EXACT or PRECISION_FAST, got 7" in error.value.details()

    strided = pb.ConvLayer()
    strided.CopyFrom(layers[1].layer)
    strided.algorithm = pb.CONV_ALGORITHM_WINOGRAD
    with pytest.raises(convserve.ConvServeError) as error:
        client.conv(strided, rng.standard_normal((1, 8, 16, 16)).astype(np.float32),
                    layers[1].weight)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "algorithm: 'winograd' requires a 2-D layer with a 3x3 kernel" in error.value.details
