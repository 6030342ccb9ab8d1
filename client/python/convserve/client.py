"""A thin client over the generated convserve.v1 stubs, numpy in and out."""

import collections
import json
import os
import uuid

import grpc
import numpy as np

from convserve import _stubs

try:
    from convserve.v1 import convserve_pb2 as pb
    from convserve.v1 import convserve_pb2_grpc as pb_grpc
except ImportError as error:  # pragma: no cover - depends on the build
    raise ImportError(_stubs.missing_message()) from error

health_pb2 = _stubs.load_generated(os.path.join("grpc", "health", "v1", "health_pb2.py"),
                                   "convserve._health_pb2")

DEFAULT_TARGET = "localhost:50051"
DEFAULT_MAX_MESSAGE_BYTES = 256 << 20

# The load-balancing policies a Client accepts. round_robin spreads calls over
# every address the target resolves to (ipv4:127.0.0.1:P1,127.0.0.1:P2,
# dns:///name:port, ...); pick_first sends them all to the first that connects.
LB_POLICIES = ("round_robin", "pick_first")
DEFAULT_LB_POLICY = "round_robin"

# The channel's service config, shared with the C++ client (which embeds this
# very file at build time, client/CMakeLists.txt): round_robin, and a retry
# policy (UNAVAILABLE, 4 attempts) for the idempotent RPCs Conv, ValidateShape
# and RunModel.
SERVICE_CONFIG_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                   "service_config.json")


def service_config(lb_policy=DEFAULT_LB_POLICY, retries=False):
    """The service config JSON text a Client gives its channel.

    service_config.json with its load-balancing policy replaced by `lb_policy`
    and, unless `retries`, without its methodConfig (retry policy).
    Raises ValueError for a policy not in LB_POLICIES.
    """
    if lb_policy not in LB_POLICIES:
        raise ValueError("lb_policy: expected %s, got %r" % (" or ".join(LB_POLICIES), lb_policy))
    with open(SERVICE_CONFIG_PATH) as config_file:
        config = json.load(config_file)
    config["loadBalancingConfig"] = [{lb_policy: {}}]
    if not retries:
        config.pop("methodConfig", None)
    return json.dumps(config, sort_keys=True, separators=(",", ":"))

# One layer of a model: the ConvLayer message, its weight array (in the
# layer's weight layout) and its bias array or None.
ModelLayer = collections.namedtuple("ModelLayer", ["layer", "weight", "bias"])


# The metadata key naming a call, in requests and in responses.
REQUEST_ID_KEY = "x-request-id"


_PRECISIONS = {None: pb.PRECISION_EXACT, "exact": pb.PRECISION_EXACT, "fast": pb.PRECISION_FAST}


def _model_options(request, max_batch_size, max_queue_delay_us, precision):
    """Sets a LoadModelRequest's batching and precision."""
    if max_batch_size or max_queue_delay_us:
        request.batching.max_batch_size = max_batch_size
        request.batching.max_queue_delay_us = max_queue_delay_us
    key = precision.lower() if isinstance(precision, str) else precision
    if key not in _PRECISIONS:
        raise ValueError("precision: expected one of 'exact', 'fast', got %r" % (precision,))
    request.precision = _PRECISIONS[key]


def load_model_request(name, layers, replace=False, element_type=None, max_batch_size=0,
                       max_queue_delay_us=0, precision=None):
    """The LoadModelRequest of `layers` (ModelLayer tuples) as model `name`,
    their tensors sent as `element_type` (see to_tensor). max_batch_size > 0
    turns on dynamic batching of the model's RunModel calls: up to that many
    samples per merged run, the oldest call waiting at most max_queue_delay_us
    for others. precision="fast" lets the model's "auto" layers run Winograd
    where it applies (within 1e-4 * S + 1e-5 of float64 instead of
    1e-5 * S + 1e-6); "exact" (default) keeps them direct."""
    request = pb.LoadModelRequest(name=name, replace=replace)
    _model_options(request, max_batch_size, max_queue_delay_us, precision)
    for layer in layers:
        model_layer = request.layers.add()
        model_layer.layer.CopyFrom(layer.layer)
        to_tensor(layer.weight, model_layer.weight, element_type)
        if layer.bias is not None:
            to_tensor(layer.bias, model_layer.bias, element_type)
    return request


