"""Integer-only inference of a quantized network: plain stacks (the digits CNN) and
residual networks (ResNets: batch norm, additions, average pooling).

Only the input image is quantized in floating point (preprocessing); from there on every
tensor is an integer, as a hardware pipeline after the MAC engines would compute it. A
tensor is held as integers `v` with one real scale per channel (dim 1): value ~ v * scale.
The network's graph comes from `torch.fx` (approximate layers are leaves), so any forward
made of the operations below runs; anything else is one clear error.

1. MAC: `acc = sum_k table[x, w]` (sign-magnitude for unsigned layers), the engines' sums;
2. `t = acc - z * sum_k w + round(bias / (s_x * s_w)) + offset`, integer with scale
   S = s_x * s_w per output channel (offset: the layer's accumulator bias correction);
3. into a layer's input codes with a fixed-point multiplier per channel:
   `q = clamp(((v * M0) + 2^(shift-1)) >> shift + z', code range)`, where
   M0 / 2^shift ~ scale / s_x' (M0 in [2^14, 2^15));
4. ReLU clamps at 0 and max-pooling compares integers (every scale is positive, so both
   commute with requantization: `.pool` tensors are pooled before it); average pooling
   sums (the scale takes the 1/area); flatten repeats each channel's scale;
5. batch norm is a per-channel affine map a*y + b: it requantizes, bias b included,
   into a fine common scale (the next approximate layer's s_x / 2^EXTRA_BITS: sixteen-bit
   activations); an addition requantizes both operands into that scale and adds;
6. the logits are the last integers, brought to one common scale; argmax is the class.
The fake-quant model rounds in floating point instead (and its residual path carries
floats); accuracy of both is reported side by side (`integer_accuracy`).
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, fx, nn

from hwflow.errors import HwflowError

FRAC_BITS = 15  # M0 < 2^15
MAX_SHIFT = 40  # smaller multipliers (a near-dead batch-norm channel) keep fewer bits
EXTRA_BITS = 8  # batch norm and additions: 8 fractional bits below the consumer's codes


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


@dataclass
class _Value:
    """Integers `v` (channels in dim 1) standing for v * scale[channel]."""

    v: Tensor
    scale: Tensor  # (C,) float64, every entry > 0


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


def _rescale(v: Tensor, m: Tensor, bias: Tensor | None = None) -> Tensor:
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


def _int_layer(name: str, mod: nn.Module) -> IntLayer:
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
            out[name] = _int_layer(name, mod)
            if mod.per_channel:
                raise HwflowError(f"layer {name}: the network RTL needs per-tensor weight scales")
    return out


class _Tracer(fx.Tracer):
    """torch.fx's tracer with the approximate layers as leaves (their forward branches on
    the mode, which a symbolic trace cannot follow)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return hasattr(m, "_act_qparams") or super().is_leaf_module(m, qualname)


def _graph(model: nn.Module) -> fx.Graph:
    try:
        return _Tracer().trace(model)
    except Exception as e:  # fx raises many kinds (TraceError, TypeError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HwflowError(f"integer inference: torch.fx cannot trace the network: {first}") from e


