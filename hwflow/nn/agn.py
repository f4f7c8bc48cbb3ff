"""Additive Gaussian noise (AGN): the differentiable surrogate for multiplier error.

The seed's method (Trommer et al., ICCAD 2022; defaults from its reference code):
- each approximate layer adds `randn_like(y) * std(y) * sigma_l` to its accumulator output
  `y` (already scaled to real units, before bias and batch norm). `std(y)` is the standard
  deviation over the whole output tensor of the current batch, as in the seed, and is not
  detached; noise is drawn only while training (or when a layer's `agn_eval_noise` is set,
  to measure accuracy under the learned noise).
- the loss rewards noise: `CE - lambda * sum_l (ops_l / sum ops) * min(|sigma_l|, sigma_max)`,
  so layers with many multiplications are pushed hardest towards tolerating error.
Defaults: lambda = 0.2, sigma_init = 0.1, sigma_max = 0.5.
Noise samples come from a fixed pool by default (see `standard_noise`; `randn` is the
plain per-step draw), an engineering choice that keeps AGN steps cheap on CPUs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

LAMBDA = 0.2
SIGMA_INIT = 0.1
SIGMA_MAX = 0.5


@dataclass(frozen=True)
class AGNSettings:
    lam: float = LAMBDA
    sigma_init: float = SIGMA_INIT
    sigma_max: float = SIGMA_MAX


class NoisyLayer(Protocol):
    sigma: torch.nn.Parameter

    @property
    def ops(self) -> int: ...


NOISE_SOURCES = ("pool", "randn")
POOL_SIZE = 1 << 23  # 8M samples, 32 MB
_POOL_SEED = 0x4A6E
_pools: dict[torch.device, Tensor] = {}


def noise_pool(device: torch.device | str = "cpu") -> Tensor:
    """A fixed pool of N(0, 1) samples (same in every process: resumed runs match), one
    copy per device."""
    device = torch.device(device)
    if device not in _pools:
        cpu = _pools.get(torch.device("cpu"))
        if cpu is None:
            cpu = torch.randn(POOL_SIZE, generator=torch.Generator().manual_seed(_POOL_SEED))
            _pools[torch.device("cpu")] = cpu
        _pools[device] = cpu.to(device)
    return _pools[device]


def standard_noise(like: Tensor, source: str = "pool") -> tuple[Tensor, float]:
    """N(0, 1) noise shaped like `like`, and a sign to apply to it.

    `randn`: fresh `randn_like` samples (sign +1). `pool`: a window of the fixed pool at a
    random offset with a random sign, drawn from the global RNG. Within one tensor the
    samples are distinct i.i.d. normals, exactly as randn gives; across steps the same
    values recur at shifted positions, which the network cannot exploit. It avoids the
    CPU normal generator (about 3.6 ns per sample, more than the rest of an AGN layer),
    so an AGN step costs little more than a QAT step (bench/train_step.py). Tensors larger
    than half the pool fall back to randn.
    """
    count = like.numel()
    if source == "randn" or count > POOL_SIZE // 2:
        return torch.randn_like(like), 1.0
    if source != "pool":
        raise ValueError(f"noise source: expected one of {NOISE_SOURCES}, got {source!r}")
    draw = torch.randint(0, 2 * (POOL_SIZE - count + 1), (1,)).item()
    offset, sign = draw // 2, (1.0 if draw % 2 else -1.0)
    window = noise_pool(like.device)[offset : offset + count].view(like.shape)
    return window.to(like.dtype), sign


def _std_mean(y: Tensor) -> tuple[float, float]:
    """Standard deviation (n - 1 denominator, like torch.std) and mean of all of y.

    From the sum and the sum of squares (two fast reductions; torch.std is ~7x slower on
    CPU), falling back to torch.std where the mean is so large that the difference
    s2 - s1^2 / n would lose precision.
    """
    flat = y.reshape(-1)
    count = flat.numel()
    s1 = float(flat.sum())
    s2 = float(torch.dot(flat, flat))
    mean = s1 / count
    var = max(s2 - s1 * mean, 0.0) / max(count - 1, 1)
    if mean * mean > 1e3 * var:
        return float(torch.std(y)), mean
    return math.sqrt(var), mean


class _AddNoise(torch.autograd.Function):
    """`y + n * std(y) * sigma` for standard normal noise n, with a fused backward.

    Autograd of the plain expression makes several full passes over y (products with the
    scalar, the std gradient); here the forward is one std, one mean and one add, and the
    backward one dot product (d/dc of y + c n is sum(g * n)) and one add for the std term.
    """

    @staticmethod
    def forward(ctx, y: Tensor, sigma: Tensor, source: str) -> Tensor:  # type: ignore[override]
        n, sign = standard_noise(y, source)
        std, mean = _std_mean(y)
        sig = sigma.detach().item()
        ctx.save_for_backward(y, n)
        ctx.stats = (std, mean, y.numel(), sign, sig)
        return torch.add(y, n, alpha=sign * std * sig)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        y, n = ctx.saved_tensors
        std, mean, count, sign, sig = ctx.stats
        # d loss / d (std * sigma)
        g_c = sign * float(torch.dot(grad.reshape(-1), n.reshape(-1)))
        grad_sigma = torch.tensor(g_c * std, dtype=grad.dtype)
        # d std / d y = (y - mean) / ((count - 1) * std): the seed does not detach std(y)
        k = g_c * sig / (max(count - 1, 1) * std) if std > 0 else 0.0
        grad_y = torch.add(grad, y, alpha=k).sub_(k * mean) if k else grad
        return grad_y, grad_sigma, None


def add_noise(y: Tensor, sigma: Tensor, source: str = "pool") -> Tensor:
    """`y + noise * std(y) * sigma` (std over the whole batch tensor, not detached);
    noise from `standard_noise(y, source)`."""
    return _AddNoise.apply(y.contiguous(), sigma, source)


def add_noise_reference(y: Tensor, sigma: Tensor) -> Tensor:
    """The same expression through plain autograd (tests compare the two)."""
    return y + torch.randn_like(y) * torch.std(y) * sigma


def noise_reward(layers: Sequence[NoisyLayer], sigma_max: float = SIGMA_MAX) -> Tensor:
    """`sum_l (ops_l / sum ops) * min(|sigma_l|, sigma_max)`, differentiable in the sigmas."""
    ops = [float(layer.ops) for layer in layers]
    weights = torch.tensor([o / sum(ops) for o in ops])
    sig = torch.stack([layer.sigma for layer in layers]).abs().clamp(max=sigma_max)
    return torch.dot(weights.to(sig), sig)


def agn_loss(
    logits: Tensor,
    targets: Tensor,
    layers: Sequence[NoisyLayer],
    lam: float = LAMBDA,
    sigma_max: float = SIGMA_MAX,
) -> Tensor:
    """Cross-entropy minus `lam` times the ops-weighted, clipped noise magnitudes."""
    return F.cross_entropy(logits, targets) - lam * noise_reward(layers, sigma_max)
