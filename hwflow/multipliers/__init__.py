"""Multiplier circuits and their error tables (never networks)."""

from hwflow.multipliers.table import (
    METRIC_NAMES,
    compute_metrics,
    error_table,
    exact_table,
    operand_values,
    output_to_int,
)

__all__ = [
    "METRIC_NAMES",
    "compute_metrics",
    "error_table",
    "exact_table",
    "operand_values",
    "output_to_int",
]
