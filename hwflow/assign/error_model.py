"""Probabilistic error model: the accumulator error each multiplier causes in each layer.

With E = table - exact, a layer of fan-in K accumulates `e = sum_k E[x_k, w_k]` per output.
From operand histograms (`stats.LayerStats`) the model predicts the mean and std of e over
the layer's outputs, for every (layer, multiplier) pair at once: the library's error
tables are stacked and contracted with the histograms by matrix products, so the work is
a few BLAS calls, not a loop over pairs.

Two variants (`MODELS`), both exact moment computations under their own independence
assumption:

- `seed` (Trommer et al., DESIGN.md): each sampled output row i has its activation
  histogram p_x^i; every product draws its weight independently from the layer-wide
  weight histogram p_w. `mu_i = sum E p_x^i (x) p_w`, `var_i = sum (E - mu_i)^2 p_x^i (x)
  p_w`, pooled over rows: `std = sqrt(K^2 Var_i(mu_i) + K mean_i(var_i))`.
- `channel` (ours): the same, but each output *column* n has its own weight histogram
  p_w^n (its actual weights), and rows pair with columns of their group:
  `mu_in = sum E p_x^i (x) p_w^n`, pooled over (row, column) pairs. An output channel's
  weights are fixed for every row, so a channel whose weights sit where the multiplier is
  bad (large weights for truncations, particular bit patterns for broken arrays) errs the
  same way on every row; the seed's model spreads that over independent draws and
  averages it away, under-predicting the std wherever the error's dependence on w is
  strongly structured (biased multipliers in particular: a per-column bias becomes
  spread across outputs). See README / `hwflow assign --validate` for measurements.

Unsigned (sign-magnitude) layers: the multiplier sees |w| and the lane applies sign(w),
so the product's error is sign(w) * E[x, |w|] (zero for w = 0). The weight histogram over
values maps onto table columns with signs for the first moment and without for the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwflow.assign.stats import W_BINS, W_OFFSET, LayerStats
from hwflow.multipliers.table import exact_table

MODELS = ("seed", "channel")


def weight_moment_maps(signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(511, 256) maps from a weight-value histogram to table-column weights.

    `q1 = p_w @ S1` weighs table columns for the error's mean, `q2 = p_w @ S2` for its
    second moment. Signed layers: column `w & 0xFF`. Sign-magnitude layers: column |w|,
    sign(w) in S1 (|sign(w)| in S2), so w = 0 contributes nothing.
    """
    values = np.arange(-W_OFFSET, W_OFFSET + 1)
    s1 = np.zeros((W_BINS, 256))
    s2 = np.zeros((W_BINS, 256))
    if signed:
        ok = (values >= -128) & (values <= 127)
        rows, cols = np.nonzero(ok)[0], values[ok] & 0xFF
        s1[rows, cols] = 1.0
        s2[rows, cols] = 1.0
    else:
        rows = np.arange(W_BINS)
        s1[rows, np.abs(values)] = np.sign(values)
        s2[rows, np.abs(values)] = np.abs(np.sign(values))
    return s1, s2


@dataclass(frozen=True)
class Prediction:
    """Predicted accumulator error per (layer, multiplier); NaN where signedness differs."""

    mean: np.ndarray  # (n_layers, n_multipliers)
    std: np.ndarray  # (n_layers, n_multipliers)


def _weight_hists(layer: LayerStats, model: str) -> tuple[np.ndarray, np.ndarray]:
    """The weight histograms the model pairs rows with, and the (rows, hists) pair weights."""
    if model == "seed":
        return layer.w_hist[None, :], np.ones((len(layer.x_rows), 1))
    return layer.w_cols, layer.pair_mask()


def _pool(mu: np.ndarray, m2: np.ndarray, weights: np.ndarray, k: int) -> tuple:
    """Pool per-pair moments (c, N, W) into accumulator mean and std per multiplier (c,)."""
    wsum = weights.sum()
    mean_mu = (mu * weights).sum(axis=(1, 2)) / wsum
    between = (((mu - mean_mu[:, None, None]) ** 2) * weights).sum(axis=(1, 2)) / wsum
    within = (np.maximum(m2 - mu**2, 0.0) * weights).sum(axis=(1, 2)) / wsum
    return k * mean_mu, np.sqrt(np.maximum(k * k * between + k * within, 0.0))


def predict(
    tables: np.ndarray,
    table_signed: Sequence[bool] | np.ndarray,
    layers: Sequence[LayerStats],
    model: str = "seed",
    chunk: int = 32,
) -> Prediction:
    """Predicted accumulator error mean and std for every layer x multiplier pair.

    tables: (L, 256, 256) integer tables of the library's multipliers; table_signed: (L,).
    A multiplier only pairs with layers of its own signedness (others get NaN).
    """
    if model not in MODELS:
        raise ValueError(f"unknown error model {model!r} (choose from {', '.join(MODELS)})")
    tables = np.asarray(tables)
    table_signed = np.asarray(table_signed, dtype=bool)
    if tables.ndim != 3 or tables.shape[1:] != (256, 256) or len(table_signed) != len(tables):
        raise ValueError("tables must be (L, 256, 256) with one signedness flag per table")
    mean = np.full((len(layers), len(tables)), np.nan)
    std = np.full((len(layers), len(tables)), np.nan)
    for signed in (True, False):
        li = [i for i, s in enumerate(layers) if s.signed == signed]
        mi = np.nonzero(table_signed == signed)[0]
        if not li or not len(mi):
            continue
        s1, s2 = weight_moment_maps(signed)
        hists = [_weight_hists(layers[i], model) for i in li]
        w_all = np.concatenate([h for h, _ in hists])  # (total, 511)
        q1, q2 = (w_all @ s1).T, (w_all @ s2).T  # (256, total)
        bounds = np.cumsum([0] + [len(h) for h, _ in hists])
        exact = exact_table(signed).astype(np.float64)
        for c0 in range(0, len(mi), chunk):
            idx = mi[c0 : c0 + chunk]
            e = tables[idx].astype(np.float64) - exact  # (c, 256, 256)
            flat = e.reshape(-1, 256)
            a1 = (flat @ q1).reshape(len(idx), 256, -1)  # (c, x, total)
            a2 = ((flat * flat) @ q2).reshape(len(idx), 256, -1)
            for j, i in enumerate(li):
                sl = slice(bounds[j], bounds[j + 1])
                px = layers[i].x_rows  # (N, 256)
                mu = px @ a1[:, :, sl]  # (c, N, W)
                m2 = px @ a2[:, :, sl]
                mean[i, idx], std[i, idx] = _pool(mu, m2, hists[j][1], layers[i].fan_in)
    return Prediction(mean=mean, std=std)
