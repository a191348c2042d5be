"""The FISTA path's numerics: the feature matrix on the device, standardised forward and backward
passes, the cross-entropy and its gradient, the elastic-net penalty and its proximal step, and the
oracles (dense, and by class pair) that evaluate a point's loss and gradient on the working set."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sparsecheck.sparse.solvers import _pairs
from sparsecheck.sparse.solvers._base import (
    iter_row_chunks,
    take_rows,
)

#: elements per block when reducing cross-entropy (bounds temporaries)
_CE_BLOCK = 1 << 26
#: elements per block when a bfloat16 feature matrix is converted to float32 for a product
_UPCAST_BLOCK = 1 << 25


def _columns(X: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    if X.device.type == "cpu" and X.dtype == torch.float32:  # numpy's take beats index_select on dim 1
        return torch.from_numpy(np.take(X.numpy(), cols.numpy(), axis=1))
    return X.index_select(1, cols)


def _resident(X: Any, rows: np.ndarray | None, device: torch.device,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The selected rows of ``X`` as one ``dtype`` tensor on ``device``, without a copy when possible."""
    if rows is None and dtype == torch.float32:
        if isinstance(X, torch.Tensor) and X.dtype == torch.float32 and X.device == device:
            return X
        if (isinstance(X, np.ndarray) and device.type == "cpu" and X.dtype == np.float32
                and X.flags.c_contiguous):
            return take_rows(X, slice(None))  # shares memory (memory maps included)
    n = X.shape[0] if rows is None else len(rows)
    out = torch.empty(n, X.shape[1], dtype=dtype, device=device)
    for start, stop, index in iter_row_chunks(n, rows):
        out[start:stop] = take_rows(X, index).to(device=device, dtype=dtype)
    return out


