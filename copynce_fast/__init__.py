"""copynce-fast: exact PixTrace geometry and the CopyNCE loss for image copy detection.

Public names: ``CopyNCELoss`` (the drop-in loss), ``CopyDetector`` / ``CopyIndex`` (find copies from Python:
embed, index, search, compare; imported on first use), ``copynce_fast.ops`` (functional ops with
``impl=None|"torch"|"triton"``), ``copynce_fast.pixtrace`` (geometry and correspondences).
"""

__version__ = "0.1.0"

from copynce_fast.losses import CopyNCELoss  # noqa: E402

# Imported on first attribute access (PEP 562): `import copynce_fast` must not pull in the models, faiss or
# matplotlib that the inference API needs.
_LAZY = {"CopyDetector": "copynce_fast.inference.detector", "CopyIndex": "copynce_fast.search.copy_index"}

__all__ = ["CopyNCELoss", "CopyDetector", "CopyIndex", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'copynce_fast' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
