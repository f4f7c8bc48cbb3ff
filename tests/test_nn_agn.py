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


@pytest.mark.parametrize("source", agn.NOISE_SOURCES)
def test_noise_is_std_scaled(source):
    torch.manual_seed(0)
    y = torch.randn(200, 500) * 3.0 + 1.0
    noisy = agn.add_noise(y, torch.tensor(0.2), source)
    noise = noisy - y
    measured = float(noise.std())
    assert abs(measured - 0.2 * float(y.std())) < 0.01 * measured
    assert abs(float(noise.mean())) < 0.01 * measured
    again = agn.add_noise(y, torch.tensor(0.2), source) - y
    assert abs(float(torch.corrcoef(torch.stack([noise.flatten(), again.flatten()]))[0, 1])) < 0.02


def test_pool_noise_is_deterministic_under_the_global_seed():
    y = torch.randn(4, 16)
    torch.manual_seed(3)
    a = agn.add_noise(y, torch.tensor(0.5))
    torch.manual_seed(3)
    assert torch.equal(agn.add_noise(y, torch.tensor(0.5)), a)
    with pytest.raises(ValueError, match="noise source"):
        agn.standard_noise(y, "uniform")


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


def test_fused_noise_matches_plain_autograd_values_and_gradients():
    y0 = torch.randn(8, 3, 5, 5) * 2.0 + 0.5
    weights = torch.randn(8, 3, 5, 5)
    results = []
    for fn in (lambda y, s: agn.add_noise(y, s, "randn"), agn.add_noise_reference):
        y = y0.clone().requires_grad_()
        sigma = torch.nn.Parameter(torch.tensor(0.3))
        torch.manual_seed(7)
        out = fn(y, sigma)
        (out * weights).sum().backward()
        results.append((out.detach(), y.grad, sigma.grad))
    (o1, gy1, gs1), (o2, gy2, gs2) = results
    torch.testing.assert_close(o1, o2)
    torch.testing.assert_close(gy1, gy2, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gs1, gs2, rtol=1e-4, atol=1e-4)


def test_pool_noise_gradients_match_plain_autograd_on_the_same_noise():
    y0 = torch.randn(6, 7) * 2.0
    weights = torch.randn(6, 7)
    y = y0.clone().requires_grad_()
    sigma = torch.nn.Parameter(torch.tensor(0.3))
    torch.manual_seed(11)
    out = agn.add_noise(y, sigma, "pool")
    (out * weights).sum().backward()
    torch.manual_seed(11)
    n, sign = agn.standard_noise(y0, "pool")
    y2 = y0.clone().requires_grad_()
    sigma2 = torch.nn.Parameter(torch.tensor(0.3))
    out2 = y2 + sign * n * torch.std(y2) * sigma2
    (out2 * weights).sum().backward()
    torch.testing.assert_close(out.detach(), out2.detach())
    torch.testing.assert_close(y.grad, y2.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sigma.grad, sigma2.grad, rtol=1e-4, atol=1e-5)


def test_std_mean_matches_torch_including_large_means():
    torch.manual_seed(4)
    for offset in (0.0, 3.0, 1e4):
        y = torch.randn(64, 16, 8, 8) * 2.0 + offset
        std, mean = agn._std_mean(y)
        assert std == pytest.approx(float(torch.std(y)), rel=1e-4)
        assert mean == pytest.approx(float(torch.mean(y)), rel=1e-4, abs=1e-4)
