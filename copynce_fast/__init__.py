"""copynce-fast: exact PixTrace geometry and the CopyNCE loss for image copy detection.

Public names: ``CopyNCELoss`` (the drop-in loss), ``copynce_fast.ops`` (functional ops with
``impl=None|"torch"|"triton"``), ``copynce_fast.pixtrace`` (geometry and correspondences).
"""

__version__ = "0.1.0"

from copynce_fast.losses import CopyNCELoss  # noqa: E402

__all__ = ["CopyNCELoss", "__version__"]
