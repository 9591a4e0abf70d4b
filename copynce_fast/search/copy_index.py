"""``CopyIndex``: references you can search by descriptor, with their ids, optional whitening and score
normalisation, saved as one directory. What :meth:`CopyDetector.index` returns.

A CopyIndex directory is a :mod:`search index directory <copynce_fast.search.index>` (meta.json, ids.npy,
index.faiss or features.npy, whitening.npz) plus, optionally::

    <dir>/aux.npy        (A, D) float32 raw auxiliary descriptors (images known not to be copies, e.g. a
                         training set) for score normalisation; whitened with the index at search time
    <dir>/features/      the reference descriptors as extracted (FeatureWriter shards; CopyDetector.index)

so ``copynce-fast search --index DIR`` reads it too.

Search results are :class:`Hits` ``(ids, scores)``: (N, k) arrays, best first; score-normalised when asked
(``normalize="copynce" | "isc2021" | "sscd"``, :mod:`copynce_fast.search.score_norm`), which subtracts a
per-query bias measured against the auxiliary descriptors.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from copynce_fast.search.features import Features
from copynce_fast.search.index import SearchIndex, load_index, make_index
from copynce_fast.search.score_norm import normalize_scores
from copynce_fast.search.sharded import ids_across_ranks, search_across_ranks
from copynce_fast.search.whitening import Whitening, learn_whitening

AUX_FILE = "aux.npy"
NORMALIZE = (None, "copynce", "isc2021", "sscd")


class Hits(NamedTuple):
    """Top-k references per query: ``ids`` (N, k) unicode ("" where fewer than k were found), ``scores``
    (N, k) float32 (cosines, or normalised scores), best first. Unpacks as ``ids, scores = hits``."""

    ids: np.ndarray
    scores: np.ndarray


def _as_f32(x, name: str) -> np.ndarray:
    if isinstance(x, Features):
        x = x.features
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{name}: expected (N, D) descriptors with N >= 1, got shape {x.shape}")
    return x


class CopyIndex:
    """A searchable reference set (module docstring). Build with :meth:`build`, or :meth:`load` a directory.

    Attributes:
        index: the :class:`~copynce_fast.search.index.SearchIndex` (faiss or torch).
        aux: (A, D) float32 auxiliary descriptors for score normalisation, or None.
        directory: where it was saved / loaded from, or None (in memory).
    """

    def __init__(self, index: SearchIndex, aux: np.ndarray | None = None, directory: Path | None = None):
        self.index = index
        self.aux = None if aux is None else _as_f32(aux, "aux")
        if self.aux is not None and self.aux.shape[1] != index.query_dim:
            raise ValueError(f"aux: {self.aux.shape[1]}-d, the index takes {index.query_dim}-d descriptors")
        self.directory = directory

    @classmethod
    def build(cls, references: Features, *, kind: str = "flat", whitening: Whitening | None = None,
              pca_dim: int | None = None, whiten_train=None, aux=None, backend: str = "auto",
              nlist: int | None = None, nprobe: int | None = None, pq_m: int | None = None, seed: int = 0,
              source: str = "") -> "CopyIndex":
        """Index ``references`` (in memory; :meth:`save` writes it).

        Args:
            references: (M, D) descriptors with ids (``load_features`` / an extraction).
            kind: "flat" (exact), "ivf" (IVF-Flat) or "ivfpq" (IVF-PQ, ``pq_m`` bytes per reference).
            whitening: a learned PCA-whitening to apply (references now, queries at search time).
            pca_dim: learn a whitening to this many dimensions (:func:`learn_whitening`) on ``whiten_train``,
                or on the references when that is None. Exclusive with ``whitening``.
            whiten_train: (T, D) training descriptors (array, tensor or Features) for ``pca_dim``.
            aux: (A, D) raw auxiliary descriptors kept for score normalisation.
            backend, nlist, nprobe, pq_m, seed, source: as :func:`~copynce_fast.search.index.make_index`.
        """
        if whitening is not None and (pca_dim is not None or whiten_train is not None):
            raise ValueError("whitening: give a learned whitening, or pca_dim (+ whiten_train) to learn one, not both")
        if whitening is None and whiten_train is not None and pca_dim is None:
            pca_dim = references.dim  # whitening without reduction
        if pca_dim is not None:
            if isinstance(pca_dim, bool) or not isinstance(pca_dim, (int, np.integer)) \
                    or not 1 <= pca_dim <= references.dim:
                raise ValueError(f"pca_dim: must be an integer in [1, {references.dim}] (the descriptor size), "
                                 f"got {pca_dim!r}")
            name, train = ("references", references) if whiten_train is None else ("whiten_train", whiten_train)
            try:
                whitening = learn_whitening(_as_f32(train, name), pca_dim, seed=seed)
            except ValueError as e:  # learn_whitening names its own parameter "train": name ours
                msg = str(e)
                raise ValueError(name + msg[len("train"):] if msg.startswith("train") else msg) from None
        index = make_index(references, kind=kind, backend=backend, nlist=nlist, nprobe=nprobe, pq_m=pq_m, seed=seed,
                           source=source, whitening=whitening)
        return cls(index, aux)

    @classmethod
    def load(cls, directory: str | Path) -> "CopyIndex":
        """Read a directory written by :meth:`save` (or any ``copynce-fast index`` directory)."""
        directory = Path(directory)
        index = load_index(directory)
        aux = np.load(directory / AUX_FILE, allow_pickle=False) if (directory / AUX_FILE).is_file() else None
        return cls(index, aux, directory)

    def save(self, directory: str | Path) -> Path:
        """Write the index (and aux descriptors) to ``directory``; returns it."""
        directory = self.index.save(directory)
        (directory / AUX_FILE).unlink(missing_ok=True)
        if self.aux is not None:
            np.save(directory / AUX_FILE, self.aux, allow_pickle=False)
        self.directory = directory
        return directory

    @property
    def ids(self) -> np.ndarray:
        """(M,) reference ids."""
        return self.index.ids

    @property
    def whitening(self) -> Whitening | None:
        return self.index.whitening

    @property
    def dim(self) -> int:
        """Dimension of the raw query descriptors :meth:`search` takes."""
        return self.index.query_dim

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        w = f", whitened to {self.index.dim}-d" if self.whitening is not None else ""
        return (f"CopyIndex({len(self)} references, {self.index.meta['type']}, {self.dim}-d{w}"
                f"{', aux ' + str(len(self.aux)) if self.aux is not None else ''})")

    def search_rows(self, queries, k: int = 10, *, normalize: str | None = None, aux=None,
                    norm_params: dict | None = None, nprobe: int | None = None, whitened: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`search`, returning ``(scores (N, k) float32, rows (N, k) int64)`` (rows index :attr:`ids`,
        -1 = not found)."""
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
        if normalize is None and (aux is not None or norm_params):
            raise ValueError("aux / norm_params need normalize (the score-normalisation variant)")
        aux_space = None if normalize is None else self._aux_space(normalize, aux)  # refuse before searching
        xq = self.index.prepare_queries(_as_f32(queries, "queries"), whitened)
        scores, rows = self.index.search(xq, k, nprobe=nprobe, whitened=True)
        if normalize is not None:
            scores = normalize_scores(scores, xq, aux_space, normalize, **(norm_params or {}))
        return scores, rows

    def search(self, queries, k: int = 10, *, normalize: str | None = None, aux=None,
               norm_params: dict | None = None, nprobe: int | None = None, whitened: bool = False) -> Hits:
        """The top-``k`` references of each query.

        Args:
            queries: (N, D) float raw descriptors (numpy or torch; :meth:`CopyDetector.embed` output). They are
                whitened here when the index is (``whitened=True``: they already are).
            k: 1 <= k <= number of references.
            normalize: None, or the score normalisation "copynce", "isc2021" or "sscd" against ``aux`` (or
                the aux descriptors stored with the index).
            aux: (A, D) raw auxiliary descriptors for this call (overrides the stored ones).
            norm_params: keyword arguments of the variant (e.g. ``{"n": 10, "beta": 1.0}`` for isc2021).
            nprobe: IVF lists visited (default the stored one).

        Returns:
            :class:`Hits` ``(ids (N, k) str, scores (N, k) float32)``, best first (within a query the
            normalisation subtracts one bias, so the order never changes).
        """
        scores, rows = self.search_rows(queries, k, normalize=normalize, aux=aux, norm_params=norm_params,
                                        nprobe=nprobe, whitened=whitened)
        return Hits(self._ids_of(rows), np.asarray(scores, dtype=np.float32))

    def search_across_ranks(self, queries, k: int = 10, *, nprobe: int | None = None, whitened: bool = False
                            ) -> Hits:
        """This index is one rank's shard: search every rank's shard in parallel and merge the top-k exactly
        (:func:`~copynce_fast.search.sharded.search_across_ranks`; ties broken by global row, rank order).
        Collective: all ranks call it with the same queries. Flat shards give the union's exact result; IVF
        shards must be copies of one trained index (see :mod:`copynce_fast.search.sharded`)."""
        xq = self.index.prepare_queries(_as_f32(queries, "queries"), whitened)
        scores, rows, offsets = search_across_ranks(
            lambda q, kk: self.index.search(q, kk, nprobe=nprobe, whitened=True), len(self), xq, k)
        return Hits(ids_across_ranks(rows, self.ids, offsets), scores)

    def _ids_of(self, rows: np.ndarray) -> np.ndarray:
        ids = np.asarray(self.ids).astype(str)
        return np.where(rows >= 0, ids[np.clip(rows, 0, None)], "")

    def _aux_space(self, variant: str, aux) -> np.ndarray:
        """The auxiliary descriptors in the index's space (whitened when the index is)."""
        aux = self.aux if aux is None else _as_f32(aux, "aux")
        if aux is None:
            raise ValueError(f"normalize {variant!r} needs auxiliary descriptors: pass aux=..., or build the index "
                             f"with aux")
        if aux.shape[1] != self.dim:
            raise ValueError(f"aux: {aux.shape[1]}-d, the index takes {self.dim}-d descriptors")
        return self.whitening.apply(aux) if self.whitening is not None else aux
