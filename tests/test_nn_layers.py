"""Approximate layers: integer path vs fake-quant, approx == quant bit for bit, lookup order."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hwflow.nn as hn
from hwflow.errors import AssignmentError, HwflowError
from hwflow.multipliers.table import exact_table, operand_values

CONV_CASES = [
    # (cin, cout, k, stride, padding, dilation, groups, bias)
    (3, 4, 3, 1, 1, 1, 1, True),
    (4, 6, 3, 2, 2, 1, 2, False),
    (4, 4, 3, 1, 2, 2, 4, True),
    (2, 3, (3, 2), (2, 1), (1, 0), 1, 1, True),
]


def _quantized(model: nn.Module, x: torch.Tensor, operands: str = "auto") -> nn.Module:
    hn.approximate(model, x, operands=operands)
    hn.calibrate(model, [x])
    hn.set_mode(model, "quant")
    return model.eval()


def _conv_input(signed: bool, shape=(2, 4, 7, 7)) -> torch.Tensor:
    x = torch.randn(*shape)
    return x if signed else x.abs() + 0.1  # strictly positive: zero-point 0 for unsigned


def _noncommutative(signed: bool) -> np.ndarray:
    """A table whose lookup order matters: table[a, b] != table[b, a] for most pairs."""
    v = operand_values(signed).astype(np.int64)
    t = np.multiply.outer(v, v) + 3 * v[:, None] - 2 * v[None, :] + 1
    return t.astype(np.int32)


def _fake_quant_reference(layer, x: torch.Tensor) -> torch.Tensor:
    """Independent fake-quant forward from the layer's calibrated parameters."""
    signed = layer.signed
    sx, zp = layer.act_obs.params(signed)
    lo, hi = (-128, 127) if signed else (0, 255)
    xq = (torch.clamp(torch.round(x / sx) + zp, lo, hi) - zp) * sx
    w = layer.weight.detach()
    sw = w.abs().max() / 127
    wq = torch.round(w / sw) * sw
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(
            xq, wq, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups
        )
    return F.linear(xq, wq, layer.bias)


def _naive_conv_acc(layer, x: torch.Tensor, table: np.ndarray) -> np.ndarray:
    """Loop-by-loop conv through `table`, padding holding the zero-point code.

    Returns the output as the layer computes it (corrected, scaled, biased)."""
    signed = layer.signed
    sx, zp = layer.act_obs.params(signed)
    lo, hi = (-128, 127) if signed else (0, 255)
    q = torch.clamp(torch.round(x / sx) + zp, lo, hi).to(torch.int64).numpy()
    w = layer.weight.detach()
    sw = float(w.abs().max() / 127)
    wi = torch.round(w / sw).to(torch.int64).numpy()
    n, cin, h, wd = q.shape
    cout, cg, kh, kw = wi.shape
    (sh, sww), (ph, pw), (dh, dw), g = layer.stride, layer.padding, layer.dilation, layer.groups
    qp = np.full((n, cin, h + 2 * ph, wd + 2 * pw), zp, dtype=np.int64)
    qp[:, :, ph : ph + h, pw : pw + wd] = q
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sww + 1
    ng = cout // g
    out = np.zeros((n, cout, ho, wo), dtype=np.float64)
    for b, co, i, j in itertools.product(range(n), range(cout), range(ho), range(wo)):
        grp = co // ng
        acc = 0
        wsum = 0
        for ci, r, s in itertools.product(range(cg), range(kh), range(kw)):
            a = qp[b, grp * cg + ci, i * sh + r * dh, j * sww + s * dw]
            wv = wi[co, ci, r, s]
            if signed:
                acc += table[a & 0xFF, wv & 0xFF]
            else:
                acc += int(np.sign(wv)) * table[a, abs(wv)]
            wsum += wv
        out[b, co, i, j] = (acc - zp * wsum) * sx * sw
    if layer.bias is not None:
        out += layer.bias.detach().numpy().reshape(1, -1, 1, 1)
    return out


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("signed", [True, False])
def test_conv_integer_path_matches_fake_quant_and_approx_equals_quant(case, signed):
    torch.manual_seed(0)
    cin, cout, k, stride, padding, dilation, groups, bias = case
    conv = nn.Conv2d(cin, cout, k, stride, padding, dilation, groups, bias)
    x = _conv_input(signed, (2, cin, 7, 7))
    model = _quantized(nn.Sequential(conv), x)
    layer = model[0]
    assert layer.signed is signed
    y_quant = model(x)
    ref = _fake_quant_reference(layer, x)
    torch.testing.assert_close(y_quant, ref, rtol=1e-5, atol=1e-5)
    # the trace's integer accumulator times the scales reproduces the output
    tr = hn.trace(model, x)["0"]
    corrected = tr.acc_exact - tr.zero_point * tr.w_int.sum(dim=1, keepdim=True)
    g, m, ng = corrected.shape
    n = x.shape[0]
    ho, wo = y_quant.shape[2:]
    rebuilt = corrected.reshape(g, n, ho * wo, ng).permute(1, 0, 3, 2).reshape(n, -1, ho, wo)
    rebuilt = rebuilt.float() * tr.x_scale * tr.w_scale
    if bias:
        rebuilt = rebuilt + layer.bias.detach().reshape(1, -1, 1, 1)
    torch.testing.assert_close(rebuilt, y_quant, rtol=1e-5, atol=1e-5)
    assert torch.equal(tr.acc, tr.acc_exact)
    # approx mode with the exact table equals quant mode bit for bit
    hn.apply_tables(model, {"0": (exact_table(signed), signed)})
    assert layer.mode == "approx"
    assert torch.equal(model(x), y_quant)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("case", CONV_CASES[:3])
