"""table_matmul / approx_matmul against independent naive references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwflow.multipliers.table import exact_table
from hwflow.nn.kernels import approx_matmul, table_matmul


def naive_loop(x: np.ndarray, w: np.ndarray, table: np.ndarray, sign_magnitude: bool) -> np.ndarray:
    """Scalar Python loop straight from DESIGN.md's equation (small shapes only)."""
    m, k = x.shape
    n = w.shape[1]
    out = np.zeros((m, n), dtype=object)
    for i in range(m):
        for j in range(n):
            s = 0
            for p in range(k):
                a, b = int(x[i, p]) & 0xFF, int(w[p, j])
                if sign_magnitude:
                    s += ((b > 0) - (b < 0)) * int(table[a, abs(b)])
                else:
                    s += int(table[a, b & 0xFF])
            out[i, j] = s
    return out.astype(np.int64)


def naive_numpy(
    x: np.ndarray, w: np.ndarray, table: np.ndarray, sign_magnitude: bool
) -> np.ndarray:
    """Per-k fancy indexing into the table, accumulated in int64 (any shape)."""
    t = table.astype(np.int64)
    xb = x.astype(np.int64) & 0xFF
    out = np.zeros((x.shape[0], w.shape[1]), dtype=np.int64)
    for p in range(x.shape[1]):
        wk = w[p].astype(np.int64)
        if sign_magnitude:
            out += np.sign(wk)[None, :] * t[xb[:, p][:, None], np.abs(wk)[None, :]]
        else:
            out += t[xb[:, p][:, None], (wk & 0xFF)[None, :]]
    return out


def random_table(rng: np.random.Generator, kind: str) -> np.ndarray:
    if kind == "int16":
        return rng.integers(-32768, 32768, (256, 256)).astype(np.int32)
    if kind == "unsigned_max":
        return rng.integers(0, 65026, (256, 256)).astype(np.int32)
    if kind == "int32":
        return rng.integers(-(2**31), 2**31, (256, 256), dtype=np.int64).astype(np.int32)
    if kind == "extremes":
        return rng.choice(np.array([-(2**31), 2**31 - 1, 0, -1], dtype=np.int32), (256, 256))
    if kind == "all_equal":
        return np.full((256, 256), int(rng.integers(-70000, 70000)), dtype=np.int32)
    if kind == "noncommutative":
        a = np.arange(256, dtype=np.int32)
        return (a[:, None] * 3 - a[None, :] * 7).astype(np.int32)
    raise AssertionError(kind)


TABLE_KINDS = ["int16", "unsigned_max", "int32", "extremes", "all_equal", "noncommutative"]


def operands(rng: np.random.Generator, shape, lo: int, hi: int) -> np.ndarray:
    """Random values with the edges (lo, hi, 0, -1 where valid) over-represented."""
    v = rng.integers(lo, hi + 1, shape)
    edges = np.array([e for e in (lo, hi, 0, -1, 127, -128, 128, 255) if lo <= e <= hi])
    mask = rng.random(shape) < 0.3
    v[mask] = rng.choice(edges, int(mask.sum()))
    return v


def case(seed: int, m: int, k: int, n: int, kind: str, sign_magnitude: bool, unsigned_x: bool):
    rng = np.random.default_rng(seed)
    x = operands(rng, (m, k), 0 if unsigned_x else -128, 255 if unsigned_x else 127)
    w = operands(rng, (k, n), -128, 127)
    return x, w, random_table(rng, kind)


def run(x: np.ndarray, w: np.ndarray, table: np.ndarray, sign_magnitude: bool) -> np.ndarray:
    out = table_matmul(
        torch.from_numpy(x), torch.from_numpy(w), table, sign_magnitude=sign_magnitude
    )
    assert out.dtype in (torch.int32, torch.int64)
    return out.to(torch.int64).numpy()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(1, 9),
    k=st.integers(1, 12),
    n=st.integers(1, 7),
    kind=st.sampled_from(TABLE_KINDS),
    sign_magnitude=st.booleans(),
    unsigned_x=st.booleans(),
)
def test_matches_scalar_loop(seed, m, k, n, kind, sign_magnitude, unsigned_x):
    x, w, table = case(seed, m, k, n, kind, sign_magnitude, unsigned_x)
    np.testing.assert_array_equal(
        run(x, w, table, sign_magnitude), naive_loop(x, w, table, sign_magnitude)
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(1, 70),
    k=st.integers(1, 4608),
    n=st.integers(1, 40),
    kind=st.sampled_from(TABLE_KINDS),
    sign_magnitude=st.booleans(),
    unsigned_x=st.booleans(),
)
def test_matches_numpy_reference(seed, m, k, n, kind, sign_magnitude, unsigned_x):
    x, w, table = case(seed, m, k, n, kind, sign_magnitude, unsigned_x)
    np.testing.assert_array_equal(
        run(x, w, table, sign_magnitude), naive_numpy(x, w, table, sign_magnitude)
    )


@pytest.mark.parametrize("signed", [True, False])
def test_exact_table_equals_integer_matmul(signed):
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.integers(-128 if signed else 0, 128 if signed else 256, (131, 577)))
    w = torch.from_numpy(rng.integers(-127, 128, (577, 33)))
    out = table_matmul(x, w, exact_table(signed), sign_magnitude=not signed)
    assert torch.equal(out.to(torch.int64), x @ w)


