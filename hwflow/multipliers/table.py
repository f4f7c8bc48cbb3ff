"""Error tables of 8x8 multipliers and their metrics (docs/concepts/operands.md).

A table is `int32[256, 256]` with `table[a & 0xFF, b & 0xFF]` = the product the circuit
outputs (a signed integer for signed circuits). First index = first operand `a` (the
activation). Never transpose: circuits need not be commutative.
"""

from __future__ import annotations

import numpy as np

TABLE_SHAPE = (256, 256)
METRIC_NAMES = ("mae", "wce", "mse", "bias", "std", "ep_pct", "mre_pct", "mae_pct", "wce_pct")


def operand_values(signed: bool) -> np.ndarray:
    """The integer value of each 8-bit pattern 0..255 (two's complement when signed)."""
    codes = np.arange(256, dtype=np.int32)
    return np.where(codes >= 128, codes - 256, codes).astype(np.int32) if signed else codes


def exact_table(signed: bool) -> np.ndarray:
    """The exact product table for signed (two's complement) or unsigned 8-bit operands."""
    v = operand_values(signed)
    return np.multiply.outer(v, v).astype(np.int32)


def output_to_int(raw: np.ndarray, signed: bool) -> np.ndarray:
    """Read 16-bit output patterns (0..65535) as the integers the circuit means."""
    raw = np.asarray(raw, dtype=np.int64) & 0xFFFF
    return (np.where(raw >= 0x8000, raw - 0x10000, raw) if signed else raw).astype(np.int32)


def check_table(table: np.ndarray, name: str = "table") -> np.ndarray:
    """Validate shape and dtype (int32, either byte order); return the table as native int32.

    Other integer widths are refused, not cast: an int8 or uint16 table cannot hold every
    16-bit product, so accepting one would silently change what the multiplier computes.
    """
    table = np.asarray(table)
    if table.shape != TABLE_SHAPE:
        raise ValueError(f"{name}: expected shape {TABLE_SHAPE}, got {table.shape}")
    if table.dtype.kind != "i" or table.dtype.itemsize != 4:
        raise ValueError(f"{name}: expected an int32 table, got dtype {table.dtype}")
    return table.astype(np.int32, copy=False)


def error_table(table: np.ndarray, signed: bool) -> np.ndarray:
    """E = table - exact, as int32."""
    return check_table(table) - exact_table(signed)


def compute_metrics(table: np.ndarray, signed: bool) -> dict[str, float]:
    """The metrics of docs/concepts/operands.md over all 65,536 operand pairs (e = approx - exact).

    `mae_pct` and `wce_pct` are relative to 2^16 (EvoApproxLib's definition);
    `mre_pct` averages |e| / |exact| over pairs whose exact product is non-zero.
    """
    exact = exact_table(signed).astype(np.float64)
    e = check_table(table).astype(np.float64) - exact
    abs_e = np.abs(e)
    nonzero = exact != 0
    mae = float(abs_e.mean())
    wce = float(abs_e.max())
    return {
        "mae": mae,
        "wce": wce,
        "mse": float((e**2).mean()),
        "bias": float(e.mean()),
        "std": float(e.std()),
        "ep_pct": float(100.0 * (e != 0).mean()),
        "mre_pct": float(100.0 * (abs_e[nonzero] / np.abs(exact[nonzero])).mean()),
        "mae_pct": mae / 2**16 * 100.0,
        "wce_pct": wce / 2**16 * 100.0,
    }