def test_conv_noncommutative_table_matches_naive_loop(case, signed):
    torch.manual_seed(1)
    cin, cout, k, stride, padding, dilation, groups, bias = case
    conv = nn.Conv2d(cin, cout, k, stride, padding, dilation, groups, bias)
    x = _conv_input(signed, (2, cin, 5, 5))
    if not signed:
        x = x - 0.3  # unsigned operands with a non-zero zero-point: padding code != 0
    model = _quantized(nn.Sequential(conv), x, operands="signed" if signed else "unsigned")
    layer = model[0]
    if not signed:
        assert layer.act_obs.params(False)[1] > 0
    table = _noncommutative(signed)
    hn.apply_tables(model, {"0": (table, signed)})
    y = model(x).detach().double().numpy()
    expected = _naive_conv_acc(layer, x, table)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)
    # the transposed table gives a different answer: the test can see a transposition
    assert not np.allclose(_naive_conv_acc(layer, x, table.T.copy()), expected, atol=1e-3)


@pytest.mark.parametrize("signed", [True, False])
def test_linear_noncommutative_table_and_trace(signed):
    torch.manual_seed(2)
    lin = nn.Linear(6, 3)
    x = torch.randn(5, 6) if signed else torch.rand(5, 6)
    model = _quantized(nn.Sequential(lin), x, operands="signed" if signed else "unsigned")
    layer = model[0]
    y_quant = model(x)
    torch.testing.assert_close(y_quant, _fake_quant_reference(layer, x), rtol=1e-5, atol=1e-5)
    table = _noncommutative(signed)
    hn.apply_tables(model, {"0": (table, signed)})
    y = model(x)
    sx, zp = layer.act_obs.params(signed)
    lo, hi = (-128, 127) if signed else (0, 255)
    q = torch.clamp(torch.round(x / sx) + zp, lo, hi).to(torch.int64)
    sw = float(lin.weight.detach().abs().max() / 127)
    wi = torch.round(lin.weight.detach() / sw).to(torch.int64)
    acc = torch.zeros(5, 3, dtype=torch.int64)
    for m, n, k in itertools.product(range(5), range(3), range(6)):
        a, w = int(q[m, k]), int(wi[n, k])
        if signed:
            acc[m, n] += int(table[a & 0xFF, w & 0xFF])
        else:
            acc[m, n] += int(np.sign(w)) * int(table[a, abs(w)])
    expected = (acc - zp * wi.sum(1)).double() * sx * sw + lin.bias.detach().double()
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-4)
    tr = hn.trace(model, x)["0"]
    assert tr.x_int.shape == (1, 5, 6) and tr.w_int.shape == (1, 6, 3)
    assert torch.equal(tr.x_int[0], q) and torch.equal(tr.w_int[0], wi.t())
    assert torch.equal(tr.acc[0], acc)
    assert torch.equal(tr.acc_exact[0], q @ wi.t())


def test_trace_grouped_conv_columns_are_output_channels():
    torch.manual_seed(3)
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2)
    x = torch.rand(1, 4, 4, 4)
    model = _quantized(nn.Sequential(conv), x)
    tr = hn.trace(model, x)["0"]
    assert tr.x_int.shape == (2, 16, 18) and tr.w_int.shape == (2, 18, 3)
    sw = conv.weight.detach().abs().max() / 127
    wi = torch.round(conv.weight.detach() / sw).to(torch.int64)
    for g, n in itertools.product(range(2), range(3)):
        assert torch.equal(tr.w_int[g, :, n], wi[g * 3 + n].flatten())
    assert tr.x_int.min() >= 0 and tr.x_int.max() <= 255 and not tr.signed


