"""copynce-fast: exact PixTrace geometry and the CopyNCE loss for image copy detection."""

__version__ = "0.1.0"
