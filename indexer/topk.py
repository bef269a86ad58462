"""Exact top-k by inner product over vectors in memory: what flat searches and searches of a
small subset of an index come down to."""

from __future__ import annotations

import sys

import numpy as np


def top_k(sims: np.ndarray, k: int, columns: np.ndarray | None, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best k per row of `sims` (nq, n), restricted to `columns` when given; ids[j] names the
    j-th candidate. D, I best first."""
    if columns is not None:
        sims = sims[:, columns]
    k = min(k, sims.shape[1])
    if k < sims.shape[1]:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(sims.shape[1]), (len(sims), 1))
    top = np.take_along_axis(sims, part, 1)
    order = np.argsort(-top, axis=1, kind="stable")
    picked = np.take_along_axis(part, order, 1)
    return np.take_along_axis(top, order, 1).astype(np.float32), ids[picked]


def blas_top_k(xq: np.ndarray, xb: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of xq @ xb.T in one BLAS product; ids[j] names row j of xb."""
    torch = sys.modules.get("torch")
    if torch is not None:
        # In a process that also runs the text encoder, use torch's BLAS: a second BLAS
        # (numpy's OpenBLAS) leaves its threads spinning after each call and slowed the
        # next encode 2-3x in scripts/bench_query.py.
        with torch.inference_mode():
            top, rows = torch.topk(torch.from_numpy(xq) @ torch.from_numpy(xb).T, k, dim=1)
        return top.numpy().astype(np.float32), ids[rows.numpy()]
    return top_k(xq @ xb.T, k, None, ids)
