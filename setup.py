"""Only what pyproject.toml cannot say: the C++ extension and the kernels/ package mapping.

Set COPYNCE_NO_EXT=1 to skip building ``copynce_fast._C``; ``copynce_fast._cpp`` then falls back to
pure Python with identical signatures.
"""
import os
import sys

from setuptools import setup

packages = [
    "copynce_fast",
    "copynce_fast.ops",
    "copynce_fast.pixtrace",
    "copynce_fast.data",
    "copynce_fast.models",
    "copynce_fast.search",
    "copynce_fast.inference",
    "copynce_fast.eval",
    "copynce_fast.train",
    "copynce_fast.utils",
    "copynce_fast.cli",
    "copynce_fast.kernels",
    "copynce_fast.viz",
]
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
