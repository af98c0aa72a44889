"""Builds the `incnn` Python package with CMake (docs/install.md).

    pip install --no-build-isolation --no-index ./python

The extension (python/incnn_module.cpp, CMake target `incnn`) is built by
CMake on the whole project, with the compiler where LLVM/MLIR 19 is found
(incnn.compile) and without it otherwise (incnn.compile raises RuntimeError).
The wheel holds the package incnn/: the module (incnn/incnn.<abi>.so, re-
exported by __init__.py), its stubs (__init__.pyi, python/incnn.pyi) and
py.typed.

Environment:
  INCNN_CMAKE_BUILD_DIR  an already configured build directory (e.g. build/):
                         builds the `incnn` target there (a no-op when it is
                         up to date) instead of configuring a new one under
                         python/build/. Its module must match this Python.
  INCNN_BUILD_COMPILER   ON or OFF: overrides the MLIR detection (new builds).
  CMAKE_BUILD_PARALLEL_LEVEL, CMAKE_GENERATOR: as for CMake.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MLIR_DIR = Path("/usr/lib/llvm-19/lib/cmake/mlir")

INIT_PY = '''\
"""incnn: exact incremental inference for vector-quantized transformers.

Compile a checkpoint with incnn.compile, open a Session (tokens) or a Document
(text) on it, edit, and read the output: bit for bit what a from-scratch run
gives. The extension module is incnn.incnn; everything public is re-exported
here (docs/python.md).
"""
from . import incnn as _ext
from .incnn import *  # noqa: F401,F403

__version__ = _ext.__version__
__all__ = [name for name in dir(_ext) if not name.startswith("_")]
# Classes report the package, as the in-tree module does (incnn.Session).
for _name in __all__:
    _obj = getattr(_ext, _name)
    if isinstance(_obj, type) and _obj.__module__ == _ext.__name__:
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):
            pass
del _name, _obj
'''


def project_version():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    match = re.search(r"project\(\s*incnn\s+VERSION\s+([0-9.]+)", text)
    if not match:
        raise RuntimeError("no project(incnn VERSION ...) in CMakeLists.txt")
    return match.group(1)


def build_base():
    """setuptools' scratch directory: inside a reused CMake build directory,
    else python/build/ (ignored by git)."""
    reuse = os.environ.get("INCNN_CMAKE_BUILD_DIR")
    base = Path(reuse).resolve() / "python-setuptools" if reuse else HERE / "build"
    base.mkdir(parents=True, exist_ok=True)
    return str(base)


class CMakeBuild(build_ext):
    """Builds the `incnn` target with CMake and lays out the package."""

    def run_cmake(self, args):
        print("incnn setup.py:", " ".join(str(a) for a in args), flush=True)
        subprocess.run([str(a) for a in args], check=True)

    def configure(self, build_dir):
        if not (ROOT / "CMakeLists.txt").exists():
            raise RuntimeError(f"no incnn source tree at {ROOT}: build from a checkout")
        compiler = os.environ.get("INCNN_BUILD_COMPILER")
        if compiler is None:
            compiler = "ON" if (MLIR_DIR / "MLIRConfig.cmake").exists() else "OFF"
        args = ["cmake", "-S", ROOT, "-B", build_dir,
                "-DCMAKE_BUILD_TYPE=Release",
                f"-DINCNN_BUILD_COMPILER={compiler}",
                "-DINCNN_BUILD_TESTS=OFF",
                "-DINCNN_BUILD_PYTHON=ON",
                f"-DPython_EXECUTABLE={sys.executable}"]
        if compiler.upper() in ("ON", "1", "TRUE", "YES"):
            args.append(f"-DMLIR_DIR={MLIR_DIR}")
        if "CMAKE_GENERATOR" not in os.environ and shutil.which("ninja"):
            args += ["-G", "Ninja"]
        self.run_cmake(args)

    def build_extension(self, ext):
        reuse = os.environ.get("INCNN_CMAKE_BUILD_DIR")
        if reuse:
            build_dir = Path(reuse).resolve()
            if not (build_dir / "CMakeCache.txt").exists():
                raise RuntimeError(
                    f"INCNN_CMAKE_BUILD_DIR={reuse} is not a configured CMake build")
        else:
            build_dir = Path(self.build_temp).resolve() / "cmake"
            if not (build_dir / "CMakeCache.txt").exists():
                self.configure(build_dir)
        try:
            self.run_cmake(["cmake", "--build", build_dir, "--target", "incnn"])
        except subprocess.CalledProcessError as e:
            raise RuntimeError(
                "building the incnn module failed (is pybind11-dev installed? "
                "see docs/install.md)") from e

        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        module = build_dir / "python" / f"incnn{suffix}"
        if not module.exists():
            found = sorted(p.name for p in (build_dir / "python").glob("incnn*.so"))
            raise RuntimeError(
                f"{module} not found (found: {found or 'nothing'}): the build "
                f"directory was made for another Python than {sys.executable}")
        dest = Path(self.get_ext_fullpath(ext.name))
        package = dest.parent
        package.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(module, dest)
        os.chmod(dest, 0o755)
        shutil.copyfile(HERE / "incnn.pyi", package / "__init__.pyi")
        (package / "py.typed").write_text("")
        (package / "__init__.py").write_text(INIT_PY)


setup(
    version=project_version(),
    packages=[],
    py_modules=[],
    ext_modules=[Extension("incnn.incnn", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
    options={"build": {"build_base": build_base()},
             "egg_info": {"egg_base": build_base()}},
)
