"""Integer-only inference of a quantized network: plain stacks (the digits CNN) and
residual networks (ResNets: batch norm, additions, average pooling).

Only the input image is quantized in floating point (preprocessing); from there on every
tensor is an integer, as a hardware pipeline after the MAC engines would compute it, with
one real scale per channel (dim 1), every rescaling a fixed-point multiply per channel:

1. MAC: `acc = sum_k table[x, w]` (sign-magnitude for unsigned layers), the engines' sums;
2. `t = acc - z * sum_k w + round(bias / (s_x * s_w)) + offset`, integer with scale
   S = s_x * s_w per output channel (offset: the layer's accumulator bias correction);
3. into a layer's input codes with a fixed-point multiplier per channel:
   `q = clamp(((v * M0) + 2^(shift-1)) >> shift + z', code range)`, where
   M0 / 2^shift ~ scale / s_x' (M0 in [2^14, 2^15));
4. ReLU clamps at 0 and max-pooling compares integers (every scale is positive, so both
   commute with requantization: `.pool` tensors are pooled before it); average pooling
   sums (the scale takes the 1/area); flatten repeats each channel's scale;
5. batch norm is a per-channel affine map a*y + b that is not rounded where it stands:
   the next rescaling applies it (a into M0, b as an integer at 2^-shift), with a ReLU
   after it as the clamp at the next layer's zero point; an addition brings both operands
   into one scale 2^EXTRA_BITS finer than the next layer's codes (sixteen-bit
   activations) and adds;
6. the logits are the last integers, brought to one common scale; argmax is the class.
The graph comes from `torch.fx` (approximate layers are leaves; `hwflow.rtl._int_graph`
interprets it), so any forward made of these operations runs, plain stacks (the digits
CNN) and ResNets alike; anything else is one clear error.
The fake-quant model rounds in floating point instead (and its residual path carries
floats); accuracy of both is reported side by side (`integer_accuracy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from hwflow.errors import HwflowError

FRAC_BITS = 15  # M0 < 2^15
MAX_SHIFT = 40  # smaller multipliers (a near-dead batch-norm channel) keep fewer bits


@dataclass
class IntLayer:
    """Integer parameters of one approximate layer."""

    name: str
    zero_point: int
    signed: bool
    bias_int: Tensor  # (out,) int64
    scale: Tensor  # (out,) float64: S = s_x * s_w of each output channel's t
    x_scale: float


@dataclass
class IntResult:
    classes: Tensor  # (N,) int64
    logits: Tensor  # (N, classes) int64, at one common scale
    tensors: dict[str, Tensor] = field(default_factory=dict)  # every intermediate integer
    logit_scale: float = 1.0  # the real value of one unit of `logits`


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


def rescale(v: Tensor, m: Tensor, bias: Tensor | None = None) -> Tensor:
    """round(v * m + bias) per channel (dim 1) in integer arithmetic: a fixed-point M0 and
    shift per channel (M0 negative for a negative m) and the bias at 2^-shift."""
    m0s, shifts = [], []
    for mc in m.tolist():
        if abs(mc) < 2.0 ** (FRAC_BITS - 1 - MAX_SHIFT):
            m0, shift = round(abs(mc) * 2**MAX_SHIFT), MAX_SHIFT
        else:
            m0, shift = fixed_point(abs(mc))
        m0s.append(-m0 if mc < 0 else m0)
        shifts.append(shift)
    m0_t = torch.tensor(m0s, dtype=torch.int64)
    shift_t = torch.tensor(shifts, dtype=torch.int64)
    add = torch.bitwise_left_shift(torch.ones_like(shift_t), shift_t - 1)
    if bias is not None:
        add = add + torch.round(torch.ldexp(bias.double(), shift_t)).to(torch.int64)
    view = (-1, *([1] * (v.dim() - 2)))
    return (v * m0_t.reshape(view) + add.reshape(view)) >> shift_t.reshape(view)


def int_layer(name: str, mod: nn.Module) -> IntLayer:
    from hwflow.nn import quant

    sx, zp, signed = mod._act_qparams()
    _, sw = quant.quantize_weight(mod.weight.detach(), mod.per_channel)
    out_channels = mod.weight.shape[0]
    scale = (float(sx) * sw.detach().double()).expand(out_channels).clone()
    bias = mod.bias.detach() if mod.bias is not None else torch.zeros(out_channels)
    bias_int = torch.round(bias.double() / scale).to(torch.int64)
    if mod.acc_offset is not None and mod.table is not None:
        # the bias correction of the approximate multiplier joins the integer bias,
        # so the RTL's per-lane offsets carry it as they carry the bias
        bias_int = bias_int + mod.acc_offset.to(bias_int.device)
    return IntLayer(name, int(zp), bool(signed), bias_int, scale, float(sx))


def _int_layers(model: nn.Sequential) -> dict[str, IntLayer]:
    """The Sequential's approximate layers, each with one scale (what hwflow_net takes)."""
    out = {}
    for name, mod in model.named_children():
        if hasattr(mod, "_act_qparams"):
            out[name] = int_layer(name, mod)
            if mod.per_channel:
                raise HwflowError(f"layer {name}: the network RTL needs per-tensor weight scales")
    return out


@torch.no_grad()
def integer_inference(model: nn.Module, x: Tensor) -> IntResult:
    """Run `model` (approximate layers in approx or quant mode, eval) integer-only on `x`."""
    from hwflow.rtl import _int_graph

    return _int_graph.Interpreter(model, _int_graph.trace_graph(model)).run(x)


def integer_accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 512) -> float:
    """Top-1 accuracy of the integer-only pipeline."""
    return integer_accuracies(model, x, y, batch, topk=(1,))[1]


def integer_accuracies(
    model: nn.Module, x: Tensor, y: Tensor, batch: int = 512, topk: tuple[int, ...] = (1, 5)
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
                m0, shift = fixed_point(float(prev.scale[0]) / p.x_scale)
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
