"""Quantization primitives: code ranges, exact zero, STE gradients, observers."""

from __future__ import annotations

import pytest
import torch

from hwflow.nn import quant


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("lo,hi", [(-1.0, 3.0), (0.0, 2.5), (0.2, 0.9), (-4.0, -0.5)])
def test_affine_params_cover_range_and_zero_is_exact(signed, lo, hi):
    scale, zp = quant.affine_params(lo, hi, signed)
    qmin, qmax = quant.act_range(signed)
    assert qmin <= zp <= qmax and isinstance(zp, int)
    x = torch.tensor([min(lo, 0.0), 0.0, max(hi, 0.0)])
    c = quant.quantize_centered(x, torch.tensor(scale), zp, signed)
    codes = c + zp
    assert codes.min() >= qmin and codes.max() <= qmax
    assert float(c[1]) == 0.0  # real zero is exactly the zero-point code
    torch.testing.assert_close(c * scale, x, atol=scale, rtol=0)


def test_unsigned_after_relu_has_zero_point_zero():
    assert quant.affine_params(0.0, 6.0, signed=False) == (6.0 / 255, 0)


def test_weight_quantization_symmetric_and_per_channel():
    w = torch.tensor([[0.5, -1.0], [0.02, 0.01]])
    wq, s = quant.quantize_weight(w, per_channel=False)
    assert float(s) == pytest.approx(1.0 / 127)
    assert wq.min() >= -127 and wq.max() <= 127 and float(wq[0, 1]) == -127
    wq, s = quant.quantize_weight(w, per_channel=True)
    assert s.shape == (2,) and float(wq[1, 0]) == 127 and float(wq[0, 1]) == -127


def test_straight_through_gradient_zero_outside_range():
    x = torch.tensor([-10.0, 0.3, 0.7, 10.0], requires_grad=True)
    c = quant.quantize_centered(x, torch.tensor(0.01), 0, signed=False)
    c.sum().backward()
    assert x.grad.tolist() == [0.0, 100.0, 100.0, 0.0]


def test_observers():
    ema = quant.ActObserver("ema", momentum=0.5)
    ema.observe(torch.tensor([0.0, 2.0]))
    ema.observe(torch.tensor([-2.0, 4.0]))
    assert (float(ema.lo), float(ema.hi)) == (-1.0, 3.0)
    mm = quant.ActObserver("minmax")
    mm.observe(torch.tensor([0.0, 2.0]))
    mm.observe(torch.tensor([-2.0, 1.0]))
    assert (float(mm.lo), float(mm.hi)) == (-2.0, 2.0)
    with pytest.raises(ValueError, match="observer"):
        quant.ActObserver("percentile")


def test_round_clamp_matches_round_half_even_formula():
    torch.manual_seed(0)
    v = torch.cat([torch.randn(10000) * 300, torch.arange(-300, 300) + 0.5])
    for offset, lo, hi in [(0, 0, 255), (17, 0, 255), (-5, -128, 127), (0, -127, 127)]:
        expected = torch.clamp(torch.round(v) + offset, lo, hi) - offset
        assert torch.equal(quant.round_clamp_ste(v, lo, hi, offset), expected)


def test_round_clamp_equals_fake_quantize_values_and_gradients():
    """The vectorized round-and-clamp is torch's fake-quantize (scale 1) bit for bit,
    gradient mask included, at the half-way points and the range edges."""
    torch.manual_seed(1)
    far = torch.tensor([1e30, -1e30, 3e7 + 2, -3e7, 2.0**24 + 2, -(2.0**24) - 2])
    base = torch.cat([torch.randn(5000) * 300, torch.arange(-300, 300) + 0.5, far])
    for offset, lo, hi in [(0, 0, 255), (17, 0, 255), (-5, -128, 127), (0, -127, 127)]:
        v1 = base.clone().requires_grad_(True)
        v2 = base.clone().requires_grad_(True)
        got = quant.round_clamp_ste(v1, lo, hi, offset)
        want = torch.fake_quantize_per_tensor_affine(v2, 1.0, offset, lo, hi)
        assert torch.equal(got, want)
        g = torch.randn(base.shape)
        got.backward(g)
        want.backward(g)
        assert torch.equal(v1.grad, v2.grad)
