"""Independent numpy models of the built-in multiplier families.

Each model is written from the family's arithmetic definition (which partial-product
bits are summed, how operands are rounded, how the logarithm is approximated), never by
evaluating the Amaranth circuit, so that comparing the two checks the circuit.
Every model returns `int32[256, 256]` with `table[a & 0xFF, b & 0xFF]` = the circuit's
output (a signed integer for signed circuits), as in docs/concepts/operands.md.

Partial-product bits: unsigned `pp(i, j) = a_i & b_j` with weight `2^(i+j)`; row `j`
belongs to multiplier bit `b_j`. Signed multipliers use the modified Baugh-Wooley matrix:
`pp(i, j)` is inverted (NAND) when exactly one of `i`, `j` is 7, plus the constants
`2^8 + 2^15`; the 16-bit sum read as two's complement is the product.

Signed DRUM and Mitchell are sign-magnitude around the unsigned core: the core multiplies
|a| and |b| (0..128) and the sign is applied to its output.
"""

from __future__ import annotations

import numpy as np

from hwflow.multipliers.table import exact_table, operand_values, output_to_int

_CODES = np.arange(256, dtype=np.int64)
_A = _CODES[:, None]  # first operand varies along axis 0
_B = _CODES[None, :]
_BW_CONSTANTS = (8, 15)  # Baugh-Wooley correction bits 2^n and 2^(2n-1), n = 8


def _bit(x: np.ndarray, i: int) -> np.ndarray:
    return (x >> i) & 1


def _pp_bit(signed: bool, i: int, j: int) -> np.ndarray:
    """Value (0/1) of partial-product bit (i, j) for every operand pair, shape (256, 256)."""
    bit = _bit(_A, i) & _bit(_B, j)
    if signed and (i == 7) != (j == 7):
        bit = 1 - bit
    return bit


def _sum_bits(signed: bool, keep_bit, keep_column=lambda c: True) -> np.ndarray:
    """Sum of the partial-product bits with `keep_bit(i, j)` true, plus (if signed) the
    Baugh-Wooley constants in columns with `keep_column(c)` true. Raw int64 sum."""
    total = np.zeros((256, 256), dtype=np.int64)
    for i in range(8):
        for j in range(8):
            if keep_bit(i, j):
                total += _pp_bit(signed, i, j) << (i + j)
    if signed:
        total += sum(1 << c for c in _BW_CONSTANTS if keep_column(c))
    return total


def _finish(raw: np.ndarray, signed: bool) -> np.ndarray:
    """Wrap a raw sum to the 16-bit output pattern and read it as the circuit's integer."""
    return output_to_int(raw & 0xFFFF, signed)


def _kept_plus_compensation(
    signed: bool, keep_bit, keep_column=lambda c: True, compensate: bool = False
) -> np.ndarray:
    """Sum of the kept bits; with `compensate`, plus the dropped bits' mean over all
    operand pairs (uniform operands) rounded to the nearest integer."""
    kept = _sum_bits(signed, keep_bit, keep_column)
    if compensate:
        dropped = _sum_bits(signed, lambda i, j: not keep_bit(i, j), lambda c: not keep_column(c))
        kept = kept + int(np.floor(dropped.mean() + 0.5))
    return _finish(kept, signed)


# ---- families -------------------------------------------------------------------------


def exact(signed: bool) -> np.ndarray:
    """The exact product."""
    return exact_table(signed)


def trunc(signed: bool, k: int, comp: bool) -> np.ndarray:
    """Partial-product columns below `k` dropped; `comp` adds the rounded mean of the
    dropped bits under uniform operands as a constant."""
    return _kept_plus_compensation(signed, lambda i, j: i + j >= k, lambda c: c >= k, comp)


def bam(signed: bool, hbl: int, vbl: int) -> np.ndarray:
    """Broken-array multiplier: rows `j < hbl` and columns `i + j < vbl` removed."""
    return _kept_plus_compensation(
        signed, lambda i, j: j >= hbl and i + j >= vbl, lambda c: c >= vbl
    )


def perf(signed: bool, row: int, n: int, comp: bool) -> np.ndarray:
    """Partial-product rows `row .. row + n - 1` perforated (removed); `comp` adds the
    rounded mean of the removed rows under uniform operands."""
    return _kept_plus_compensation(signed, lambda i, j: not row <= j < row + n, compensate=comp)


def orcol(signed: bool, m: int) -> np.ndarray:
    """Columns below `m` each compressed to the OR of their bits (no carries out);
    columns `>= m` summed exactly."""
    high = _sum_bits(signed, lambda i, j: i + j >= m, lambda c: c >= m)
    low = np.zeros((256, 256), dtype=np.int64)
    for c in range(m):
        column_or = np.zeros((256, 256), dtype=np.int64)
        for i in range(max(0, c - 7), min(c, 7) + 1):
            column_or |= _pp_bit(signed, i, c - i)
        low += column_or << c
    return _finish(high + low, signed)


