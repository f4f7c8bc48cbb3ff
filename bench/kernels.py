"""Table-matmul kernels vs a float32 matmul of the same shape (run: python -m bench.kernels).

For each im2col shape, every algorithm runs in the same rounds as torch.mm on float32
(interleaved, best of several rounds, so machine load hits all alike) and prints its
time ratio to float32, plus the memory of its prepared per-weight table. Results are
checked bit-exact against the exact integer product (exact table) before timing.

Measured 2026-11-25 on the 2-core AMD EPYC (Zen 4, AVX-512) dev VM, shared with other
jobs, so primarily with `--threads 1 --clock cpu` (CPU time is robust to that load):

    ratio to float32 matmul           M=131072,K=144,N=16  M=8192,K=576,N=64  M=23040,K=144,N=32
    float32 matmul (ms)                     17.6                9.0                4.1
    compiled, prepared (int64 x)             1.27               2.32               1.67
    compiled, incl. prepare                  1.26               2.84               1.73
    approx_matmul fwd, float32 x             1.19               2.15               1.47
    compiled, unsigned sign-magnitude        1.49               3.03               2.10
    torch embedding_bag (fallback)           4.32              10.76               3.03
    prepared table (compiled / fallback)   1.1 / 2.3 MB       18 / 36 MB        2.3 / 4.5 MB

Default (2 threads, wall clock, load ~3): compiled prepared 0.97 / 1.75 / 1.07, incl.
prepare 1.22 / 2.42 / 1.60, fallback 5.7 / 11.2 / 4.3; these scatter with the load.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from bench._common import Row, best_times
from hwflow.multipliers.table import exact_table
from hwflow.nn import kernels
from hwflow.nn.run import torch_threads

# (label, M, K, N): ResNet-20/CIFAR layers at batch 128 and the digits CNN's widest conv
# over the 360-image test set.
SHAPES = [
    ("resnet20 stage1 conv (batch 128)", 131072, 144, 16),
    ("resnet20 stage3 conv (batch 128)", 8192, 576, 64),
    ("digits conv2 (360 images)", 23040, 144, 32),
]


def bench_shape(
    m: int, k: int, n: int, rounds: int, clock: Callable[[], float], seed: int = 0
) -> list[tuple[str, float, float, int]]:
    """[(algorithm, seconds, ratio to float32, prepared bytes)] for one shape."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.integers(-128, 128, (m, k)))
    w = torch.from_numpy(rng.integers(-127, 128, (k, n)))
    table = exact_table(True)
    xf, wf = x.float(), w.float()
    compiled = kernels.prepare(w, table, backend="compiled")
    fallback = kernels.prepare(w, table, backend="torch")
    # Unsigned multiplier: uint8 activations, sign-magnitude weights.
    xu = x + 128
    unsigned = kernels.prepare(w, exact_table(False), True, backend="compiled")
    checks = [(compiled, x, x @ w), (fallback, x, x @ w), (unsigned, xu, xu @ w)]
    for p, xs, exact in checks:
        if not torch.equal(p.matmul(xs).to(torch.int64), exact):
            raise SystemExit(f"bench: {p.backend} kernel is not bit-exact at {(m, k, n)}")
    fns = {
        "float32 matmul": lambda: torch.mm(xf, wf),
        "compiled, prepared": lambda: compiled.matmul(x),
        "compiled, incl. prepare": lambda: kernels.table_matmul(x, w, table, backend="compiled"),
        "approx_matmul fwd, float32 x": lambda: kernels.approx_matmul(
            xf, wf, table, prepared=compiled
        ),
        "compiled, unsigned sign-magn.": lambda: unsigned.matmul(xu),
        "torch embedding_bag, prepared": lambda: fallback.matmul(x),
    }
    times = best_times(fns, rounds, clock)
    base = times["float32 matmul"]
    sizes = {
        "float32 matmul": 0,
        "compiled, prepared": compiled.nbytes,
        "compiled, incl. prepare": compiled.nbytes,
        "approx_matmul fwd, float32 x": compiled.nbytes,
        "compiled, unsigned sign-magn.": unsigned.nbytes,
        "torch embedding_bag, prepared": fallback.nbytes,
    }
    return [(name, t, t / base, sizes[name]) for name, t in times.items()]


def rows(quick: bool = False) -> list[Row]:
    """The `make bench` lines: compiled kernel (prepared weights) vs float32 matmul, one
    thread, CPU time."""
    out = []
    for label, m, k, n in SHAPES[-1:] if quick else SHAPES:
        # one thread, CPU time: the figure that survives a shared, loaded machine
        with torch_threads(1):
            measured = bench_shape(m, k, n, 5, time.process_time)
        ratios = {name: ratio for name, _, ratio, _ in measured}
        for name in ("compiled, prepared", "compiled, unsigned sign-magn."):
            r = ratios[name]
            out.append(Row("kernel", f"{name}: {label}", r, "x", "<= 3x", r <= 3))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time, or process CPU time (robust on a shared machine; sums all threads)",
    )
    args = ap.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"best {args.clock} time of {args.rounds} rounds"
    )
    for label, m, k, n in SHAPES:
        print(f"\n{label}: M={m} K={k} N={n}")
        print(f"  {'algorithm':32s} {'ms':>9s} {'x float32':>10s} {'table MB':>9s}")
        for name, t, ratio, nbytes in bench_shape(m, k, n, args.rounds, clock):
            print(f"  {name:32s} {t * 1e3:9.2f} {ratio:10.2f} {nbytes / 2**20:9.2f}")


if __name__ == "__main__":
    main()
