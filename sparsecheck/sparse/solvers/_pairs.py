"""Products with a per-(class, feature) working set on CPU: numba kernels over row blocks.

At many classes the sparse layer's classes each use a handful of features, but together they use
nearly every feature, so a per-feature working set is the whole matrix and every FISTA iteration
costs two dense ``C x d x n`` products. Here the working set is a list of ``P`` (class, feature)
pairs, held class by class (CSR: ``cptr``, ``feat``), and the products cost ``P x n``:

* :func:`forward` writes the logits of a block of rows, classes first (``C x m``);
* :func:`pair_gradient` accumulates ``sum_i G[c, i] * x_i[feat[p]]`` for every pair ``p``.

Both kernels copy ``SB`` rows at a time (only the working set's columns) into a small
feature-major tile that stays in cache, so the inner loops are contiguous and vectorised over the
rows. The softmax between them is torch's (vectorised ``exp``), on blocks of ``CHUNK`` rows, so no
``C x n`` buffer is ever held. Rows are read from the caller's array in place through ``rows``
(a memory map included): nothing the size of the feature matrix is copied.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["available", "forward", "pair_gradient", "set_threads", "threads", "SB", "CHUNK"]

#: rows per cache tile inside the kernels
SB = 64
#: logits per block handed to torch's softmax between the kernels: C x (CHUNK // C) floats, 1 MB,
#: so the softmax and the gradient kernel read them from cache
CHUNK = 1 << 18

try:  # numba is a dependency; without it (a broken install) the solver keeps its per-feature working set
    import numba as _nb
except Exception as exc:  # pragma: no cover - exercised only on broken installs
    _nb = None
    _IMPORT_ERROR: str | None = f"{type(exc).__name__}: {exc}"
else:
    _IMPORT_ERROR = None


def available() -> bool:
    """Whether the kernels can run (numba imports)."""
    return _nb is not None


def set_threads(n: int) -> None:
    """Use ``n`` threads in the kernels (at most numba's configured maximum)."""
    if _nb is not None:
        _nb.set_num_threads(max(1, min(int(n), int(_nb.config.NUMBA_NUM_THREADS))))


def threads() -> int:
    """Threads the kernels use (1 without numba)."""
    return 1 if _nb is None else int(_nb.get_num_threads())


def _jit(fn: Any) -> Any:
    if _nb is None:  # pragma: no cover
        return fn
    return _nb.njit(parallel=True, fastmath=True, cache=True, nogil=True)(fn)


#: numba's parallel range inside the compiled kernels (a plain range if they are never compiled)
_prange = range if _nb is None else _nb.prange


def _tile_py(X: np.ndarray, rows: np.ndarray, start: int, k: int, ucols: np.ndarray,
             xt: np.ndarray) -> None:  # pragma: no cover
    """``xt[q, r] = X[rows[start + r], ucols[q]]`` for ``r < k``, row by row (measured faster than
    column by column at 1000 classes x 2048 features)."""
    for r in range(k):
        xi = X[rows[start + r]]
        for q in range(ucols.shape[0]):
            xt[q, r] = xi[ucols[q]]


_tile = _tile_py if _nb is None else _nb.njit(fastmath=True, cache=True, nogil=True, inline="always")(_tile_py)


@_jit
def forward(X: np.ndarray, rows: np.ndarray, lo: int, m: int, ucols: np.ndarray, cptr: np.ndarray,
            feat: np.ndarray, wh: np.ndarray, bias: np.ndarray, Z: np.ndarray) -> None:  # pragma: no cover
    """``Z[c, r] = bias[c] + sum_{p in class c} wh[p] * X[rows[lo + r], ucols[feat[p]]]`` for ``r < m``.

    ``feat`` indexes ``ucols`` (the working set's distinct features), ``Z`` is ``C x >= m``.
    """
    C = Z.shape[0]
    u = ucols.shape[0]
    nblk = (m + SB - 1) // SB
    for blk in _prange(nblk):
        a = blk * SB
        k = min(m, a + SB) - a
        xt = np.empty((u, SB), np.float32)  # rows past k stay unset: their sums are never written
        _tile(X, rows, lo + a, k, ucols, xt)
        acc = np.empty(SB, np.float32)
        for c in range(C):
            acc[:] = bias[c]
            for p in range(cptr[c], cptr[c + 1]):
                w = wh[p]
                xr = xt[feat[p]]
                for r in range(SB):
                    acc[r] += w * xr[r]
            for r in range(k):
                Z[c, a + r] = acc[r]


@_jit
def pair_gradient(X: np.ndarray, rows: np.ndarray, lo: int, m: int, ucols: np.ndarray, cptr: np.ndarray,
                  feat: np.ndarray, G: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``out[t, p] += sum_r G[c, r] * X[rows[lo + r], ucols[feat[p]]]`` for pair ``p`` of class ``c``.

    Thread ``t`` of ``out.shape[0]`` takes a contiguous share of the row blocks; the caller sums ``out``.
    """
    C = G.shape[0]
    u = ucols.shape[0]
    T = out.shape[0]
    nblk = (m + SB - 1) // SB
    per = (nblk + T - 1) // T
    for t in _prange(T):
        o = out[t]
        xt = np.zeros((u, SB), np.float32)
        g = np.zeros(SB, np.float32)
        for blk in range(t * per, min(nblk, (t + 1) * per)):
            a = blk * SB
            k = min(m, a + SB) - a
            _tile(X, rows, lo + a, k, ucols, xt)
            for r in range(k, SB):  # a last, partial block: nothing may leak in from the one before
                g[r] = 0.0
                for q in range(u):
                    xt[q, r] = 0.0
            for c in range(C):
                for r in range(k):
                    g[r] = G[c, a + r]
                for p in range(cptr[c], cptr[c + 1]):
                    xr = xt[feat[p]]
                    s = np.float32(0.0)
                    for r in range(SB):
                        s += g[r] * xr[r]
                    o[p] += s
