"""Locates the Python code generated from proto/ by the build.

The build (CMake target convserve_python_stubs) runs protoc with
grpc_python_plugin into client/python/convserve/_gen/ (git-ignored; generated
code is never committed). CONVSERVE_PYTHON_GEN may point elsewhere.

The generated convserve_pb2_grpc.py imports ``convserve.v1.convserve_pb2``,
a name inside this very package, so the package's __path__ is extended with
_gen/convserve (see __init__.py). The health and reflection messages live
under the name ``grpc``, which belongs to grpcio, so they are loaded from
their files under private names instead.
"""

import importlib.util
import os

GEN_DIR = os.environ.get("CONVSERVE_PYTHON_GEN") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "_gen")


def missing_message():
    return ("convserve: generated protobuf code not found in %s; build it first: "
            "cmake -S . -B build -G Ninja && cmake --build build --target convserve_python_stubs"
            % GEN_DIR)


def load_generated(relative_path, module_name):
    """Imports the generated file GEN_DIR/relative_path as `module_name`."""
    path = os.path.join(GEN_DIR, relative_path)
    if not os.path.exists(path):
        raise ImportError(missing_message())
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
