"""Retraining gradients from the multiplier table's own slopes (`gradient="table"`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwflow.multipliers.table import exact_table, operand_values
from hwflow.nn import kernels
from hwflow.nn.kernels import approx_matmul, table_gradients, table_matmul, table_slopes


def _value_grid(signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) operand values at every table position (code indexing)."""
    v = operand_values(signed).astype(np.int64)
    return np.broadcast_to(v[:, None], (256, 256)), np.broadcast_to(v[None, :], (256, 256))


def _operands(rng, m, k, n, sign_magnitude):
    if sign_magnitude:  # uint8 activations, sign-magnitude weights (zeros and -128 included)
        x = rng.integers(0, 256, (m, k))
        w = rng.integers(-128, 129, (k, n))
        w.flat[:3] = (0, -128, 128)
    else:
        x = rng.integers(-128, 128, (m, k))
        w = rng.integers(-128, 128, (k, n))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(w, dtype=torch.float32)


@pytest.mark.parametrize("signed", [True, False])
def test_exact_table_slopes_are_the_other_operand(signed):
    a, b = _value_grid(signed)
    da, db = table_slopes(exact_table(signed), signed)
    assert np.array_equal(da, b.astype(np.float32)) and np.array_equal(db, a.astype(np.float32))


@pytest.mark.parametrize("signed", [True, False])
def test_slopes_of_simple_tables(signed):
    """Affine in each operand: exact slopes everywhere (edges too). Quadratic: the
    symmetric window's least-squares slope is the derivative at its centre."""
    a, b = _value_grid(signed)
    affine = 3 * a * b + 5 * a - 7 * b + 11
    da, db = table_slopes(affine.astype(np.int32), signed)
    assert np.array_equal(da, (3 * b + 5).astype(np.float32))
    assert np.array_equal(db, (3 * a - 7).astype(np.float32))
    quad = a * a + a * b - 2 * b * b
    da, db = table_slopes(quad.astype(np.int32), signed, window=3)
    v = operand_values(signed)
    inner = (v >= v.min() + 3) & (v <= v.max() - 3)
    rows, cols = np.ix_(inner, inner)
    assert np.array_equal(da[rows, cols], (2 * a + b)[rows, cols].astype(np.float32))
    assert np.array_equal(db[rows, cols], (a - 4 * b)[rows, cols].astype(np.float32))


