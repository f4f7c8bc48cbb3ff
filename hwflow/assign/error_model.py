"""Probabilistic error model: the accumulator error each multiplier causes in each layer.

With E = table - exact, a layer of fan-in K accumulates `e = sum_k E[x_k, w_k]` per output.
From operand histograms (`stats.LayerStats`) the model predicts the mean and std of e over
the layer's outputs, for every (layer, multiplier) pair at once: the library's error
tables are stacked and contracted with the histograms by matrix products, so the work is
a few BLAS calls, not a loop over pairs.

Three variants (`ERROR_MODELS`):

- `seed` (Trommer et al., docs/concepts/error-model.md): each sampled output row i has
  its activation histogram p_x^i; every product draws its weight independently from the
  layer-wide weight histogram p_w. `mu_i = sum E p_x^i (x) p_w`, `var_i = sum (E - mu_i)^2 p_x^i (x)
  p_w`, pooled over rows: `std = sqrt(K^2 Var_i(mu_i) + K mean_i(var_i))`.
- `channel`: the same, but each sampled output column n brings its own weight histogram
  p_w^n, pooled over (row, column) pairs of the same group.
- `sampled` (default of `hwflow assign`): the exact accumulator errors of a sample of
  recorded outputs (`SAMPLED_PAIRS` (row, column) pairs, actual activation codes meeting
  actual weights, position by position), for all multipliers at once as one sparse
  product `H @ E^T` with H the pairs' signed (activation, weight) counts.

Why (measured with `hwflow assign --validate` on the digits CNN of examples/digits.yaml,
3 training seeds, the built-in unsigned library, 31-32 (layer, multiplier) pairs each):
the seed's model misses the measured std by a median 14-24 % (p90 27-37 %), mostly by
under-predicting in the ReLU conv layers; it is right for the first layer (K = 9, dense
inputs). The histograms factorise what is not independent: (1) an output channel's
weights are fixed for every row, so a biased multiplier errs alike on every row of a
channel (`channel` models that, but alone it does not help: median 18-21 %); (2) inside
one accumulator, activations and weights at the same position are correlated (75-85 %
of ReLU activations are zero, and the channels that fire meet larger-than-typical
weights), and activity varies per image, so products' errors co-vary across k. No
product of marginal histograms holds that; the joint sample does (`sampled`: median
1.1-2.0 %, p90 4.5-5.0 %). Its cost is a sparse product with ~P*K nonzeros per
multiplier and layer (bench/error_model.py: 500 multipliers x 20 layers, seed 2.1 s,
sampled 3.6 s, channel 39 s on 2 shared cores).

Unsigned (sign-magnitude) layers: the multiplier sees |w| and the lane applies sign(w),
so the product's error is sign(w) * E[x, |w|] (zero for w = 0). The weight histogram over
values maps onto table columns with signs for the first moment and without for the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from hwflow.assign.stats import W_BINS, W_OFFSET, LayerStats
from hwflow.multipliers.table import exact_table

ERROR_MODELS = ("seed", "channel", "sampled")
SAMPLED_PAIRS = 2048  # (row, column) pairs the `sampled` model evaluates per layer


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


def _weight_hists(layer: LayerStats, error_model: str) -> tuple[np.ndarray, np.ndarray]:
    """The weight histograms the model pairs rows with, and the (rows, hists) pair weights."""
    if error_model == "seed":
        return layer.w_hist[None, :], np.ones((len(layer.x_rows), 1))
    return layer.w_cols, layer.pair_mask()


def _pool(mu: np.ndarray, var: np.ndarray, weights: np.ndarray, k: int) -> tuple:
    """Pool per-pair mean and per-product variance (c, N, W) into accumulator mean and
    std per multiplier (c,): K^2 Var_pairs(mu) + K mean_pairs(var)."""
    wsum = weights.sum()
    mean_mu = (mu * weights).sum(axis=(1, 2)) / wsum
    between = (((mu - mean_mu[:, None, None]) ** 2) * weights).sum(axis=(1, 2)) / wsum
    within = (np.maximum(var, 0.0) * weights).sum(axis=(1, 2)) / wsum
    return k * mean_mu, np.sqrt(np.maximum(k * k * between + k * within, 0.0))


def _histogram_moments(
    e_stack: np.ndarray, layers: Sequence[LayerStats], signed: bool, error_model: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """seed / channel: (mean, std) arrays (c,) per layer for one chunk of error tables."""
    s1, s2 = weight_moment_maps(signed)
    hists = [_weight_hists(layer, error_model) for layer in layers]
    w_all = np.concatenate([h for h, _ in hists])  # (total, 511)
    q1, q2 = (w_all @ s1).T, (w_all @ s2).T  # (256, total)
    bounds = np.cumsum([0] + [len(h) for h, _ in hists])
    c = len(e_stack)
    flat = e_stack.reshape(-1, 256)
    a1 = (flat @ q1).reshape(c, 256, -1)  # (c, x, total)
    a2 = ((flat * flat) @ q2).reshape(c, 256, -1)
    out = []
    for j, layer in enumerate(layers):
        sl = slice(bounds[j], bounds[j + 1])
        px = layer.x_rows  # (N, 256)
        mu = px @ a1[:, :, sl]  # (c, N, W)
        var = px @ a2[:, :, sl] - mu * mu
        out.append(_pool(mu, var, hists[j][1], layer.fan_in))
    return out


def pair_matrix(
    layer: LayerStats, pairs: int = SAMPLED_PAIRS, seed: int = 0, skip_zero_x: bool = False
) -> sparse.csr_matrix:
    """(P, 65536) sparse: row p holds, for one sampled (row, column) pair of the same group,
    the signed count of each (activation code, weight column) product the accumulator sums,
    so `H @ vec(E)` is that output's exact accumulator error under error table E.

    `skip_zero_x` leaves out products with activation code 0: exact whenever E[0, :] = 0
    (true of most designs), and ReLU layers hold mostly zeros.
    """
    pi, pn = np.nonzero(layer.row_groups[:, None] == layer.col_groups[None, :])
    if len(pi) > pairs:
        keep = np.sort(np.random.default_rng(seed).choice(len(pi), size=pairs, replace=False))
        pi, pn = pi[keep], pn[keep]
    x = layer.x_sample[pi].astype(np.int64)  # (P, K)
    w = layer.w_sample[pn].astype(np.int64)
    if layer.signed:
        col, val = w & 0xFF, np.ones(w.shape, dtype=np.float32)
    else:
        col, val = np.abs(w), np.sign(w).astype(np.float32)
    nz = (val != 0) & (x != 0) if skip_zero_x else val != 0
    indptr = np.concatenate([[0], np.cumsum(nz.sum(axis=1))])
    return sparse.csr_matrix(
        (val[nz], (x * 256 + col)[nz], indptr), shape=(len(pi), 256 * 256), dtype=np.float32
    )


def _sampled_moments(
    e_stack: np.ndarray, mats: Sequence[tuple[sparse.csr_matrix, sparse.csr_matrix]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """sampled: exact errors of the sampled outputs for one chunk of error tables."""
    e_t = np.ascontiguousarray(e_stack.reshape(len(e_stack), -1).T, dtype=np.float32)
    zero_row_exact = not e_stack[:, 0, :].any()
    out = []
    for full, nonzero_x in mats:
        err = np.asarray((nonzero_x if zero_row_exact else full) @ e_t, dtype=np.float64)
        out.append((err.mean(axis=0), err.std(axis=0)))
    return out


def predict(
    tables: np.ndarray,
    table_signed: Sequence[bool] | np.ndarray,
    layers: Sequence[LayerStats],
    error_model: str = "seed",
    chunk: int = 32,
) -> Prediction:
    """Predicted accumulator error mean and std for every layer x multiplier pair.

    tables: (L, 256, 256) integer tables of the library's multipliers; table_signed: (L,).
    A multiplier only pairs with layers of its own signedness (others get NaN).
    """
    if error_model not in ERROR_MODELS:
        raise ValueError(
            f"unknown error model {error_model!r} (choose from {', '.join(ERROR_MODELS)})"
        )
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
        group = [layers[i] for i in li]
        mats = (
            [(pair_matrix(g), pair_matrix(g, skip_zero_x=True)) for g in group]
            if error_model == "sampled"
            else []
        )
        exact = exact_table(signed).astype(np.float64)
        for c0 in range(0, len(mi), chunk):
            idx = mi[c0 : c0 + chunk]
            e = tables[idx].astype(np.float64) - exact  # (c, 256, 256)
            if error_model == "sampled":
                moments = _sampled_moments(e, mats)
            else:
                moments = _histogram_moments(e, group, signed, error_model)
            for i, (m, sd) in zip(li, moments, strict=True):
                mean[i, idx], std[i, idx] = m, sd
    return Prediction(mean=mean, std=std)
