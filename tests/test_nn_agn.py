"""AGN: noise magnitude, loss equation, gradients reach sigma."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hwflow.nn import agn


class _Layer:
    def __init__(self, sigma: float, ops: int) -> None:
        self.sigma = torch.nn.Parameter(torch.tensor(sigma))
        self.ops = ops


def test_noise_is_std_scaled():
    torch.manual_seed(0)
    y = torch.randn(200, 500) * 3.0 + 1.0
    noisy = agn.add_noise(y, torch.tensor(0.2))
    measured = float((noisy - y).std())
    assert abs(measured - 0.2 * float(y.std())) < 0.01 * measured


def test_loss_equation_and_clipping():
    torch.manual_seed(1)
    logits = torch.randn(4, 3)
    targets = torch.tensor([0, 1, 2, 0])
    layers = [_Layer(0.3, 100), _Layer(-0.9, 300)]  # |sigma| and the 0.5 clip both matter
    loss = agn.agn_loss(logits, targets, layers, lam=0.2, sigma_max=0.5)
    expected = F.cross_entropy(logits, targets) - 0.2 * (0.25 * 0.3 + 0.75 * 0.5)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert float(layers[0].sigma.grad) == pytest.approx(-0.2 * 0.25)  # rewards more noise
    assert float(layers[1].sigma.grad) == 0.0  # clipped: no push beyond sigma_max


def test_noise_gradient_reaches_sigma():
    torch.manual_seed(2)
    sigma = torch.nn.Parameter(torch.tensor(0.1))
    y = torch.randn(64, 10)
    agn.add_noise(y, sigma).square().sum().backward()
    assert sigma.grad is not None and float(sigma.grad) != 0.0
