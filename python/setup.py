"""Builds the `incnn` Python package with CMake (docs/install.md).

    pip install --no-build-isolation --no-index ./python

The extension (python/incnn_module.cpp, CMake target `incnn`) is built by
CMake on the whole project, with the compiler where LLVM/MLIR 19 is found
(incnn.compile) and without it otherwise (incnn.compile raises RuntimeError).
The wheel holds the package incnn/: the module (incnn/incnn.<abi>.so, which
__init__.py loads as `incnn` in the package's place), its stubs (__init__.pyi,
a copy of python/incnn.pyi) and py.typed.

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

The package holds the extension module (incnn/incnn.<abi>.so, built from
python/incnn_module.cpp) and its stubs; importing the package loads the
module under the name `incnn` and puts it in its place, so that `import incnn`
gives the same module as the in-tree build/python/ (docs/python.md).
"""
import importlib.machinery as _machinery
import importlib.util as _util
import os as _os
import sys as _sys


def _load():
    here = _os.path.dirname(_os.path.abspath(__file__))
    for suffix in _machinery.EXTENSION_SUFFIXES:
        path = _os.path.join(here, "incnn" + suffix)
        if _os.path.exists(path):
            loader = _machinery.ExtensionFileLoader(__name__, path)
            spec = _util.spec_from_file_location(__name__, path, loader=loader)
            module = _util.module_from_spec(spec)
            loader.exec_module(module)
            return module
    raise ImportError(f"no incnn extension module in {here}")


_sys.modules[__name__] = _load()
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