def _row_blocks(X: torch.Tensor) -> Any:
    """``(start, stop, block)`` over the rows of ``X`` as float32: one block (``X`` itself) when it
    is float32, else blocks of about ``_UPCAST_BLOCK`` elements converted on the fly."""
    n = X.shape[0]
    if X.dtype == torch.float32:
        yield 0, n, X
        return
    step = max(1, _UPCAST_BLOCK // max(X.shape[1], 1))
    for start in range(0, n, step):
        stop = min(start + step, n)
        yield start, stop, X[start:stop].float()


def _forward(X: torch.Tensor, W: torch.Tensor, b: torch.Tensor, mu: torch.Tensor,
             s: torch.Tensor) -> torch.Tensor:
    """Logits ``(((X - mu) * s) @ W^T + b)^T`` (C x n) without forming the standardised matrix."""
    Wh = W * s
    bias = (b - Wh @ mu)[:, None]
    if X.dtype == torch.float32:
        return torch.addmm(bias, Wh, X.T)
    out = torch.empty(W.shape[0], X.shape[0], dtype=torch.float32, device=X.device)
    for start, stop, block in _row_blocks(X):
        out[:, start:stop] = torch.addmm(bias, Wh, block.T)
    return out


def _backward(X: torch.Tensor, G: torch.Tensor, mu: torch.Tensor, s: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G Xs, G 1)``: the gradient w.r.t. ``(W, b)`` given ``G = dLoss/dlogits`` (C x n)."""
    gb = G.sum(1)
    if X.dtype == torch.float32:
        GX = G @ X
    else:
        GX = torch.zeros(G.shape[0], X.shape[1], dtype=torch.float32, device=X.device)
        for start, stop, block in _row_blocks(X):
            GX.addmm_(G[:, start:stop], block)
    return (GX - gb[:, None] * mu[None, :]) * s, gb


def _ce(Z: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy of classes-first logits (reduced in float64), in column blocks.

    Blocks bound the temporary (C x block) at ImageNet scale, where one C x n buffer is 5 GB.
    """
    n = Z.shape[1]
    block = max(1, _CE_BLOCK // max(Z.shape[0], 1))
    total = 0.0
    for start in range(0, n, block):
        part = torch.log_softmax(Z[:, start:start + block], 0)
        total -= float(part.gather(0, y[None, start:start + block]).double().sum())
    return total / max(n, 1)


def _ce_grad(Z: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Mean cross-entropy and its gradient w.r.t. the logits, ``(softmax(Z) - onehot(y)) / n``."""
    G = torch.log_softmax(Z, 0)
    loss = float(-G.gather(0, y[None]).double().mean())
    G.exp_()
    G[y, torch.arange(Z.shape[1], device=Z.device)] -= 1.0
    G /= max(Z.shape[1], 1)
    return loss, G


def _penalty(W: torch.Tensor, lam: float, alpha: float) -> float:
    Wd = W.double()
    return float(lam * alpha * Wd.abs().sum() + 0.5 * lam * (1 - alpha) * (Wd ** 2).sum())


def _prox(V: torch.Tensor, l1: float, l2: float) -> torch.Tensor:
    """glm_saga's ``soft_threshold_with_shrinkage``: argmin of ``½||W-V||² + l1|W|₁ + ½ l2 ||W||²``."""
    return torch.sign(V) * torch.clamp(V.abs() - l1, min=0.0) / (1.0 + l2)


class _Point:
    """An iterate ``(W, b)`` and what an oracle caches at it: logits ``Z`` (dense), loss ``f``."""

    __slots__ = ("W", "b", "Z", "f")

    def __init__(self, W: torch.Tensor, b: torch.Tensor, Z: torch.Tensor | None = None,
                 f: float | None = None) -> None:
        self.W, self.b, self.Z, self.f = W, b, Z, f


class _DenseOracle:
    """Loss and gradient with dense products with ``X`` (all columns, or the working set's copy).

    Logits are kept at every point: they are linear in ``(W, b)``, so a momentum or extrapolated
    point's logits are combined from its two ends without a product with ``X``.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, mu: torch.Tensor, s: torch.Tensor) -> None:
        self.X, self.y, self.mu, self.s = X, y, mu, s

    def at(self, W: torch.Tensor, b: torch.Tensor, Z: torch.Tensor | None = None) -> _Point:
        return _Point(W, b, _forward(self.X, W, b, self.mu, self.s) if Z is None else Z)

    def lerp(self, p0: _Point, p1: _Point, weight: float) -> _Point:
        return _Point(torch.lerp(p0.W, p1.W, weight), torch.lerp(p0.b, p1.b, weight), torch.lerp(p0.Z, p1.Z, weight))

    def loss(self, p: _Point) -> float:
        if p.f is None:
            p.f = _ce(p.Z, self.y)
        return p.f

    def loss_grad(self, p: _Point) -> tuple[float, torch.Tensor, torch.Tensor]:
        f, G = _ce_grad(p.Z, self.y)
        p.Z = None  # the caller is done with this point's logits: free them before the product
        gW, gb = _backward(self.X, G, self.mu, self.s)
        return f, gW, gb


class _PairOracle:
    """Loss and gradient over the (class, feature) pairs of a working set, with the numba kernels.

    Weights are a vector over the pairs (class by class); no logits are kept: a point's logits
    cost ``P x n`` to recompute, less than holding ``C x n`` of them at 1000 classes.
    """

    def __init__(self, X: np.ndarray, rows: np.ndarray, y: torch.Tensor, mu: torch.Tensor, s: torch.Tensor,
                 C: int) -> None:
        self.X, self.rows, self.y, self.mu, self.s, self.C = X, rows, y, mu, s, C
        self.n = int(rows.shape[0])
        rows_per_block = max(_pairs.SB, _pairs.CHUNK // max(C, 1) // _pairs.SB * _pairs.SB)
        self._Z = np.empty((C, min(rows_per_block, max(self.n, 1))), dtype=np.float32)
        self.set_pairs(torch.zeros(C, X.shape[1], dtype=torch.bool))

    def set_pairs(self, member: torch.Tensor) -> None:
        """Work on the pairs where ``member`` (C x d) is True."""
        cls, feat = member.nonzero(as_tuple=True)  # row-major: class by class
        self.cls, self.feat_global = cls, feat
        self.ucols = np.unique(feat.numpy()).astype(np.int64)
        self.feat = np.searchsorted(self.ucols, feat.numpy()).astype(np.int64)
        self.cptr = np.zeros(self.C + 1, dtype=np.int64)
        self.cptr[1:] = np.cumsum(np.bincount(cls.numpy(), minlength=self.C))
        self.mu_p, self.s_p = self.mu[feat], self.s[feat]
        self.shape = tuple(member.shape)

    def gather(self, W: torch.Tensor) -> torch.Tensor:
        return W[self.cls, self.feat_global]

    def scatter(self, w: torch.Tensor) -> torch.Tensor:
        W = torch.zeros(self.shape, dtype=torch.float32)
        W[self.cls, self.feat_global] = w
        return W

    def at(self, W: torch.Tensor, b: torch.Tensor, Z: torch.Tensor | None = None) -> _Point:
        return _Point(W, b)

    def lerp(self, p0: _Point, p1: _Point, weight: float) -> _Point:
        return _Point(torch.lerp(p0.W, p1.W, weight), torch.lerp(p0.b, p1.b, weight))

    def _blocks(self, p: _Point) -> Any:
        """``(lo, m, Z)`` over the rows: ``Z`` (C x m) the logits at ``p`` (a view of a reused buffer)."""
        wh = p.W * self.s_p  # the standardisation folded into the weights
        bias = (p.b - torch.zeros(self.C).index_add_(0, self.cls, wh * self.mu_p)).numpy()
        wh = wh.numpy()
        for lo in range(0, self.n, self._Z.shape[1]):
            m = min(self._Z.shape[1], self.n - lo)
            _pairs.forward(self.X, self.rows, lo, m, self.ucols, self.cptr, self.feat, wh, bias, self._Z)
            yield lo, m, torch.from_numpy(self._Z[:, :m])

    def loss(self, p: _Point) -> float:
        if p.f is None:
            total = 0.0
            for lo, m, Z in self._blocks(p):  # as loss_grad computes it: the backtracking test compares the two
                total -= float(torch.log_softmax(Z, 0).gather(0, self.y[None, lo:lo + m]).double().sum())
            p.f = total / max(self.n, 1)
        return p.f

    def loss_grad(self, p: _Point) -> tuple[float, torch.Tensor, torch.Tensor]:
        acc = np.zeros((_pairs.threads(), self.feat.shape[0]), dtype=np.float32)
        gb = torch.zeros(self.C, dtype=torch.float64)
        total = 0.0
        for lo, m, Z in self._blocks(p):
            G = torch.log_softmax(Z, 0)
            yb = self.y[None, lo:lo + m]
            total -= float(G.gather(0, yb).double().sum())
            G.exp_()
            G.scatter_add_(0, yb, torch.full((1, m), -1.0))
            gb += G.sum(1)  # float32 within a block of a few hundred rows, float64 across them
            _pairs.pair_gradient(self.X, self.rows, lo, m, self.ucols, self.cptr, self.feat, G.numpy(), acc)
        n = max(self.n, 1)
        raw = torch.from_numpy(acc.sum(0, dtype=np.float64)).float()
        gb32 = gb.float()
        gW = self.s_p * (raw - self.mu_p * gb32[self.cls]) / n
        return total / n, gW, gb32 / n

    def full_gradient(self, p: _Point) -> tuple[torch.Tensor, float]:
        """The gradient w.r.t. every weight (C x d) at ``p`` and the accuracy there (dense products, in blocks)."""
        GX = torch.zeros(self.C, self.X.shape[1], dtype=torch.float32)
        gb = torch.zeros(self.C, dtype=torch.float32)
        hits = 0
        for lo, m, Z in self._blocks(p):
            yb = self.y[lo:lo + m]
            hits += int((Z.max(0).indices == yb).sum())
            G = torch.softmax(Z, 0)
            G.scatter_add_(0, yb[None], torch.full((1, m), -1.0))
            gb += G.sum(1)
            GX.addmm_(G, take_rows(self.X, self.rows[lo:lo + m]))
        n = max(self.n, 1)
        return (GX - gb[:, None] * self.mu[None, :]) * self.s / n, hits / n

    def accuracy(self, p: _Point) -> float:
        if self.n == 0:
            return float("nan")
        hits = sum(int((Z.max(0).indices == self.y[lo:lo + m]).sum()) for lo, m, Z in self._blocks(p))
        return hits / self.n


def _row_major(X: Any, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as a C-contiguous float32 array read in place (memory maps included), and its rows."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu()
        X = X.numpy() if X.dtype == torch.float32 and X.is_contiguous() else X.float().contiguous().numpy()
    if not (isinstance(X, np.ndarray) and X.dtype == np.float32 and X.flags.c_contiguous):
        X = _resident(X, rows, torch.device("cpu")).numpy()
        rows = None
    index = np.arange(X.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    return np.asarray(X), index
