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
"""

from __future__ import annotations

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


def add_noise(y: Tensor, sigma: Tensor) -> Tensor:
    """`y + randn_like(y) * std(y) * sigma` (std over the whole batch tensor)."""
    return y + torch.randn_like(y) * torch.std(y) * sigma


def noise_reward(layers: Sequence[NoisyLayer], sigma_max: float = SIGMA_MAX) -> Tensor:
    """`sum_l (ops_l / sum ops) * min(|sigma_l|, sigma_max)`, differentiable in the sigmas."""
    ops = torch.tensor([float(layer.ops) for layer in layers])
    weights = ops / ops.sum()
    sig = torch.stack([layer.sigma.abs().clamp(max=sigma_max) for layer in layers])
    return (weights.to(sig) * sig).sum()


def agn_loss(
    logits: Tensor,
    targets: Tensor,
    layers: Sequence[NoisyLayer],
    lam: float = LAMBDA,
    sigma_max: float = SIGMA_MAX,
) -> Tensor:
    """Cross-entropy minus `lam` times the ops-weighted, clipped noise magnitudes."""
    return F.cross_entropy(logits, targets) - lam * noise_reward(layers, sigma_max)
