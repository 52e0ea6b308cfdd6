"""Backends: one numerical contract (``nvfp4_kernels.reference``), several implementations.

``registry`` chooses among them; each submodule declares what it implements and what it needs.
"""
