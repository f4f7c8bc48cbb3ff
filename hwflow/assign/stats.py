"""Operand statistics of a trained run: what the error model and the energy model read.

Per approximate layer, from a few traced batches (`hwflow.nn.trace`):
- `x_hist` (256,): activation-code histogram (`x & 0xFF`) over the whole layer;
- `w_hist` (511,): weight-*value* histogram over -255..255 (values, not codes, so the
  same record serves signed layers, where the multiplier sees `w & 0xFF`, and
  sign-magnitude layers, where it sees `|w|` and the lane applies the sign);
- `x_rows` (N, 256): activation histograms of N sampled output rows (im2col rows);
- `w_cols` (C, 511): weight histograms of C sampled output columns (output channels);
- `row_groups`, `col_groups`: each sample's group (grouped convolutions pair a row only
  with columns of its own group);
- `fan_in`, `ops`, `signed`, and the std and mean of the exact integer accumulator.

Stored as `RUN/stats.npz` (atomically), so assignment can be repeated against other
libraries without touching the network again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.errors import RunError
from hwflow.io import write_npz

W_OFFSET = 255  # w_hist[v + W_OFFSET] = P(w == v), v in -255..255
W_BINS = 2 * W_OFFSET + 1
STATS_FILE = "stats.npz"
FORMAT_VERSION = 1
DEFAULT_ROWS = 256  # sampled output rows per layer
DEFAULT_COLS = 32  # sampled output columns (channels) per layer


@dataclass(frozen=True)
class LayerStats:
    """Operand statistics of one approximate layer (probabilities, not counts)."""

    name: str
    signed: bool
    fan_in: int
    ops: int
    acc_std: float
    acc_mean: float
    x_hist: np.ndarray
    w_hist: np.ndarray
    x_rows: np.ndarray
    w_cols: np.ndarray
    row_groups: np.ndarray
    col_groups: np.ndarray

    def __post_init__(self) -> None:
        if self.x_hist.shape != (256,) or self.w_hist.shape != (W_BINS,):
            raise ValueError(f"{self.name}: x_hist must be (256,), w_hist ({W_BINS},)")
        if self.x_rows.ndim != 2 or self.x_rows.shape[1] != 256:
            raise ValueError(f"{self.name}: x_rows must be (N, 256), got {self.x_rows.shape}")
        if self.w_cols.ndim != 2 or self.w_cols.shape[1] != W_BINS:
            raise ValueError(f"{self.name}: w_cols must be (C, {W_BINS}), got {self.w_cols.shape}")
        if self.row_groups.shape != (len(self.x_rows),):
            raise ValueError(f"{self.name}: row_groups must have one entry per row")
        if self.col_groups.shape != (len(self.w_cols),):
            raise ValueError(f"{self.name}: col_groups must have one entry per column")

    def pair_mask(self) -> np.ndarray:
        """(N, C) 1.0 where sampled row and column belong to the same group."""
        return (self.row_groups[:, None] == self.col_groups[None, :]).astype(np.float64)

    def multiplier_operand_hists(self) -> tuple[np.ndarray, np.ndarray]:
        """Histograms of the codes the multiplier itself sees on its a and b inputs.

        Signed layers feed `w & 0xFF`; sign-magnitude layers feed `|w|` (a zero weight
        still reaches the multiplier as code 0).
        """
        values = np.arange(-W_OFFSET, W_OFFSET + 1)
        codes = values & 0xFF if self.signed else np.abs(values)
        p_b = np.bincount(codes, weights=self.w_hist, minlength=256)[:256]
        return self.x_hist.copy(), p_b


def _normalise(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    return counts / np.where(total > 0, total, 1.0)


def _hist_rows(values: np.ndarray, offset: int, bins: int) -> np.ndarray:
    """Row-wise histograms of an integer matrix (R, K) -> (R, bins) probabilities."""
    rows = values.shape[0]
    flat = (values + offset) + np.arange(rows)[:, None] * bins
    counts = np.bincount(flat.ravel(), minlength=rows * bins).reshape(rows, bins)
    return _normalise(counts)


def layer_stats_from_arrays(
    name: str,
    x_int: np.ndarray,
    w_int: np.ndarray,
    acc_exact: np.ndarray,
    signed: bool,
    ops: int,
    *,
    rows: int,
    cols: int,
    rng: np.random.Generator,
) -> LayerStats:
    """Statistics of one layer from its traced operands.

    x_int (G, M, K) activation values, w_int (G, K, Ng) weight values, acc_exact (G, M, Ng);
    `rows` output rows and `cols` output columns are sampled without replacement
    (all of them when there are fewer).
    """
    x_int, w_int = np.asarray(x_int, dtype=np.int64), np.asarray(w_int, dtype=np.int64)
    if x_int.ndim != 3 or w_int.ndim != 3 or x_int.shape[0] != w_int.shape[0]:
        raise ValueError(f"{name}: expected x (G, M, K) and w (G, K, Ng)")
    g, m, k = x_int.shape
    if w_int.shape[1] != k:
        raise ValueError(f"{name}: x has fan-in {k} but w has {w_int.shape[1]}")
    ng = w_int.shape[2]
    if x_int.min(initial=0) < -128 or x_int.max(initial=0) > 255:
        raise ValueError(f"{name}: activation values outside -128..255")
    if np.abs(w_int).max(initial=0) > W_OFFSET:
        raise ValueError(f"{name}: weight values outside -255..255")
    x_codes = x_int & 0xFF
    x_hist = _normalise(np.bincount(x_codes.ravel(), minlength=256))
    w_hist = _normalise(np.bincount((w_int + W_OFFSET).ravel(), minlength=W_BINS))

    row_idx = np.sort(rng.choice(g * m, size=min(rows, g * m), replace=False))
    row_groups, row_pos = np.divmod(row_idx, m)
    x_rows = _hist_rows(x_codes[row_groups, row_pos], 0, 256)

    col_idx = np.sort(rng.choice(g * ng, size=min(cols, g * ng), replace=False))
    col_groups, col_pos = np.divmod(col_idx, ng)
    w_cols = _hist_rows(w_int[col_groups, :, col_pos], W_OFFSET, W_BINS)

    acc = np.asarray(acc_exact, dtype=np.float64)
    return LayerStats(
        name=name,
        signed=bool(signed),
        fan_in=int(k),
        ops=int(ops),
        acc_std=float(acc.std()),
        acc_mean=float(acc.mean()),
        x_hist=x_hist,
        w_hist=w_hist,
        x_rows=x_rows,
        w_cols=w_cols,
        row_groups=row_groups.astype(np.int64),
        col_groups=col_groups.astype(np.int64),
    )


_ARRAY_FIELDS = ("x_hist", "w_hist", "x_rows", "w_cols", "row_groups", "col_groups")
_SCALAR_FIELDS = ("signed", "fan_in", "ops", "acc_std", "acc_mean")


def save_stats(
    path: str | os.PathLike[str], layers: Sequence[LayerStats], meta: Mapping[str, Any]
) -> None:
    """Write all layers' statistics (and JSON-able `meta`, e.g. seed, batches) as one npz."""
    import json

    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION),
        "layer_names": np.array([s.name for s in layers], dtype=str),
        "meta_json": np.array(json.dumps(dict(meta))),
    }
    for i, s in enumerate(layers):
        for f in _ARRAY_FIELDS + _SCALAR_FIELDS:
            arrays[f"{i}.{f}"] = np.asarray(getattr(s, f))
    write_npz(path, **arrays)


