"""table_matmul / approx_matmul against independent naive references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwflow.multipliers.table import exact_table
from hwflow.nn import kernels
from hwflow.nn.kernels import approx_matmul, table_matmul


def naive_loop(x: np.ndarray, w: np.ndarray, table: np.ndarray, sign_magnitude: bool) -> np.ndarray:
    """Scalar Python loop straight from docs/concepts/operands.md's equation (small shapes)."""
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
    if kind == "g4":  # int16 T the kernel sums 4 rows at a time before widening
        return rng.choice(np.array([-8191, 8191, 0, 1, -1], dtype=np.int32), (256, 256))
    if kind == "g2":  # ... 2 rows at a time
        return rng.integers(-16383, 16384, (256, 256)).astype(np.int32)
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


TABLE_KINDS = [
    "int16",
    "g4",
    "g2",
    "unsigned_max",
    "int32",
    "extremes",
    "all_equal",
    "noncommutative",
]


def operands(rng: np.random.Generator, shape, lo: int, hi: int) -> np.ndarray:
    """Random values with the edges (lo, hi, 0, -1 where valid) over-represented."""
    v = rng.integers(lo, hi + 1, shape)
    edges = np.array([e for e in (lo, hi, 0, -1, 127, -128, 128, 255) if lo <= e <= hi])
    mask = rng.random(shape) < 0.3
    v[mask] = rng.choice(edges, int(mask.sum()))
    return v


def case(seed: int, m: int, k: int, n: int, kind: str, unsigned_x: bool):
    """x (M, K), w (K, N) with edge values over-represented, and a table of `kind`."""
    rng = np.random.default_rng(seed)
    x = operands(rng, (m, k), 0 if unsigned_x else -128, 255 if unsigned_x else 127)
    w = operands(rng, (k, n), -128, 127)
    return x, w, random_table(rng, kind)


BACKENDS = ["compiled", "torch"]


def run(
    x: np.ndarray, w: np.ndarray, table: np.ndarray, sign_magnitude: bool, backend: str
) -> np.ndarray:
    out = table_matmul(
        torch.from_numpy(x),
        torch.from_numpy(w),
        table,
        sign_magnitude=sign_magnitude,
        backend=backend,
    )
    assert out.dtype in (torch.int32, torch.int64)
    assert out.shape == (x.shape[0], w.shape[1])
    return out.to(torch.int64).numpy()


def run_all(x, w, table, sign_magnitude) -> np.ndarray:
    """Every backend's result, checked identical to each other."""
    results = [run(x, w, table, sign_magnitude, b) for b in BACKENDS]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    return results[0]