class _Interpreter:
    """Runs the traced graph on integers (see the module docstring); `tensors` keeps every
    intermediate under its module's name (`conv.acc`, `conv.t`, `relu.relu`, ...)."""

    def __init__(self, model: nn.Module, graph: fx.Graph) -> None:
        self.modules = dict(model.named_modules())
        self.graph = graph
        self.calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
        self.tensors: dict[str, Tensor] = {}

    def run(self, x: Tensor) -> IntResult:
        env: dict[fx.Node, object] = {}
        out: object = None
        for node in self.graph.nodes:
            args = fx.node.map_arg(node.args, lambda n: env[n])
            if node.op == "placeholder":
                env[node] = x
            elif node.op == "output":
                out = args[0]
            elif node.op == "call_module":
                env[node] = self._module(node, self.modules[node.target], args)
            elif node.op in ("call_function", "call_method"):
                env[node] = self._function(node, args)
            else:
                raise HwflowError(f"integer inference: unsupported {node.op} {node.target}")
        if not isinstance(out, _Value):
            raise HwflowError("integer inference: the network's output is not an integer tensor")
        finest = float(out.scale.min())
        uniform = bool((out.scale == finest).all())
        logits = out.v if uniform else _rescale(out.v, out.scale / finest)
        return IntResult(logits.argmax(dim=1), logits, self.tensors, finest)

    def _key(self, node: fx.Node) -> str:
        # a module called once is named by its path (`layers.0.conv1`), one reused (a
        # shared ReLU) by the call's node name
        if node.op == "call_module" and self.calls[node.target] == 1:
            return str(node.target)
        return node.name

    def _module(self, node: fx.Node, mod: nn.Module, args: tuple) -> object:
        key = self._key(node)
        if hasattr(mod, "_act_qparams"):
            return self._approx(key, mod, args[0])
        if isinstance(mod, nn.Identity | nn.Dropout):
            return args[0]
        value = self._integer(node, args[0])
        if isinstance(mod, nn.ReLU):
            return self._keep(f"{key}.relu", _Value(value.v.clamp(min=0), value.scale))
        if isinstance(mod, nn.MaxPool2d):
            pooled = nn.functional.max_pool2d(
                value.v.double(), mod.kernel_size, mod.stride, mod.padding, mod.dilation
            ).to(torch.int64)
            return self._keep(f"{key}.pool", _Value(pooled, value.scale))
        if isinstance(mod, nn.AvgPool2d | nn.AdaptiveAvgPool2d):
            return self._keep(f"{key}.pool", self._avg_pool(node, mod, value))
        if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
            return self._keep(f"{key}.bn", self._batchnorm(node, mod, value))
        if isinstance(mod, nn.Flatten):
            return _flatten(node, value, mod.start_dim, mod.end_dim)
        raise HwflowError(
            f"integer inference: unsupported module {node.target} ({type(mod).__name__})"
        )

    def _function(self, node: fx.Node, args: tuple) -> object:
        fn = node.target
        if fn in (operator.add, operator.iadd, torch.add, "add", "add_"):
            return self._keep(f"{node.name}.add", self._add(node, args))
        if fn in (torch.relu, nn.functional.relu, "relu", "relu_"):
            value = self._integer(node, args[0])
            return self._keep(f"{node.name}.relu", _Value(value.v.clamp(min=0), value.scale))
        if fn in (torch.flatten, "flatten"):
            value = self._integer(node, args[0])
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
            end = args[2] if len(args) > 2 else node.kwargs.get("end_dim", -1)
            return _flatten(node, value, start, end)
        if fn in ("view", "reshape") and isinstance(args[0], _Value):
            value = args[0]
            if value.v.reshape(*args[1:]).shape != value.v.flatten(1).shape:
                raise HwflowError(
                    f"integer inference: {node.name}: only a flatten to (batch, features) "
                    "is supported as a view or reshape"
                )
            return _flatten(node, value, 1, -1)
        if fn == "size" and isinstance(args[0], _Value | Tensor):
            src = args[0].v if isinstance(args[0], _Value) else args[0]
            return src.size(*args[1:])
        name = fn if isinstance(fn, str) else getattr(fn, "__name__", str(fn))
        raise HwflowError(f"integer inference: unsupported operation {name} ({node.name})")

    def _integer(self, node: fx.Node, value: object) -> _Value:
        if not isinstance(value, _Value):
            raise HwflowError(
                f"integer inference: {node.name} works on the image itself; the image "
                "must go straight into an approximate layer"
            )
        return value

    def _keep(self, key: str, value: _Value) -> _Value:
        self.tensors[key] = value.v
        return value

    def _approx(self, key: str, mod: nn.Module, src: object) -> _Value:
        from hwflow.nn import quant as Q

        layer = _int_layer(key, mod)
        lo, hi = Q.act_range(layer.signed)
        if isinstance(src, _Value):
            codes = _rescale(src.v, src.scale / layer.x_scale) + layer.zero_point
            codes = codes.clamp(lo, hi)
        else:  # the image: the one floating-point step, as the model does
            sx, _, _ = mod._act_qparams()
            codes = Q.quantize_centered(src, sx, layer.zero_point, layer.signed)
            codes = codes.to(torch.int64) + layer.zero_point
            self.tensors.setdefault("input", codes)
        self.tensors[f"{key}.input"] = codes
        acc, t = _layer_sums(mod, codes, layer)
        self.tensors[f"{key}.acc"] = acc
        bias_view = (-1, *([1] * (t.dim() - 2))) if t.dim() > 2 else (-1,)
        t = t + layer.bias_int.reshape(bias_view)
        self.tensors[f"{key}.t"] = t
        return _Value(t, layer.scale)

    def _target_scale(self, node: fx.Node, scales: list[Tensor]) -> float:
        """The scale batch norm and additions requantize into: EXTRA_BITS finer than the
        codes of the first approximate layer downstream, else the finest input scale."""
        seen, queue = set(), list(node.users)
        while queue:
            user = queue.pop(0)
            if user in seen:
                continue
            seen.add(user)
            mod = self.modules.get(user.target) if user.op == "call_module" else None
            if mod is not None and hasattr(mod, "_act_qparams"):
                return float(mod._act_qparams()[0]) / 2**EXTRA_BITS
            queue.extend(user.users)
        return float(min(float(s.min()) for s in scales))

    def _batchnorm(self, node: fx.Node, mod: nn.Module, value: _Value) -> _Value:
        if mod.running_mean is None or mod.running_var is None:
            raise HwflowError(
                f"integer inference: {node.target}: batch norm without running statistics"
            )
        a = 1.0 / torch.sqrt(mod.running_var.double() + mod.eps)
        if mod.affine:
            a = a * mod.weight.detach().double()
        b = -mod.running_mean.double() * a
        if mod.affine:
            b = b + mod.bias.detach().double()
        target = self._target_scale(node, [value.scale * a.abs().clamp(min=1e-30)])
        v = _rescale(value.v, value.scale * a / target, b / target)
        return _Value(v, torch.full_like(value.scale, target))

    def _add(self, node: fx.Node, args: tuple) -> _Value:
        if len(args) != 2 or len(node.kwargs) > 0:
            raise HwflowError(f"integer inference: {node.name}: only a + b is supported")
        a, b = (self._integer(node, v) for v in args)
        target = self._target_scale(node, [a.scale, b.scale])
        v = _rescale(a.v, a.scale / target) + _rescale(b.v, b.scale / target)
        return _Value(v, torch.full_like(a.scale, target))

    def _avg_pool(self, node: fx.Node, mod: nn.Module, value: _Value) -> _Value:
        """Sums over each window (exact integers); the scale takes the 1/area."""
        v = value.v
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            if mod.output_size not in (1, (1, 1)):
                raise HwflowError(
                    f"integer inference: {node.target}: adaptive average pooling to 1x1 only"
                )
            area = v.shape[2] * v.shape[3]
            summed = v.sum(dim=(2, 3), keepdim=True)
        else:
            if mod.padding not in (0, (0, 0)) or mod.ceil_mode:
                raise HwflowError(
                    f"integer inference: {node.target}: average pooling without padding only"
                )
            kernel = nn.modules.utils._pair(mod.kernel_size)
            area = kernel[0] * kernel[1]
            stride = mod.stride if mod.stride is not None else mod.kernel_size
            mean = nn.functional.avg_pool2d(v.double(), mod.kernel_size, stride)
            summed = torch.round(mean * area).to(torch.int64)  # sums below 2^53: exact
        return _Value(summed, value.scale / area)


