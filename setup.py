"""Build hook for the optional C++/CUDA extension ``nvfp4_kernels._C``.

Without the extension the package is pure Python (reference + Triton backends). The extension
build (csrc/, CUTLASS from the ``nvidia-cutlass`` package) is described in docs/building.md.
"""

from setuptools import setup


def extensions():
    """The compiled extension, when it is asked for; none for a pure-Python install."""
    return [], {}


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
