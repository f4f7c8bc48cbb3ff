"""Integer-only inference of a conv/ReLU/max-pool/linear network (the digits CNN).

Only the input image is quantized in floating point (preprocessing); from there on every
tensor is an integer, as a hardware pipeline after the MAC engines would compute it:

1. MAC: `acc = sum_k table[x, w]` (sign-magnitude for unsigned layers), the engines' sums;
2. `t = acc - z * sum_k w + round(bias / (s_x * s_w)) + offset`, integer with scale
   S = s_x * s_w (offset: the layer's accumulator bias correction, if any);
3. requantization to the next layer's input codes with a fixed-point multiplier:
   `q = clamp(((t * M0) + 2^(shift-1)) >> shift + z', code range)`, where
   M0 / 2^shift ~ S / s_x' (M0 in [2^14, 2^15)), ReLU fused (z' = 0 after ReLU: the clamp
   at 0 is the ReLU; otherwise max(q, z'));
4. max-pooling on codes (requantization is monotone, so pooling before or after it gives
   the same codes), flatten, and the last layer's `t` (one common scale per tensor) gives
   the class by argmax.
The fake-quant model rounds `y / s_x'` in floating point instead; accuracy of both is
reported side by side (`integer_accuracy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from hwflow.errors import HwflowError

FRAC_BITS = 15  # M0 < 2^15


@dataclass
class IntLayer:
    """Integer parameters of one approximate layer."""

    name: str
    zero_point: int
    signed: bool
    bias_int: Tensor  # (out,) int64
    scale: float  # S = s_x * s_w of its output t
    x_scale: float


@dataclass
class IntResult:
    classes: Tensor  # (N,) int64
    logits: Tensor  # (N, classes) int64 (t of the last layer)
    tensors: dict[str, Tensor] = field(default_factory=dict)  # every intermediate integer


def fixed_point(m: float) -> tuple[int, int]:
    """(M0, shift) with M0 / 2^shift ~= m, M0 in [2^14, 2^15)."""
    if not m > 0:
        raise HwflowError(f"requantization multiplier must be positive, got {m}")
    shift = FRAC_BITS - 1 - int(np.floor(np.log2(m)))
    m0 = round(m * 2**shift)
    if m0 >= 2**FRAC_BITS:  # rounding reached the next power of two
        shift -= 1
        m0 = round(m * 2**shift)
    if shift < 1:
        raise HwflowError(f"requantization multiplier {m} too large for a right shift")
    return m0, shift


def requantize(t: Tensor, m0: int, shift: int, zero_point: int, signed: bool) -> Tensor:
    """Codes of the next layer: round-half-up fixed-point scaling, offset, clamp."""
    lo, hi = (-128, 127) if signed else (0, 255)
    return (((t * m0 + (1 << (shift - 1))) >> shift) + zero_point).clamp(lo, hi)


def _int_layers(model: nn.Sequential) -> dict[str, IntLayer]:
    from hwflow.nn import quant

    out = {}
    for name, mod in model.named_children():
        if not hasattr(mod, "_act_qparams"):
            continue
        sx, zp, signed = mod._act_qparams()
        _, sw = quant.quantize_weight(mod.weight.detach(), mod.per_channel)
        if sw.dim() != 0:
            raise HwflowError(f"layer {name}: integer inference needs per-tensor weight scales")
        scale = float(sx) * float(sw)
        bias = mod.bias.detach() if mod.bias is not None else torch.zeros(mod.weight.shape[0])
        bias_int = torch.round(bias.double() / scale).to(torch.int64)
        if mod.acc_offset is not None and mod.table is not None:
            # the bias correction of the approximate multiplier joins the integer bias,
            # so the RTL's per-lane offsets carry it as they carry the bias
            bias_int = bias_int + mod.acc_offset.to(bias_int.device)
        out[name] = IntLayer(name, int(zp), bool(signed), bias_int, scale, float(sx))
    return out


@torch.no_grad()
def integer_inference(model: nn.Sequential, x: Tensor) -> IntResult:
    """Run `model` (approximate layers in approx or quant mode) integer-only on `x`."""
    from hwflow.multipliers.table import exact_table
    from hwflow.nn import kernels
    from hwflow.nn import quant as Q

    if not isinstance(model, nn.Sequential):
        raise HwflowError("integer inference supports nn.Sequential conv/ReLU/pool/linear nets")
    params = _int_layers(model)
    names = list(params)
    tensors: dict[str, Tensor] = {}
    first = params[names[0]]
    sx0, _, _ = dict(model.named_children())[names[0]]._act_qparams()
    # the one floating-point step: the image to layer 0's input codes, as the model does
    codes = Q.quantize_centered(x, sx0, first.zero_point, first.signed)
    value: Tensor = codes.to(torch.int64) + first.zero_point  # input codes of layer 0
    kind = "codes"
    tensors["input"] = value
    pending: IntLayer | None = None  # layer whose t awaits requantization
    for name, mod in model.named_children():
        if name in params:
            p = params[name]
            if kind == "t":
                assert pending is not None
                m0, shift = fixed_point(pending.scale / p.x_scale)
                value = requantize(value, m0, shift, p.zero_point, p.signed)
                tensors[f"{name}.input"] = value
            table = mod.table if mod.table is not None else exact_table(p.signed)
            rows, meta = mod._operand_rows((value - p.zero_point).double())
            x_int = rows.round().to(torch.int64) + p.zero_point
            wq, _ = Q.quantize_weight(mod.weight.detach(), mod.per_channel)
            w_int = mod._grouped_weight(wq).round().to(torch.int64)
            acc = torch.stack(
                [
                    kernels.table_matmul(x_int[g], w_int[g], table, sign_magnitude=not p.signed).to(
                        torch.int64
                    )
                    for g in range(x_int.shape[0])
                ]
            )
            t = acc - p.zero_point * w_int.sum(dim=1, keepdim=True)
            value = mod._rows_to_output(t, meta)
            bias_shape = (-1, *([1] * (value.dim() - 2))) if value.dim() > 2 else (-1,)
            value = value + p.bias_int.reshape(bias_shape)
            tensors[f"{name}.acc"] = acc
            tensors[f"{name}.t"] = value
            kind, pending = "t", p
        elif isinstance(mod, nn.ReLU):
            value = value.clamp(min=0) if kind == "t" else value
            tensors[f"{name}.relu"] = value
        elif isinstance(mod, nn.MaxPool2d):
            value = nn.functional.max_pool2d(
                value.double(), mod.kernel_size, mod.stride, mod.padding, mod.dilation
            ).to(torch.int64)
            tensors[f"{name}.pool"] = value
        elif isinstance(mod, nn.Flatten):
            value = value.flatten(mod.start_dim, mod.end_dim)
        else:
            raise HwflowError(
                f"integer inference: unsupported module {name} ({type(mod).__name__})"
            )
    if kind != "t":
        raise HwflowError("integer inference: the network must end in an approximate layer")
    return IntResult(value.argmax(dim=1), value, tensors)


def integer_accuracy(model: nn.Sequential, x: Tensor, y: Tensor, batch: int = 512) -> float:
    """Top-1 accuracy of the integer-only pipeline."""
    return integer_accuracies(model, x, y, batch, topk=(1,))[1]


def integer_accuracies(
    model: nn.Sequential, x: Tensor, y: Tensor, batch: int = 512, topk: tuple[int, ...] = (1, 5)
) -> dict[int, float]:
    """{k: top-k accuracy} of the integer-only pipeline. Integer logits tie, so classes rank
    by value and then by index, the order `argmax` (the hardware's class) breaks ties in:
    top-1 is exactly the argmax's accuracy and top-k never falls below it."""
    correct = dict.fromkeys(topk, 0)
    for i in range(0, len(y), batch):
        value = integer_inference(model, x[i : i + batch]).logits
        yb = y[i : i + batch].to(value.device)[:, None]
        mine = value.gather(1, yb)
        index = torch.arange(value.shape[1], device=value.device)
        rank = (value > mine).sum(1) + ((value == mine) & (index < yb)).sum(1)
        for k in topk:
            correct[k] += int((rank < k).sum())
    return {k: c / max(len(y), 1) for k, c in correct.items()}


@dataclass
class Stage:
    """Requantization after one approximate layer, into the next one's input codes."""

    m0: int
    shift: int
    zero_point: int  # of the next layer's codes
    signed: bool  # of the next layer's codes
    relu: bool
    bias_int: Tensor  # (out,) int64 of this layer
    input_zero_point: int  # z of this layer's own input (the zero-point correction)
    classes: int = 0  # > 0: the network's last layer, whose argmax is the class


def requant_stages(model: nn.Module) -> dict[str, Stage]:
    """Per approximate layer followed (through ReLU / max-pool / flatten only) by another
    approximate layer: the integer stage between them; the last module, when it is an
    approximate layer, gets the argmax stage (`classes` > 0). Other layers get none."""
    if not isinstance(model, nn.Sequential):
        return {}
    params = _int_layers(model)
    out: dict[str, Stage] = {}
    prev: IntLayer | None = None
    relu = False
    for name, mod in model.named_children():
        if name in params:
            p = params[name]
            if prev is not None:
                m0, shift = fixed_point(prev.scale / p.x_scale)
                out[prev.name] = Stage(
                    m0, shift, p.zero_point, p.signed, relu, prev.bias_int, prev.zero_point
                )
            prev, relu = p, False
        elif isinstance(mod, nn.ReLU):
            relu = True
        elif not isinstance(mod, nn.MaxPool2d | nn.Flatten):
            prev = None  # something non-integer in between: no stage across it
    last = list(model.named_children())[-1][0] if len(model) else None
    if prev is not None and prev.name == last:
        classes = int(prev.bias_int.numel())
        out[last] = Stage(0, 1, 0, False, False, prev.bias_int, prev.zero_point, classes)
    return out
