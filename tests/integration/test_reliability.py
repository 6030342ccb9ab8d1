"""docs/RELIABILITY.md rows 1-11, 15, 17, 18 and 20: each bad input gets its status code, and
the server keeps serving everyone else and logs nothing above WARN."""

import threading

import grpc
import numpy as np
import pytest

import convserve
from convserve.client import pb, to_tensor
from conftest import ServerProcess, server_is_sanitized

# Limits small enough to reach with small messages (see each test).
LIMITED_FLAGS = ("--max_message_bytes=1048576", "--max_elements=300000",
                 "--max_macs=100000000", "--memory_budget_bytes=400000", "--drain_grace_ms=0")


@pytest.fixture(scope="module")
def limited_server():
    process = ServerProcess(*LIMITED_FLAGS)
    try:
        yield process
        assert process.stop() == 0, process.log()
        assert process.lines_above_warn() == []
    finally:
        process.cleanup()


@pytest.fixture(scope="module")
def limited_client(limited_server):
    with convserve.Client(limited_server.target, timeout=60) as connection:
        yield connection


def good_request():
    """A valid 2-D layer: input (1, 2, 8, 8), weight (3, 2, 3, 3), bias (3)."""
    rng = np.random.default_rng(0)
    layer = convserve.make_layer(2, (1, 2, 8, 8), (3, 2, 3, 3), bias=True)
    request = pb.ConvRequest(layer=layer)
    to_tensor(rng.standard_normal((1, 2, 8, 8)), request.input)
    to_tensor(rng.standard_normal((3, 2, 3, 3)), request.weight)
    to_tensor(rng.standard_normal(3), request.bias)
    return request


def assert_still_serving(connection):
    response = connection.stub.Conv(good_request(), timeout=30)
    assert list(response.output.shape) == [1, 3, 6, 6]
    assert connection.health() == "SERVING"


def call_conv(connection, request):
    with pytest.raises(grpc.RpcError) as error:
        connection.stub.Conv(request, timeout=30)
    return error.value.code(), error.value.details()


def mutate(**changes):
    """good_request() with fields changed by the given callables."""
    request = good_request()
    for change in changes.values():
        change(request)
    return request


def set_input(shape, data_bytes=None, element_type=pb.ELEMENT_TYPE_FLOAT32):
    def change(request):
        request.input.shape[:] = shape
        request.input.element_type = element_type
        if data_bytes is not None:
            request.input.data = data_bytes
    return change


def set_layer(**fields):
    def change(request):
        for name, value in fields.items():
            field = getattr(request.layer, name)
            if hasattr(field, "extend"):
                field[:] = value
            else:
                setattr(request.layer, name, value)
    return change


def set_weight(array):
    return lambda request: to_tensor(array, request.weight)


def cut_bytes(field, delta):
    def change(request):
        tensor = getattr(request, field)
        tensor.data = tensor.data[:delta] if delta < 0 else tensor.data + b"\0" * delta
    return change


