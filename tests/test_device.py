"""Devices: `--device` resolution, and the exact torch fallback of the table
kernel, which runs on the operands' own device (CPU here, forced with backend="torch")
without copying anything to the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwflow.errors import HwflowError
from hwflow.multipliers.table import exact_table
from hwflow.nn import kernels
from hwflow.nn.device import resolve_device


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(HwflowError, match="expected one of cpu, cuda"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(HwflowError, match="no CUDA device"):
        resolve_device("cuda")


def _approx_table(signed: bool) -> np.ndarray:
    t = exact_table(signed).astype(np.int64)
    return (t >> 3 << 3).astype(np.int32)  # drop 3 low bits: an approximate multiplier


@pytest.fixture
def no_host_copies(monkeypatch):
    """Make any `.cpu()` or `.numpy()` on a tensor fail: the torch path must not copy."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("the torch path copied a tensor to the host")

    def arm():
        monkeypatch.setattr(torch.Tensor, "cpu", refuse)
        monkeypatch.setattr(torch.Tensor, "numpy", refuse)

    return arm


@pytest.mark.parametrize("sign_magnitude", [False, True])
def test_torch_fallback_is_exact_and_stays_on_the_device(no_host_copies, sign_magnitude):
    gen = torch.Generator().manual_seed(0)
    lo = 0 if sign_magnitude else -128
    x = torch.randint(lo, 128 if lo else 256, (37, 50), generator=gen)
    w = torch.randint(-127, 128, (50, 9), generator=gen)
    table = _approx_table(signed=not sign_magnitude)
    expected = kernels.table_matmul(x, w, table, sign_magnitude=sign_magnitude)
    xf = x.float().requires_grad_()
    wf = w.float().requires_grad_()
    ref = kernels.approx_matmul(xf, wf, table, sign_magnitude)
    ref.sum().backward()
    ref_grads = (xf.grad.clone(), wf.grad.clone())
    table_t = torch.as_tensor(table)
    xf.grad = wf.grad = None

    no_host_copies()
    got = kernels.table_matmul(x, w, table_t, sign_magnitude=sign_magnitude, backend="torch")
    assert torch.equal(got.to(torch.int64), expected.to(torch.int64))
    prepared = kernels.prepare(w, table_t, sign_magnitude, backend="torch")
    assert prepared.backend == "torch" and prepared.device == x.device
    out = kernels.approx_matmul(xf, wf, table_t, sign_magnitude, prepared=prepared)
    assert torch.equal(out, ref.detach())
    out.sum().backward()
    assert torch.equal(xf.grad, ref_grads[0]) and torch.equal(wf.grad, ref_grads[1])


def test_tables_stay_on_their_device():
    table = torch.as_tensor(_approx_table(signed=True))
    assert kernels._as_table(table).device == table.device
    with pytest.raises(RuntimeError, match="compiled backend needs CPU tensors"):
        kernels.prepare(torch.zeros(2, 2, dtype=torch.int64, device="meta"), table,
                        backend="compiled")  # fmt: skip


def test_conv_torch_fallback_is_exact_and_stays_on_the_device(no_host_copies, monkeypatch):
    """The convolution path without the compiled kernel (as on a GPU): same integers and
    gradients as the compiled path, nothing copied to the host, training tables included."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (2, 4, 6, 6), generator=gen)
    w = torch.randint(-127, 128, (6, 2, 3, 3), generator=gen)
    table = _approx_table(signed=False)
    geo = dict(stride=2, padding=1, groups=2)
    expected = kernels.table_conv2d(x, w, table, sign_magnitude=True, pad_value=3, **geo)
    xf = (x - 3).float().requires_grad_()
    wf = w.float().requires_grad_()
    ref = kernels.approx_conv2d(xf, wf, table, True, zero_point=3, **geo)
    ref.sum().backward()
    ref_grads = (xf.grad.clone(), wf.grad.clone())
    xf.grad = wf.grad = None
    table_t = torch.as_tensor(table)
    monkeypatch.setitem(kernels._build_state, "op", None)

    no_host_copies()
    got = kernels.table_conv2d(
        x, w, table_t, sign_magnitude=True, pad_value=3, backend="torch", **geo
    )
    assert torch.equal(got.to(torch.int64), expected.to(torch.int64))
    tables = kernels.TrainingTables()
    for _ in range(2):
        out = kernels.approx_conv2d(xf, wf, table_t, True, zero_point=3, cache=tables, **geo)
        assert torch.equal(out, ref.detach())
    out.sum().backward()
    assert torch.equal(xf.grad, ref_grads[0]) and torch.equal(wf.grad, ref_grads[1])
