"""Builds the package with the protobuf code generated from ../../proto.

The generated modules go into the built package's convserve/_gen, where
convserve/_stubs.py finds them; in a source checkout the CMake target
convserve_python_stubs puts them into convserve/_gen instead. protoc and
grpc_python_plugin are Debian's (protobuf-compiler, protobuf-compiler-grpc),
the versions that match python3-protobuf and python3-grpcio.
"""

import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
PROTOS = ["convserve/v1/convserve.proto", "grpc/health/v1/health.proto",
          "grpc/reflection/v1alpha/reflection.proto"]


def _tool(name, package):
    path = shutil.which(name)
    if path is None:
        raise SystemExit("convserve: building the package needs %s (Debian package %s: "
                         "apt-get install %s)" % (name, package, package))
    return path


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        missing = [p for p in PROTOS if not os.path.exists(os.path.join(PROTO_ROOT, p))]
        if missing:
            raise SystemExit("convserve: %s not found: build the package from a ConvServe "
                             "checkout (pip install ./client/python)" % ", ".join(missing))
        out = os.path.join(self.build_lib, "convserve", "_gen")
        os.makedirs(out, exist_ok=True)
        subprocess.run([_tool("protoc", "protobuf-compiler"), "--proto_path=" + PROTO_ROOT,
                        "--python_out=" + out, "--grpc_python_out=" + out,
                        "--plugin=protoc-gen-grpc_python="
                        + _tool("grpc_python_plugin", "protobuf-compiler-grpc")]
                       + [os.path.join(PROTO_ROOT, p) for p in PROTOS], check=True)


setup(cmdclass={"build_py": BuildWithStubs})
