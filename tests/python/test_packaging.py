"""`pip install ./client/python` gives a working package: built offline with Debian's
setuptools (no build isolation), the protobuf code generated at build time from proto/,
importable from any directory, with a `convserve` command.

The client and proto folders are copied to a scratch tree first: pip builds a local
directory in place and would leave build/ and *.egg-info/ in the checkout.
"""

import os
import shutil
import subprocess
import sys
import venv

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("packaging")
    tree = scratch / "checkout"
    shutil.copytree(os.path.join(REPO, "client", "python"), tree / "client" / "python",
                    ignore=shutil.ignore_patterns("_gen", "__pycache__", "build", "*.egg-info"))
    shutil.copytree(os.path.join(REPO, "proto"), tree / "proto")
    env_dir = scratch / "venv"
    # Debian's grpcio, protobuf and numpy come from the system site-packages.
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = str(env_dir / "bin" / "python")
    result = subprocess.run(
        [python, "-m", "pip", "install", "--no-build-isolation", str(tree / "client" / "python")],
        capture_output=True, text=True, timeout=300, cwd=str(scratch),
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert result.returncode == 0, result.stdout + result.stderr
    return env_dir, scratch


def run(args, cwd):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=str(cwd),
                          env={k: v for k, v in os.environ.items()
                               if k not in ("PYTHONPATH", "CONVSERVE_PYTHON_GEN")})


def test_the_package_imports_from_any_directory_with_its_generated_code(installed):
    env_dir, scratch = installed
    other = scratch / "elsewhere"
    other.mkdir(exist_ok=True)
    result = run([str(env_dir / "bin" / "python"), "-c",
                  "import convserve, convserve.client as c; print(convserve.__file__); "
                  "print(c.pb.ConvRequest.DESCRIPTOR.full_name); "
                  "print(c.health_pb2.HealthCheckRequest.DESCRIPTOR.full_name)"], other)
    assert result.returncode == 0, result.stderr
    module_file, request, health = result.stdout.split()
    assert module_file.startswith(str(env_dir)), module_file  # the installed copy, not the checkout
    assert request == "convserve.v1.ConvRequest"
    assert health == "grpc.health.v1.HealthCheckRequest"
    # Generated at build time into the package, not copied from a checkout's _gen.
    generated = os.path.join(os.path.dirname(module_file), "_gen", "convserve", "v1")
    assert sorted(f for f in os.listdir(generated) if f.endswith(".py")) == [
        "convserve_pb2.py", "convserve_pb2_grpc.py"]


def test_the_convserve_command_is_installed(installed):
    env_dir, scratch = installed
    result = run([str(env_dir / "bin" / "convserve"), "--help"], scratch)
    assert result.returncode == 0, result.stderr
    assert "--target" in result.stdout


def test_a_missing_generated_code_names_the_command_that_fixes_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.path.join(REPO, "client", "python")
    env["CONVSERVE_PYTHON_GEN"] = str(tmp_path / "no_such_gen")
    result = subprocess.run([sys.executable, "-c", "import convserve"], capture_output=True,
                            text=True, timeout=60, cwd=str(tmp_path), env=env)
    assert result.returncode != 0
    assert "cmake --build build --target convserve_python_stubs" in result.stderr
    assert "pip install --no-build-isolation ./client/python" in result.stderr
