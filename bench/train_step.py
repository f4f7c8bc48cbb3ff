"""Cost of one training step per layer mode, side by side (run: python -m bench.train_step).

The AGN surrogate should cost at most 1.15x a quant (QAT) step. For each model, float,
quant, agn (and approx with the exact table, for scale) steps run interleaved in the same
rounds, best of several rounds, so machine load hits all alike; the ratios to the quant
step are printed. `--approx` also times the approximate retraining step (approx mode: the
forward through the multiplier tables, straight-through gradients) of ResNet-8 and
ResNet-20 on Fashion-MNIST-sized inputs at the retraining batch against the float step of
the same network: the target is at most 2.5x. Times are process CPU time by default
(`--clock cpu`, stable on a shared machine; use `--threads 1` to make them comparable to
wall time) or wall time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import hwflow.nn as hn
from bench._common import Row, best_times
from hwflow.multipliers.table import exact_table
from hwflow.nn.agn import agn_loss
from hwflow.nn.models import build_model
from hwflow.nn.run import torch_threads

CASES = [
    # (label, model, input shape (C, H, W), batch)
    ("digits_cnn, batch 32", "digits_cnn", (1, 8, 8), 32),
    ("lenet5, batch 128", "lenet5", (1, 28, 28), 128),
    ("resnet20, batch 64", "resnet20", (3, 32, 32), 64),
]
# The approximate retraining step against the float step (target: at most 2.5x).
RETRAIN_CASES = [
    ("resnet8, batch 128", "resnet8", (1, 28, 28), 128),
    ("resnet20, batch 128", "resnet20", (1, 28, 28), 128),
]
RETRAIN_TARGET = 2.5


def step_fn(model: torch.nn.Module, mode: str, x: torch.Tensor, y: torch.Tensor) -> Callable:
    layers = [layer for _, layer in hn.approx_layers(model)]
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> None:
        hn.set_mode(model, mode)
        logits = model(x)
        agn = mode == "agn"
        loss = agn_loss(logits, y, layers) if agn else F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--models", nargs="*", default=[c[1] for c in CASES])
    parser.add_argument(
        "--approx", action="store_true", help="also time approx mode, and the retraining step"
    )
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--noise", choices=["pool", "randn"], default="pool", help="AGN noise")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} time, "
        f"AGN noise {args.noise}"
    )
    print(f"{'case':<24} {'mode':<7} {'ms/step':>9} {'vs quant':>9}")
    for label, name, shape, batch in CASES:
        if name not in args.models:
            continue
        times = case_times(name, shape, batch, args.rounds, clock, args.approx, args.noise)
        for m, t in times.items():
            print(f"{label:<24} {m:<7} {t * 1e3:>9.2f} {t / times['quant']:>8.2f}x")
    if not args.approx:
        return
    print(f"\napproximate retraining step (target <= {RETRAIN_TARGET}x the float step)")
    print(f"{'case':<24} {'mode':<7} {'ms/step':>9} {'vs float':>9}")
    for label, name, shape, batch in RETRAIN_CASES:
        times = case_times(name, shape, batch, args.rounds, clock, modes=("float", "approx"))
        for m, t in times.items():
            print(f"{label:<24} {m:<7} {t * 1e3:>9.2f} {t / times['float']:>8.2f}x")


def case_times(
    name: str,
    shape: tuple[int, ...],
    batch: int,
    rounds: int,
    clock: Callable[[], float],
    approx: bool = False,
    noise: str = "pool",
    modes: tuple[str, ...] = ("float", "quant", "agn"),
) -> dict[str, float]:
    """Best step time per mode for one model, modes interleaved in the same rounds
    (approx mode, with the exact table in every layer, where `approx` or `modes` ask)."""
    model = build_model(name, 10, shape[0])
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    hn.approximate(model, x[:2])
    hn.calibrate(model, [x])
    model.train()
    hn.set_observing(model, False)
    for _, layer in hn.approx_layers(model):
        layer.agn_noise = noise
    modes = [*modes, "approx"] if approx and "approx" not in modes else list(modes)
    if "approx" in modes:
        for _, layer in hn.approx_layers(model):
            layer.set_table(exact_table(layer.signed), layer.signed)
    return best_times({m: step_fn(model, m, x, y) for m in modes}, rounds, clock)


def rows(quick: bool = False) -> list[Row]:
    """The `make bench` lines: AGN step / QAT step per model (one thread, CPU time)."""
    torch.manual_seed(0)
    out = []
    for label, name, shape, batch in CASES[:1] if quick else CASES:
        with torch_threads(1):  # CPU time on one thread: robust to a loaded machine
            t = case_times(name, shape, batch, 5, time.process_time)
        r = t["agn"] / t["quant"]
        out.append(Row("train step", f"AGN step vs QAT step: {label}", r, "x", "<= 1.15x",
                       r <= 1.15))  # fmt: skip
    for label, name, shape, batch in RETRAIN_CASES[:1] if quick else RETRAIN_CASES:
        with torch_threads(1):
            t = case_times(name, shape, batch, 3, time.process_time, modes=("float", "approx"))
        r = t["approx"] / t["float"]
        target = f"<= {RETRAIN_TARGET}x"
        what = f"approx retraining step vs float step: {label}"
        out.append(Row("train step", what, r, "x", target, r <= RETRAIN_TARGET))
    return out


if __name__ == "__main__":
    main()