class ConvServeError(RuntimeError):
    """A call failed. `code` is the grpc.StatusCode, `details` the server's message,
    `request_id` the call's x-request-id, under which the server logged it (None
    for errors that are not a call's). str() shows all three."""

    def __init__(self, code, details, request_id=None):
        message = "%s: %s" % (code.name, details)
        if request_id is not None:
            message += " [request_id=%s]" % request_id
        super().__init__(message)
        self.code = code
        self.details = details
        self.request_id = request_id


def _answered_request_id(error, sent):
    """The x-request-id the server answered a failed call with (the one its
    logs carry: it differs from `sent` only when the server refused that), or
    `sent` when no server answered."""
    initial_metadata = getattr(error, "initial_metadata", None)  # grpc.Call's
    for key, value in (initial_metadata() if initial_metadata else None) or ():
        if key == REQUEST_ID_KEY:
            return value
    return sent


# Element types by name, for element_type= and output_type= arguments.
ELEMENT_TYPES = {
    "float32": pb.ELEMENT_TYPE_FLOAT32,
    "float16": pb.ELEMENT_TYPE_FLOAT16,
    "bfloat16": pb.ELEMENT_TYPE_BFLOAT16,
}


def _element_type(name, value):
    """`value` ("float32", "float16", "bfloat16", a pb.ElementType or None) as
    a pb.ElementType (None stays None); ValueError naming the parameter."""
    if value is None or value in ELEMENT_TYPES.values():
        return value
    if isinstance(value, str) and value in ELEMENT_TYPES:
        return ELEMENT_TYPES[value]
    raise ValueError("%s: expected one of %s, got %r" % (name, ", ".join(ELEMENT_TYPES), value))