def _flatten(node: fx.Node, value: _Value, start: int, end: int) -> _Value:
    v = value.v
    if v.dim() == 2 and start in (1, -1, 0) and end in (-1, 1):
        return value
    if start != 1 or end not in (-1, v.dim() - 1):
        raise HwflowError(f"integer inference: {node.name}: only flatten(1) is supported")
    per_channel = int(np.prod(v.shape[2:]))
    return _Value(v.flatten(1), value.scale.repeat_interleave(per_channel))


def _layer_sums(mod: nn.Module, codes: Tensor, layer: IntLayer) -> tuple[Tensor, Tensor]:
    """The engines' sums of a layer on its input codes, and t without the bias."""
    from hwflow.nn import quant as Q

    wq, _ = Q.quantize_weight(mod.weight.detach(), mod.per_channel)
    centered = (codes - layer.zero_point).double()
    _, w_int, acc, layout = mod.integer_sums(centered, layer.zero_point, wq)
    t = acc - layer.zero_point * w_int.sum(dim=1, keepdim=True)
    return acc, mod._rows_to_output(t, layout)


@torch.no_grad()
def integer_inference(model: nn.Module, x: Tensor) -> IntResult:
    """Run `model` (approximate layers in approx or quant mode, eval) integer-only on `x`."""
    return _Interpreter(model, _graph(model)).run(x)


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
