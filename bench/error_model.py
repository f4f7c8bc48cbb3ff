"""Bench: the error model over a synthetic library of 500 multipliers and 20 layers.

Prints wall and CPU time of each model variant (goal: < 10 s on 2 cores). Activations
are uniform (no ReLU zeros), the worst case for the `sampled` model. Tables are
random perturbations of the exact product; layers have conv-like fan-ins and row and
column samples of the sizes `hwflow assign` records by default.

    .venv/bin/python bench/error_model.py [--multipliers 500] [--layers 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench._common import Row
from hwflow.assign.error_model import ERROR_MODELS, predict
from hwflow.assign.stats import DEFAULT_COLS, DEFAULT_ROWS, layer_stats_from_arrays
from hwflow.multipliers.table import exact_table


def synthetic_library(
    n: int, mixed: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    signed = np.arange(n) % 2 == 0 if mixed else np.ones(n, dtype=bool)
    tables = np.empty((n, 256, 256), dtype=np.int32)
    for i, s in enumerate(signed):
        noise = rng.integers(-200, 200, size=(256, 256)) * (rng.random((256, 256)) < 0.3)
        tables[i] = exact_table(bool(s)) + noise
    return tables, signed


def synthetic_layers(n: int, mixed: bool, rng: np.random.Generator) -> list:
    layers = []
    for i in range(n):
        k = int(rng.choice([27, 144, 288, 576]))
        signed = i % 2 == 0 if mixed else True
        x = rng.integers(-128 if signed else 0, 128, size=(1, 2048, k))
        w = rng.integers(-128, 128, size=(1, k, 64))
        acc = np.einsum("gmk,gkn->gmn", x[:, :256], w)
        layers.append(
            layer_stats_from_arrays(
                f"l{i}",
                x,
                w,
                acc,
                signed,
                ops=x.size * 64,
                rows=DEFAULT_ROWS,
                cols=DEFAULT_COLS,
                rng=rng,
            )
        )
    return layers


def timings(multipliers: int, layers: int, mixed: bool) -> dict[str, float]:
    """Wall seconds of each model variant over a synthetic library; prints them."""
    rng = np.random.default_rng(0)
    tables, signed = synthetic_library(multipliers, mixed, rng)
    stats = synthetic_layers(layers, mixed, rng)
    out = {}
    for model in ERROR_MODELS:
        t0, c0 = time.perf_counter(), time.process_time()
        p = predict(tables, signed, stats, model)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        pairs = int(np.isfinite(p.std).sum())
        print(
            f"{model:8s} {multipliers} multipliers x {layers} layers "
            f"({pairs} matching pairs): {dt:.2f} s wall, {cpu:.2f} s CPU"
        )
        out[model] = dt
    return out


def rows(quick: bool = False) -> list[Row]:
    """The `make bench` lines: 500 multipliers x 20 layers per model variant."""
    n = 100 if quick else 500
    out = []
    for model, t in timings(n, 20, False).items():
        fast = model != "channel"  # the per-channel variant is kept only for comparison
        target, met = ("< 10 s", t < 10) if fast else ("(comparison)", None)
        out.append(Row("error model", f"{model} model, {n} multipliers x 20 layers", t, "s",
                       target, met))  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--multipliers", type=int, default=500)
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--mixed", action="store_true", help="half signed, half unsigned")
    args = ap.parse_args()
    timings(args.multipliers, args.layers, args.mixed)


if __name__ == "__main__":
    main()
