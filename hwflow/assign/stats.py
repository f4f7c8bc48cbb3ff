"""Operand statistics of a trained run: what the error model and the energy model read.

Per approximate layer, from a few traced batches (`hwflow.nn.trace`):
- `x_hist` (256,): activation-code histogram (`x & 0xFF`) over the whole layer;
- `w_hist` (511,): weight-*value* histogram over -255..255 (values, not codes, so the
  same record serves signed layers, where the multiplier sees `w & 0xFF`, and
  sign-magnitude layers, where it sees `|w|` and the lane applies the sign);
- `x_sample` (N, K) uint8: the activation codes of N sampled output rows (im2col rows),
  `x_rows` (N, 256) their histograms;
- `w_sample` (C, K) int16: the weights of C sampled output columns (output channels),
  `w_cols` (C, 511) their histograms;
- `row_groups`, `col_groups`: each sample's group (grouped convolutions pair a row only
  with columns of its own group);
- `fan_in`, `ops`, `signed`, and the std and mean of the exact integer accumulator.

Stored as `RUN/stats.npz` (atomically), so assignment can be repeated against other
libraries without touching the network again.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.errors import RunError
from hwflow.io import write_npz

W_OFFSET = 255  # w_hist[v + W_OFFSET] = P(w == v), v in -255..255
W_BINS = 2 * W_OFFSET + 1
STATS_FILE = "stats.npz"
FORMAT_VERSION = 2
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
    x_sample: np.ndarray
    w_sample: np.ndarray
    row_groups: np.ndarray
    col_groups: np.ndarray

    def __post_init__(self) -> None:
        if self.x_hist.shape != (256,) or self.w_hist.shape != (W_BINS,):
            raise ValueError(f"{self.name}: x_hist must be (256,), w_hist ({W_BINS},)")
        k = self.fan_in
        if self.x_sample.ndim != 2 or self.x_sample.shape[1] != k:
            raise ValueError(f"{self.name}: x_sample must be (N, {k}), got {self.x_sample.shape}")
        if self.w_sample.ndim != 2 or self.w_sample.shape[1] != k:
            raise ValueError(f"{self.name}: w_sample must be (C, {k}), got {self.w_sample.shape}")
        if self.row_groups.shape != (len(self.x_sample),):
            raise ValueError(f"{self.name}: row_groups must have one entry per row")
        if self.col_groups.shape != (len(self.w_sample),):
            raise ValueError(f"{self.name}: col_groups must have one entry per column")

    @functools.cached_property
    def x_rows(self) -> np.ndarray:
        """(N, 256) activation-code histograms of the sampled rows."""
        return _normalise(_hist_rows(self.x_sample.astype(np.int64), 0, 256))

    @functools.cached_property
    def w_cols(self) -> np.ndarray:
        """(C, 511) weight-value histograms of the sampled columns."""
        return _normalise(_hist_rows(self.w_sample.astype(np.int64), W_OFFSET, W_BINS))

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
    """Row-wise histograms of an integer matrix (R, K) -> (R, bins) counts."""
    rows = values.shape[0]
    flat = (values + offset) + np.arange(rows)[:, None] * bins
    return np.bincount(flat.ravel(), minlength=rows * bins).reshape(rows, bins)


class LayerAccumulator:
    """Builds one layer's LayerStats from successive traced batches.

    Histograms add up over batches; `rows` output rows are sampled spread over the
    batches (`rows_per_batch` each); `cols` columns are sampled once (weights are fixed).
    The accumulator reference is the exact sum after zero-point correction; with
    per-column output scales s_n, its std is taken as the AGN noise sees it,
    std(s_n * acc) / rms(s_n), in integer accumulator units.
    """

    def __init__(
        self, name: str, signed: bool, ops: int, *, rows_per_batch: int, cols: int, seed: int
    ) -> None:
        self.name, self.signed, self.ops = name, bool(signed), int(ops)
        self.rows_per_batch, self.cols = rows_per_batch, cols
        self.rng = np.random.default_rng(seed)
        self.k: int | None = None
        self.x_counts = np.zeros(256, dtype=np.int64)
        self.w_counts = np.zeros(W_BINS, dtype=np.int64)
        self.x_sample: list[np.ndarray] = []
        self.row_groups: list[np.ndarray] = []
        self.w_sample: np.ndarray | None = None
        self.col_groups: np.ndarray | None = None
        self.n = 0
        self.s1 = 0.0  # sums of s * acc and (s * acc)^2, and of s^2 per element
        self.s2 = 0.0
        self.ss = 0.0

    def add(
        self,
        x_int: np.ndarray,
        w_int: np.ndarray,
        acc_ref: np.ndarray,
        col_scale: np.ndarray | None = None,
    ) -> None:
        """x_int (G, M, K), w_int (G, K, Ng) values; acc_ref (G, M, Ng) exact accumulator
        (zero-point corrected); col_scale (G, Ng) or None (all columns alike)."""
        x_int, w_int = np.asarray(x_int, dtype=np.int64), np.asarray(w_int, dtype=np.int64)
        if x_int.ndim != 3 or w_int.ndim != 3 or x_int.shape[0] != w_int.shape[0]:
            raise ValueError(f"{self.name}: expected x (G, M, K) and w (G, K, Ng)")
        g, m, k = x_int.shape
        ng = w_int.shape[2]
        if w_int.shape[1] != k or (self.k is not None and self.k != k):
            raise ValueError(f"{self.name}: inconsistent fan-in ({k}, {w_int.shape[1]})")
        if x_int.min(initial=0) < -128 or x_int.max(initial=0) > 255:
            raise ValueError(f"{self.name}: activation values outside -128..255")
        if np.abs(w_int).max(initial=0) > W_OFFSET:
            raise ValueError(f"{self.name}: weight values outside -255..255")
        self.k = k
        x_codes = x_int & 0xFF
        self.x_counts += np.bincount(x_codes.ravel(), minlength=256)
        self.w_counts += np.bincount((w_int + W_OFFSET).ravel(), minlength=W_BINS)
        take = min(self.rows_per_batch, g * m)
        row_idx = np.sort(self.rng.choice(g * m, size=take, replace=False))
        groups, pos = np.divmod(row_idx, m)
        self.x_sample.append(x_codes[groups, pos].astype(np.uint8))
        self.row_groups.append(groups)
        if self.w_sample is None:
            col_idx = np.sort(self.rng.choice(g * ng, size=min(self.cols, g * ng), replace=False))
            cg, cp = np.divmod(col_idx, ng)
            self.w_sample = w_int[cg, :, cp].astype(np.int16)
            self.col_groups = cg
        scale = np.ones((g, 1, ng)) if col_scale is None else np.asarray(col_scale)[:, None, :]
        scaled = np.asarray(acc_ref, dtype=np.float64) * scale
        self.n += scaled.size
        self.s1 += float(scaled.sum())
        self.s2 += float((scaled * scaled).sum())
        self.ss += float(np.broadcast_to(scale * scale, scaled.shape).sum())

    def finish(self) -> LayerStats:
        if self.k is None or self.w_sample is None or self.col_groups is None:
            raise ValueError(f"{self.name}: no batches recorded")
        mean = self.s1 / self.n
        var = max(self.s2 / self.n - mean * mean, 0.0)
        rms = np.sqrt(self.ss / self.n)
        return LayerStats(
            name=self.name,
            signed=self.signed,
            fan_in=self.k,
            ops=self.ops,
            acc_std=float(np.sqrt(var) / rms),
            acc_mean=float(mean / rms),
            x_hist=_normalise(self.x_counts),
            w_hist=_normalise(self.w_counts),
            x_sample=np.concatenate(self.x_sample),
            w_sample=self.w_sample,
            row_groups=np.concatenate(self.row_groups).astype(np.int64),
            col_groups=self.col_groups.astype(np.int64),
        )


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
    """Statistics of one layer from one batch of traced operands (see LayerAccumulator)."""
    acc = LayerAccumulator(
        name, signed, ops, rows_per_batch=rows, cols=cols, seed=int(rng.integers(2**31))
    )
    acc.add(x_int, w_int, acc_exact)
    return acc.finish()


def record_stats(
    model: Any,
    batches: Iterable[Any],
    ops: Mapping[str, int],
    *,
    rows: int = DEFAULT_ROWS,
    cols: int = DEFAULT_COLS,
    seed: int = 0,
) -> list[LayerStats]:
    """Trace `model` (quant mode) over `batches` of inputs and summarise every layer."""
    import torch

    from hwflow.nn import trace

    batches = list(batches)
    if not batches:
        raise RunError("recording operand statistics needs at least one batch")
    per_batch = max(1, -(-rows // len(batches)))
    accs: dict[str, LayerAccumulator] = {}
    for x in batches:
        traces = trace(model, x)
        for i, (name, t) in enumerate(traces.items()):
            if name not in accs:
                accs[name] = LayerAccumulator(
                    name,
                    t.signed,
                    ops[name],
                    rows_per_batch=per_batch,
                    cols=cols,
                    seed=seed * 1000 + i,
                )
            w = t.w_int.numpy()
            acc_ref = t.acc_exact.numpy() - t.zero_point * w.sum(axis=1, keepdims=True)
            g, _, ng = w.shape
            ws = torch.as_tensor(t.w_scale, dtype=torch.float64).reshape(-1).numpy()
            col_scale = np.broadcast_to(t.x_scale * ws, (g * ng,)).reshape(g, ng)
            accs[name].add(t.x_int.numpy(), w, acc_ref, col_scale)
    return [a.finish() for a in accs.values()]


_ARRAY_FIELDS = ("x_hist", "w_hist", "x_sample", "w_sample", "row_groups", "col_groups")
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
