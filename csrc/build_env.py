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


def cxx_runtime() -> str:
    """Path of the shared libstdc++ that torch runs with ("" if it cannot be told).

    The extension links this file by path, so that it uses the C++ runtime already in the
    process. Left to itself, a compiler whose own libstdc++.so is missing or a dangling link
    (as on a GPU machine this project runs on: a relocated g++ with only libstdc++.a usable)
    resolves -lstdc++ to the static archive; the module then carries a second C++ runtime next
    to torch's, and the first error message built with an ostringstream crashed the process.
    """
    import torch  # noqa: F401  (loads libtorch, and with it the C++ runtime)
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if os.path.basename(path).startswith("libstdc++.so"):
                    return path
    except OSError:  # not Linux: leave the choice to the compiler
        pass
    return ""


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
        "CXX_RUNTIME_LIBRARY": cxx_runtime(),
        "DEFAULT_CUDA_ARCHS": (os.environ.get("NVFP4_CUDA_ARCHS") or default_archs()).replace(";", "|"),
    }
    for key, value in info.items():
        sys.stdout.write(f"{key}={value}\n")


if __name__ == "__main__":
    main()
