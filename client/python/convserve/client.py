"""A thin client over the generated convserve.v1 stubs, numpy in and out."""

import collections
import os

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

# One layer of a model: the ConvLayer message, its weight array (in the
# layer's weight layout) and its bias array or None.
ModelLayer = collections.namedtuple("ModelLayer", ["layer", "weight", "bias"])


class ConvServeError(RuntimeError):
    """A call failed. `code` is the grpc.StatusCode, `details` the server's message."""

    def __init__(self, code, details):
        super().__init__("%s: %s" % (code.name, details))
        self.code = code
        self.details = details


def to_tensor(array, tensor=None):
    """numpy array -> convserve.v1.Tensor (float32, little-endian, C order)."""
    array = np.ascontiguousarray(array, dtype="<f4")
    tensor = tensor if tensor is not None else pb.Tensor()
    tensor.shape[:] = list(array.shape)
    tensor.element_type = pb.ELEMENT_TYPE_FLOAT32
    tensor.data = array.tobytes()
    return tensor


def from_tensor(tensor):
    """convserve.v1.Tensor -> numpy float32 array (a copy owned by the caller)."""
    if tensor.element_type != pb.ELEMENT_TYPE_FLOAT32:
        raise ConvServeError(grpc.StatusCode.INTERNAL,
                             "response tensor has element type %d, expected FLOAT32"
                             % tensor.element_type)
    array = np.frombuffer(tensor.data, dtype="<f4").astype(np.float32)
    return array.reshape(tuple(tensor.shape))


class Client:
    """A connection to one ConvServe server. Thread-safe; reuse it."""

    def __init__(self, target=None, timeout=None, max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
                 token=None):
        """token: the server's bearer token when it runs with --auth_token_file
        (default $CONVSERVE_TOKEN, or none)."""
        self.target = target or os.environ.get("CONVSERVE_TARGET", DEFAULT_TARGET)
        self.timeout = timeout
        token = token if token is not None else os.environ.get("CONVSERVE_TOKEN")
        self._metadata = (("authorization", "Bearer " + token),) if token else None
        self._channel = grpc.insecure_channel(self.target, options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ])
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
        try:
            return method(request, timeout=timeout if timeout is not None else self.timeout,
                          metadata=self._metadata)
        except grpc.RpcError as error:
            raise ConvServeError(error.code(), error.details()) from None

    def health(self, service="", timeout=None):
        """The server's serving status name: "SERVING", "NOT_SERVING", ..."""
        response = self._call(self._health_check,
                              health_pb2.HealthCheckRequest(service=service), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def conv(self, layer, x, w, b=None, timeout=None):
        """Runs one layer (a pb.ConvLayer). Returns (y, ConvResponse without its data)."""
        request = pb.ConvRequest(layer=layer)
        to_tensor(x, request.input)
        to_tensor(w, request.weight)
        if b is not None:
            to_tensor(b, request.bias)
        response = self._call(self.stub.Conv, request, timeout)
        y = from_tensor(response.output)
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

    def load_model(self, name, layers, replace=False, timeout=None):
        """Loads `layers` (ModelLayer tuples) as model `name`. Returns ModelInfo."""
        request = pb.LoadModelRequest(name=name, replace=replace)
        for layer in layers:
            model_layer = request.layers.add()
            model_layer.layer.CopyFrom(layer.layer)
            to_tensor(layer.weight, model_layer.weight)
            if layer.bias is not None:
                to_tensor(layer.bias, model_layer.bias)
        return self._call(self.stub.LoadModel, request, timeout).model

    def run_model(self, name, x, timeout=None):
        """Runs model `name` on `x`. Returns (y, compute_time_ns)."""
        request = pb.RunModelRequest(name=name)
        to_tensor(x, request.input)
        response = self._call(self.stub.RunModel, request, timeout)
        return from_tensor(response.output), response.compute_time_ns

    def unload_model(self, name, timeout=None):
        self._call(self.stub.UnloadModel, pb.UnloadModelRequest(name=name), timeout)

    def list_models(self, timeout=None):
        return list(self._call(self.stub.ListModels, pb.ListModelsRequest(), timeout).models)
