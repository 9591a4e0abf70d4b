"""Only what pyproject.toml cannot say: the C++ extension, the package list and the kernels/ package mapping.

Set COPYNCE_NO_EXT=1 to skip building ``copynce_fast._C``; ``copynce_fast._cpp`` then falls back to
pure Python with identical signatures.
"""
import os
import sys

from setuptools import find_packages, setup

# Every package under copynce_fast/ is found (a new subpackage cannot be forgotten; tests/test_packaging.py checks
# it); kernels/ is installed as copynce_fast.kernels, never as a top-level ``kernels`` (STYLE.md B2).
packages = find_packages(include=["copynce_fast", "copynce_fast.*"]) + ["copynce_fast.kernels"]
package_dir = {"copynce_fast": "copynce_fast", "copynce_fast.kernels": "kernels"}

ext_modules = []
if os.environ.get("COPYNCE_NO_EXT", "0") != "1":
    from pybind11.setup_helpers import Pybind11Extension

    ext_modules.append(
        Pybind11Extension(
            "copynce_fast._C",
            sorted(os.path.join("csrc", f) for f in os.listdir("csrc") if f.endswith(".cpp")),
            depends=sorted(os.path.join("csrc", f) for f in os.listdir("csrc") if f.endswith(".h")),
            cxx_std=17,
            # No FMA contraction and no fast-math: csrc/overlap.cpp must round like the torch reference, op by op.
            extra_compile_args=["-O3"] + ([] if sys.platform == "win32" else ["-ffp-contract=off"]),
        )
    )

setup(packages=packages, package_dir=package_dir, ext_modules=ext_modules)
