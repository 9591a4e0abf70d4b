"""Candidate video pairs and matched segments, and their CSV files (the VSC2022 column names).

* :class:`CandidatePair` ``(query_id, ref_id, score)``: a query video and a reference video that may share
  content (descriptor track output). CSV header ``query_id,ref_id,score``.
* :class:`Match` ``(query_id, ref_id, query_start, query_end, ref_start, ref_end, score)``: the query segment
  ``[query_start, query_end]`` (seconds) is a copy of the reference segment ``[ref_start, ref_end]``
  (matching track output; also the ground-truth format, whose ``score`` column is optional).

Columns are found by name, in any order, as the VSC2022 readers do. Ids are kept as the strings in the
file (the official readers also turn bare integers into ``Q000123`` / ``R000123``; we do not guess ids).
A ``reference_id`` column is accepted for ``ref_id`` (the image side of this package writes that name).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterable, NamedTuple

__all__ = ["CandidatePair", "Match", "pairs_from_matches", "read_candidates_csv", "write_candidates_csv",
           "read_matches_csv", "write_matches_csv"]


class CandidatePair(NamedTuple):
    """A scored (query video, reference video) pair; higher score = more likely a copy."""

    query_id: str
    ref_id: str
    score: float


class Match(NamedTuple):
    """A copied segment: query ``[query_start, query_end]`` ~ reference ``[ref_start, ref_end]`` (seconds)."""

    query_id: str
    ref_id: str
    query_start: float
    query_end: float
    ref_start: float
    ref_end: float
    score: float = 1.0

    def pair(self) -> tuple[str, str]:
        return self.query_id, self.ref_id


MATCH_COLUMNS = ("query_id", "ref_id", "query_start", "query_end", "ref_start", "ref_end", "score")
CANDIDATE_COLUMNS = ("query_id", "ref_id", "score")


def pairs_from_matches(matches: Iterable[Match]) -> list[CandidatePair]:
    """One pair per distinct (query, reference) of ``matches``, scored by its best segment (VSC2022's
    ``CandidatePair.from_matches``); in first-seen order."""
    best: dict[tuple[str, str], float] = {}
    for m in matches:
        key = m.pair()
        best[key] = max(best.get(key, -math.inf), float(m.score))
    return [CandidatePair(q, r, s) for (q, r), s in best.items()]


def _rows(path: Path, needed: tuple[str, ...], what: str) -> tuple[list[dict], list[str]]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "ref_id" not in header and "reference_id" in header:
            header = ["ref_id" if h == "reference_id" else h for h in header]
        missing = [c for c in needed if c not in header]
        if missing:
            raise ValueError(f"{path}: {what} CSV needs the columns {', '.join(needed)}; missing "
                             f"{', '.join(missing)} (header: {','.join(header) or 'none'})")
        reader.fieldnames = header
        return list(reader), header


def _number(path: Path, line: int, row: dict, key: str) -> float:
    text = (row.get(key) or "").strip()
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{path}: line {line}: {key} is not a number: {text!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{path}: line {line}: {key} is not finite: {text!r}")
    return v


def _id(path: Path, line: int, row: dict, key: str) -> str:
    text = (row.get(key) or "").strip()
    if not text:
        raise ValueError(f"{path}: line {line}: empty {key}")
    return text


def read_matches_csv(path: str | Path, *, is_gt: bool = False) -> list[Match]:
    """Segments of a CSV (``score`` required unless ``is_gt``: ground truth scores are set to 1).

    Raises ValueError naming the file and line for a missing column, an empty id, a non-numeric value, or a
    segment that ends before it starts."""
    path = Path(path)
    needed = MATCH_COLUMNS if not is_gt else MATCH_COLUMNS[:-1]
    rows, _ = _rows(path, needed, "segment")
    out = []
    for n, row in enumerate(rows, start=2):
        qs, qe = _number(path, n, row, "query_start"), _number(path, n, row, "query_end")
        rs, re_ = _number(path, n, row, "ref_start"), _number(path, n, row, "ref_end")
        if qe < qs or re_ < rs:
            raise ValueError(f"{path}: line {n}: a segment ends before it starts ({qs}..{qe}, {rs}..{re_})")
        score = 1.0 if is_gt else _number(path, n, row, "score")
        out.append(Match(_id(path, n, row, "query_id"), _id(path, n, row, "ref_id"), qs, qe, rs, re_, score))
    return out


def _write(path: str | Path, columns: tuple[str, ...], records: Iterable[Match | CandidatePair]) -> Path:
    """A CSV of ``records`` under the header ``columns``: two ids, then numbers written exactly (``repr``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in records:
            w.writerow([r.query_id, r.ref_id] + [repr(float(v)) for v in r[2:]])
    return path


def write_matches_csv(path: str | Path, matches: Iterable[Match]) -> Path:
    """Write ``query_id,ref_id,query_start,query_end,ref_start,ref_end,score`` rows; returns the path."""
    return _write(path, MATCH_COLUMNS, matches)


def read_candidates_csv(path: str | Path) -> list[CandidatePair]:
    """Scored pairs of a ``query_id,ref_id,score`` CSV (ValueError naming file and line on bad rows)."""
    path = Path(path)
    rows, _ = _rows(path, CANDIDATE_COLUMNS, "candidate")
    return [CandidatePair(_id(path, n, row, "query_id"), _id(path, n, row, "ref_id"), _number(path, n, row, "score"))
            for n, row in enumerate(rows, start=2)]


def write_candidates_csv(path: str | Path, candidates: Iterable[CandidatePair]) -> Path:
    """Write ``query_id,ref_id,score`` rows; returns the path."""
    return _write(path, CANDIDATE_COLUMNS, candidates)