BAD_INPUTS = [
    # Row 4: missing tensor, wrong rank, wrong dtype, layout/shape disagreement.
    ("missing input", mutate(c=lambda r: r.ClearField("input")),
     ["input: expected a tensor, got none"]),
    ("missing weight", mutate(c=lambda r: r.ClearField("weight")),
     ["weight: expected a tensor, got none"]),
    ("missing layer", mutate(c=lambda r: r.ClearField("layer")),
     ["layer: expected a layer description"]),
    ("missing bias", mutate(c=lambda r: r.ClearField("bias")),
     ["bias: expected a tensor of shape [3]", "layer.bias is true"]),
    ("unexpected bias", mutate(c=set_layer(bias=False)),
     ["bias: expected no tensor", "layer.bias is false"]),
    ("wrong rank", mutate(c=set_input([2, 8, 8], np.zeros(128, "<f4").tobytes())),
     ["input", "expected 4 dims", "[2, 8, 8]"]),
    ("wrong dtype", mutate(c=set_input([1, 2, 8, 8], None, pb.ELEMENT_TYPE_FLOAT64)),
     ["input.element_type: expected ELEMENT_TYPE_FLOAT32, ELEMENT_TYPE_FLOAT16 or "
      "ELEMENT_TYPE_BFLOAT16, got ELEMENT_TYPE_FLOAT64"]),
    ("unset dtype", mutate(c=set_input([1, 2, 8, 8], None, pb.ELEMENT_TYPE_UNSPECIFIED)),
     ["input.element_type", "ELEMENT_TYPE_UNSPECIFIED"]),
    ("float32 bytes sent as float16",
     mutate(c=set_input([1, 2, 8, 8], np.zeros(128, "<f4").tobytes(), pb.ELEMENT_TYPE_FLOAT16)),
     ["input: expected 256 bytes for shape [1, 2, 8, 8] float16, got 512"]),
    ("odd bfloat16 payload", mutate(c=set_input([1, 2, 8, 8], bytes(257), pb.ELEMENT_TYPE_BFLOAT16)),
     ["input: expected 256 bytes", "bfloat16, got 257 (not a multiple of 2)"]),
    ("unsupported output_type",
     mutate(c=lambda r: setattr(r, "output_type", pb.ELEMENT_TYPE_INT8)),
     ["output_type: expected ELEMENT_TYPE_FLOAT32, ELEMENT_TYPE_FLOAT16 or "
      "ELEMENT_TYPE_BFLOAT16, got ELEMENT_TYPE_INT8"]),
    ("layout disagrees with shape", mutate(c=set_layer(data_layout=pb.DATA_LAYOUT_CHANNELS_LAST)),
     ["input", "[1, 2, 8, 8]"]),
    ("unknown enum value", mutate(c=set_layer(padding=17)),
     ["layer.padding: expected one of", "got 17"]),
    ("spatial rank 4", mutate(c=set_layer(spatial_rank=4)), ["spatial_rank"]),
    # Row 5: zero or negative dimension, empty tensor.
    ("zero dimension", mutate(c=set_input([1, 2, 0, 8], b"")), ["input"]),
    ("negative dimension", mutate(c=set_input([1, 2, -8, 8], b"")), ["input"]),
    ("empty shape", mutate(c=set_input([], b"")), ["input.shape: expected at least one dimension"]),
    ("zero channels", mutate(c=set_layer(in_channels=0)), ["in_channels"]),
    # Row 6: element count or byte size overflowing 64 bits, checked before allocating.
    ("overflowing shape", mutate(c=set_input([2 ** 32, 2 ** 32, 2, 1], b"\0" * 16)), ["input"]),
    ("overflowing bytes", mutate(c=set_input([2 ** 31, 2 ** 31, 1, 1], b"\0" * 16)), ["input"]),
    ("huge weight shape", mutate(c=lambda r: r.weight.shape.__setitem__(0, 2 ** 62)),
     ["weight"]),
    # Row 7: payload bytes != shape x 4.
    ("too few bytes", mutate(c=cut_bytes("input", -4)), ["input", "expected 512 bytes", "got 508"]),
    ("too many bytes", mutate(c=cut_bytes("input", 4)), ["input", "expected 512 bytes", "got 516"]),
    ("not a multiple of 4", mutate(c=cut_bytes("weight", 1)), ["weight", "expected 216 bytes",
                                                              "got 217"]),
    ("bias bytes", mutate(c=cut_bytes("bias", -1)), ["bias", "expected 12 bytes", "got 11"]),
    # Row 8: degenerate layers.
    ("stride 0", mutate(c=set_layer(stride=[0])), ["stride"]),
    ("dilation 0", mutate(c=set_layer(dilation=[0, 1])), ["dilation"]),
    ("negative stride", mutate(c=set_layer(stride=[-1])), ["stride"]),
    ("kernel 0", mutate(c=set_layer(kernel=[0, 3])), ["kernel"]),
    ("kernel wrong arity", mutate(c=set_layer(kernel=[3, 3, 3])), ["kernel"]),
    ("span larger than padded input",
     mutate(a=set_layer(kernel=[9, 9]), b=set_weight(np.zeros((3, 2, 9, 9)))), ["input"]),
    ("dilated span larger than input", mutate(c=set_layer(dilation=[4])), ["input"]),
    ("groups not dividing channels", mutate(c=set_layer(groups=2)), ["groups"]),
    ("negative groups", mutate(c=set_layer(groups=-1)), ["groups"]),
    ("weight shape disagrees", mutate(c=set_weight(np.zeros((3, 2, 3, 2)))),
     ["weight: expected shape [3, 2, 3, 3]", "got [3, 2, 3, 2]"]),
    ("bias shape disagrees", mutate(c=lambda r: to_tensor(np.zeros(4), r.bias)),
     ["bias: expected shape [3]", "got [4]"]),
    ("reflect pad >= input",
     mutate(a=set_layer(padding_mode=pb.PADDING_MODE_REFLECT, pad_begin=[8], pad_end=[8])),
     ["reflect"]),
    ("circular pad > input",
     mutate(a=set_layer(padding_mode=pb.PADDING_MODE_CIRCULAR, pad_begin=[9], pad_end=[0])),
     ["circular"]),
    ("negative padding", mutate(a=set_layer(pad_begin=[-1], pad_end=[0])), ["pad"]),
    ("non-finite alpha", mutate(a=set_layer(activation=pb.ACTIVATION_ELU,
                                            activation_alpha=float("nan"))),
     ["activation_alpha: expected a finite number"]),
]


