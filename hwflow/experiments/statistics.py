"""The study's statistics, pure functions over plain arrays.

Mean, sample std and a Student-t confidence interval over training seeds; paired tests over
the same test images: McNemar's exact test (two-sided binomial test on the discordant
pairs), pooled over seeds (every (seed, image) pair is one paired observation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (b: only the first
    classifier right, c: only the second): the binomial test of b against Bin(b + c, 1/2)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b}, {c}")
    n = b + c
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(min(b, c), n, 0.5).pvalue)


def discordant(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int]:
    """(images only a got right, images only b got right) of two paired boolean arrays."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} vs {b.shape}")
    return int((a & ~b).sum()), int((~a & b).sum())


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sample std, CI low, CI high): Student-t interval of the mean over the values
    (seeds); one value gives a zero-width interval and std 0."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_ci of no values")
    mean = float(v.mean())
    if v.size == 1:
        return mean, 0.0, mean, mean
    from scipy.stats import t

    std = float(v.std(ddof=1))
    half = float(t.ppf(0.5 + level / 2, v.size - 1)) * std / math.sqrt(v.size)
    return mean, std, mean - half, mean + half


def paired(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> dict[str, Any]:
    """McNemar over the seeds both ran, pooled: {only_a, only_b, p, per_seed_p}."""
    seeds = sorted(set(a) & set(b))
    counts = [discordant(a[s], b[s]) for s in seeds]
    only_a, only_b = sum(x for x, _ in counts), sum(y for _, y in counts)
    return {
        "only_a": only_a,
        "only_b": only_b,
        "p": mcnemar_exact(only_a, only_b),
        "per_seed_p": [mcnemar_exact(x, y) for x, y in counts],
    }
