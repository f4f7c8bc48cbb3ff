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
    jobs: int = 1,
) -> dict[tuple[str, str], Moments]:
    """{(layer, multiplier): Moments of acc - acc_exact} over all outputs of `batches`.

    The network is traced here; each layer's emulations are one task of
    `hwflow.executor.run_parallel` (every candidate multiplier over every batch)."""
    from hwflow.executor import run_parallel
    from hwflow.nn import trace

    operands: dict[str, list[tuple]] = {layer: [] for layer in tables}
    for x in batches:
        traces = trace(model, x)
        for layer in tables:
            t = traces[layer]
            operands[layer].append((t.x_int, t.w_int, t.acc_exact))
    # Pooled workers compute on one thread each: the tasks are the parallelism; sums are
    # integer, so threads never change a result.
    threads = 1 if jobs > 1 else 0
    items = [(layer, operands[layer], list(cands), threads) for layer, cands in tables.items()]
    out: dict[tuple[str, str], Moments] = {}
    for (layer, _, cands, _), moments in zip(
        items, run_parallel(_layer_errors, items, jobs), strict=True
    ):
        for (name, _, _), m in zip(cands, moments, strict=True):
            out[(layer, name)] = m
    return out


def _layer_errors(item: tuple) -> list[Moments]:
    """One layer's task: Moments of each candidate multiplier, batches in order."""
    import torch

    from hwflow.nn import kernels

    _layer, operands, cands, threads = item
    if threads:
        torch.set_num_threads(threads)
    out = []
    for _name, table, signed in cands:
        m = Moments()
        for x_int, w_int, acc_exact in operands:
            acc = torch.stack(
                [
                    kernels.table_matmul(x_int[g], w_int[g], table, sign_magnitude=not signed).to(
                        torch.int64
                    )
                    for g in range(x_int.shape[0])
                ]
            )
            m.add((acc - acc_exact).numpy())
        out.append(m)
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