def test_slopes_see_through_flat_steps():
    """A staircase along a (flat over 4 codes): a one-code difference would read 0 on
    the flats and 4b at each step; the window's slope stays near the trend b."""
    a, b = _value_grid(False)
    stairs = (a // 4 * 4) * b
    da, _ = table_slopes(stairs.astype(np.int32), False)
    inner = (a[:, 0] >= 4) & (a[:, 0] <= 251)
    ratio = da[inner][:, 1:] / b[inner][:, 1:]
    assert ratio.min() > 0.7 and ratio.max() < 1.3
    one_code = np.diff(stairs.astype(np.int64), axis=0)[inner[:-1]][:, 1:]
    assert (one_code == 0).mean() > 0.7  # what an unsmoothed difference would give


@pytest.mark.parametrize("sign_magnitude", [False, True])
def test_forward_is_bit_exact_and_exact_table_matches_ste(sign_magnitude):
    rng = np.random.default_rng(1)
    x, w = _operands(rng, 37, 19, 11, sign_magnitude)
    table = rng.integers(-30000, 30000, (256, 256)).astype(np.int32)
    ref = table_matmul(x.long(), w.long(), table, sign_magnitude=sign_magnitude)
    for gradient in ("ste", "table"):
        out = approx_matmul(x, w, table, sign_magnitude, gradient=gradient)
        assert torch.equal(out.long(), ref.long())
    # Integer-valued upstream gradients keep every float sum exact: equality is exact.
    grad = torch.tensor(rng.integers(-3, 4, (37, 11)), dtype=torch.float32)
    exact = exact_table(not sign_magnitude)
    got = {}
    for gradient in ("ste", "table"):
        xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
        approx_matmul(xg, wg, exact, sign_magnitude, gradient=gradient).backward(grad)
        got[gradient] = (xg.grad, wg.grad)
    assert torch.equal(got["ste"][0], got["table"][0])
    assert torch.equal(got["ste"][1], got["table"][1])


@pytest.mark.parametrize("sign_magnitude", [False, True])
def test_table_gradient_matches_finite_differences(sign_magnitude):
    """gradcheck with unit steps: for a table affine in each operand, moving one operand
    by +-1 changes the forward by exactly the backward's gradient."""
    signed = not sign_magnitude
    a, b = _value_grid(signed)
    table = (2 * a * b - 3 * a + 5 * b).astype(np.int32)
    rng = np.random.default_rng(2)
    x, w = _operands(rng, 6, 5, 4, sign_magnitude)
    x = x.clamp(1, 254) if sign_magnitude else x.clamp(-127, 126)  # room for +-1
    w = w.clamp(-127, 127) if not sign_magnitude else w
    w[w == 0] = 1  # sign(w) jumps at 0: no unit-step derivative there
    w[w.abs() == 1] = 2 * torch.sign(w[w.abs() == 1])
    grad = torch.tensor(rng.integers(-2, 3, (6, 4)), dtype=torch.float32)
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    approx_matmul(xg, wg, table, sign_magnitude, gradient="table").backward(grad)

    def loss(xv, wv):
        return float((approx_matmul(xv, wv, table, sign_magnitude) * grad).sum())

    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            up, dn = x.clone(), x.clone()
            up[i, j] += 1
            dn[i, j] -= 1
            assert (loss(up, w) - loss(dn, w)) / 2 == xg.grad[i, j]
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            up, dn = w.clone(), w.clone()
            up[i, j] += 1
            dn[i, j] -= 1
            assert (loss(x, up) - loss(x, dn)) / 2 == wg.grad[i, j]


def naive_gradients(x, w, table, grad, sign_magnitude):
    """Scalar loops over the definition (small shapes only)."""
    da, db = table_slopes(table, not sign_magnitude)
    m, k = x.shape
    n = w.shape[1]
    gx, gw = np.zeros((m, k)), np.zeros((k, n))
    for i in range(m):
        for p in range(k):
            for j in range(n):
                code_a, wv = int(x[i, p]) & 0xFF, int(w[p, j])
                code_b = abs(wv) if sign_magnitude else wv & 0xFF
                s = ((wv > 0) - (wv < 0)) if sign_magnitude else 1
                gx[i, p] += grad[i, j] * s * da[code_a, code_b]
                gw[p, j] += grad[i, j] * db[code_a, code_b]
    return gx, gw


@pytest.mark.parametrize("sign_magnitude", [False, True])
def test_gradient_kernel_matches_naive_loop(sign_magnitude, monkeypatch):
    monkeypatch.setattr(kernels, "_GRAD_BLOCK", 50)  # several row blocks
    rng = np.random.default_rng(3)
    x, w = _operands(rng, 13, 7, 5, sign_magnitude)
    table = rng.integers(-20000, 20000, (256, 256)).astype(np.int32)
    grad = torch.tensor(rng.standard_normal((13, 5)), dtype=torch.float64)
    gx, gw = table_gradients(x.double(), w.double(), table, grad, sign_magnitude)
    ref_x, ref_w = naive_gradients(x.numpy(), w.numpy(), table, grad.numpy(), sign_magnitude)
    np.testing.assert_allclose(gx.numpy(), ref_x, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(gw.numpy(), ref_w, rtol=1e-9, atol=1e-6)
    only_w = table_gradients(x, w, table, grad.float(), sign_magnitude, need_x=False)
    assert only_w[0] is None and only_w[1].shape == (7, 5)


def test_unknown_gradient_mode_is_refused():
    with pytest.raises(ValueError, match="gradient must be one of"):
        approx_matmul(torch.zeros(1, 1), torch.zeros(1, 1), exact_table(True), gradient="x")
