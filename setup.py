"""Build hook for the optional C++/CUDA extension ``nvfp4_kernels._C``.

A plain ``pip install .`` is pure Python (reference + Triton backends) and needs no compiler.
``NVFP4_BUILD_EXT=1 pip install --no-build-isolation .`` (or ``python setup.py build_ext
--inplace``) also compiles csrc/ with CMake (CMakeLists.txt), against the torch already installed
in the environment and the CUTLASS headers of the ``nvidia-cutlass`` package. See
docs/building.md for the switches (NVFP4_CUDA_ARCHS, MAX_JOBS).
"""

import os
import shutil
import subprocess
import sys
import time

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeExtension(Extension):
    """An extension whose sources CMake knows; setuptools only names the output."""

    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        # Prefer the cmake installed next to this interpreter (pip install cmake) over the system's.
        here = os.path.dirname(sys.executable)
        cmake = shutil.which("cmake", path=here) or shutil.which("cmake")
        if cmake is None:
            raise RuntimeError("NVFP4_BUILD_EXT=1 needs cmake (pip install cmake ninja)")
        out_dir = os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name)))
        build_dir = os.path.abspath(os.path.join(self.build_temp, "cmake"))
        os.makedirs(build_dir, exist_ok=True)
        args = [f"-DPython_EXECUTABLE={sys.executable}", f"-DNVFP4_OUTPUT_DIR={out_dir}",
                f"-DCMAKE_BUILD_TYPE={os.environ.get('NVFP4_BUILD_TYPE', 'Release')}"]
        if os.environ.get("NVFP4_CUDA_ARCHS"):
            args.append(f"-DNVFP4_CUDA_ARCHS={os.environ['NVFP4_CUDA_ARCHS']}")
        if (shutil.which("ninja", path=here) or shutil.which("ninja")) and not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
            args += ["-G", "Ninja"]
        # MAX_JOBS as torch.utils.cpp_extension reads it; each CUTLASS GEMM file needs ~2 GB.
        jobs = os.environ.get("MAX_JOBS") or str(os.cpu_count() or 1)
        start = time.time()
        subprocess.run([cmake, "-S", ROOT, "-B", build_dir, *args], check=True)
        subprocess.run([cmake, "--build", build_dir, "-j", jobs], check=True)
        print(f"nvfp4_kernels._C built in {time.time() - start:.0f} s with {jobs} jobs")


def extensions():
    """The compiled extension when NVFP4_BUILD_EXT=1; none for a pure-Python install."""
    if os.environ.get("NVFP4_BUILD_EXT", "0") not in ("1", "true", "yes"):
        return [], {}
    return [CMakeExtension("nvfp4_kernels._C")], {"build_ext": CMakeBuild}


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
