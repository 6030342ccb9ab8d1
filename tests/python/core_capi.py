"""ctypes binding of core/c_api.h, for tests that reach the C++ core directly."""

import ctypes
import math
import os

import numpy as np

from convserve_oracle import ACTIVATIONS, MODES, PRESETS

LAYOUTS = ["channels_first", "channels_last"]
WEIGHT_FORMATS = ["oihw", "hwio"]
INVALID_ARGUMENT = 3
HALF_TYPES = ["float16", "bfloat16"]
ALGORITHMS = ["auto", "direct", "winograd"]
HALF_ISAS = {"service": 0, "scalar": 1, "avx2_f16c": 2, "avx512f": 3}


class Layer(ctypes.Structure):
    _fields_ = [
        ("spatial_rank", ctypes.c_int32),
        ("padding", ctypes.c_int32),
        ("padding_mode", ctypes.c_int32),
        ("activation", ctypes.c_int32),
        ("data_layout", ctypes.c_int32),
        ("weight_layout", ctypes.c_int32),
        ("bias", ctypes.c_int32),
        ("kernel_path", ctypes.c_int32),
        ("in_channels", ctypes.c_int64),
        ("out_channels", ctypes.c_int64),
        ("groups", ctypes.c_int64),
        ("kernel", ctypes.c_int64 * 3),
        ("stride", ctypes.c_int64 * 3),
        ("dilation", ctypes.c_int64 * 3),
        ("pad_begin", ctypes.c_int64 * 3),
        ("pad_end", ctypes.c_int64 * 3),
        ("activation_alpha", ctypes.c_float),
        ("algorithm", ctypes.c_int32),
    ]


def _array3(values):
    return (ctypes.c_int64 * 3)(*(list(values) + [0] * (3 - len(values))))


class CoreError(Exception):
    def __init__(self, code, message):
        super().__init__(f"status {code}: {message}")
        self.code = code
        self.message = message


class Core:
    """The C++ core, loaded from the build directory."""

    def __init__(self, build_dir=None):
        build_dir = build_dir or os.environ.get("CONVSERVE_BUILD_DIR", "build")
        self._lib = ctypes.CDLL(os.path.join(build_dir, "core", "libconvserve_capi.so"))
        i64p = ctypes.POINTER(ctypes.c_int64)
        f32p = ctypes.POINTER(ctypes.c_float)
        self._lib.convserve_output_shape.argtypes = [
            ctypes.POINTER(Layer), i64p, ctypes.c_int, i64p, ctypes.c_char_p, ctypes.c_size_t]
        self._lib.convserve_conv.argtypes = [
            ctypes.POINTER(Layer), i64p, ctypes.c_int, f32p, f32p, f32p, f32p, ctypes.c_int,
            ctypes.c_char_p, ctypes.c_size_t]
        u16p = ctypes.POINTER(ctypes.c_uint16)
        self._lib.convserve_half_to_float.argtypes = [
            ctypes.c_int, ctypes.c_int, u16p, ctypes.c_size_t, f32p]
        self._lib.convserve_float_to_half.argtypes = [
            ctypes.c_int, ctypes.c_int, f32p, ctypes.c_size_t, u16p]

    def half_to_float(self, half_type, bits, isa=0):
        """uint16 bit patterns of `half_type` ("float16", "bfloat16") -> float32,
        with `isa` (0: the service's choice, 1 scalar, 2 AVX2 + F16C, 3 AVX-512F).
        Returns None if this CPU lacks the ISA."""
        bits = np.ascontiguousarray(bits, dtype=np.uint16)
        out = np.empty(bits.shape, np.float32)
        code = self._lib.convserve_half_to_float(
            HALF_TYPES.index(half_type), isa, bits.ctypes.data_as(ctypes.POINTER(ctypes.c_uint16)),
            bits.size, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return None if code != 0 else out

    def float_to_half(self, half_type, values, isa=0, in_place=False):
        """float32 -> uint16 bit patterns of `half_type`, as half_to_float;
        `in_place` narrows inside the float32 buffer, as the server does."""
        values = np.array(values, dtype=np.float32)  # a copy: in_place writes into it
        out = values.reshape(-1).view(np.uint16)[: values.size] if in_place else np.empty(values.size,
                                                                                np.uint16)
        code = self._lib.convserve_float_to_half(
            HALF_TYPES.index(half_type), isa, values.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            values.size, out.ctypes.data_as(ctypes.POINTER(ctypes.c_uint16)))
        return None if code != 0 else out.reshape(values.shape).copy()

    @staticmethod
    def _layer(layer, path):
        rank = layer["rank"]
        return Layer(
            spatial_rank=rank, padding=PRESETS.index(layer["padding"]),
            padding_mode=MODES.index(layer["padding_mode"]),
            activation=ACTIVATIONS.index(layer["activation"]),
            data_layout=LAYOUTS.index(layer["data_format"]),
            weight_layout=WEIGHT_FORMATS.index(layer["weight_format"]),
            bias=int(layer["bias"]), kernel_path={"auto": 0, "reference": 1}[path],
            in_channels=layer["in_channels"], out_channels=layer["out_channels"],
            groups=layer["groups"], kernel=_array3(layer["kernel"]),
            stride=_array3(layer["stride"]), dilation=_array3(layer["dilation"]),
            pad_begin=_array3(layer["pad_begin"]), pad_end=_array3(layer["pad_end"]),
            activation_alpha=layer.get("alpha", math.nan),
            algorithm=ALGORITHMS.index(layer.get("algorithm", "auto")))

    def output_shape(self, layer, input_shape):
        spec = self._layer(layer, "auto")
        shape = (ctypes.c_int64 * len(input_shape))(*input_shape)
        out = (ctypes.c_int64 * 5)()
        error = ctypes.create_string_buffer(1024)
        code = self._lib.convserve_output_shape(ctypes.byref(spec), shape, len(input_shape), out,
                                                error, len(error))
        if code != 0:
            raise CoreError(code, error.value.decode())
        return list(out[: len(input_shape)])

    def conv(self, layer, x, w, b, path="auto", threads=1):
        out_shape = self.output_shape(layer, list(x.shape))
        spec = self._layer(layer, path)
        x = np.ascontiguousarray(x, dtype=np.float32)
        w = np.ascontiguousarray(w, dtype=np.float32)
        y = np.empty(out_shape, dtype=np.float32)
        f32p = ctypes.POINTER(ctypes.c_float)
        shape = (ctypes.c_int64 * x.ndim)(*x.shape)
        bias = None
        if b is not None:
            b = np.ascontiguousarray(b, dtype=np.float32)
            bias = b.ctypes.data_as(f32p)
        error = ctypes.create_string_buffer(1024)
        code = self._lib.convserve_conv(ctypes.byref(spec), shape, x.ndim, x.ctypes.data_as(f32p),
                                        w.ctypes.data_as(f32p), bias, y.ctypes.data_as(f32p),
                                        threads, error, len(error))
        if code != 0:
            raise CoreError(code, error.value.decode())
        return y