def optrunc(signed: bool, ta: int, tb: int) -> np.ndarray:
    """Operand truncation: the low `ta` bits of `a` and `tb` bits of `b` forced to zero,
    then an exact multiply (two's complement operands stay two's complement)."""
    values = operand_values(signed).astype(np.int64)
    a = values[_CODES & ~((1 << ta) - 1)]
    b = values[_CODES & ~((1 << tb) - 1)]
    return _finish(np.multiply.outer(a, b), signed)


def _sign_magnitude(signed: bool, core) -> np.ndarray:
    """Round both operands with the unsigned `core(magnitude) -> rounded magnitude` and
    multiply exactly; signed operands are handled as sign and magnitude (0..128)."""
    values = operand_values(signed).astype(np.int64)
    approx = core(np.abs(values)) * np.sign(values)
    return _finish(np.multiply.outer(approx, approx), signed)


def _leading_one(x: np.ndarray) -> np.ndarray:
    """Position of the leading one (0 for x == 0 as well as x == 1)."""
    return np.floor(np.log2(np.maximum(x, 1))).astype(np.int64)


def drum(signed: bool, k: int) -> np.ndarray:
    """DRUM (Hashemi et al., ICCAD 2015): each operand keeps its leading one and the
    next k-1 bits; when bits are discarded the lowest kept bit is set to 1 (unbiased
    rounding); then the two k-bit segments are multiplied exactly and shifted back."""

    def round_operand(x: np.ndarray) -> np.ndarray:
        shift = np.maximum(_leading_one(x) - (k - 1), 0)
        rounded = ((x >> shift) | 1) << shift
        return np.where(shift > 0, rounded, x)

    return _sign_magnitude(signed, round_operand)


def mitchell(signed: bool, w: int) -> np.ndarray:
    """Mitchell's logarithmic multiplier with `w` fraction bits.

    x = 2^kx (1 + fx); fx truncated to w bits. With s = fa + fb: if s < 1 the product is
    2^(ka+kb) (1 + s), else 2^(ka+kb+1) s; the result is truncated to an integer. A zero
    operand gives zero.
    """

    def magnitudes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = _leading_one(values)
        frac = ((values - (1 << k)) << w) >> k  # floor(fx * 2^w)
        return k, frac

    values = operand_values(signed).astype(np.int64)
    mag = np.abs(values)
    k, frac = magnitudes(mag)
    ka, kb = k[:, None], k[None, :]
    s = frac[:, None] + frac[None, :]
    carry = s >= (1 << w)
    mantissa = np.where(carry, s, s + (1 << w))
    exponent = ka + kb + carry
    product = (mantissa << exponent) >> w
    product = np.where((mag[:, None] == 0) | (mag[None, :] == 0), 0, product)
    sign = np.multiply.outer(np.sign(values), np.sign(values)) if signed else 1
    return _finish(product * sign, signed)


def vct(signed: bool, k: int, n: int, pair: bool) -> np.ndarray:
    """Truncation with a variable correction term: the bits of columns >= k are summed;
    of column k-1, the n bits (i, j) with the smallest |i - j| (ties: larger i) count at
    twice their weight and the rest are dropped, with everything below; with `pair`, two
    doubled mirror bits (i, j) and (j, i) count as their OR. A constant, the mean over all
    operand pairs of exact minus that sum rounded to nearest, is added."""
    column = [(i, k - 1 - i) for i in range(8) if 0 <= k - 1 - i <= 7]
    doubled = sorted(column, key=lambda ij: (abs(2 * ij[0] - (k - 1)), -ij[0]))[:n]
    approx = _sum_bits(signed, lambda i, j: i + j >= k, lambda c: False)
    for i, j in doubled:
        if pair and i != j and (j, i) in doubled:
            if i < j:
                continue  # the pair is added once, from its (larger i, smaller j) member
            bit = _pp_bit(signed, i, j) | _pp_bit(signed, j, i)
        else:
            bit = _pp_bit(signed, i, j)
        approx = approx + (bit << k)
    raw_exact = _sum_bits(signed, lambda i, j: True)
    constant = int(np.floor((raw_exact - approx).mean() + 0.5))
    return _finish(approx + constant, signed)


FAMILIES = {
    "exact": exact,
    "trunc": trunc,
    "bam": bam,
    "perf": perf,
    "orcol": orcol,
    "optrunc": optrunc,
    "drum": drum,
    "mitchell": mitchell,
    "vct": vct,
}