@pytest.mark.parametrize("name,request_,fragments", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_conv_input_is_invalid_argument(client, name, request_, fragments):
    code, details = call_conv(client, request_)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    for fragment in fragments:
        assert fragment in details, "%r not in %r" % (fragment, details)
    assert_still_serving(client)


def test_bad_validate_shape_request(client):
    layer = convserve.make_layer(2, (1, 2, 8, 8), (3, 2, 3, 3))
    for shape in ([1, 2, 0, 8], [2 ** 32, 2 ** 32, 2, 1], [1, 2, 8]):
        request = pb.ValidateShapeRequest(layer=layer, input_shape=shape)
        with pytest.raises(grpc.RpcError) as error:
            client.stub.ValidateShape(request, timeout=30)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "input" in error.value.details()
    assert_still_serving(client)


def test_row2_unparsable_bytes_are_internal(client):
    for method in ("Conv", "ValidateShape", "LoadModel", "RunModel"):
        raw = client.channel.unary_unary("/convserve.v1.ConvService/" + method)
        with pytest.raises(grpc.RpcError) as error:
            raw(b"\xff\xff\xff\xff\xff\xff", timeout=30)
        assert error.value.code() == grpc.StatusCode.INTERNAL
        assert "not a valid convserve.v1." in error.value.details()
    assert_still_serving(client)


def test_row3_unknown_method_is_unimplemented(client):
    for method in ("/convserve.v1.ConvService/Deconv", "/convserve.v2.ConvService/Conv"):
        with pytest.raises(grpc.RpcError) as error:
            client.channel.unary_unary(method)(b"", timeout=30)
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert_still_serving(client)


def test_row11_unknown_model_is_not_found(client):
    for call in (lambda: client.run_model("no-such-model", np.zeros((1, 1, 4), np.float32)),
                 lambda: client.unload_model("no-such-model")):
        with pytest.raises(convserve.ConvServeError) as error:
            call()
        assert error.value.code == grpc.StatusCode.NOT_FOUND
        assert "no-such-model" in error.value.details
    assert_still_serving(client)


def test_run_model_bad_input_is_invalid_argument(client):
    w = np.ones((2, 1, 3), np.float32)
    client.load_model("one-layer", [convserve.ModelLayer(
        convserve.make_layer(1, (1, 1, 8), w.shape), w, None)], replace=True)
    with pytest.raises(convserve.ConvServeError) as error:
        client.run_model("one-layer", np.zeros((1, 2, 8), np.float32))
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "in_channels" in error.value.details or "input" in error.value.details
    request = pb.RunModelRequest(name="one-layer")
    to_tensor(np.zeros((1, 1, 8)), request.input)
    request.input.data = request.input.data[:-3]
    with pytest.raises(grpc.RpcError) as error:
        client.stub.RunModel(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected 32 bytes" in error.value.details()
    assert "got 29" in error.value.details()
    client.unload_model("one-layer")
    assert_still_serving(client)


def test_nan_and_inf_are_computed_not_refused(client):
    # docs/RELIABILITY.md row 17: IEEE arithmetic, as PyTorch.
    x = np.array([[[1.0, np.nan, 2.0, np.inf, 3.0]]], np.float32)
    y = convserve.conv1d(x, np.ones((1, 1, 1), np.float32), client=client)
    assert np.isnan(y[0, 0, 1]) and np.isinf(y[0, 0, 3]) and y[0, 0, 0] == 1.0


# --- Limits (a server with small ones) --------------------------------------

def test_row1_request_above_receive_limit(limited_client):
    x = np.zeros((1, 1, 600, 600), np.float32)  # 1.44 MB > 1 MiB
    with pytest.raises(convserve.ConvServeError) as error:
        convserve.conv2d(x, np.ones((1, 1, 1, 1), np.float32), client=limited_client)
    assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_still_serving(limited_client)


def test_row9_elements_limit(limited_client):
    x = np.zeros((1, 1, 100, 100), np.float32)  # output 40 x 100 x 100 = 400000 elements
    with pytest.raises(convserve.ConvServeError) as error:
        convserve.conv2d(x, np.ones((40, 1, 1, 1), np.float32), client=limited_client)
    assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max_elements" in error.value.details and "400000" in error.value.details
    assert_still_serving(limited_client)


def test_row9_macs_limit(limited_client):
    x = np.zeros((1, 16, 50, 50), np.float32)  # 64 x 42 x 42 x 16 x 81 = 146M MACs
    with pytest.raises(convserve.ConvServeError) as error:
        convserve.conv2d(x, np.zeros((64, 16, 9, 9), np.float32), client=limited_client)
    assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max_macs" in error.value.details
    assert_still_serving(limited_client)


def test_row10_memory_budget(limited_client):
    x = np.zeros((1, 1, 250, 250), np.float32)  # output 2 x 250 x 250 floats = 500 kB > 400 kB
    with pytest.raises(convserve.ConvServeError) as error:
        convserve.conv2d(x, np.ones((2, 1, 1, 1), np.float32), client=limited_client)
    assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--memory_budget_bytes" in error.value.details
    assert_still_serving(limited_client)


def test_row10_concurrent_load_is_admitted_or_refused_quickly(limited_client):
    # Each call reserves ~240 kB of a 400 kB budget (its output, from a one-pixel input
    # padded to 245 x 245): concurrent ones may be refused, but only with
    # RESOURCE_EXHAUSTED, and never all of them.
    x = np.ones((1, 1, 1, 1), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    outcomes = []

    def worker():
        for _ in range(5):
            try:
                y = convserve.conv2d(x, w, padding=[(122, 122)] * 2, client=limited_client)
                outcomes.append("ok" if y.shape == (1, 1, 245, 245) else "bad shape")
            except convserve.ConvServeError as error:
                outcomes.append(error.code.name if "--memory_budget_bytes" in error.details
                                else error.details)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(outcomes) <= {"ok", "RESOURCE_EXHAUSTED"}, set(outcomes)
    assert "ok" in outcomes
    assert_still_serving(limited_client)


def test_row18_response_above_send_limit(limited_client):
    x = np.zeros((1, 1, 100, 100), np.float32)  # output 28 x 100 x 100 floats = 1.12 MB
    with pytest.raises(convserve.ConvServeError) as error:
        convserve.conv2d(x, np.ones((28, 1, 1, 1), np.float32), client=limited_client)
    assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max_message_bytes" in error.value.details and "1120000" in error.value.details
    assert_still_serving(limited_client)


def test_model_too_large_for_model_budget(start_server):
    process = start_server("--max_model_bytes=1000", "--drain_grace_ms=0")
    with convserve.Client(process.target, timeout=30) as connection:
        w = np.ones((8, 8, 3, 3), np.float32)  # 2304 bytes
        with pytest.raises(convserve.ConvServeError) as error:
            connection.load_model("big", [convserve.ModelLayer(
                convserve.make_layer(2, (1, 8, 8, 8), w.shape), w, None)])
        assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max_model_bytes" in error.value.details
        assert connection.health() == "SERVING"


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


@pytest.mark.skipif(server_is_sanitized(),
                    reason="ASan's quarantine keeps freed memory resident by design; leaks are "
                    "caught there by LeakSanitizer at exit instead")
def test_memory_returns_to_baseline(server, client):
    # The same mix of good and bad calls, repeated, must not grow the server.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 16, 64, 64)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    bad = [request for _, request, _ in BAD_INPUTS]

    def round_of_calls():
        for _ in range(10):
            convserve.conv2d(x, w, padding=1, client=client)
        for request in bad:
            with pytest.raises(grpc.RpcError):
                client.stub.Conv(request, timeout=30)

    for _ in range(3):
        round_of_calls()
    baseline = _rss_kb(server.process.pid)
    for _ in range(10):
        round_of_calls()
    grown = _rss_kb(server.process.pid) - baseline
    assert grown < 16 * 1024, "server RSS grew by %d kB over 10 rounds" % grown


def test_row15_auth_token(start_server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    process = start_server("--auth_token_file=%s" % token_file, "--drain_grace_ms=0")
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 9)
    w = np.ones((1, 1, 5), np.float32)
    for token in (None, "wrong-token", "s3cret-tokenX", ""):
        with convserve.Client(process.target, timeout=30, token=token) as anonymous:
            assert anonymous.health() == "SERVING"  # probes need no token
            with pytest.raises(convserve.ConvServeError) as error:
                convserve.conv1d(x, w, client=anonymous)
            assert error.value.code == grpc.StatusCode.UNAUTHENTICATED, token
            assert "authorization" in error.value.details
            assert "s3cret" not in error.value.details
    raw = grpc.insecure_channel(process.target).unary_unary("/convserve.v1.ConvService/Conv")
    with pytest.raises(grpc.RpcError) as error:
        raw(b"", timeout=30, metadata=(("authorization", "Basic czNjcmV0"),))
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with convserve.Client(process.target, timeout=30, token="s3cret-token") as allowed:
        assert convserve.conv1d(x, w, client=allowed).ravel().tolist() == [15, 20, 25, 30, 35]
    assert process.lines_above_warn() == []


def test_log_has_nothing_above_warn(server):
    assert server.lines_above_warn() == []
    assert "[warning]" in server.log()  # failures were logged, once each, at WARN


# --- What the server echoes back is bounded and escaped (rows 4, 11) ---------

MAX_STATUS_BYTES = 1024
FAKE_LOG_LINE = "[1999-01-01 00:00:00.000] [critical] FORGED"


def _log_growth(process, action):
    """Runs action(); returns (its result, the log lines it added)."""
    before = len(process.log())
    result = action()
    return result, process.log()[before:].splitlines()


def _assert_bounded(details, lines):
    assert len(details.encode()) <= MAX_STATUS_BYTES, len(details)
    assert lines, "the failure was not logged"
    assert max(len(line) for line in lines) <= 4 * MAX_STATUS_BYTES, \
        max(len(line) for line in lines)


def test_row4_kernel_of_a_million_entries_is_invalid_argument_and_bounded(start_server):
    process = start_server("--drain_grace_ms=0")
    request = good_request()
    request.layer.kernel[:] = [1] * 1000000  # a 1 MB request
    with convserve.Client(process.target, timeout=60) as connection:
        (code, details), lines = _log_growth(process, lambda: call_conv(connection, request))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert "kernel" in details and "1000000" in details, details
        _assert_bounded(details, lines)
        assert_still_serving(connection)


def test_row11_not_found_names_the_model_not_the_inventory(start_server):
    process = start_server("--drain_grace_ms=0")
    w = np.ones((1, 1, 1), np.float32)
    layer = convserve.make_layer(1, (1, 1, 4), w.shape)
    with convserve.Client(process.target, timeout=60) as connection:
        for i in range(200):  # 200 names of 64 characters: 13 kB listed before
            connection.load_model("inventory-%04d-" % i + "x" * 49,
                                  [convserve.ModelLayer(layer, w, None)])
        for call in (lambda: connection.run_model("absent", np.zeros((1, 1, 4), np.float32)),
                     lambda: connection.unload_model("absent")):
            with pytest.raises(convserve.ConvServeError) as error:
                call()
            assert error.value.code == grpc.StatusCode.NOT_FOUND
            assert "'absent'" in error.value.details
            assert "inventory-" not in error.value.details, error.value.details[:300]
            assert len(error.value.details) <= MAX_STATUS_BYTES
        assert connection.health() == "SERVING"


def test_row11_a_name_of_8_mib_is_truncated_in_status_and_log(start_server):
    process = start_server("--drain_grace_ms=0")
    name = "n" * (8 << 20)
    w = np.ones((1, 1, 1), np.float32)
    layers = [convserve.ModelLayer(convserve.make_layer(1, (1, 1, 4), w.shape), w, None)]
    calls = [(grpc.StatusCode.NOT_FOUND,
              lambda c: c.run_model(name, np.zeros((1, 1, 4), np.float32))),
             (grpc.StatusCode.NOT_FOUND, lambda c: c.unload_model(name)),
             (grpc.StatusCode.INVALID_ARGUMENT, lambda c: c.load_model(name, layers))]
    with convserve.Client(process.target, timeout=60) as connection:
        for code, call in calls:
            def failing_call():
                with pytest.raises(convserve.ConvServeError) as error:
                    call(connection)
                return error.value
            error, lines = _log_growth(process, failing_call)
            assert error.code == code, error.details[:300]
            assert "8388608" in error.details, error.details
            _assert_bounded(error.details, lines)
        assert connection.health() == "SERVING"


def test_a_name_cannot_forge_a_log_line(start_server):
    process = start_server("--drain_grace_ms=0")
    name = 'm"\n' + FAKE_LOG_LINE
    w = np.ones((1, 1, 1), np.float32)
    layers = [convserve.ModelLayer(convserve.make_layer(1, (1, 1, 4), w.shape), w, None)]
    calls = [lambda c: c.run_model(name, np.zeros((1, 1, 4), np.float32)),
             lambda c: c.unload_model(name),
             lambda c: c.load_model(name, layers)]
    with convserve.Client(process.target, timeout=60) as connection:
        for call in calls:
            with pytest.raises(convserve.ConvServeError) as error:
                call(connection)
            assert error.value.code in (grpc.StatusCode.NOT_FOUND,
                                        grpc.StatusCode.INVALID_ARGUMENT)
            assert "\n" not in error.value.details
            assert 'm\\"\\n[1999-01-01' in error.value.details, error.value.details
        assert connection.health() == "SERVING"
    forged = [line for line in process.log().splitlines() if line.startswith("[1999-")]
    assert forged == []
    assert 'm\\"\\n[1999-01-01' in process.log()
