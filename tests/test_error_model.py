"""Known-answer and Monte Carlo checks of the probabilistic error model (hwflow.assign)."""

from __future__ import annotations

import numpy as np
import pytest

from hwflow.assign.error_model import ERROR_MODELS, SAMPLED_PAIRS, predict, weight_moment_maps
from hwflow.assign.stats import W_OFFSET, layer_stats_from_arrays, load_stats, save_stats
from hwflow.errors import RunError
from hwflow.multipliers.table import exact_table

HIST_MODELS = ("seed", "channel")  # the histogram models; `sampled` is checked exactly


def _stats(x, w, signed, rows=64, cols=64, seed=0, name="l"):
    """LayerStats of one ungrouped layer with x (M, K), w (K, N)."""
    x, w = np.asarray(x)[None], np.asarray(w)[None]
    acc = np.einsum("gmk,gkn->gmn", x, w)
    rng = np.random.default_rng(seed)
    return layer_stats_from_arrays(
        name, x, w, acc, signed, ops=x.size * w.shape[2], rows=rows, cols=cols, rng=rng
    )


def _measured(x, w, err_table, signed):
    """Direct accumulator error sum_k E[x, w] (sign-magnitude for unsigned) per output."""
    x = np.asarray(x)
    w = np.asarray(w)
    if signed:
        contrib = err_table[(x & 0xFF)[:, :, None], (w & 0xFF)[None, :, :]]
    else:
        contrib = np.sign(w)[None] * err_table[x[:, :, None], np.abs(w)[None]]
    return contrib.sum(axis=1)  # (M, N)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("model", ERROR_MODELS)
def test_exact_table_predicts_zero(signed, model):
    rng = np.random.default_rng(1)
    lo = -128 if signed else 0
    x = rng.integers(lo, 128, size=(50, 20))
    w = rng.integers(-128, 128, size=(20, 8))
    p = predict(exact_table(signed)[None], [signed], [_stats(x, w, signed)], model)
    assert p.mean[0, 0] == 0.0 and p.std[0, 0] == 0.0