def float32_to_bfloat16_bits(array):
    """numpy float values -> bfloat16 bit patterns (uint16), rounded to nearest
    even as torch's .to(torch.bfloat16) does; NaN stays NaN."""
    bits = np.ascontiguousarray(array, dtype="<f4").view("<u4")
    rounded = ((bits.astype(np.uint64) + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, ((bits >> 16) | 0x40).astype("<u2"), rounded)


def bfloat16_bits_to_float32(bits):
    """bfloat16 bit patterns (uint16) -> numpy float32 values (exact)."""
    return (np.ascontiguousarray(bits, dtype="<u2").astype("<u4") << 16).view("<f4")


def _is_torch(value):
    """Whether `value` is a torch.Tensor (without importing torch for those who do not use it)."""
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def as_array(value, name="tensor", element_type=None):
    """(numpy array, the element type it travels as by default) for a numpy array, anything
    np.asarray takes, or a torch tensor (detached, moved to the CPU, made contiguous; its
    gradient is not needed). Only real floating point is accepted: float16, bfloat16 (torch),
    float32 and float64 (sent as float32, or as element_type says); complex, integer and
    boolean values raise TypeError naming `name` rather than being converted silently. A
    uint16 array is taken as bfloat16 bit patterns when element_type is bfloat16."""
    if _is_torch(value):
        import torch
        tensor = value.detach().cpu().contiguous()
        if tensor.dtype == torch.bfloat16:
            return tensor.view(torch.int16).numpy().view(np.uint16), pb.ELEMENT_TYPE_BFLOAT16
        if not tensor.is_floating_point():
            raise TypeError("%s: expected a real floating-point tensor (float16, bfloat16, float32 "
                            "or float64), got %s; convert it explicitly, e.g. x.float()"
                            % (name, tensor.dtype))
        array = tensor.numpy()
    else:
        array = np.asarray(value)
        if array.dtype == np.uint16 and element_type == pb.ELEMENT_TYPE_BFLOAT16:
            return array, pb.ELEMENT_TYPE_BFLOAT16
        if array.dtype.kind != "f":
            raise TypeError("%s: expected a real floating-point array (float16, float32 or "
                            "float64; bfloat16 bit patterns as uint16 with "
                            "element_type='bfloat16'), got %s; convert it explicitly, e.g. "
                            "x.astype(np.float32)" % (name, array.dtype))
    return array, (pb.ELEMENT_TYPE_FLOAT16 if array.dtype == np.float16 else None)


def like_input(y, reference):
    """`y` (as from_tensor returns it) as a torch tensor on `reference`'s device when
    `reference` is one (bfloat16 answers as torch.bfloat16); `y` unchanged otherwise."""
    if not _is_torch(reference):
        return y
    import torch
    if y.dtype == np.uint16:  # bfloat16 bit patterns
        result = torch.from_numpy(y.astype(np.int16)).view(torch.bfloat16)
    else:
        result = torch.from_numpy(y)
    return result.to(reference.device)


def to_tensor(array, tensor=None, element_type=None, name="tensor"):
    """numpy array or torch tensor -> convserve.v1.Tensor (little-endian, C order).

    element_type: "float32", "float16", "bfloat16" (or a pb.ElementType).
    None, the default: FLOAT16 for a float16 array, FLOAT32 for anything
    else. float16 rounds other arrays to nearest even (numpy's astype);
    bfloat16 takes a uint16 array as bfloat16 bit patterns as they are (what
    from_tensor returns, and torch's t.view(torch.int16).numpy()) and rounds
    other arrays to nearest even, as torch does.
    """
    element_type = _element_type("element_type", element_type)
    array, natural = as_array(array, name, element_type)
    if element_type is None:
        element_type = natural if natural is not None else pb.ELEMENT_TYPE_FLOAT32
    if element_type == pb.ELEMENT_TYPE_BFLOAT16:
        data = array.astype("<u2") if array.dtype == np.uint16 else float32_to_bfloat16_bits(array)
    else:
        data = array.astype("<f2" if element_type == pb.ELEMENT_TYPE_FLOAT16 else "<f4")
    data = np.ascontiguousarray(data)
    tensor = tensor if tensor is not None else pb.Tensor()
    tensor.shape[:] = list(array.shape)
    tensor.element_type = element_type
    tensor.data = data.tobytes()
    return tensor


def from_tensor(tensor):
    """convserve.v1.Tensor -> numpy array owned by the caller: float32 for
    FLOAT32, float16 for FLOAT16, and for BFLOAT16 (numpy has no bfloat16) a
    uint16 array of the bit patterns: bfloat16_bits_to_float32() gives their
    values, torch.from_numpy(a.astype(np.int16)).view(torch.bfloat16) a torch
    tensor."""
    dtypes = {pb.ELEMENT_TYPE_FLOAT32: ("<f4", np.float32),
              pb.ELEMENT_TYPE_FLOAT16: ("<f2", np.float16),
              pb.ELEMENT_TYPE_BFLOAT16: ("<u2", np.uint16)}
    if tensor.element_type not in dtypes:
        raise ConvServeError(grpc.StatusCode.INTERNAL,
                             "response tensor has element type %d, expected FLOAT32, FLOAT16 "
                             "or BFLOAT16" % tensor.element_type)
    wire, native = dtypes[tensor.element_type]
    array = np.frombuffer(tensor.data, dtype=wire).astype(native)
    return array.reshape(tuple(tensor.shape))


def _pem(name, value):
    """`value` (PEM bytes, or a path as str or os.PathLike) as bytes; ValueError
    naming the parameter if the file cannot be read or holds no PEM."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        where = "the bytes given"
    else:
        try:
            with open(value, "rb") as pem_file:
                data = pem_file.read()
        except OSError as error:
            raise ValueError("%s: cannot read %r: %s" % (name, os.fspath(value), error.strerror))
        where = repr(os.fspath(value))
    if b"-----BEGIN " not in data:
        raise ValueError("%s: expected PEM ('-----BEGIN ...' line) in %s, got none"
                         % (name, where))
    return data


def tls_credentials(tls_ca=None, tls_cert=None, tls_key=None):
    """grpc.ssl_channel_credentials for the given PEM paths or bytes, or None if
    all are None. ValueError naming the parameter for a file that cannot be
    read, is not PEM, or a certificate without its key (or the reverse)."""
    if tls_ca is None and tls_cert is None and tls_key is None:
        return None
    if (tls_cert is None) != (tls_key is None):
        if tls_key is None:
            raise ValueError("tls_key: expected the PEM private key of tls_cert (a client "
                             "certificate needs both), got none")
        raise ValueError("tls_cert: expected the PEM certificate of tls_key (a client "
                         "certificate needs both), got none")
    return grpc.ssl_channel_credentials(root_certificates=_pem("tls_ca", tls_ca),
                                        private_key=_pem("tls_key", tls_key),
                                        certificate_chain=_pem("tls_cert", tls_cert))


class Client:
    """A connection to one ConvServe server or several replicas. Thread-safe; reuse it."""

    def __init__(self, target=None, timeout=None, max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
                 token=None, lb_policy=DEFAULT_LB_POLICY, retries=False, tls_ca=None,
                 tls_cert=None, tls_key=None, tls_server_name=None, request_id=None):
        """target: "host:port", or any gRPC target naming several replicas:
        "ipv4:127.0.0.1:50051,127.0.0.1:50052", "dns:///name:port" (default
        $CONVSERVE_TARGET, or localhost:50051).
        token: the server's bearer token when it runs with --auth_token_file
        (default $CONVSERVE_TOKEN, or none).
        lb_policy: "round_robin" (default: each call to the next replica) or
        "pick_first" (all calls to one).
        retries: retry Conv, ValidateShape and RunModel on UNAVAILABLE (a
        replica that died or drains) on another replica, up to 4 attempts.
        tls_ca, tls_cert, tls_key, tls_server_name: any of them connects over
        TLS (servers run with --tls_cert_file). tls_ca: the PEM CA that signed
        the server's certificate (default: gRPC's roots); tls_cert and tls_key
        (both or neither): this client's certificate and key for servers that
        require one (--tls_client_ca_file); each a path or the PEM bytes.
        tls_server_name: the name the server's certificate must carry, if not
        the target's host. Send a token only over TLS.
        request_id: the x-request-id every call sends (the attribute of the
        same name may change it); None, the default: a new one per call
        (uuid4 hex). A failed call's ConvServeError carries it.
        """
        self.target = target or os.environ.get("CONVSERVE_TARGET", DEFAULT_TARGET)
        self.timeout = timeout
        token = token if token is not None else os.environ.get("CONVSERVE_TOKEN")
        self._metadata = (("authorization", "Bearer " + token),) if token else ()
        self.request_id = request_id
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.service_config", service_config(lb_policy, retries)),
        ]
        if retries:
            # A request is retried only while gRPC still holds all of it (256
            # KiB by default): hold up to the largest message, so large Conv
            # requests are retried too.
            options += [("grpc.enable_retries", 1),
                        ("grpc.per_rpc_retry_buffer_size", max_message_bytes)]
        credentials = tls_credentials(tls_ca, tls_cert, tls_key)
        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        if credentials is None and tls_server_name:
            credentials = grpc.ssl_channel_credentials()
        if credentials is None:
            self._channel = grpc.insecure_channel(self.target, options=options)
        else:
            self._channel = grpc.secure_channel(self.target, credentials, options=options)
        self.stub = pb_grpc.ConvServiceStub(self._channel)
        self._health_check = self._channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def channel(self):
        return self._channel

    def _call(self, method, request, timeout=None):
        request_id = self.request_id if self.request_id is not None else uuid.uuid4().hex
        try:
            return method(request, timeout=timeout if timeout is not None else self.timeout,
                          metadata=self._metadata + ((REQUEST_ID_KEY, request_id),))
        except grpc.RpcError as error:
            raise ConvServeError(error.code(), error.details(),
                                 _answered_request_id(error, request_id)) from None

    def health(self, service="", timeout=None):
        """The server's serving status name: "SERVING", "NOT_SERVING", ..."""
        response = self._call(self._health_check,
                              health_pb2.HealthCheckRequest(service=service), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def conv(self, layer, x, w, b=None, timeout=None, element_type=None, output_type=None):
        """Runs one layer (a pb.ConvLayer). Returns (y, ConvResponse without its data).

        element_type: the type x, w and b travel as (see to_tensor; None: each
        array's own, float16 arrays as FLOAT16). output_type: "float32",
        "float16" or "bfloat16" (None: x's type); y is as from_tensor returns it.
        The server computes in float32 either way.
        """
        request = pb.ConvRequest(layer=layer)
        to_tensor(x, request.input, element_type, "x")
        to_tensor(w, request.weight, element_type, "w")
        if b is not None:
            to_tensor(b, request.bias, element_type, "b")
        output_type = _element_type("output_type", output_type)
        if output_type is not None:
            request.output_type = output_type
        response = self._call(self.stub.Conv, request, timeout)
        y = like_input(from_tensor(response.output), x)
        response.output.ClearField("data")
        return y, response

    def validate(self, layer, input_shape, enforce_framework=None, timeout=None):
        """The server's ShapeReport for `layer` on `input_shape`.

        enforce_framework: None, "pytorch", "keras" or "onnx".
        """
        request = pb.ValidateShapeRequest(layer=layer, input_shape=list(input_shape))
        if enforce_framework:
            request.enforce_framework = pb.Framework.Value(
                "FRAMEWORK_" + enforce_framework.upper())
        return self._call(self.stub.ValidateShape, request, timeout).report

    def load_model(self, name, layers, replace=False, timeout=None, element_type=None,
                   max_batch_size=0, max_queue_delay_us=0, precision=None):
        """Loads `layers` (ModelLayer tuples) as model `name`, their weights sent
        as `element_type` (see to_tensor), with dynamic batching when
        max_batch_size > 0 and Winograd allowed with precision="fast" (see
        load_model_request). Returns ModelInfo."""
        request = load_model_request(name, layers, replace, element_type, max_batch_size,
                                     max_queue_delay_us, precision)
        return self._call(self.stub.LoadModel, request, timeout).model

    def load_onnx(self, name, onnx_model, replace=False, timeout=None, max_batch_size=0,
                  max_queue_delay_us=0, precision=None):
        """Loads an ONNX model as model `name`: `onnx_model` is the file's bytes,
        its path, or an onnx.ModelProto. The server turns its Conv layers and the
        residual Adds and channel Concats between them into a model and refuses
        unsupported nodes, listing them. Dynamic batching and precision as in
        load_model. Returns ModelInfo."""
        if isinstance(onnx_model, (str, os.PathLike)):
            with open(onnx_model, "rb") as file:
                data = file.read()
        elif hasattr(onnx_model, "SerializeToString"):
            data = onnx_model.SerializeToString()
        else:
            data = bytes(onnx_model)
        request = pb.LoadModelRequest(name=name, replace=replace, onnx=data)
        _model_options(request, max_batch_size, max_queue_delay_us, precision)
        return self._call(self.stub.LoadModel, request, timeout).model

    def run_model(self, name, x, timeout=None, element_type=None, output_type=None):
        """Runs model `name` on `x`. Returns (y, compute_time_ns).

        element_type, output_type: as for conv()."""
        request = pb.RunModelRequest(name=name)
        to_tensor(x, request.input, element_type, "x")
        output_type = _element_type("output_type", output_type)
        if output_type is not None:
            request.output_type = output_type
        response = self._call(self.stub.RunModel, request, timeout)
        return like_input(from_tensor(response.output), x), response.compute_time_ns

    def stream(self, name, chunks, timeout=None):
        """Streams a signal through the causal model `name` (StreamModel).

        chunks: an iterable of numpy arrays (float32 or convertible), each the
        next cells of the signal along the last spatial axis, in the model's
        data layout, every other axis the same as in the first. Yields, for
        each chunk in turn, the output cells it completes (a numpy array whose
        time extent may be 0); concatenated along the time axis, they equal
        run_model() on the concatenated chunks. The chunks are sent as the
        caller's iterable produces them, so it may be an endless generator.
        timeout: for the whole stream (default: the client's). A failure
        raises ConvServeError, as the other methods do; closing the generator
        early cancels the stream.
        """
        request_id = self.request_id if self.request_id is not None else uuid.uuid4().hex

        sent = []  # the first chunk: torch chunks get torch outputs

        def requests():
            first = True
            for chunk in chunks:
                request = pb.StreamModelRequest(name=name if first else "")
                to_tensor(chunk, request.chunk, name="chunk")
                if first:
                    sent.append(chunk)
                first = False
                yield request
            if first:  # no chunk: the model is still named (and checked)
                yield pb.StreamModelRequest(name=name)

        responses = self.stub.StreamModel(
            requests(), timeout=timeout if timeout is not None else self.timeout,
            metadata=self._metadata + ((REQUEST_ID_KEY, request_id),))
        try:
            for response in responses:
                yield like_input(from_tensor(response.output), sent[0] if sent else None)
        except grpc.RpcError as error:
            raise ConvServeError(error.code(), error.details(),
                                 _answered_request_id(error, request_id)) from None
        finally:
            responses.cancel()  # a no-op once the stream has ended

    def unload_model(self, name, timeout=None):
        self._call(self.stub.UnloadModel, pb.UnloadModelRequest(name=name), timeout)

    def list_models(self, timeout=None):
        return list(self._call(self.stub.ListModels, pb.ListModelsRequest(), timeout).models)

    def server_info(self, timeout=None):
        """The server's version, build, kernel tiers, compute threads and limits
        (a GetServerInfoResponse)."""
        return self._call(self.stub.GetServerInfo, pb.GetServerInfoRequest(), timeout)