def kernel_cases(m: tuple[int, int], k: tuple[int, int], n: tuple[int, int]):
    """@given over seeded operand shapes (ranges of M, K, N), table kinds and sign modes."""
    return given(
        seed=st.integers(0, 2**32 - 1),
        m=st.integers(*m),
        k=st.integers(*k),
        n=st.integers(*n),
        kind=st.sampled_from(TABLE_KINDS),
        sign_magnitude=st.booleans(),
        unsigned_x=st.booleans(),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@kernel_cases(m=(1, 9), k=(1, 12), n=(1, 7))
def test_matches_scalar_loop(seed, m, k, n, kind, sign_magnitude, unsigned_x):
    x, w, table = case(seed, m, k, n, kind, unsigned_x)
    np.testing.assert_array_equal(
        run_all(x, w, table, sign_magnitude), naive_loop(x, w, table, sign_magnitude)
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@kernel_cases(m=(1, 70), k=(1, 4608), n=(1, 40))
def test_matches_numpy_reference(seed, m, k, n, kind, sign_magnitude, unsigned_x):
    x, w, table = case(seed, m, k, n, kind, unsigned_x)
    np.testing.assert_array_equal(
        run_all(x, w, table, sign_magnitude), naive_numpy(x, w, table, sign_magnitude)
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@kernel_cases(m=(0, 40), k=(1, 12), n=(1, 7))
def test_table_sum_of_the_code_histogram_is_the_sum_of_the_rows(
    seed, m, k, n, kind, sign_magnitude, unsigned_x
):
    """What the free corrections sum, from histograms alone, against the scalar loop."""
    x, w, table = case(seed, max(m, 1), k, n, kind, unsigned_x)
    x = x[:m]
    hist = kernels.code_histogram(torch.from_numpy(x))
    assert hist.shape == (k, 256) and hist.sum(dim=1).tolist() == [m] * k
    got = kernels.table_sum(hist, torch.from_numpy(w), table, sign_magnitude=sign_magnitude)
    assert got.dtype == torch.int64 and got.shape == (n,)
    want = naive_loop(x, w, table, sign_magnitude).sum(axis=0) if m else np.zeros(n)
    np.testing.assert_array_equal(got.numpy(), want)


def test_table_sum_refuses_what_table_matmul_refuses():
    w = torch.zeros(3, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"hist is \(2, 256\), expected \(3, 256\)"):
        kernels.table_sum(torch.zeros(2, 256, dtype=torch.int64), w, exact_table(False))
    with pytest.raises(ValueError, match="must lie in"):
        kernels.code_histogram(torch.tensor([[256, 0]]))
    with pytest.raises(ValueError, match="must lie in"):
        kernels.table_sum(torch.zeros(3, 256), w - 129, exact_table(True))
    with pytest.raises(ValueError, match="integer tensor"):
        kernels.code_histogram(torch.zeros(2, 2, dtype=torch.bool))


@pytest.mark.parametrize("signed", [True, False])
def test_exact_table_equals_integer_matmul(signed):
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.integers(-128 if signed else 0, 128 if signed else 256, (131, 577)))
    w = torch.from_numpy(rng.integers(-127, 128, (577, 33)))
    out = table_matmul(x, w, exact_table(signed), sign_magnitude=not signed)
    assert torch.equal(out.to(torch.int64), x @ w)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_exactness_edge(backend):
    """Partial sums far beyond 2^24: all entries 65025 over K = 4608 (3e8)."""
    table = np.full((256, 256), 65025, dtype=np.int32)
    table[0, 0] = 65024  # odd sums would be rounded away by a float32 accumulator
    x = torch.zeros(3, 4608, dtype=torch.int64)
    x[1, :] = 5
    x[2, ::2] = 5
    w = torch.zeros(4608, 2, dtype=torch.int64)
    w[:, 1] = 3
    out = table_matmul(x, w, table, backend=backend).to(torch.int64)
    expected = torch.tensor(naive_numpy(x.numpy(), w.numpy(), table, False))
    assert torch.equal(out, expected)
    assert int(out[0, 0]) == 4608 * 65024 and int(out[2, 0]) == 2304 * 65024 + 2304 * 65025


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [257, 258, 259, 260, 517])
def test_float32_block_boundary(backend, k):
    """K around 2^24 / 65025 = 258: sums just below, at and past 2^24 stay exact."""
    rng = np.random.default_rng(k)
    table = rng.choice(np.array([65025, 65023, -65025, 1], dtype=np.int32), (256, 256))
    table[:, 7] = 65025
    x = torch.from_numpy(rng.integers(0, 256, (5, k)))
    w = torch.from_numpy(rng.integers(-128, 128, (k, 3)))
    w[:, 0] = 7
    out = table_matmul(x, w, table, backend=backend).to(torch.int64).numpy()
    np.testing.assert_array_equal(out, naive_numpy(x.numpy(), w.numpy(), table, False))
    assert out[0, 0] == 65025 * k


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("m", "k", "n"), [(600, 50, 64), (300, 20, 130), (257, 9, 200), (5, 3, 1)])
def test_tiles_and_row_blocks(backend, m, k, n):
    """Several column tiles, padded tiles and row counts off every block size."""
    x, w, table = case(m * k * n, m, k, n, "int16", False)
    out = run(x, w, table, False, backend)
    np.testing.assert_array_equal(out, naive_numpy(x, w, table, False))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["int16", "int32"])
@pytest.mark.parametrize("keep", [True, False])
def test_k_chunks_add_up(backend, kind, keep, monkeypatch):
    """T built in many K chunks (huge layers) accumulates exactly across chunks, whether
    the chunks are kept or (over the memory budget) rebuilt in every call."""
    monkeypatch.setattr(kernels, "_CHUNK_BYTES", 256 * 16 * 4 * 5)
    monkeypatch.setattr(kernels, "_KEEP_BYTES", 1 << 30 if keep else 0)
    x, w, table = case(11, 37, 61, 10, kind, True)
    p = kernels.prepare(torch.from_numpy(w), table, True, backend=backend)
    assert len(p._ranges) > 3
    assert (p.nbytes == p.table_bytes > 0) if keep else (p.nbytes == 0 < p.table_bytes)
    for _ in range(2):
        out = p.matmul(torch.from_numpy(x)).to(torch.int64).numpy()
        np.testing.assert_array_equal(out, naive_numpy(x, w, table, True))


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


