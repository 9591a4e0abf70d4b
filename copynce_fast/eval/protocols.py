"""Benchmark protocols: one registry ``name -> Protocol`` (file layout + ground-truth reader + metric set).

A protocol turns *a predictions file* and *a benchmark folder on disk* into the numbers that benchmark's paper
reports. ``copynce-fast evaluate --protocol NAME`` takes its choices from :func:`protocol_names`, so a new
benchmark is one module defining a :class:`Protocol` plus one line in ``_REGISTRY``.

The image protocols (``disc21``, ``ndec``, ``anypattern``) share one pipeline, :func:`evaluate_pairs`:

1. predictions: ``query_id,reference_id,score`` CSV or the CopyNCE scores JSON
   (:func:`copynce_fast.eval.pair_files.read_candidates`);
2. ``topk`` per query, then the global cap ``max_predictions`` (the ISC2021 rule: a submission holds at most
   500,000 pairs; ties at the cut are resolved pessimistically, negatives first);
3. :func:`copynce_fast.eval.metrics.evaluate` on what is left (μAP, RP90, mAP, recall@k; ISC2021
   definitions, see that module).

Recall@k is counted per GT-positive query (:func:`copynce_fast.eval.metrics.recall_at_k`); the ISC2021 code
counts per ground-truth pair. The two agree when every query has at most one reference, which holds for DISC21
and is checked (``details["max_references_per_query"]``) for the others.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from copynce_fast.eval.metrics import Metrics, PRCurve, evaluate, precision_recall_curve
from copynce_fast.eval.pair_files import read_candidates, read_ground_truth, topk_per_query

OFFICIAL_MAX_PREDICTIONS = 500_000  # ISC2021 / DISC21 ``max_results``; also the AnyPattern and NDEC scripts

# name -> "module:attribute" of a Protocol. Imported lazily so that building the CLI parser imports nothing.
_REGISTRY: dict[str, str] = {
    "disc21": "copynce_fast.eval.disc21:PROTOCOL",
    "ndec": "copynce_fast.eval.ndec:PROTOCOL",
    "anypattern": "copynce_fast.eval.anypattern:PROTOCOL",
    # video (VSC2022, metrics in eval/vsc.py): frame features and segment CSVs do not fit the image pipeline, so
    # ``evaluate`` runs them itself (cli/_evaluate_vsc.py); listed here so every --protocol name is in one place
    "vsc-descriptor": "copynce_fast.eval.protocols:VSC_DESCRIPTOR",
    "vsc-matching": "copynce_fast.eval.protocols:VSC_MATCHING",
}

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
GroundTruth = dict  # {query_id: [reference_id, ...]}, every query the file names is a key


@dataclass(frozen=True)
class Layout:
    """A benchmark's files, resolved on disk.

    Attributes:
        protocol: the protocol name.
        root: the benchmark folder given (None when every file was given explicitly).
        ground_truth: the ground-truth file.
        folders: role -> folder (``queries``, ``references``, ``training``, ...), None when absent.
        files: role -> extra file (e.g. ``hard_negatives`` for NDEC), None when absent.
    """

    protocol: str
    root: Path | None
    ground_truth: Path
    folders: dict[str, Path | None] = field(default_factory=dict)
    files: dict[str, Path | None] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalOptions:
    """Candidate selection and metric options shared by the image protocols.

    ``max_predictions``: global cap on pairs; None = the protocol's default, 0 = no cap.
    """

    topk: int | None = None
    max_predictions: int | None = None
    recall_ks: tuple[int, ...] = (1, 10)


@dataclass(frozen=True)
class ProtocolReport:
    """What a protocol reports.

    Attributes:
        protocol: the protocol name.
        metrics: the ISC2021-style metrics on the selected predictions.
        headline: ``(label, key)`` of the numbers the benchmark's paper reports, in its order; keys index
            :meth:`flat`.
        extra: protocol-specific numbers (e.g. NDEC's hard-negative metrics); None = undefined here.
        curve: precision/recall along the global ranking (for the PR plot).
        selection: counts of the candidate selection (input pairs, after top-k, cap, evaluated).
        details: everything else worth recording (layout paths, notes).
    """

    protocol: str
    metrics: Metrics
    headline: tuple[tuple[str, str], ...]
    extra: dict[str, float | int | None]
    curve: PRCurve
    selection: dict[str, int | None]
    details: dict

    def flat(self) -> dict[str, float | int | None]:
        """One level ``name -> value``: the metrics (``recall_at_k`` as ``recall_at_<k>``) then ``extra``."""
        m = self.metrics
        out: dict[str, float | int | None] = {
            "uap": m.uap, "recall_at_p90": m.recall_at_p90, "threshold_at_p90": m.threshold_at_p90, "map": m.map}
        out.update({f"recall_at_{k}": v for k, v in m.recall_at_k.items()})
        out.update({"n_predictions": m.n_predictions, "n_gt": m.n_gt, "n_gt_queries": m.n_gt_queries})
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class Protocol:
    """A benchmark protocol.

    Attributes:
        name: registry key (``--protocol`` value).
        summary: one line for ``--help``.
        layout_doc: the expected folder layout, as text (README / ``--help``).
        file_roles: extra file roles the protocol reads besides the ground truth (e.g. ``("hard_negatives",)``).
        locate: ``(root, overrides) -> Layout``; ``overrides`` maps a role (``"ground_truth"`` or one of
            ``file_roles``) to an explicit path or None. Raises ValueError naming the role and path.
        evaluate: ``(predictions_path, layout, options) -> ProtocolReport``.
        kind: ``"image"`` (predictions of image pairs, ``locate`` + ``evaluate``) or ``"video"`` (run by the
            caller's own VSC2022 code; ``locate`` / ``evaluate`` are None).
    """

    name: str
    summary: str
    layout_doc: str
    file_roles: tuple[str, ...]
    locate: Callable[[Path | None, Mapping[str, Path | None]], Layout] | None
    evaluate: Callable[[Path, Layout, EvalOptions], ProtocolReport] | None
    kind: str = "image"


# ------------------------------------------------------------------------------------------------ registry


def protocol_names() -> tuple[str, ...]:
    """The registered protocol names (no module is imported)."""
    return tuple(_REGISTRY)


def get_protocol(name: str) -> Protocol:
    """The :class:`Protocol` registered as ``name``. Raises ValueError listing the names for an unknown one."""
    if name not in _REGISTRY:
        raise ValueError(f"protocol must be one of {', '.join(_REGISTRY)}; got {name!r}")
    module, _, attr = _REGISTRY[name].partition(":")
    protocol = getattr(importlib.import_module(module), attr)
    if not isinstance(protocol, Protocol) or protocol.name != name:
        raise ValueError(f"registry entry {name!r} -> {_REGISTRY[name]} is not a Protocol named {name!r}")
    return protocol


# ------------------------------------------------------------------------------------------ layout helpers


def find_one(root: Path, role: str, candidates: Sequence[str], *, kind: str) -> Path | None:
    """The single entry of ``candidates`` under ``root`` that exists as a ``kind`` ("file" or "dir").

    Returns None when none exists. Raises ValueError when several do (the caller cannot guess which one).
    """
    test = Path.is_file if kind == "file" else Path.is_dir
    found = [root / c for c in candidates if test(root / c)]
    if len(found) > 1:
        raise ValueError(f"{role}: several candidates under {root}: {', '.join(p.name for p in found)}; "
                         f"give the {role} explicitly")
    return found[0] if found else None


def locate_layout(protocol: str, root: Path | None, overrides: Mapping[str, Path | None], *,
                  ground_truth: Sequence[str], files: Mapping[str, Sequence[str]] | None = None,
                  folders: Mapping[str, Sequence[str]] | None = None) -> Layout:
    """Resolve a protocol's files: explicit ``overrides`` first, else the first matching candidate name under
    ``root``.

    Args:
        protocol: protocol name (for messages).
        root: benchmark folder or None.
        overrides: role -> explicit path (None = look under root). Unknown roles with a path are an error.
        ground_truth: candidate file names of the ground truth under ``root``.
        files: extra file role -> candidate names (optional files: None when absent).
        folders: folder role -> candidate names (informational: None when absent).

    Raises:
        ValueError: a missing root / override path, an unknown role, no or ambiguous ground truth.
    """
    files, folders = files or {}, folders or {}
    known = {"ground_truth", *files}
    for role, path in overrides.items():
        if path is None:
            continue
        if role not in known:
            raise ValueError(f"{role}: protocol {protocol} reads no such file (it reads {', '.join(sorted(known))})")
        if not Path(path).is_file():
            raise ValueError(f"{role}: no such file: {path}")
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"root: no such folder: {root}")
    gt = overrides.get("ground_truth")
    if gt is None:
        if root is None:
            raise ValueError(f"ground_truth: give the ground-truth file or the {protocol} root folder")
        gt = find_one(root, "ground_truth", ground_truth, kind="file")
        if gt is None:
            raise ValueError(f"ground_truth: none of {', '.join(ground_truth)} under {root}; "
                             f"give the ground-truth file explicitly")
    extra = {}
    for role, names in files.items():
        path = overrides.get(role)
        extra[role] = Path(path) if path is not None else (
            find_one(root, role, names, kind="file") if root is not None else None)
    dirs = {role: (find_one(root, role, names, kind="dir") if root is not None else None)
            for role, names in folders.items()}
    return Layout(protocol=protocol, root=root, ground_truth=Path(gt), folders=dirs, files=extra)


def image_stems(folder: Path) -> set[str]:
    """File stems of the images directly in ``folder`` (not recursive; ids are stems)."""
    with os.scandir(folder) as it:
        return {Path(e.name).stem for e in it if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)}


def layout_notes(layout: Layout, gt: GroundTruth, expected_queries: int | None) -> list[str]:
    """Consistency notes between the ground truth and the layout (warnings, never errors)."""
    notes = []
    if expected_queries is not None and len(gt) != expected_queries:
        notes.append(f"the ground truth names {len(gt)} queries; the full {layout.protocol} test set has "
                     f"{expected_queries}")
    queries = layout.folders.get("queries")
    if queries is not None:
        missing = len(set(gt) - image_stems(queries))
        if missing:
            notes.append(f"{missing} ground-truth queries have no image in {queries}")
    return notes


# --------------------------------------------------------------------------------- candidate selection


def pair_labels(query_ids: np.ndarray, reference_ids: np.ndarray, gt: GroundTruth) -> np.ndarray:
    """(P,) bool: True where ``(query_ids[i], reference_ids[i])`` is a ground-truth pair."""
    pairs = {(q, r) for q, refs in gt.items() for r in refs}
    return np.fromiter(((q, r) in pairs for q, r in zip(query_ids.tolist(), reference_ids.tolist())),
                       dtype=bool, count=len(query_ids))


def cap_predictions(query_ids: np.ndarray, reference_ids: np.ndarray, scores: np.ndarray, gt: GroundTruth,
                    max_predictions: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the globally best ``max_predictions`` pairs (None = all), in global rank order.

    The order is :func:`copynce_fast.eval.metrics.label_predictions`'s: score descending, negatives first among
    equal scores, so the cut keeps exactly the pairs that metric code would keep.
    """
    order = np.lexsort((pair_labels(query_ids, reference_ids, gt), -scores))
    if max_predictions is not None:
        order = order[:max_predictions]
    return query_ids[order], reference_ids[order], scores[order]


def select_predictions(predictions_path: Path, gt: GroundTruth, options: EvalOptions, default_cap: int | None
                       ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, int | None]]:
    """Read predictions and apply ``topk`` then the cap. Returns ``((q, r, s) in global rank order, counts)``."""
    try:
        q, r, s = read_candidates(predictions_path)
    except ValueError as e:
        raise ValueError(f"predictions: {e}") from None
    n_input = len(q)
    if options.topk is not None:
        q, r, s = topk_per_query(q, r, s, options.topk)
    n_topk = len(q)
    cap = default_cap if options.max_predictions is None else (options.max_predictions or None)
    if cap is not None and (isinstance(cap, bool) or int(cap) != cap or cap < 1):
        raise ValueError(f"max_predictions must be a positive integer, 0 or None, got {cap!r}")
    q, r, s = cap_predictions(q, r, s, gt, cap)
    return (q, r, s), {"input_pairs": n_input, "topk": options.topk, "after_topk": n_topk,
                       "max_predictions": cap, "evaluated": len(q)}


def read_gt(layout: Layout) -> GroundTruth:
    """The layout's ground truth (DISC21 CSV / JSON formats, :func:`copynce_fast.eval.pair_files.read_ground_truth`);
    raises ValueError when it holds no pair (recall undefined)."""
    try:
        gt = read_ground_truth(layout.ground_truth)
    except ValueError as e:
        raise ValueError(f"ground_truth: {e}") from None
    if not any(gt.values()):
        raise ValueError(f"ground_truth: {layout.ground_truth} has no (query, reference) pair: recall is undefined")
    return gt


def evaluate_pairs(protocol: str, predictions_path: Path, layout: Layout, options: EvalOptions, *,
                   headline: tuple[tuple[str, str], ...], default_cap: int | None = OFFICIAL_MAX_PREDICTIONS,
                   expected_queries: int | None = None,
                   extra: Callable[[tuple, GroundTruth, Layout, Metrics], dict] | None = None) -> ProtocolReport:
    """The shared image-protocol pipeline (module docstring); ``extra`` adds protocol-specific numbers computed
    on the same selected predictions."""
    gt = read_gt(layout)
    preds, selection = select_predictions(predictions_path, gt, options, default_cap)
    # the headline's recall_at_<k> must be computed whatever recall_ks the caller asked for
    ks = sorted({*options.recall_ks, *(int(key.rsplit("_", 1)[1]) for _, key in headline
                                       if key.startswith("recall_at_") and key.rsplit("_", 1)[1].isdigit())})
    metrics = evaluate(preds, gt, ks=ks)
    curve = precision_recall_curve(preds, gt)
    details = {
        "ground_truth": str(layout.ground_truth),
        "root": None if layout.root is None else str(layout.root),
        "folders": {k: None if v is None else str(v) for k, v in layout.folders.items()},
        "files": {k: None if v is None else str(v) for k, v in layout.files.items()},
        "max_references_per_query": max((len(v) for v in gt.values()), default=0),
        "unknown_predicted_queries": len(set(preds[0].tolist()) - set(gt)),
        "notes": layout_notes(layout, gt, expected_queries),
    }
    more = extra(preds, gt, layout, metrics) if extra is not None else {}
    return ProtocolReport(protocol=protocol, metrics=metrics, headline=headline, extra=more, curve=curve,
                          selection=selection, details=details)


VSC_DESCRIPTOR = Protocol(
    name="vsc-descriptor", kind="video", file_roles=(), locate=None, evaluate=None,
    summary="VSC2022 descriptor track: video-level μAP of candidate pairs (eval/vsc.py)",
    layout_doc="--queries / --references video features, --gt the VSC2022 ground-truth CSV")
VSC_MATCHING = Protocol(
    name="vsc-matching", kind="video", file_roles=(), locate=None, evaluate=None,
    summary="VSC2022 matching track: segment-level AP of predicted segments (eval/vsc.py)",
    layout_doc="a segments CSV as predictions, --gt the VSC2022 ground-truth CSV")
