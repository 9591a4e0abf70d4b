"""The one JSON writer: strict JSON (no NaN), parents created, a trailing newline; and what makes values JSON-able."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["to_jsonable", "write_json", "write_json_report"]


def to_jsonable(obj):
    """Dataclasses, numpy scalars / arrays, paths, tuples and dict keys made JSON-serialisable;
    non-finite floats become None (strict JSON has no NaN)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, data, *, sort_keys: bool = True) -> Path:
    """Write ``data`` (made JSON-able with :func:`to_jsonable`) as indented JSON. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=sort_keys, allow_nan=False) + "\n")
    return path


def write_json_report(path: str | Path, report, **extra) -> Path:
    """Write ``report`` (a dict or dataclass, e.g. :class:`~copynce_fast.eval.metrics.Metrics`) plus
    ``extra`` keys as indented JSON with sorted keys. Returns the path."""
    data = to_jsonable(report)
    if not isinstance(data, dict):
        raise ValueError(f"report: must be a dict or a dataclass, got {type(report).__name__}")
    data.update(to_jsonable(extra))
    return write_json(path, data)
