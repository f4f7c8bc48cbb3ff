"""table_conv2d / approx_conv2d (the input read in place) against a naive scalar loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_kernels import BACKENDS, operands, random_table
from torch import nn

import hwflow.nn as hn
from hwflow.multipliers.table import exact_table
from hwflow.nn import kernels
from hwflow.nn.kernels import approx_conv2d, table_conv2d


def naive_conv(x, w, table, sign_magnitude, stride, padding, dilation, groups, pad_value):
    """Scalar loop straight from docs/concepts/operands.md's equation over each output's taps."""
    n, c, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, cout, ho, wo), dtype=np.int64)
    ng = cout // groups
    for b in range(n):
        for o in range(cout):
            for y in range(ho):
                for z in range(wo):
                    s = 0
                    for ci in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                r = y * stride[0] - padding[0] + i * dilation[0]
                                q = z * stride[1] - padding[1] + j * dilation[1]
                                inside = 0 <= r < h and 0 <= q < wd
                                a = int(x[b, (o // ng) * cg + ci, r, q]) if inside else pad_value
                                v = int(w[o, ci, i, j])
                                if sign_magnitude:
                                    s += ((v > 0) - (v < 0)) * int(table[a & 0xFF, abs(v)])
                                else:
                                    s += int(table[a & 0xFF, v & 0xFF])
                    out[b, o, y, z] = s
    return out


GEOMETRIES = [
    # (cin, cout, kernel, stride, padding, dilation, groups)
    (3, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (4, 6, (3, 3), (2, 2), (2, 2), (1, 1), 2),
    (4, 4, (3, 3), (1, 1), (2, 2), (2, 2), 4),
    (2, 3, (3, 2), (2, 1), (1, 0), (1, 1), 1),
    (2, 17, (1, 1), (2, 2), (0, 0), (1, 1), 1),  # 17 columns: padded kernel tiles
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    geometry=st.sampled_from(GEOMETRIES),
    kind=st.sampled_from(["int16", "g4", "int32", "noncommutative"]),
    sign_magnitude=st.booleans(),
)
def test_matches_naive_loop(seed, geometry, kind, sign_magnitude):
    cin, cout, kernel, stride, padding, dilation, groups = geometry
    rng = np.random.default_rng(seed)
    lo, hi = (0, 255) if sign_magnitude else (-128, 127)
    x = operands(rng, (2, cin, 5, 6), lo, hi)
    w = operands(rng, (cout, cin // groups, *kernel), -128, 127)
    table = random_table(rng, kind)
    pad_value = int(rng.integers(lo, hi + 1))
    geo = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    want = naive_conv(x, w, table, sign_magnitude, stride, padding, dilation, groups, pad_value)
    for backend in BACKENDS:
        got = table_conv2d(
            torch.from_numpy(x),
            torch.from_numpy(w),
            table,
            sign_magnitude=sign_magnitude,
            pad_value=pad_value,
            backend=backend,
            **geo,
        )
        assert got.dtype in (torch.int32, torch.int64)
        np.testing.assert_array_equal(got.to(torch.int64).numpy(), want)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("signed", [True, False])
def test_approx_conv2d_exact_table_is_conv2d_with_its_gradients(geometry, signed):
    """Centered codes with a zero-point: the exact table gives F.conv2d bit for bit, and the
    gradients are F.conv2d's own."""
    cin, cout, kernel, stride, padding, dilation, groups = geometry
    rng = np.random.default_rng(7)
    zp = -5 if signed else 9
    lo, hi = (-128, 127) if signed else (0, 255)
    xv = operands(rng, (3, cin, 6, 5), lo, hi) - zp
    wv = rng.integers(-127, 128, (cout, cin // groups, *kernel))
    geo = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = torch.tensor(xv, dtype=torch.float32, requires_grad=True)
    w = torch.tensor(wv, dtype=torch.float32, requires_grad=True)
    y = approx_conv2d(x, w, exact_table(signed), not signed, zero_point=zp, **geo)
    x2 = x.detach().clone().requires_grad_(True)
    w2 = w.detach().clone().requires_grad_(True)
    y2 = F.conv2d(x2, w2, None, **geo)
    assert torch.equal(y.detach(), y2.detach())
    g = torch.tensor(rng.standard_normal(tuple(y.shape)), dtype=torch.float32)
    y.backward(g)
    y2.backward(g)
    assert torch.equal(x.grad, x2.grad) and torch.equal(w.grad, w2.grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_approx_conv2d_forward_is_the_table_minus_the_zero_point_term(backend, monkeypatch):
    rng = np.random.default_rng(8)
    table = random_table(rng, "noncommutative")
    zp = 3
    xv = rng.integers(-zp, 256 - zp, (2, 4, 5, 5))
    wv = rng.integers(-127, 128, (6, 2, 3, 3))
    geo = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 1), groups=2)
    if backend == "torch":
        monkeypatch.setitem(kernels._build_state, "op", None)
    y = approx_conv2d(
        torch.tensor(xv, dtype=torch.float32),
        torch.tensor(wv, dtype=torch.float32),
        table,
        True,
        zero_point=zp,
        **geo,
    )
    acc = naive_conv(xv + zp, wv, table, True, geo["stride"], geo["padding"], (1, 1), 2, zp)
    want = acc - zp * wv.reshape(6, -1).sum(1).reshape(1, 6, 1, 1)
    np.testing.assert_array_equal(y.to(torch.int64).numpy(), want)


@pytest.mark.parametrize("signed", [True, False])
def test_conv_layer_in_place_path_equals_the_operand_rows_path(signed):
    """The layer's straight-through path (input read in place) and the operand-rows path
    (taken for table-slope gradients) give identical outputs, with any table."""
    torch.manual_seed(9)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    x = torch.randn(2, 4, 7, 7) if signed else torch.rand(2, 4, 7, 7) + 0.1
    model = nn.Sequential(conv)
    hn.approximate(model, x, operands="signed" if signed else "unsigned")
    hn.calibrate(model, [x])
    table = random_table(np.random.default_rng(10), "noncommutative")
    hn.apply_tables(model, {"0": (table, signed)})
    layer = hn.approx_layers(model)[0][1]
    y_in_place = model(x)
    layer.gradient = "table"
    assert torch.equal(model(x), y_in_place)


def test_bad_conv_input_is_a_clear_error():
    t = exact_table(True)
    w = torch.ones(2, 3, 3, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="4-D"):
        table_conv2d(torch.ones(3, 5, 5, dtype=torch.int64), w, t)
    with pytest.raises(ValueError, match="do not fit"):
        table_conv2d(torch.ones(1, 4, 5, 5, dtype=torch.int64), w, t)
    with pytest.raises(ValueError, match="pad_value"):
        table_conv2d(torch.ones(1, 3, 5, 5, dtype=torch.int64), w, t, padding=1, pad_value=300)
    with pytest.raises(ValueError, match=r"\[-128, 255\]"):
        table_conv2d(torch.full((1, 3, 5, 5), 256, dtype=torch.int64), w, t)


def _same_tables(a: kernels.PreparedWeights, b: kernels.PreparedWeights) -> bool:
    meta = (a.out_dtype, a._tdtype, a._group, a._nb)
    return meta == (b.out_dtype, b._tdtype, b._group, b._nb) and all(
        torch.equal(c.data, d.data) for c, d in zip(a._chunks, b._chunks, strict=True)
    )


@pytest.mark.parametrize("sign_magnitude", [False, True])
def test_training_tables_patch_to_exactly_what_prepare_builds(sign_magnitude):
    """Steps that move a few weights (sign flips and zeros included), many weights, or
    into values needing other dtypes: T always equals a fresh `prepare`, and the few-weight
    steps are patched in place."""
    rng = np.random.default_rng(11)
    table = torch.from_numpy(random_table(rng, "g2"))
    w = torch.from_numpy(rng.integers(-127, 128, (40, 21)))
    tables = kernels.TrainingTables()
    x = torch.from_numpy(rng.integers(0 if sign_magnitude else -128, 128, (30, 40)))
    steps = []
    for _ in range(3):  # a few weights move
        w = w.clone()
        idx = rng.integers(0, w.numel(), 5)
        w.view(-1)[idx] = torch.from_numpy(rng.integers(-127, 128, 5))
        w.view(-1)[idx[0]] = 0
        w.view(-1)[idx[1]] = -w.view(-1)[idx[1]]
        steps.append(w)
    steps.append(torch.from_numpy(rng.integers(-127, 128, (40, 21))))  # most weights move
    steps.append(steps[-1].clone())  # nothing moves
    for w in steps:
        got = tables.get(w, table, sign_magnitude, slot=1)
        want = kernels.prepare(w, table, sign_magnitude)
        assert _same_tables(got, want)
        assert torch.equal(got.matmul(x), want.matmul(x))
    assert tables.rebuilt == 1 and tables.patched == len(steps) - 1
    # Same table, but a weight code whose column needs int16 rows summed one at a time.
    wide = random_table(rng, "g4")
    wide[:, 77] = 30000
    wide = torch.from_numpy(wide)
    w = torch.from_numpy(rng.integers(-70, 71, (40, 21)))
    first = tables.get(w, wide, sign_magnitude, slot=1)
    assert first._group == 4 and tables.rebuilt == 2
    w = w.clone()
    w[3, 4] = 77
    got = tables.get(w, wide, sign_magnitude, slot=1)
    assert got._group == 1 and tables.rebuilt == 3
    assert _same_tables(got, kernels.prepare(w, wide, sign_magnitude))


def test_training_forward_follows_weight_updates():
    """Train-mode forwards (tables updated in place after each SGD step) equal eval-mode
    forwards (tables prepared from the weights as they are), conv and linear layers."""
    torch.manual_seed(12)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3)
    )
    x = torch.randn(6, 2, 5, 5)
    hn.approximate(model, x)
    hn.calibrate(model, [x])
    rng = np.random.default_rng(13)
    layers = hn.approx_layers(model)
    hn.apply_tables(
        model, {n: (random_table(rng, "noncommutative"), layer.signed) for n, layer in layers}
    )
    hn.set_observing(model, False)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):
        model.train()
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        y_train = model(x)
        model.eval()
        assert torch.equal(y_train, model(x))
    assert all(layer._train_tables.patched > 0 for _, layer in layers)


def test_training_tables_keep_no_table_beyond_their_budget():
    table = torch.from_numpy(exact_table(False))
    w = torch.ones(8, 4, dtype=torch.int64)
    tables = kernels.TrainingTables(max_bytes=1000)  # T here: 8 * 256 * 16 * 2 bytes
    for _ in range(2):
        got = tables.get(w, table, True)
        assert torch.equal(got.matmul(torch.ones(3, 8, dtype=torch.int64)), torch.full((3, 4), 8))
    assert tables.rebuilt == 2 and tables.patched == 0