def test_float32_exactness_edge():
    """Partial sums far beyond 2^24: all entries 65025 over K = 4608 (3e8)."""
    table = np.full((256, 256), 65025, dtype=np.int32)
    table[0, 0] = 65024  # odd sums would be rounded away by a float32 accumulator
    x = torch.zeros(3, 4608, dtype=torch.int64)
    x[1, :] = 5
    x[2, ::2] = 5
    w = torch.zeros(4608, 2, dtype=torch.int64)
    w[:, 1] = 3
    out = table_matmul(x, w, table).to(torch.int64)
    expected = torch.tensor(naive_numpy(x.numpy(), w.numpy(), table, False))
    assert torch.equal(out, expected)
    assert int(out[0, 0]) == 4608 * 65024 and int(out[2, 0]) == 2304 * 65024 + 2304 * 65025


def test_int32_overflow_uses_int64():
    table = np.full((256, 256), 2**31 - 1, dtype=np.int32)
    x = torch.zeros(2, 3, dtype=torch.int64)
    w = torch.zeros(3, 2, dtype=torch.int64)
    out = table_matmul(x, w, table)
    assert out.dtype == torch.int64 and int(out[0, 0]) == 3 * (2**31 - 1)
    small = table_matmul(x, w, exact_table(True))
    assert small.dtype == torch.int32


def test_sign_magnitude_minus_128_and_zero():
    """|w| = 128 reads column 128 negated; a zero weight contributes nothing."""
    table = np.arange(65536, dtype=np.int32).reshape(256, 256)
    x = torch.tensor([[7, 7, 200]])
    w = torch.tensor([[-128], [0], [5]])
    out = table_matmul(x, w, table, sign_magnitude=True)
    assert int(out[0, 0]) == -int(table[7, 128]) + int(table[200, 5])


def test_transposed_table_is_caught():
    """A non-commutative table: swapping operand roles changes the result."""
    table = random_table(np.random.default_rng(0), "noncommutative")
    x = torch.tensor([[3, -5]])
    w = torch.tensor([[1], [2]])
    assert int(table_matmul(x, w, table)[0, 0]) == (3 * 3 - 1 * 7) + (251 * 3 - 2 * 7)
    assert int(table_matmul(x, w, table.T.copy())[0, 0]) != int(table_matmul(x, w, table)[0, 0])


@pytest.mark.parametrize(
    ("x", "w", "table", "sign_magnitude", "match"),
    [
        (
            torch.zeros(2, 3, dtype=torch.int64),
            torch.zeros(4, 2, dtype=torch.int64),
            None,
            False,
            "inner",
        ),
        (torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.int64), None, False, "integer"),
        (
            torch.full((2, 3), 256),
            torch.zeros(3, 2, dtype=torch.int64),
            None,
            False,
            r"\[-128, 255\]",
        ),
        (torch.zeros(2, 3, dtype=torch.int64), torch.full((3, 2), -129), None, False, "w: operand"),
        (torch.zeros(2, 3, dtype=torch.int64), torch.full((3, 2), -256), None, True, "w: operand"),
        (
            torch.zeros(3, dtype=torch.int64),
            torch.zeros(3, 2, dtype=torch.int64),
            None,
            False,
            "2-D",
        ),
        (
            torch.zeros(2, 3, dtype=torch.int64),
            torch.zeros(3, 2, dtype=torch.int64),
            np.zeros((256, 255), np.int32),
            False,
            "shape",
        ),
        (
            torch.zeros(2, 3, dtype=torch.int64),
            torch.zeros(3, 2, dtype=torch.int64),
            np.zeros((256, 256)),
            False,
            "integer table",
        ),
    ],
)
def test_bad_input(x, w, table, sign_magnitude, match):
    table = exact_table(True) if table is None else table
    with pytest.raises(ValueError, match=match):
        table_matmul(x, w, table, sign_magnitude=sign_magnitude)


def test_empty_shapes():
    t = exact_table(True)
    assert table_matmul(
        torch.zeros(0, 4, dtype=torch.int64), torch.ones(4, 3, dtype=torch.int64), t
    ).shape == (0, 3)
    out = table_matmul(torch.ones(2, 0, dtype=torch.int64), torch.ones(0, 3, dtype=torch.int64), t)
    assert out.shape == (2, 3) and not out.any()


@pytest.mark.parametrize("sign_magnitude", [False, True])
def test_approx_matmul_forward_and_straight_through_gradient(sign_magnitude):
    rng = np.random.default_rng(3)
    table = random_table(rng, "int16")
    xv = rng.integers(0 if sign_magnitude else -128, 256 if sign_magnitude else 128, (17, 29))
    wv = rng.integers(-127, 128, (29, 5))
    x = torch.tensor(xv, dtype=torch.float32, requires_grad=True)
    w = torch.tensor(wv, dtype=torch.float32, requires_grad=True)
    y = approx_matmul(x, w, table, sign_magnitude)
    assert y.dtype == torch.float32
    assert torch.equal(
        y.detach().to(torch.int64), torch.tensor(naive_numpy(xv, wv, table, sign_magnitude))
    )
    g = torch.tensor(rng.standard_normal((17, 5)), dtype=torch.float32)
    y.backward(g)
    x2 = x.detach().clone().requires_grad_(True)
    w2 = w.detach().clone().requires_grad_(True)
    (x2 @ w2).backward(g)
    assert torch.equal(x.grad, x2.grad) and torch.equal(w.grad, w2.grad)
