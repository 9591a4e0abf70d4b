"""Triton kernels of copynce-fast, installed as ``copynce_fast.kernels``.

The folder is mapped into the package by setup.py: a bare top-level ``kernels`` would shadow the
PyPI package of that name, so importing it under any other name is an error.
"""
if __name__ != "copynce_fast.kernels":
    raise ImportError(
        f"this folder must be imported as 'copynce_fast.kernels', not {__name__!r}; "
        "install the package with `pip install -e .` and import copynce_fast.kernels"
    )
