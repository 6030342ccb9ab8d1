"""Request IDs, the access log and the log formats, read from the real server's output.

Every call has an ID (the caller's x-request-id, or one the server makes), returned in the
response's initial metadata and named in every log line about the call; --access_log writes
one line per call; --log_format=json writes one JSON object per line, gRPC's own lines
included; caller text can forge no line in either format.
"""

import codecs
import json
import os
import re
import subprocess
import sys

import grpc
import numpy as np
import pytest

import convserve
from convserve.client import pb
from conftest import CONVCTL, REPO, SERVER_BINARY

# A model name that tries to end its log line and start a forged one.
FORGED = "m\n[critical] FORGED \"x\""
SERVER_ID = re.compile(r"^[0-9a-f]{32}$")  # what the server and both clients make
TEXT_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] "
                       r"\[(trace|debug|info|warning|error|critical)\] ")
JSON_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ACCESS_KEYS = ["time", "level", "message", "method", "model", "request_id", "peer", "code",
               "bytes_in", "bytes_out", "queue_s", "compute_s", "total_s"]
TEXT_FIELD = re.compile(r' (\w+)=("(?:[^"\\]|\\.)*"|[^ "]*)(?= |$)')


def text_value(raw):
    """A text-format field value as the server had it (quoted values are C-escaped)."""
    if raw.startswith('"'):
        return codecs.decode(raw[1:-1], "unicode_escape")
    return raw


def text_access_lines(log):
    """The text access lines of `log`, each as a dict of its fields."""
    lines = []
    for line in log.splitlines():
        head, sep, tail = line.partition("] [info] access ")
        if sep:
            fields = {key: text_value(value) for key, value in TEXT_FIELD.findall(" " + tail)}
            assert " ".join("%s=%s" % item for item in TEXT_FIELD.findall(" " + tail)) == tail, \
                "unparsed text in %r" % line
            lines.append(fields)
    return lines


def access_line(log, request_id):
    """The one text access line of the call `request_id`."""
    found = [fields for fields in text_access_lines(log) if fields["request_id"] == request_id]
    assert len(found) == 1, (request_id, log)
    return found[0]


def lines_with(log, *parts):
    return [line for line in log.splitlines() if all(part in line for part in parts)]


def answered_id(call_or_error):
    ids = [value for key, value in call_or_error.initial_metadata() if key == "x-request-id"]
    assert len(ids) == 1, call_or_error.initial_metadata()
    return ids[0]


def small_conv_request(valid=True):
    """A Conv request of a 3-tap sum over 9 values; not `valid`: one value short."""
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 9)
    request = pb.ConvRequest(layer=convserve.make_layer(1, x.shape, (1, 1, 3)))
    convserve.client.to_tensor(x, request.input)
    convserve.client.to_tensor(np.ones((1, 1, 3), np.float32), request.weight)
    if not valid:
        request.input.data = request.input.data[:-4]
    return request


def model_layers():
    w = np.ones((2, 1, 3), np.float32)
    return [convserve.ModelLayer(convserve.make_layer(1, (1, 1, 9), w.shape), w, None)]


