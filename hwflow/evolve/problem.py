"""What a candidate is scored on: one layer's operands, turned into integer arrays.

Every node of a candidate carries `TABLE_WORDS + stream words` machine words: bit p of the
first 1024 words is its value for operand pair p = 256 a + b (all 65,536 pairs, as the
characterize bit-parallel view), the rest its values along an operand stream drawn from
the layer's recorded histograms (or, with `energy="uniform"`, uniform ones).

- Energy: the library's switching-activity model (`characterize.energy`: fanout-weighted
  zero-delay toggles of the gates' output nets, operand nets not counted), counted on the
  stream. The stream is drawn exactly as `energy_under_histograms` draws its own (same
  sampler, seed and order), so with `stream = 65536` the evolver's integer energy is that
  function's figure times (stream - 1); shorter streams are a cheaper estimate of it.
- Error: the `sampled` error model `hwflow assign` uses by default
  (`error_model.pair_matrix`): the exact accumulator errors of sampled output (row,
  column) pairs, `err = H @ vec(E)`, here with H's columns restricted to the operand
  pairs it touches and its integer counts kept as integers, so the evolver's `err` is
  exact.
- The constraint: `std(err) <= scale * |sigma_l| * std(exact accumulator)`, the fit
  rule of `assign.select`; optionally also |product error| <= `max_error` at every one
  of the 65,536 operand pairs (recorded or not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwflow.assign.error_model import SAMPLED_PAIRS, pair_matrix
from hwflow.assign.stats import LayerStats
from hwflow.characterize.energy import DEFAULT_SEED, operand_stream
from hwflow.multipliers.table import exact_table

TABLE_WORDS = 1024  # 65,536 operand pairs, one bit each
DEFAULT_STREAM = 8192  # operations of the energy stream (a multiple of 64)
# Candidates must keep std within tolerance * (1 - MARGIN): the characterized table is
# checked with assign's float32 error model, which may differ in the last digits.
MARGIN = 1e-6


@dataclass(frozen=True)
class Problem:
    """A layer's scoring data, all integer arrays (picklable, backend independent)."""

    signed: bool
    inputs: np.ndarray  # uint64 (18, W): operand bit planes and the two constants
    stream: int  # operations of the energy stream (W - TABLE_WORDS words)
    pairs: np.ndarray  # int64 (U,): operand pairs (256 a + b) the error model reads
    exact: np.ndarray  # int64 (U,): the exact product at each
    h_ptr: np.ndarray  # int64 (U + 1,): H column pointers (CSC)
    h_row: np.ndarray  # int64 (nnz,): sampled output of each entry
    h_val: np.ndarray  # int64 (nnz,): signed count of the pair in that output's sum
    outputs: int  # P, sampled outputs
    tolerance: float  # tolerated accumulator error std
    max_error: int = -1  # >= 0: bound on |product error| over all 65,536 pairs

    @property
    def words(self) -> int:
        return self.inputs.shape[1]

    def fits(self, s1: int, s2: int, violations: int = 0) -> bool:
        """Within the error std tolerance, and no pair beyond the worst-case bound."""
        return violations == 0 and self.std(s1, s2) <= self.std_limit

    @property
    def std_limit(self) -> float:
        """The largest error std that fits."""
        return self.tolerance * (1 - MARGIN)

    def std(self, s1: int, s2: int) -> float:
        """Accumulator error std of the sampled outputs from their sums."""
        mean = s1 / self.outputs
        return float(np.sqrt(max(s2 / self.outputs - mean * mean, 0.0)))


def operand_planes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint64 (18, len/64): bit t % 64 of word t // 64 of plane i is operation t's a_i
    (i < 8), b_(i-8) (i < 16); then constant 0 and constant 1."""
    n = len(a)
    bits = np.concatenate(
        [(a[None, :] >> np.arange(8)[:, None]) & 1, (b[None] >> np.arange(8)[:, None]) & 1]
    )
    shifts = np.arange(64, dtype=np.uint64)
    packed = (bits.reshape(16, n // 64, 64).astype(np.uint64) << shifts).sum(
        axis=2, dtype=np.uint64
    )
    consts = np.stack([np.zeros(n // 64, np.uint64), np.full(n // 64, ~np.uint64(0))])
    return np.concatenate([packed, consts])


ENERGY_OPERANDS = ("histogram", "uniform")


def energy_operand_hists(layer: LayerStats, energy: str = "histogram") -> tuple:
    """The histograms the energy objective's operand stream is drawn from: the layer's
    recorded operands (`histogram`), or uniform ones (`uniform`: the library's
    `energy_rel`, the measure the reference method and EvoApproxLib quote; the error
    constraint stays the layer's)."""
    if energy == "uniform":
        flat = np.full(256, 1 / 256)
        return flat, flat.copy()
    return layer.multiplier_operand_hists()


def layer_problem(
    layer: LayerStats,
    tolerance: float,
    stream: int = DEFAULT_STREAM,
    seed: int = DEFAULT_SEED,
    pairs: int = SAMPLED_PAIRS,
    max_error: int = -1,
    energy: str = "histogram",
) -> Problem:
    """The scoring data of one layer (see the module docstring)."""
    if stream < 128 or stream % 64:
        raise ValueError(f"stream must be a multiple of 64 (>= 128), got {stream}")
    every = np.arange(1 << 16)
    table_planes = operand_planes(every >> 8, every & 0xFF)
    a_codes, b_codes = operand_stream(*energy_operand_hists(layer, energy), stream, seed)
    inputs = np.concatenate([table_planes, operand_planes(a_codes, b_codes)], axis=1)
    h = pair_matrix(layer, pairs=pairs).tocsc()
    h.sum_duplicates()
    h.eliminate_zeros()
    used = np.nonzero(np.diff(h.indptr))[0]
    h = h[:, used].tocsc()
    counts = h.data.astype(np.int64)
    if not np.array_equal(counts, h.data):
        raise ValueError(f"{layer.name}: the error model's pair counts are not integers")
    exact = exact_table(layer.signed).reshape(-1)[used].astype(np.int64)
    return Problem(
        signed=layer.signed,
        inputs=np.ascontiguousarray(inputs),
        stream=stream,
        pairs=used.astype(np.int64),
        exact=exact,
        h_ptr=h.indptr.astype(np.int64),
        h_row=h.indices.astype(np.int64),
        h_val=counts,
        outputs=h.shape[0],
        tolerance=float(tolerance),
        max_error=int(max_error),
    )