@pytest.mark.parametrize("backend", BACKENDS)
def test_prepared_weights_reused(backend):
    rng = np.random.default_rng(5)
    table = random_table(rng, "noncommutative")
    w = torch.from_numpy(rng.integers(-128, 128, (40, 12)))
    p = kernels.prepare(w, table, backend=backend)
    assert p.backend == backend and p.nbytes > 0
    for _ in range(3):
        x = torch.from_numpy(rng.integers(-128, 128, (int(rng.integers(1, 50)), 40)))
        expected = naive_numpy(x.numpy(), w.numpy(), table, False)
        np.testing.assert_array_equal(p.matmul(x).to(torch.int64).numpy(), expected)
    xg = torch.from_numpy(rng.integers(-128, 128, (6, 40))).float().requires_grad_(True)
    y = approx_matmul(xg, w.float(), table, prepared=p)
    assert torch.equal(
        y.detach().long(),
        torch.from_numpy(naive_numpy(xg.detach().long().numpy(), w.numpy(), table, False)),
    )
    with pytest.raises(ValueError, match="inner sizes"):
        p.matmul(torch.zeros(2, 41, dtype=torch.int64))


def test_thread_safe():
    """Concurrent calls from several Python threads give the single-thread results."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(9)
    table = random_table(rng, "int16")
    cases = [
        (
            torch.from_numpy(rng.integers(-128, 128, (300, 70))),
            torch.from_numpy(rng.integers(-128, 128, (70, 20))),
        )
        for _ in range(8)
    ]
    expected = [naive_numpy(x.numpy(), w.numpy(), table, False) for x, w in cases]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: table_matmul(c[0], c[1], table).long().numpy(), cases * 2))
    for g, e in zip(got, expected * 2, strict=True):
        np.testing.assert_array_equal(g, e)


def test_build_failure_falls_back_once(monkeypatch, caplog):
    """No compiler: one warning naming the reason, then identical results from torch."""
    from torch.utils import cpp_extension

    def broken(*args, **kwargs):
        raise RuntimeError("Error building extension: g++ not found")

    monkeypatch.setattr(cpp_extension, "load", broken)
    monkeypatch.setattr(kernels, "_build_state", {})
    x = torch.tensor([[1, -2], [3, 4]])
    w = torch.tensor([[5], [-6]])
    with caplog.at_level("WARNING", logger="hwflow.nn.kernels"):
        for _ in range(3):
            assert kernels.prepare(w, exact_table(True)).backend == "torch"
            assert torch.equal(table_matmul(x, w, exact_table(True)).long(), x @ w)
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "g++ not found" in warnings[0].getMessage()
    with pytest.raises(RuntimeError, match="compiled backend is unavailable"):
        table_matmul(x, w, exact_table(True), backend="compiled")


def test_env_forces_torch_backend(monkeypatch):
    monkeypatch.setenv("HWFLOW_KERNEL", "torch")
    monkeypatch.setattr(kernels, "_build_state", {})
    assert kernels.compiled_kernel() is None
    assert (
        kernels.prepare(torch.ones(2, 2, dtype=torch.int64), exact_table(True)).backend == "torch"
    )


@pytest.mark.parametrize(
    ("entries", "group"),
    [((8191, -8191), 4), ((8192, -1), 2), ((16383, -16383), 2), ((-16384, 5), 1), ((32767, 0), 1)],
)
@pytest.mark.parametrize("k", [1, 3, 7, 64, 301])
def test_int16_row_grouping_edges(entries, group, k):
    """Summing 2 or 4 int16 T rows before widening is exact right up to the int16 edge."""
    rng = np.random.default_rng(k)
    table = rng.choice(np.array(entries, dtype=np.int32), (256, 256))
    table[:, 1] = entries[0]
    table[:, 2] = entries[1]
    x = torch.from_numpy(rng.integers(-128, 128, (9, k)))
    w = torch.from_numpy(rng.integers(-128, 128, (k, 5)))
    w[:, 0], w[:, 1] = 1, 2
    p = kernels.prepare(w, table, backend="compiled")
    assert p._group == group
    out = p.matmul(x).to(torch.int64).numpy()
    np.testing.assert_array_equal(out, naive_numpy(x.numpy(), w.numpy(), table, False))
    assert (out[:, 0] == entries[0] * k).all() and (out[:, 1] == entries[1] * k).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_approx_matmul_float_operands(backend):
    """Float operands are rounded half to even (as torch.round); bad ones are rejected."""
    table = random_table(np.random.default_rng(2), "noncommutative")
    w = torch.tensor([[3.0, -2.0], [1.0, 0.0]])
    p = kernels.prepare(w.long(), table, backend=backend)
    x = torch.tensor([[2.5, -1.5], [-127.9999, 254.7]])
    y = approx_matmul(x, w, table, prepared=p)
    xi = torch.tensor([[2, -2], [-128, 255]])
    assert torch.equal(y.long(), table_matmul(xi, w.long(), table, backend=backend).long())
    for bad, match in [
        (torch.tensor([[0.0, float("nan")]]), "must be finite"),
        (torch.tensor([[0.0, float("inf")]]), "must be finite"),
        (torch.tensor([[255.6, 0.0]]), r"\[-128, 255\]"),
        (torch.tensor([[-128.6, 0.0]]), r"\[-128, 255\]"),
    ]:
        with pytest.raises(ValueError, match=match):
            approx_matmul(bad, w, table, prepared=p)
    with pytest.raises(ValueError, match="prepared weights"):
        approx_matmul(x, w.t().contiguous()[:1], table, prepared=p)
    with pytest.raises(ValueError, match="prepared weights"):
        approx_matmul(x, w, table, True, prepared=p)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float_operands_round_half_to_even(backend, dtype):
    """The fused conversion rounds exactly as torch.round, at every half and near-half."""
    grid = torch.arange(-128.5, 255.5, 0.25, dtype=torch.float64)
    near = torch.tensor([2.4999998, 254.50002, -128.49, 0.49999997, -0.5, 1.5, 2.5])
    x = torch.cat([grid, near.double()]).to(dtype).reshape(-1, 1)
    w = torch.ones(1, 1)
    table = np.arange(65536, dtype=np.int32).reshape(256, 256)  # entry = 256 * a + b
    p = kernels.prepare(w.long(), table, backend=backend)
    got = approx_matmul(x, w, table, prepared=p).long().flatten()
    expected = (torch.round(x).long().flatten() & 0xFF) * 256 + 1
    assert torch.equal(got, expected)


@pytest.mark.parametrize(
    ("rows", "block_bytes"), [(1, 1), (3, 3 * 8192), (5, 2 * 8192), (7, 5 * 8192), (64, 64 << 10)]
)
@pytest.mark.parametrize("kind", ["g4", "g2", "int16", "int32"])
def test_compiled_blocking_boundaries(monkeypatch, rows, block_bytes, kind):
    """Tiny tasks and K blocks (odd against the 2- and 4-row int16 groups and the 4-row
    register blocks) still cover every row, column and k exactly once."""
    monkeypatch.setattr(kernels, "_blocking", lambda m, tiles: (rows, block_bytes))
    x, w, table = case(rows * 31 + block_bytes, 23, 37, 21, kind, False)
    out = run(x, w, table, False, "compiled")
    np.testing.assert_array_equal(out, naive_numpy(x, w, table, False))


def test_prepared_cache_reuses_only_unchanged_weights():
    rng = np.random.default_rng(12)
    table = random_table(rng, "noncommutative")
    other = random_table(rng, "int16")
    cache = kernels.PreparedCache(max_entries=2)
    w = torch.from_numpy(rng.integers(-127, 128, (30, 6))).float()
    x = torch.from_numpy(rng.integers(-128, 128, (9, 30))).float()

    def check(w, table, sign_magnitude=False):
        xv = x.abs() if sign_magnitude else x
        y = approx_matmul(xv, w, table, sign_magnitude, cache=cache)
        expected = naive_numpy(xv.long().numpy(), w.long().numpy(), table, sign_magnitude)
        np.testing.assert_array_equal(y.long().numpy(), expected)

    check(w, table)
    check(w, table)
    assert (cache.hits, cache.misses) == (1, 1)
    w2 = w.clone()
    w2[3, 2] += 1  # an in-place weight update must not be served stale
    check(w2, table)
    check(w, other)
    check(w, table, sign_magnitude=True)
    assert (cache.hits, cache.misses) == (1, 4)
    assert len(cache._entries) == 2  # max_entries evicts the least recently used
    check(w, table, sign_magnitude=True)
    assert cache.hits == 2
    tiny = kernels.PreparedCache(max_bytes=1)  # T larger than the budget is not kept
    tiny.get(w.long(), table)
    assert tiny._entries == []
    with pytest.raises(ValueError, match="not both"):
        approx_matmul(x, w, table, prepared=kernels.prepare(w.long(), table), cache=cache)
