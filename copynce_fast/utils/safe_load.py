"""Loading files a user hands us without running code from them: tensors only, arrays without pickles.

``torch.load(weights_only=True)`` and ``np.load(allow_pickle=False)`` refuse pickled Python objects; their own
messages then advise turning the protection off. Here the refusal is our one line instead, naming what the
file was given as and the file:

    weights evil.pt: not a plain tensor checkpoint (refused: loading it could run code)
    knn_path table.npy: holds pickled Python objects (refused: loading them could run code)

Other failures (a corrupt or foreign file) keep a short reason.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

__all__ = ["REFUSED_CHECKPOINT", "REFUSED_ARRAY", "load_tensors", "load_array", "refused_pickle"]

REFUSED_CHECKPOINT = "not a plain tensor checkpoint (refused: loading it could run code)"
REFUSED_ARRAY = "holds pickled Python objects (refused: loading them could run code)"


def refused_pickle(e: BaseException) -> bool:
    """True when ``e`` is torch's or numpy's refusal to unpickle a Python object (an import of a global)."""
    text = str(e)
    return "Unsupported global" in text or "not an allowed global" in text or "allow_pickle=False" in text


def _reason(e: BaseException) -> str:
    """A short reason, never torch's advice to turn ``weights_only`` off: the unpickler's own error if there is
    one, else the first line of the message."""
    text = str(e)
    m = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    first = m.group(1) if m else (text.strip().splitlines() or [""])[0]
    first = first[:200]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def load_tensors(path, what: str, map_location="cpu"):
    """``torch.load(path, weights_only=True)``; ValueError ``"<what> <path>: ..."`` when refused or unreadable."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what}: no such file: {path}")
    try:
        with warnings.catch_warnings():  # a bare pickle makes torch warn about its protocol before refusing it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickled objects, a corrupt file, not a torch file
        with path.open("rb") as f:
            raw_pickle = f.read(1) == b"\x80"  # a bare pickle (protocol >= 2), not torch's zip: it may hold anything
        if refused_pickle(e) or raw_pickle:
            raise ValueError(f"{what} {path}: {REFUSED_CHECKPOINT}") from None
        raise ValueError(f"{what} {path}: cannot load (not a PyTorch checkpoint: {_reason(e)})") from None


def load_array(path, what: str):
    """``np.load(path, allow_pickle=False)`` of a ``.npy`` (an ndarray) or ``.npz`` (read into a dict of arrays);
    ValueError ``"<what> <path>: ..."`` when it holds pickled objects or cannot be read."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what}: no such file: {path}")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            return data
        with data:
            return {k: data[k] for k in data.files}
    except Exception as e:
        if refused_pickle(e):
            raise ValueError(f"{what} {path}: {REFUSED_ARRAY}") from None
        raise ValueError(f"{what} {path}: cannot load (not a NumPy .npy / .npz file: {_reason(e)})") from None