def test_the_callers_id_comes_back_on_success_and_on_error(client):
    _, call = client.stub.ListModels.with_call(
        pb.ListModelsRequest(), metadata=(("x-request-id", "logs-ok-1"),), timeout=30)
    assert answered_id(call) == "logs-ok-1"
    with pytest.raises(grpc.RpcError) as error:
        client.stub.UnloadModel(pb.UnloadModelRequest(name="absent"),
                                metadata=(("x-request-id", "logs-error-1"),), timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert answered_id(error.value) == "logs-error-1"


def test_the_server_makes_an_id_when_none_is_sent(client):
    _, first = client.stub.ListModels.with_call(pb.ListModelsRequest(), timeout=30)
    _, second = client.stub.ListModels.with_call(pb.ListModelsRequest(), timeout=30)
    assert SERVER_ID.match(answered_id(first)) and SERVER_ID.match(answered_id(second))
    assert answered_id(first) != answered_id(second)
    with pytest.raises(grpc.RpcError) as error:
        client.stub.UnloadModel(pb.UnloadModelRequest(name="absent"), timeout=30)
    assert SERVER_ID.match(answered_id(error.value))


@pytest.mark.parametrize("metadata,expected", [
    ((("x-request-id", "r" * 129),),
     "metadata x-request-id: expected 1 to 128 printable ASCII characters, got 129 characters: "
     "'%s...(129 bytes)'" % ("r" * 128)),
    ((("x-request-id", ""),),
     "metadata x-request-id: expected 1 to 128 printable ASCII characters, got an empty value"),
    ((("x-request-id", "a"), ("x-request-id", "b")),
     "metadata x-request-id: expected one value, got 2"),
])
def test_an_invalid_id_is_refused_under_an_id_the_server_makes(server, client, metadata,
                                                               expected):
    with pytest.raises(grpc.RpcError) as error:
        client.stub.ListModels(pb.ListModelsRequest(), metadata=metadata, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == expected
    made = answered_id(error.value)
    assert SERVER_ID.match(made)
    log = server.log()
    assert len(lines_with(log, "[warning] ListModels from ", expected,
                          " request_id=%s" % made)) == 1, log
    assert access_line(log, made)["code"] == "INVALID_ARGUMENT"


def test_the_access_line_has_the_id_and_every_field(server, client):
    request = small_conv_request()
    response, call = client.stub.Conv.with_call(
        request, metadata=(("x-request-id", "logs-conv-1"),), timeout=30)
    assert answered_id(call) == "logs-conv-1"
    fields = access_line(server.log(), "logs-conv-1")
    assert list(fields) == ["method", "model", "request_id", "peer", "code", "bytes_in",
                            "bytes_out", "queue_s", "compute_s", "total_s"]
    assert fields["method"] == "Conv" and fields["model"] == "" and fields["code"] == "OK"
    assert fields["peer"].startswith("ipv4:127.0.0.1:")
    assert int(fields["bytes_in"]) == request.ByteSize()
    assert int(fields["bytes_out"]) == response.ByteSize()
    queue, compute, total = (float(fields[key]) for key in ("queue_s", "compute_s", "total_s"))
    assert min(queue, compute) >= 0
    assert queue + compute <= total + 2e-6  # parts of the total, each rounded to 1 us


def test_model_calls_name_the_model_and_their_id(server, client):
    client.request_id = "logs-load-1"
    try:
        info = client.load_model("logs-model", model_layers())
        client.request_id = "logs-run-1"
        client.run_model("logs-model", np.ones((1, 1, 9), np.float32))
        client.request_id = "logs-unload-1"
        client.unload_model("logs-model")
    finally:
        client.request_id = None
    log = server.log()
    assert len(lines_with(log, "[info] loaded model 'logs-model' (%d parameters) "
                          "request_id=logs-load-1" % info.parameters)) == 1, log
    assert len(lines_with(log, "[info] unloaded model 'logs-model' "
                          "request_id=logs-unload-1")) == 1, log
    for request_id, method in [("logs-load-1", "LoadModel"), ("logs-run-1", "RunModel"),
                               ("logs-unload-1", "UnloadModel")]:
        fields = access_line(log, request_id)
        assert (fields["method"], fields["model"], fields["code"]) == (method, "logs-model", "OK")


def test_a_failed_calls_warn_line_carries_its_id(server, client):
    with pytest.raises(grpc.RpcError) as error:
        client.stub.Conv(small_conv_request(valid=False),
                         metadata=(("x-request-id", "logs-bad-1"),), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert answered_id(error.value) == "logs-bad-1"
    log = server.log()
    warned = lines_with(log, "[warning] Conv from ipv4:127.0.0.1:", " failed: INVALID_ARGUMENT: ",
                        error.value.details(), " request_id=logs-bad-1")
    assert len(warned) == 1, log
    fields = access_line(log, "logs-bad-1")
    assert (fields["code"], fields["bytes_out"]) == ("INVALID_ARGUMENT", "0")


def test_python_errors_carry_the_id_the_server_logged(server, client):
    x = np.ones((1, 1, 9), np.float32)
    with pytest.raises(convserve.ConvServeError) as made:
        client.run_model("absent", x)
    with convserve.Client(server.target, timeout=30, request_id="py-fixed-1") as named_client:
        with pytest.raises(convserve.ConvServeError) as named:
            named_client.run_model("absent", x)
    with convserve.Client(server.target, timeout=30, request_id="z" * 200) as refused_client:
        with pytest.raises(convserve.ConvServeError) as refused:
            refused_client.list_models()
    assert SERVER_ID.match(made.value.request_id)
    assert named.value.request_id == "py-fixed-1"
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert SERVER_ID.match(refused.value.request_id)  # the server's, not the refused one
    log = server.log()
    for error in (made.value, named.value, refused.value):
        assert str(error) == "%s: %s [request_id=%s]" % (error.code.name, error.details,
                                                          error.request_id)
        assert len(lines_with(log, "[warning] ", error.details,
                              " request_id=%s" % error.request_id)) == 1, log
        assert access_line(log, error.request_id)["code"] == error.code.name


def test_clis_print_the_id_of_a_failed_call(server):
    bad_shape = ["--input_shape=3,224,224", "--weight_shape=64,3,7,7"]
    cpp = subprocess.run([str(CONVCTL), "--target=%s" % server.target, "--request_id=cli-cpp-1",
                          "shape"] + bad_shape, capture_output=True, text=True, timeout=60)
    python = subprocess.run(
        [sys.executable, "-m", "convserve", "--target", server.target, "--request-id",
         "cli-py-1", "shape", "--input-shape", "3,224,224", "--weight-shape", "64,3,7,7"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO / "client" / "python")))
    assert cpp.returncode == 1 and "INVALID_ARGUMENT" in cpp.stderr, cpp.stderr
    assert cpp.stderr.rstrip().endswith("[request_id=cli-cpp-1]"), cpp.stderr
    assert python.returncode == 1, python.stderr
    assert python.stderr.rstrip().endswith("[request_id=cli-py-1]"), python.stderr
    log = server.log()
    for request_id in ("cli-cpp-1", "cli-py-1"):
        assert len(lines_with(log, "[warning] ValidateShape from ",
                              " request_id=%s" % request_id)) == 1, log


def test_a_forged_model_name_stays_on_its_line_in_text(server, client):
    x = np.ones((1, 1, 9), np.float32)
    with pytest.raises(convserve.ConvServeError) as run:
        client.run_model(FORGED, x)
    with pytest.raises(convserve.ConvServeError) as load:
        client.load_model(FORGED, model_layers())
    assert run.value.code == grpc.StatusCode.NOT_FOUND
    assert load.value.code == grpc.StatusCode.INVALID_ARGUMENT
    log = server.log()
    for line in log.splitlines():
        assert TEXT_LINE.match(line), "a line that is not a log line: %r" % line
        assert "[critical]" not in line[:40], line
    for error in (run.value, load.value):
        assert access_line(log, error.request_id)["model"] == FORGED
        warned = lines_with(log, "[warning] ", "request_id=%s" % error.request_id)
        assert len(warned) == 1 and "m\\n[critical] FORGED" in warned[0], log


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_the_access_log_can_be_switched_off(start_server, how):
    if how == "flag":
        process = start_server("--drain_grace_ms=0", "--access_log=false")
    else:
        process = start_server("--drain_grace_ms=0", env={"CONVSERVE_ACCESS_LOG": "false"})
    with convserve.Client(process.target, timeout=30) as quiet:
        quiet.list_models()
        with pytest.raises(convserve.ConvServeError) as error:
            quiet.unload_model("absent")
    log = process.log()
    assert "access_log=false" in log
    assert text_access_lines(log) == [] and lines_with(log, "] access ") == [], log
    # The failure still has its line, with its ID.
    assert len(lines_with(log, "[warning] UnloadModel from ",
                          " request_id=%s" % error.value.request_id)) == 1, log


def test_json_lines_only_and_every_line_parses(start_server):
    # GRPC_VERBOSITY=debug makes gRPC log its own INFO lines (the level
    # filter keeps the debug ones out): they must come out as JSON too.
    process = start_server("--drain_grace_ms=0", "--log_format=json",
                           env={"GRPC_VERBOSITY": "debug"})
    x = np.ones((1, 1, 9), np.float32)
    with convserve.Client(process.target, timeout=30) as json_client:
        _, call = json_client.stub.Conv.with_call(
            small_conv_request(), metadata=(("x-request-id", "json-ok-1"),), timeout=30)
        assert answered_id(call) == "json-ok-1"
        json_client.request_id = "json-load-1"
        json_client.load_model("json-model", model_layers())
        json_client.request_id = None
        with pytest.raises(convserve.ConvServeError) as forged:
            json_client.run_model(FORGED, x)
    assert process.stop() == 0
    lines = process.log().splitlines()
    objects = []
    for line in lines:
        try:
            objects.append(json.loads(line))
        except ValueError:
            pytest.fail("not a JSON line: %r" % line)
        assert isinstance(objects[-1], dict), line
        assert JSON_TIME.match(objects[-1]["time"]), line
        assert objects[-1]["level"] in ("info", "warning", "error"), line
        assert isinstance(objects[-1]["message"], str), line
    messages = [entry["message"] for entry in objects]
    assert any(message.startswith("convserve_server serving on ") for message in messages)
    assert "stopped" in messages
    grpc_lines = [entry for entry in objects if entry.get("source") == "grpc"]
    assert grpc_lines, "no gRPC line at GRPC_VERBOSITY=debug:\n%s" % "\n".join(lines)
    assert all(isinstance(entry["file"], str) and isinstance(entry["line"], int)
               for entry in grpc_lines)

    access = {entry["request_id"]: entry for entry in objects if entry["message"] == "access"}
    ok = access["json-ok-1"]
    assert list(ok) == ACCESS_KEYS
    assert (ok["level"], ok["method"], ok["model"], ok["code"]) == ("info", "Conv", "", "OK")
    assert ok["peer"].startswith("ipv4:127.0.0.1:")
    assert ok["bytes_in"] == small_conv_request().ByteSize() and ok["bytes_out"] > 0
    assert all(isinstance(ok[key], (int, float)) and ok[key] >= 0
               for key in ("queue_s", "compute_s", "total_s"))
    assert access["json-load-1"]["model"] == "json-model"
    assert [entry for entry in objects
            if entry["message"].startswith("loaded model 'json-model'")
            and entry["request_id"] == "json-load-1"]

    # The forged name, whole, inside its fields; no line of its own.
    assert access[forged.value.request_id]["model"] == FORGED
    warned = [entry for entry in objects if entry["level"] == "warning"
              and entry.get("request_id") == forged.value.request_id]
    # The status message quotes the name escaped (RELIABILITY row 11), as the caller gets it.
    assert len(warned) == 1 and 'm\\n[critical] FORGED \\"x\\"' in warned[0]["message"]


def test_a_bad_log_format_stops_start_up_naming_the_flag():
    result = subprocess.run([str(SERVER_BINARY), "--listen=127.0.0.1:0", "--log_format=xml"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--log_format: expected text or json, got 'xml'" in result.stdout + result.stderr
