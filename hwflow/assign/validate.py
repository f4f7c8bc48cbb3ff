"""Predicted vs measured accumulator error: the error model checked by table emulation.

For held-out batches the quantized network is traced once; each layer's integer operands
then go through `table_matmul` with every multiplier under test, so the measured error
`acc - acc_exact` is taken on the same kind of operands the model was given (each layer
in isolation, exact inputs). Relative std error = |predicted - measured| / measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Moments:
    """Running mean and std of integer error values."""

    n: int = 0
    s1: float = 0.0
    s2: float = 0.0

    def add(self, err: np.ndarray) -> None:
        err = np.asarray(err, dtype=np.float64)
        self.n += err.size
        self.s1 += float(err.sum())
        self.s2 += float((err * err).sum())

    @property
    def mean(self) -> float:
        return self.s1 / self.n if self.n else float("nan")

    @property
    def std(self) -> float:
        if not self.n:
            return float("nan")
        return float(np.sqrt(max(self.s2 / self.n - self.mean**2, 0.0)))


def spread(order: Sequence[int], count: int) -> list[int]:
    """`count` items evenly spread along `order` (cheap to expensive), ends included."""
    if len(order) <= count:
        return list(order)
    pos = np.unique(np.round(np.linspace(0, len(order) - 1, count)).astype(int))
    return [order[p] for p in pos]


def measure_errors(
    model: object,
    batches: Iterable[object],
    tables: Mapping[str, Sequence[tuple[str, np.ndarray, bool]]],
) -> dict[tuple[str, str], Moments]:
    """{(layer, multiplier): Moments of acc - acc_exact} over all outputs of `batches`."""
    import torch

    from hwflow.nn import kernels, trace

    out: dict[tuple[str, str], Moments] = {}
    for x in batches:
        traces = trace(model, x)
        for layer, cands in tables.items():
            t = traces[layer]
            for name, table, signed in cands:
                acc = torch.stack(
                    [
                        kernels.table_matmul(
                            t.x_int[g], t.w_int[g], table, sign_magnitude=not signed
                        ).to(torch.int64)
                        for g in range(t.x_int.shape[0])
                    ]
                )
                out.setdefault((layer, name), Moments()).add((acc - t.acc_exact).numpy())
    return out


def relative_errors(pairs: Sequence[dict]) -> dict[str, float]:
    """Median and 90th percentile of |pred - meas| / meas over pairs with meas > 0."""
    rel = np.array(
        [
            abs(p["predicted_std"] - p["measured_std"]) / p["measured_std"]
            for p in pairs
            if p["measured_std"] > 0
        ]
    )
    if not len(rel):
        return {"pairs": 0, "median_pct": float("nan"), "p90_pct": float("nan")}
    return {
        "pairs": int(len(rel)),
        "median_pct": round(float(np.median(rel) * 100), 3),
        "p90_pct": round(float(np.percentile(rel, 90) * 100), 3),
    }
