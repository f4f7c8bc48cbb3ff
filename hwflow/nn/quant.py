"""8-bit quantization with straight-through estimators (docs/concepts/operands.md).

Decisions (the RTL and the error model rely on them):
- Weights: symmetric int8 in [-127, 127] (never -128, so |w| fits the 0..128 magnitude
  input of an unsigned multiplier), scale = max|w| / 127, per tensor by default or per
  output channel.
- Activations: affine with an integer zero-point, ranges from an observer (running
  min/max, or an exponential moving average of the batch min/max). A *signed* layer uses
  int8 codes in [-128, 127]; an *unsigned* layer uses uint8 codes in [0, 255]. The
  calibrated range always contains 0, so real 0 is exactly the code `zero_point` (the
  value conv padding must hold); after ReLU the range starts at 0 and zero_point = 0.
- Rounding is round-half-to-even of `x / scale` (as torch.round), in one place
  (`round_clamp_ste`) so the float path, the integer path and the trace agree exactly.

The float-valued "centered" code `q - zero_point` is what the fast QAT path convolves:
sums of integer products are exact in float32 while every partial sum stays below 2^24 in
magnitude, so the QAT forward equals the integer accumulator path bit for bit (largest
|accumulator| seen on random-input ResNet-20, small VGG and LeNet-5: 1.6e5 to 7.2e5).
"""

from __future__ import annotations

import torch
from torch import Tensor

WEIGHT_QMAX = 127


def act_range(signed: bool) -> tuple[int, int]:
    """Code range of activations: int8 for signed layers, uint8 for unsigned ones."""
    return (-128, 127) if signed else (0, 255)


class _RoundClamp(torch.autograd.Function):
    """Forward `clamp(round(v) + offset, lo, hi) - offset`; backward: the gradient where
    `round(v) + offset` lies in [lo, hi], else 0 (what fake-quantize with scale 1 computes,
    in three vectorized passes: torch's CPU fake-quantize kernel measured 4-5x slower, ~8 ns
    per value on one thread, a large share of a quantized training step)."""

    @staticmethod
    def forward(ctx, v: Tensor, lo: int, hi: int, offset: int) -> Tensor:  # type: ignore[override]
        # round(v) is an integer, so clamping it to the shifted range and then comparing
        # gives both results in three passes (exact: far outside the range both clamp).
        q = torch.round(v)
        out = torch.clamp(q, lo - offset, hi - offset)
        ctx.save_for_backward(out == q)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None


def round_clamp_ste(v: Tensor, lo: int, hi: int, offset: int = 0) -> Tensor:
    """`clamp(round(v) + offset, lo, hi) - offset`, gradient 1 where not clamped (STE).

    Rounding is half-to-even, like torch.round; for finite v the same values and gradients
    as `torch.fake_quantize_per_tensor_affine(v, 1.0, offset, lo, hi)`, faster on CPU.
    """
    return _RoundClamp.apply(v, lo, hi, offset)


def quantize_centered(x: Tensor, scale: Tensor, zero_point: int, signed: bool) -> Tensor:
    """`q - zero_point` as float, q = clamp(round(x / scale) + zero_point, code range).

    Differentiable (STE): d/dx = 1/scale inside the range. `q` itself is the operand code
    the multiplier sees; add `zero_point` back to get it.
    """
    lo, hi = act_range(signed)
    return round_clamp_ste(x / scale, lo, hi, zero_point)


def weight_scale(w: Tensor, per_channel: bool) -> Tensor:
    """Symmetric scale max|w| / 127, a scalar or one per output channel (dim 0)."""
    w = w.detach()
    amax = w.abs().flatten(1).amax(dim=1) if per_channel else w.abs().amax()
    return torch.clamp(amax, min=1e-8) / WEIGHT_QMAX


def quantize_weight(w: Tensor, per_channel: bool) -> tuple[Tensor, Tensor]:
    """(integer-valued float weights in [-127, 127] with STE gradient 1/scale, scale).

    The scale has shape () or (out_channels,).
    """
    scale = weight_scale(w, per_channel)
    s = scale.reshape(-1, *([1] * (w.dim() - 1))) if per_channel else scale
    return round_clamp_ste(w / s, -WEIGHT_QMAX, WEIGHT_QMAX), scale


def affine_params(lo: float, hi: float, signed: bool) -> tuple[float, int]:
    """Scale and integer zero-point mapping [min(lo,0), max(hi,0)] onto the code range."""
    qmin, qmax = act_range(signed)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / (qmax - qmin), 1e-8)
    zero_point = int(round(qmin - lo / scale))
    return scale, min(max(zero_point, qmin), qmax)


class ActObserver(torch.nn.Module):
    """Tracks an activation range and turns it into (scale, zero_point).

    `kind="minmax"`: running min/max over everything observed. `kind="ema"`: moving average
    of per-batch min/max (momentum 0.1), seeded by the first batch. Observation happens
    only while `enabled`; the buffers are saved with the model.
    """

    def __init__(self, kind: str = "ema", momentum: float = 0.1) -> None:
        super().__init__()
        if kind not in ("minmax", "ema"):
            raise ValueError(f"observer: expected 'minmax' or 'ema', got {kind!r}")
        self.kind = kind
        self.momentum = momentum
        self.enabled = False
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("seen", torch.tensor(False))

    def reset(self) -> None:
        self.lo.zero_()
        self.hi.zero_()
        self.seen.fill_(False)

    @torch.no_grad()
    def observe(self, x: Tensor) -> None:
        lo, hi = x.min().float(), x.max().float()
        if not bool(self.seen):
            self.lo.copy_(lo)
            self.hi.copy_(hi)
            self.seen.fill_(True)
        elif self.kind == "minmax":
            self.lo.copy_(torch.minimum(self.lo, lo))
            self.hi.copy_(torch.maximum(self.hi, hi))
        else:
            self.lo.lerp_(lo, self.momentum)
            self.hi.lerp_(hi, self.momentum)

    def params(self, signed: bool) -> tuple[float, int]:
        return affine_params(float(self.lo), float(self.hi), signed)
