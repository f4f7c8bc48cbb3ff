"""Bit-exact emulation of a matrix product through an 8x8 multiplier's table.

`acc[m, n] = sum_k table[x[m, k] & 0xFF, w[k, n] & 0xFF]`; for unsigned multipliers with
sign-magnitude weights (`sign_magnitude=True`)
`acc[m, n] = sum_k sign(w[k, n]) * table[x[m, k] & 0xFF, |w[k, n]|]`, with sign(0) = 0:
a zero weight contributes nothing whatever table[x, 0] holds (DESIGN.md's equation).
First table index = activation, never transposed.
"""

from __future__ import annotations

import numpy as np
import torch

# A float32 sum of integers is exact while every partial sum stays within 2^24.
_F32_EXACT = 1 << 24
_F64_EXACT = 1 << 53
_INT32_MAX = (1 << 31) - 1


def _as_table(table: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(table) if not isinstance(table, torch.Tensor) else table)
    if t.shape != (256, 256):
        raise ValueError(f"table: expected shape (256, 256), got {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"table: expected an integer table, got dtype {t.dtype}")
    t64 = t.to(torch.int64)
    if t64.numel() and (int(t64.min()) < -(1 << 31) or int(t64.max()) > _INT32_MAX):
        raise ValueError("table: values must fit int32")
    return t64.to(torch.int32).contiguous()


def _check_operand(name: str, v: torch.Tensor, ndim_shape: str, lo: int, hi: int) -> None:
    if not isinstance(v, torch.Tensor):
        raise ValueError(f"{name}: expected a torch tensor, got {type(v).__name__}")
    if v.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D tensor {ndim_shape}, got shape {tuple(v.shape)}")
    if v.is_floating_point() or v.is_complex() or v.dtype == torch.bool:
        raise ValueError(f"{name}: expected an integer tensor, got dtype {v.dtype}")
    if v.numel():
        vmin, vmax = torch.aminmax(v)
        if int(vmin) < lo or int(vmax) > hi:
            raise ValueError(
                f"{name}: operand values must lie in [{lo}, {hi}], got [{int(vmin)}, {int(vmax)}]"
            )


def _check_inputs(x: torch.Tensor, w: torch.Tensor, sign_magnitude: bool) -> None:
    _check_operand("x", x, "(M, K)", -128, 255)
    # Sign-magnitude weights feed |w| to the multiplier, so |w| must be an 8-bit code.
    w_lo = -255 if sign_magnitude else -128
    _check_operand("w", w, "(K, N)", w_lo, 255)
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"x is {tuple(x.shape)} but w is {tuple(w.shape)}: inner sizes differ")


def weight_table(w: torch.Tensor, table: torch.Tensor, sign_magnitude: bool) -> torch.Tensor:
    """T[k, a, n] = the signed contribution of activation code `a` times weight w[k, n].

    int64 (K, 256, N). Summing T[k, x[m, k] & 0xFF, n] over k gives the accumulator.
    """
    w64 = w.to(torch.int64)
    codes = w64.abs() if sign_magnitude else w64 & 0xFF
    t = table.to(torch.int64)[:, codes]  # (256, K, N)
    if sign_magnitude:
        t = t * torch.sign(w64)
    return t.permute(1, 0, 2).contiguous()


def _accumulator_dtype(k: int, max_abs: int) -> torch.dtype:
    return torch.int32 if k * max_abs <= _INT32_MAX else torch.int64


def _embedding_bag_matmul(
    xb: torch.Tensor, t: torch.Tensor, out_dtype: torch.dtype
) -> torch.Tensor:
    """Pure-torch accumulation: one embedding_bag (sum) per block of K.

    xb: uint8 codes (M, K); t: int64 (K, 256, N). Blocks keep every float partial sum
    exact (float32 below 2^24, else float64 below 2^53); blocks add up in integers.
    """
    m, k = xb.shape
    n = t.shape[2]
    max_abs = int(t.abs().max()) if t.numel() else 0
    out = torch.zeros(m, n, dtype=out_dtype)
    if k == 0 or m == 0 or n == 0 or max_abs == 0:
        return out
    # float32 unless its exact blocks would be tiny (huge table values).
    if _F32_EXACT // max_abs >= min(k, 32):
        fdtype, block_k = torch.float32, min(k, _F32_EXACT // max_abs)
    else:
        fdtype, block_k = torch.float64, min(k, _F64_EXACT // max_abs)
    # Bound the (rows x block_k) index tensor to ~32 MB.
    block_m = max(1, min(m, (4 << 20) // block_k))
    offsets_k = torch.arange(block_k, dtype=torch.int64) * 256
    for k0 in range(0, k, block_k):
        k1 = min(k, k0 + block_k)
        bag = t[k0:k1].reshape((k1 - k0) * 256, n).to(fdtype)
        for m0 in range(0, m, block_m):
            m1 = min(m, m0 + block_m)
            idx = xb[m0:m1, k0:k1].to(torch.int64) + offsets_k[: k1 - k0]
            part = torch.nn.functional.embedding_bag(idx, bag, mode="sum")
            out[m0:m1] += part.to(out_dtype)
    return out


def table_matmul(
    x: torch.Tensor,
    w: torch.Tensor,
    table: np.ndarray | torch.Tensor,
    *,
    sign_magnitude: bool = False,
) -> torch.Tensor:
    """Exact accumulators (M, N) of x (M, K) times w (K, N) through `table`.

    x holds activation values in [-128, 255] (read as `x & 0xFF`); w weight values
    in [-128, 255], or in [-255, 255] with `sign_magnitude` (|w| is the code the
    multiplier sees, so w = -128 reads column 128, negated). Returns int32 when
    K * max|table| fits int32, else int64.
    """
    _check_inputs(x, w, sign_magnitude)
    t = weight_table(w, _as_table(table), sign_magnitude)
    max_abs = int(t.abs().max()) if t.numel() else 0
    xb = (x.to(torch.int64) & 0xFF).to(torch.uint8)
    return _embedding_bag_matmul(xb, t, _accumulator_dtype(x.shape[1], max_abs))


def _to_int(v: torch.Tensor) -> torch.Tensor:
    v = v.detach()
    return v.round().to(torch.int64) if v.is_floating_point() else v.to(torch.int64)


class ApproxMatmul(torch.autograd.Function):
    """Forward: table_matmul as float. Backward: the exact product's gradients (STE)."""

    @staticmethod
    def forward(ctx, x, w, table, sign_magnitude):  # type: ignore[override]
        ctx.save_for_backward(x, w)
        acc = table_matmul(_to_int(x), _to_int(w), table, sign_magnitude=sign_magnitude)
        return acc.to(x.dtype if x.is_floating_point() else torch.float32)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, w = ctx.saved_tensors
        grad_x = grad @ w.to(grad.dtype).t() if ctx.needs_input_grad[0] else None
        grad_w = x.to(grad.dtype).t() @ grad if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None, None


def approx_matmul(
    x: torch.Tensor,
    w: torch.Tensor,
    table: np.ndarray | torch.Tensor,
    sign_magnitude: bool = False,
) -> torch.Tensor:
    """Differentiable table product: x (M, K) and w (K, N) float tensors holding integer
    operand values. Forward = table_matmul as float; gradients = those of x @ w."""
    return ApproxMatmul.apply(x, w, table, sign_magnitude)