def load_stats(path: str | os.PathLike[str]) -> tuple[list[LayerStats], dict[str, Any]]:
    """Read `stats.npz`; a missing or damaged file is a RunError naming it."""
    import json

    path = Path(path)
    if not path.is_file():
        raise RunError(
            f"{path}: no operand statistics; run `hwflow assign` on the run (it records them)"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format_version"]) != FORMAT_VERSION:
                raise RunError(f"{path}: unsupported stats format {int(z['format_version'])}")
            names = [str(n) for n in z["layer_names"]]
            meta = json.loads(str(z["meta_json"]))
            layers = []
            for i, n in enumerate(names):
                kw = {f: z[f"{i}.{f}"] for f in _ARRAY_FIELDS}
                kw["signed"] = bool(z[f"{i}.signed"])
                kw["fan_in"] = int(z[f"{i}.fan_in"])
                kw["ops"] = int(z[f"{i}.ops"])
                kw["acc_std"] = float(z[f"{i}.acc_std"])
                kw["acc_mean"] = float(z[f"{i}.acc_mean"])
                layers.append(LayerStats(name=n, **kw))
    except (KeyError, ValueError, OSError) as exc:
        raise RunError(f"{path}: damaged statistics file ({exc}); delete it and rerun") from None
    return layers, meta