def test_approx_mode_gradients_are_the_exact_straight_through_ones():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))
    x = torch.rand(3, 2, 4, 4)
    _quantized(model, x).train()
    hn.set_observing(model, False)

    def grads():
        model.zero_grad()
        model(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    g_quant = grads()
    names = [n for n, _ in hn.approx_layers(model)]
    hn.apply_tables(model, {n: (exact_table(False), False) for n in names})
    g_approx = grads()
    assert len(g_quant) == len(g_approx) == 4
    for a, b in zip(g_quant, g_approx, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_ops_fan_in_and_auto_signedness():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2), nn.Flatten(),
        nn.Linear(8 * 3 * 3, 5),
    )  # fmt: skip
    x = torch.randn(2, 1, 8, 8)
    info = hn.approximate(model, x)
    assert [(i.name, i.fan_in, i.ops, i.signed) for i in info] == [
        ("0", 9, 9 * 4 * 64, None),
        ("2", 36, 36 * 8 * 9, None),
        ("4", 72, 72 * 5, None),
    ]
    info = hn.calibrate(model, [x])
    # raw randn input: signed; after ReLU: unsigned; the linear sees a signed conv output
    assert [i.signed for i in info] == [True, False, True]


def test_signedness_mismatch_unknown_layer_and_uncalibrated_are_clear_errors():
    model = nn.Sequential(nn.Linear(4, 2))
    x = torch.rand(3, 4)
    hn.approximate(model, x)
    with pytest.raises(HwflowError, match="calibrat"):
        hn.set_mode(model, "quant")
        model(x)
    hn.calibrate(model, [x])
    with pytest.raises(AssignmentError, match="signed multiplier cannot serve"):
        hn.apply_tables(model, {"0": (exact_table(True), True)})
    with pytest.raises(AssignmentError, match="unknown layer 'nope'"):
        hn.apply_tables(model, {"nope": (exact_table(False), False)})
    with pytest.raises(HwflowError, match="float mode"):
        hn.set_mode(model, "float")
        hn.trace(model, x)


def test_agn_mode_noise_only_while_training():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(8, 4))
    x = torch.rand(16, 8)
    _quantized(model, x)
    y_quant = model(x)
    hn.set_mode(model, "agn")
    assert torch.equal(model(x), y_quant)  # eval: no noise
    model.train()
    hn.set_observing(model, False)
    assert not torch.equal(model(x), y_quant)


@pytest.mark.parametrize("signed", [True, False])
def test_per_channel_weights_integer_path(signed):
    torch.manual_seed(6)
    conv = nn.Conv2d(3, 4, 3, padding=1, groups=1)
    with torch.no_grad():
        conv.weight.mul_(torch.tensor([1.0, 0.01, 5.0, 0.3]).reshape(4, 1, 1, 1))
    x = _conv_input(signed, (2, 3, 5, 5))
    model = nn.Sequential(conv)
    hn.approximate(model, x, per_channel=True)
    hn.calibrate(model, [x])
    hn.set_mode(model, "quant")
    model.eval()
    y_quant = model(x)
    tr = hn.trace(model, x)["0"]
    assert tr.w_scale.shape == (4,)
    # every output channel uses its full int8 range
    assert tr.w_int.abs().amax(dim=(0, 1)).tolist() == [127, 127, 127, 127]
    corrected = tr.acc_exact - tr.zero_point * tr.w_int.sum(dim=1, keepdim=True)
    rebuilt = corrected[0].reshape(2, 25, 4).permute(0, 2, 1).reshape(2, 4, 5, 5)
    rebuilt = rebuilt.float() * (tr.x_scale * tr.w_scale).reshape(1, 4, 1, 1)
    rebuilt = rebuilt + conv.bias.detach().reshape(1, 4, 1, 1)
    torch.testing.assert_close(rebuilt, y_quant, rtol=1e-5, atol=1e-5)
    hn.apply_tables(model, {"0": (exact_table(signed), signed)})
    assert torch.equal(model(x), y_quant)


def test_approximate_skips_named_layers_and_shares_parameters():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
    weight = model[0].weight
    info = hn.approximate(model, torch.rand(1, 1, 4, 4), skip=["2"])
    assert [i.name for i in info] == ["0"]
    assert type(model[2]) is nn.Linear and model[0].weight is weight
