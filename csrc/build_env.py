"""Prints what CMakeLists.txt needs from the Python environment, one `KEY=VALUE` per line
(lists separated by "|": a ";" would split the line in CMake).

Run by CMake with the interpreter that will import the extension, so that the build uses that
interpreter's torch (headers, libraries, C++ ABI) and the CUTLASS headers of its installed
``nvidia-cutlass`` package. Also resolves the default target archs (NVFP4_CUDA_ARCHS unset): the
visible GPU's arch, or sm_90a;sm_100a;sm_120a on a machine without one.
"""

import importlib.util
import os
import sys
import sysconfig


def default_archs() -> str:
    import torch
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        # Arch-specific ("a") targets unlock wgmma/tcgen05/FP4 instructions from SM90 on.
        return f"sm_{major}{minor}" + ("a" if major >= 9 else "")
    return "sm_90a|sm_100a|sm_120a"


def cutlass_include() -> str:
    # Located without importing: only the headers of nvidia-cutlass are needed (it can be
    # installed with --no-deps), and its Python package imports things a build does not need.
    spec = importlib.util.find_spec("cutlass_library")
    if spec is None or not spec.submodule_search_locations:
        return ""
    root = os.path.join(list(spec.submodule_search_locations)[0], "source")
    return "|".join(os.path.join(root, d) for d in ("include", "tools/util/include"))


def main() -> None:
    import torch
    from torch.utils import cpp_extension as ext
    info = {
        "TORCH_INCLUDE_DIRS": "|".join(ext.include_paths()),
        "TORCH_LIBRARY_DIRS": "|".join(ext.library_paths()),
        "TORCH_CXX11_ABI": str(int(torch._C._GLIBCXX_USE_CXX11_ABI)),
        "TORCH_VERSION": torch.__version__,
        "PYTHON_INCLUDE_DIR": sysconfig.get_paths()["include"],
        "PYTHON_EXT_SUFFIX": sysconfig.get_config_var("EXT_SUFFIX"),
        "CUTLASS_INCLUDE_DIRS": cutlass_include(),
        "DEFAULT_CUDA_ARCHS": (os.environ.get("NVFP4_CUDA_ARCHS") or default_archs()).replace(";", "|"),
    }
    for key, value in info.items():
        sys.stdout.write(f"{key}={value}\n")


if __name__ == "__main__":
    main()