@pytest.mark.parametrize("model", ERROR_MODELS)
def test_constant_offset_gives_known_mean_and_no_spread(model):
    rng = np.random.default_rng(2)
    k, c = 30, 7
    x = rng.integers(-128, 128, size=(40, k))
    w = rng.integers(-128, 128, size=(k, 6))
    p = predict(exact_table(True)[None] + c, [True], [_stats(x, w, True)], model)
    assert p.mean[0, 0] == pytest.approx(k * c, rel=1e-12)
    assert p.std[0, 0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("model", HIST_MODELS)
def test_sign_magnitude_constant_offset(model):
    # Unsigned layer: the product's error is sign(w) * c, and 0 for w == 0.
    k, c = 12, 5
    x = np.full((10, k), 3)
    w = np.tile(np.array([4, 4, 4, -9, -9, 0] * 2)[:, None], (1, 3))  # p+ = 1/2, p- = 1/3
    p = predict(exact_table(False)[None] + c, [False], [_stats(x, w, False)], model)
    mu = c * (1 / 2 - 1 / 3)
    var = c * c * (1 / 2 + 1 / 3) - mu * mu
    assert p.mean[0, 0] == pytest.approx(k * mu, rel=1e-12)
    # Every product's error is an independent draw under both models' assumptions:
    assert p.std[0, 0] == pytest.approx(np.sqrt(k * var), rel=1e-12)


@pytest.mark.parametrize("model", HIST_MODELS)
def test_independent_noise_gives_sqrt_k_std(model):
    # E = +-s in a checkerboard: under uniform even-count operand histograms the error
    # of one product has mean 0 and variance s^2, so the accumulator std is sqrt(K) s.
    k, s = 16, 9
    err = s * (1 - 2 * (np.add.outer(np.arange(256), np.arange(256)) % 2))
    x = np.tile(np.arange(k), (8, 1))  # every row holds codes 0..15 once
    w = np.tile(np.arange(k)[:, None] + 40, (1, 4))  # every column holds 40..55 once
    p = predict(exact_table(True)[None] + err, [True], [_stats(x, w, True)], model)
    assert p.mean[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert p.std[0, 0] == pytest.approx(np.sqrt(k) * s, rel=1e-12)


def test_sign_magnitude_error_proportional_to_magnitude():
    # Unsigned table with E[x, b] = b: the product's error is sign(w) * |w| = w.
    k = 14
    err = np.tile(np.arange(256), (256, 1))
    x = np.full((5, k), 200)
    w = np.tile(np.array([-3, -2, -1, 0, 1, 2, 3] * 2)[:, None], (1, 2))
    p = predict(exact_table(False)[None] + err, [False], [_stats(x, w, False)], "seed")
    assert p.mean[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert p.std[0, 0] == pytest.approx(np.sqrt(k * 4.0), rel=1e-12)  # E[w^2] = 4


def test_unsigned_map_reads_minus_128_as_column_128_negated():
    s1, s2 = weight_moment_maps(False)
    assert s1[-128 + W_OFFSET, 128] == -1.0 and s2[-128 + W_OFFSET, 128] == 1.0
    assert not s1[W_OFFSET].any() and not s2[W_OFFSET].any()  # w = 0 contributes nothing
    t1, _ = weight_moment_maps(True)
    assert t1[-1 + W_OFFSET, 255] == 1.0 and t1[-128 + W_OFFSET, 128] == 1.0


@pytest.mark.parametrize("signed", [True, False])
def test_seed_model_matches_monte_carlo_under_its_assumptions(signed):
    # Data drawn exactly as the seed's model assumes: every product pairs an activation of
    # its row with an independent weight from one layer-wide distribution.
    rng = np.random.default_rng(3)
    err = rng.integers(-300, 300, size=(256, 256)) + (rng.random((256, 256)) < 0.2) * 500
    k, m, n = 64, 400, 400
    lo = -128 if signed else 0
    x = rng.integers(lo, 128, size=(m, k))
    x[: m // 2] //= 8  # two kinds of rows: row histograms differ
    w = rng.integers(-128, 128, size=(k, n))
    stats = _stats(x, w, signed, rows=400, cols=8)
    p = predict(exact_table(signed)[None] + err, [signed], [stats], "seed")
    e = _measured(x, w, err, signed)
    assert p.mean[0, 0] == pytest.approx(e.mean(), abs=0.03 * e.std())
    assert p.std[0, 0] == pytest.approx(e.std(), rel=0.05)


def test_channel_model_sees_fixed_column_weights_seed_does_not():
    # Half the output channels hold only weight 0, half only weight 100; E[x, w] = w.
    # Column errors are 0 or 100 K, std 50 K. The seed's model draws weights per product
    # independently and predicts sqrt(K) * 50: fixed channel weights are what it misses.
    k = 25
    err = np.tile(np.arange(256), (256, 1))
    x = np.random.default_rng(4).integers(-128, 128, size=(30, k))
    w = np.zeros((k, 40), dtype=np.int64)
    w[:, 20:] = 100
    stats = _stats(x, w, True, rows=30, cols=40)
    table = exact_table(True)[None] + err
    e = _measured(x, w, err, True)
    chan = predict(table, [True], [stats], "channel")
    seed = predict(table, [True], [stats], "seed")
    assert e.std() == pytest.approx(50.0 * k)
    assert chan.std[0, 0] == pytest.approx(e.std(), rel=1e-12)
    assert seed.std[0, 0] == pytest.approx(50.0 * np.sqrt(k), rel=1e-12)
    sampled = predict(table, [True], [stats], "sampled")
    assert sampled.std[0, 0] == pytest.approx(e.std(), rel=1e-6)


@pytest.mark.parametrize("signed", [True, False])
def test_sampled_model_is_exact_on_its_samples(signed):
    # With every (row, column) pair enumerated the sampled model is the exact accumulator
    # error of those outputs: compare with direct indexing (an independent implementation).
    rng = np.random.default_rng(8)
    k = 40
    lo = -128 if signed else 0
    x = rng.integers(lo, 128, size=(30, k))
    x[:, ::3] = 0  # zero activations, skipped when E[0, :] = 0
    w = rng.integers(-128, 128, size=(k, 20))
    stats = _stats(x, w, signed, rows=30, cols=20)
    err = rng.integers(-500, 500, size=(256, 256))
    err_zero_row = err.copy()
    err_zero_row[0] = 0
    for e_tab in (err, err_zero_row):
        p = predict(exact_table(signed)[None] + e_tab, [signed], [stats], "sampled")
        e = _measured(x, w, e_tab, signed)
        assert p.mean[0, 0] == pytest.approx(e.mean(), rel=1e-6)
        assert p.std[0, 0] == pytest.approx(e.std(), rel=1e-6)


def test_sampled_model_subsamples_pairs():
    rng = np.random.default_rng(9)
    k, m, n = 32, 200, 64  # 12,800 pairs > SAMPLED_PAIRS
    x = rng.integers(0, 256, size=(m, k))
    w = rng.integers(-128, 128, size=(k, n))
    stats = _stats(x, w, False, rows=m, cols=n)
    err = rng.integers(-300, 300, size=(256, 256))
    p = predict(exact_table(False)[None] + err, [False], [stats], "sampled")
    e = _measured(x, w, err, False)
    assert m * n > SAMPLED_PAIRS
    assert p.std[0, 0] == pytest.approx(e.std(), rel=0.05)
    assert p.mean[0, 0] == pytest.approx(e.mean(), abs=0.05 * e.std())


@pytest.mark.parametrize("model", ERROR_MODELS)
def test_signedness_mismatch_is_nan_and_library_is_vectorised(model):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 128, size=(20, 10))
    w = rng.integers(-128, 128, size=(10, 5))
    layers = [_stats(x, w, True, name="a"), _stats(x, w, False, name="b")]
    tables = np.stack([exact_table(True) + 3, exact_table(False) + 2, exact_table(True)])
    p = predict(tables, [True, False, True], layers, model, chunk=1)
    assert np.isnan(p.std[0, 1]) and np.isnan(p.std[1, 0]) and np.isnan(p.std[1, 2])
    assert p.mean[0, 0] == pytest.approx(30.0) and p.mean[0, 2] == 0.0
    # Sign-magnitude constant offset: mean error K * c * (P(w > 0) - P(w < 0)).
    assert p.mean[1, 1] == pytest.approx(2 * 10 * np.sign(w).mean(), rel=1e-9)


def test_unknown_model_rejected():
    with pytest.raises(ValueError, match="unknown error model"):
        predict(exact_table(True)[None], [True], [], "magic")


def test_stats_histograms_and_groups():
    rng = np.random.default_rng(6)
    x = rng.integers(-128, 128, size=(2, 7, 5))  # two groups
    w = rng.integers(-128, 128, size=(2, 5, 3))
    acc = np.einsum("gmk,gkn->gmn", x, w)
    s = layer_stats_from_arrays(
        "g", x, w, acc, True, ops=210, rows=100, cols=100, rng=np.random.default_rng(0)
    )
    assert s.fan_in == 5 and s.x_rows.shape == (14, 256) and s.w_cols.shape == (6, 511)
    assert s.x_sample.shape == (14, 5) and s.w_sample.shape == (6, 5)
    np.testing.assert_array_equal(s.x_hist * x.size, np.bincount((x & 0xFF).ravel(), minlength=256))
    np.testing.assert_array_equal(s.w_hist * w.size, np.bincount((w + 255).ravel(), minlength=511))
    # All rows and columns are sampled, sorted: row 3 of group 1 is sample 7 + 3,
    # column 2 of group 1 is sample 3 + 2.
    assert s.row_groups[10] == 1 and s.col_groups[5] == 1
    np.testing.assert_allclose(s.x_rows[10] * 5, np.bincount(x[1, 3] & 0xFF, minlength=256))
    np.testing.assert_allclose(s.w_cols[5] * 5, np.bincount(w[1, :, 2] + 255, minlength=511))
    assert s.pair_mask().sum() == 7 * 3 * 2
    assert s.acc_std == pytest.approx(acc.std())


def test_stats_roundtrip_and_missing_file(tmp_path):
    rng = np.random.default_rng(7)
    a = _stats(rng.integers(0, 200, (9, 4)), rng.integers(-50, 50, (4, 3)), False, name="c1")
    b = _stats(rng.integers(-9, 9, (9, 6)), rng.integers(-5, 5, (6, 2)), True, name="fc")
    save_stats(tmp_path / "stats.npz", [a, b], {"seed": 3})
    layers, meta = load_stats(tmp_path / "stats.npz")
    assert meta == {"seed": 3} and [s.name for s in layers] == ["c1", "fc"]
    assert layers[0].signed is False and layers[1].fan_in == 6
    np.testing.assert_array_equal(layers[0].x_rows, a.x_rows)
    np.testing.assert_array_equal(layers[1].w_sample, b.w_sample)
    with pytest.raises(RunError, match="no operand statistics"):
        load_stats(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(RunError, match="damaged"):
        load_stats(tmp_path / "bad.npz")
