"""PCA-whitening of descriptors: learned once on a training set, applied to references and queries alike.

    y = normalize( diag((λ + ε)^-1/2) · V · (x − μ) )        x (D,) -> y (d,), d <= D

``μ`` is the training mean, ``V`` (d, D) the top-``d`` eigenvectors of the training covariance (rows,
largest eigenvalue first) and ``λ`` their eigenvalues; ``ε = eps · λ_max`` keeps near-zero directions from
exploding. Whitening decorrelates the descriptor dimensions and equalises their variance, which down-weights
the few dominant (often non-discriminative) directions; truncating to ``d`` dimensions compresses. The output
is L2-normalised again, so inner products stay cosines. (This is the "PCA-whitening + L2" post-processing of
the ISC2021 / SSCD baselines.)

Learning (:func:`learn_whitening`): faiss ``PCAMatrix(D, d, eigen_power=-0.5)`` when faiss is importable
(``method="faiss"``), else a float64 covariance and ``torch.linalg.eigh`` (``method="torch"``). Both give the
same ``μ, V, λ`` up to float error: eigenvectors are only defined up to sign, so each row of ``V`` is flipped
to make its largest-magnitude entry positive (one convention whichever library found it). faiss' eigenvalues
are those of the un-normalised scatter matrix ``Σ (x − μ)(x − μ)ᵀ``; they are divided by the row count here,
so ``λ`` is the covariance spectrum in both. Applying is ours (numpy or torch), not faiss', so an index,
the extractor and a query batch all use the same arithmetic.

On disk (:meth:`Whitening.save` / :func:`load_whitening`): one uncompressed ``.npz`` with ``mean`` (D,)
float32, ``components`` (d, D) float32, ``eigenvalues`` (d,) float32 and ``meta`` (JSON: format, version,
dim_in, dim_out, eps, count, method, digest). ``digest`` identifies the transform: feature files record it,
so already-whitened descriptors are never whitened twice.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from copynce_fast.search.knn import ArrayLike, faiss_available

FORMAT = "copynce-fast-whitening"
VERSION = 1
METHODS = ("auto", "faiss", "torch")


@dataclass(frozen=True)
class Whitening:
    """A learned PCA-whitening (module docstring).

    Attributes:
        mean: (D,) float32 training mean.
        components: (d, D) float32 eigenvectors as rows, largest eigenvalue first, sign-canonical.
        eigenvalues: (d,) float32 covariance eigenvalues, descending.
        eps: relative regulariser; the scales are ``(eigenvalues + eps · eigenvalues[0]) ** -0.5``.
        meta: count (training rows), method ("faiss" | "torch") and anything else recorded.
    """

    mean: np.ndarray
    components: np.ndarray
    eigenvalues: np.ndarray
    eps: float = 1e-6
    meta: dict = field(default_factory=dict)

    @property
    def dim_in(self) -> int:
        return int(self.components.shape[1])

    @property
    def dim_out(self) -> int:
        return int(self.components.shape[0])

    @property
    def scales(self) -> np.ndarray:
        """(d,) float32 per-component factors ``(λ + ε)^-1/2``."""
        lam = self.eigenvalues.astype(np.float64)
        return ((lam + self.eps * max(float(lam[0]), 0.0)) ** -0.5).astype(np.float32)

    @property
    def digest(self) -> str:
        """12 hex digits of SHA-256 over the arrays and eps: the identity of this transform."""
        h = hashlib.sha256()
        for a in (self.mean, self.components, self.eigenvalues):
            h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
        h.update(repr(float(self.eps)).encode())
        return h.hexdigest()[:12]

    def apply(self, x: ArrayLike) -> ArrayLike:
        """Whiten and L2-normalise descriptors.

        Args:
            x: (N, D) float numpy array or torch tensor (any float dtype, any device).

        Returns:
            (N, d) float32 unit rows, numpy for numpy input, torch on ``x``'s device for torch input.
        """
        if getattr(x, "ndim", None) != 2 or x.shape[1] != self.dim_in:
            raise ValueError(f"x: expected (N, {self.dim_in}) descriptors for this whitening, got shape "
                             f"{tuple(getattr(x, 'shape', ()))}")
        if isinstance(x, torch.Tensor):
            mean = torch.from_numpy(self.mean).to(x.device)
            comp = torch.from_numpy(self.components).to(x.device)
            scales = torch.from_numpy(self.scales).to(x.device)
            y = ((x.float() - mean) @ comp.T) * scales
            return torch.nn.functional.normalize(y, dim=1)
        y = ((np.asarray(x, dtype=np.float32) - self.mean) @ self.components.T) * self.scales
        norms = np.linalg.norm(y, axis=1, keepdims=True)
        return (y / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)

    __call__ = apply

    def save(self, path: str | Path) -> Path:
        """Write the ``.npz`` of the module docstring (atomically); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "format": FORMAT, "version": VERSION, "dim_in": self.dim_in, "dim_out": self.dim_out,
                "eps": float(self.eps), "digest": self.digest}
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            np.savez(f, mean=self.mean, components=self.components, eigenvalues=self.eigenvalues,
                     meta=np.asarray(json.dumps(meta, sort_keys=True)))
        tmp.replace(path)
        return path


