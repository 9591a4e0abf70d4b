"""Skipped files: reasons a user can read, and the list written beside a command's output.

Every command that reads many images skips the unusable ones and names each with its reason: on stderr when
there are at most :data:`MAX_SHOWN`, else in a ``skipped.txt`` (tab-separated ``path``, ``reason``, one file a
line, after a header) beside the output; the count goes in the command's final line and the run's logs.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

__all__ = ["MAX_SHOWN", "clean_reason", "write_skipped", "listing_beside"]

MAX_SHOWN = 20  # more skipped files than this are listed in a file, not one stderr line each

_OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")  # PIL: "cannot identify image file <_io...>"
_NUMPY_SCALAR = re.compile(r"np\.(?:str_|int\d+|float\d+|bool_?)\((.*?)\)")  # numpy 2 reprs: np.str_('Q1')


def clean_reason(text: str) -> str:
    """``text`` on one line without object reprs: ``<_io.BytesIO object at 0x...>`` dropped, ``np.str_('Q1')``
    shown as ``'Q1'``."""
    text = _NUMPY_SCALAR.sub(r"\1", _OBJECT_REPR.sub("", str(text)))
    return " ".join(text.split())


def listing_beside(out: str | Path) -> Path:
    """Where the list of skipped files of an output goes: ``DIR/skipped.txt`` inside an output folder, else
    ``FILE.skipped.txt`` next to an output file."""
    out = Path(out)
    return out / "skipped.txt" if out.is_dir() or not out.suffix else out.with_name(out.name + ".skipped.txt")


def write_skipped(path: str | Path, items: Iterable[tuple[str, str]]) -> Path:
    """Write ``(path, reason)`` pairs as ``path<TAB>reason`` lines after a ``path\\treason`` header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["path\treason"] + [f"{p}\t{clean_reason(r)}" for p, r in items]
    path.write_text("\n".join(lines) + "\n")
    return path