def load_whitening(path: str | Path) -> Whitening:
    """Read a whitening ``.npz`` written by :meth:`Whitening.save` (ValueError naming ``path`` otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: no such whitening file: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            mean, comp, lam = z["mean"], z["components"], z["eigenvalues"]
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"path {path}: not a whitening file ({type(e).__name__}: {e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"path {path}: not a {FORMAT} file (format={meta.get('format')!r})")
    if comp.shape != (len(lam), len(mean)):
        raise ValueError(f"path {path}: components {comp.shape} disagree with mean {mean.shape} / eigenvalues "
                         f"{lam.shape}")
    w = Whitening(mean.astype(np.float32), comp.astype(np.float32), lam.astype(np.float32), float(meta["eps"]),
                  {k: v for k, v in meta.items() if k in ("count", "method")})
    if meta.get("digest") not in (None, w.digest):
        raise ValueError(f"path {path}: contents do not match the recorded digest (file damaged?)")
    return w


def _canonical_signs(vectors: np.ndarray) -> np.ndarray:
    """Flip each row so that its largest-magnitude entry is positive (eigenvectors are defined up to sign)."""
    pick = np.abs(vectors).argmax(axis=1)
    signs = np.sign(vectors[np.arange(len(vectors)), pick])
    signs[signs == 0] = 1.0
    return vectors * signs[:, None]


def _pca_faiss(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import faiss

    n, d_in = x.shape
    pca = faiss.PCAMatrix(d_in, dim, -0.5, False)
    pca.max_points_per_d = n // d_in + 1  # train on every row (faiss would subsample above 1000·D)
    pca.train(x)
    mean = faiss.vector_to_array(pca.mean).astype(np.float64)
    # PCAMat holds min(n, D) eigenvector rows (faiss works on the n x n Gram matrix when n < D)
    vectors = faiss.vector_to_array(pca.PCAMat).reshape(-1, d_in)[:dim].astype(np.float64)
    lam = faiss.vector_to_array(pca.eigenvalues)[:dim].astype(np.float64) / n  # scatter -> covariance
    return mean, vectors, lam


def _pca_torch(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xt = torch.from_numpy(x).double()  # float64: the covariance of unit vectors loses digits in fp32
    mean = xt.mean(0)
    centred = xt - mean
    cov = centred.T @ centred / xt.shape[0]
    lam, vec = torch.linalg.eigh(cov)  # ascending
    order = torch.arange(len(lam) - 1, len(lam) - 1 - dim, -1)
    return mean.numpy(), vec[:, order].T.contiguous().numpy(), lam[order].numpy()


def learn_whitening(train: ArrayLike, dim: int | None = None, *, method: str = "auto", eps: float = 1e-6,
                    max_rows: int | None = None, seed: int = 0) -> Whitening:
    """Learn a PCA-whitening from training descriptors (images like the references, not the references).

    Args:
        train: (N, D) float descriptors (numpy or torch); N > ``dim`` rows are needed.
        dim: output dimension d (1 <= d <= D); default D (whitening without reduction).
        method: "faiss" (``PCAMatrix``, eigen_power -0.5), "torch" (float64 covariance + ``eigh``) or
            "auto" (faiss when importable). Both give the same transform (module docstring).
        eps: relative regulariser of the scales, >= 0 (``ε = eps · λ_max``).
        max_rows: learn on a seeded random subset of at most this many rows (None = all).
        seed: seed of that subset.

    Returns:
        :class:`Whitening`.
    """
    if isinstance(train, torch.Tensor):
        train = train.detach().to("cpu", torch.float32).numpy()
    x = np.ascontiguousarray(np.asarray(train, dtype=np.float32))
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"train: expected (N, D) descriptors, got shape {x.shape}")
    n, d_in = x.shape
    dim = d_in if dim is None else dim
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= d_in:
        raise ValueError(f"dim: must be an integer in [1, {d_in}] (the descriptor size), got {dim!r}")
    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    if not (isinstance(eps, (int, float)) and np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps: must be a finite number >= 0, got {eps!r}")
    if max_rows is not None:
        if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) or max_rows < 2:
            raise ValueError(f"max_rows: must be an integer >= 2, got {max_rows!r}")
        if n > max_rows:
            x = x[np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))]
            n = max_rows
    if n <= dim:
        raise ValueError(f"train: {n} rows cannot define {dim} principal directions; give more than dim rows "
                         f"(or a smaller dim)")
    if not np.isfinite(x).all():
        raise ValueError("train: contains NaN or infinite values")
    if method == "auto":
        method = "faiss" if faiss_available() else "torch"
    if method == "faiss" and not faiss_available():
        raise ValueError("method: 'faiss' but faiss is not installed (pip install faiss-cpu), use 'torch'")
    mean, vectors, lam = (_pca_faiss if method == "faiss" else _pca_torch)(x, dim)
    if lam[0] <= 0:
        raise ValueError("train: all rows are identical (zero variance)")
    lam = np.maximum(lam, 0.0)  # round-off can make a null direction slightly negative
    return Whitening(mean.astype(np.float32), _canonical_signs(vectors).astype(np.float32), lam.astype(np.float32),
                     float(eps), {"count": int(n), "method": method})
