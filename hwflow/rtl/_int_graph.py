"""The integer-only interpreter of a traced network (`hwflow.rtl.intinfer` is its public
face and says what it computes).

A tensor is integers `v` (channels in dim 1) standing for `v * scale + bias` per channel,
through a ReLU if `relu`. A batch norm's affine map, and a ReLU after it, are not rounded
where they stand: they wait for the next rescaling, which applies them in the one
rounding a requantizer with a bias term does (into a layer's codes: ReLU is then the
clamp at the zero point). Where integers must exist first (an addition, max-pooling, the
logits), the value is materialized in a scale EXTRA_BITS finer than the next approximate
layer's codes.
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, fx, nn

from hwflow.errors import HwflowError
from hwflow.rtl.intinfer import IntLayer, IntResult, int_layer, rescale

EXTRA_BITS = 8  # materialized values: 8 fractional bits below the consumer's codes


@dataclass
class _Value:
    v: Tensor  # int64
    scale: Tensor  # (C,) float64, nonzero (negative: a batch norm's negative scale)
    bias: Tensor | None = None  # (C,) float64
    relu: bool = False

    @property
    def plain(self) -> bool:
        """Exactly v * scale with every scale positive: ReLU and max-pooling apply to v."""
        return self.bias is None and not self.relu and bool((self.scale > 0).all())


class _Tracer(fx.Tracer):
    """torch.fx's tracer with the approximate layers as leaves (their forward branches on
    the mode, which a symbolic trace cannot follow)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return hasattr(m, "_act_qparams") or super().is_leaf_module(m, qualname)


def trace_graph(model: nn.Module) -> fx.Graph:
    try:
        return _Tracer().trace(model)
    except Exception as e:  # fx raises many kinds (TraceError, TypeError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HwflowError(f"integer inference: torch.fx cannot trace the network: {first}") from e


_ADD = (operator.add, operator.iadd, torch.add, "add", "add_")
_RELU = (torch.relu, nn.functional.relu, "relu", "relu_")
_FLATTEN = (torch.flatten, "flatten")


class Interpreter:
    """Runs the traced graph on integers; `tensors` keeps every integer tensor under its
    module's name (`conv.input`, `conv.acc`, `conv.t`, `relu.relu`, `pool.pool`, ...)."""

    def __init__(self, model: nn.Module, graph: fx.Graph) -> None:
        self.modules = dict(model.named_modules())
        self.graph = graph
        self.calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
        self.tensors: dict[str, Tensor] = {}
        self.image_shape: torch.Size | None = None

    def run(self, x: Tensor) -> IntResult:
        env: dict[fx.Node, object] = {}
        out: object = None
        for node in self.graph.nodes:
            args = fx.node.map_arg(node.args, lambda n: env[n])
            if node.op == "placeholder":
                env[node] = x
                self.image_shape = x.shape
            elif node.op == "output":
                out, out_node = args[0], node
            elif node.op == "call_module":
                env[node] = self._module(node, self.modules[node.target], args)
            elif node.op in ("call_function", "call_method"):
                env[node] = self._function(node, args)
            else:
                raise HwflowError(f"integer inference: unsupported {node.op} {node.target}")
        if not isinstance(out, _Value):
            raise HwflowError("integer inference: the network's output is not an integer tensor")
        if not out.plain:
            out = self._materialize(out_node, out)
        finest = float(out.scale.min())
        uniform = bool((out.scale == finest).all())
        logits = out.v if uniform else rescale(out.v, out.scale / finest)
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
        if isinstance(mod, nn.Flatten) and isinstance(args[0], Tensor):
            return args[0].flatten(mod.start_dim, mod.end_dim)  # the image, before its codes
        value = self._integer(node, args[0])
        if isinstance(mod, nn.ReLU):
            return self._relu(node, key, value)
        if isinstance(mod, nn.MaxPool2d):
            value = value if value.plain else self._materialize(node, value)
            pooled = nn.functional.max_pool2d(
                value.v.double(), mod.kernel_size, mod.stride, mod.padding, mod.dilation
            ).to(torch.int64)
            return self._keep(f"{key}.pool", replace(value, v=pooled))
        if isinstance(mod, nn.AvgPool2d | nn.AdaptiveAvgPool2d):
            value = self._materialize(node, value) if value.relu else value
            return self._keep(f"{key}.pool", _avg_pool(node, mod, value))
        if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
            value = self._materialize(node, value) if value.relu else value
            return _batchnorm(node, mod, value)
        if isinstance(mod, nn.Flatten):
            return _flatten(node, value, mod.start_dim, mod.end_dim)
        raise HwflowError(
            f"integer inference: unsupported module {node.target} ({type(mod).__name__})"
        )

    def _function(self, node: fx.Node, args: tuple) -> object:
        fn = node.target
        if fn in _ADD:
            return self._keep(f"{node.name}.add", self._add(node, args))
        if fn in _RELU:
            return self._relu(node, node.name, self._integer(node, args[0]))
        if isinstance(args[0], Tensor) and fn in (*_FLATTEN, "view", "reshape"):
            # the image, before its codes: only its layout changes
            call = getattr(Tensor, fn) if isinstance(fn, str) else fn
            return call(*args, **node.kwargs)
        if fn in _FLATTEN:
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
            end = args[2] if len(args) > 2 else node.kwargs.get("end_dim", -1)
            return _flatten(node, self._integer(node, args[0]), start, end)
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
        if isinstance(value, Tensor):
            raise HwflowError(
                f"integer inference: {node.name} works on the image itself; the image "
                "must go straight into an approximate layer"
            )
        if not isinstance(value, _Value):
            raise HwflowError(
                f"integer inference: {node.name}: an operand that is not a tensor ({value!r})"
            )
        return value

    def _keep(self, key: str, value: _Value) -> _Value:
        self.tensors[key] = value.v
        return value

    def _relu(self, node: fx.Node, key: str, value: _Value) -> _Value:
        if value.plain:
            return self._keep(f"{key}.relu", replace(value, v=value.v.clamp(min=0)))
        return replace(value, relu=True)  # applied by the next rescaling

    def _approx(self, key: str, mod: nn.Module, src: object) -> _Value:
        from hwflow.nn import quant as Q

        layer = int_layer(key, mod)
        lo, hi = Q.act_range(layer.signed)
        if isinstance(src, _Value):
            bias = None if src.bias is None else src.bias / layer.x_scale
            codes = (rescale(src.v, src.scale / layer.x_scale, bias) + layer.zero_point).clamp(
                lo, hi
            )
            if src.relu:  # quantizing max(y, 0): the code of 0 is the zero point
                codes = codes.clamp(min=layer.zero_point)
        else:  # the image: the one floating-point step, as the model does
            sx, _, _ = mod._act_qparams()
            codes = Q.quantize_centered(src, sx, layer.zero_point, layer.signed)
            codes = codes.to(torch.int64) + layer.zero_point
            # the image's codes in its own layout (a flatten before the layer keeps the order)
            self.tensors.setdefault("input", codes.reshape(self.image_shape))
        self.tensors[f"{key}.input"] = codes
        acc, t = _layer_sums(mod, codes, layer)
        self.tensors[f"{key}.acc"] = acc
        bias_view = (-1, *([1] * (t.dim() - 2))) if t.dim() > 2 else (-1,)
        t = t + layer.bias_int.reshape(bias_view)
        self.tensors[f"{key}.t"] = t
        return _Value(t, layer.scale)

    def _materialize(self, node: fx.Node, value: _Value) -> _Value:
        """Plain integers of `value` (bias and ReLU applied, in one rounding), in a scale
        EXTRA_BITS finer than the codes of the first approximate layer downstream of
        `node`, else than its finest input scale."""
        target = self._consumer_scale(node)
        if target is None:
            target = float(value.scale.abs().min())
        bias = None if value.bias is None else value.bias / target
        v = rescale(value.v, value.scale / target, bias)
        return _Value(v.clamp(min=0) if value.relu else v, torch.full_like(value.scale, target))

    def _consumer_scale(self, node: fx.Node) -> float | None:
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
        return None

    def _add(self, node: fx.Node, args: tuple) -> _Value:
        if len(args) != 2 or len(node.kwargs) > 0:
            raise HwflowError(f"integer inference: {node.name}: only a + b is supported")
        a, b = (self._materialize(node, self._integer(node, v)) for v in args)
        return _Value(a.v + b.v, a.scale)


def _batchnorm(node: fx.Node, mod: nn.Module, value: _Value) -> _Value:
    """a * y + b per channel, composed into the value's scale and bias (not rounded)."""
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
    if value.bias is not None:
        b = b + value.bias * a
    # a dead channel (a = 0) is its bias alone: keep a scale that is not zero
    a = torch.where(a == 0, torch.full_like(a, 1e-30), a)
    return _Value(value.v, value.scale * a, b)


def _avg_pool(node: fx.Node, mod: nn.Module, value: _Value) -> _Value:
    """Sums over each window (exact integers); the scale takes the 1/area, the bias stays."""
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
    return replace(value, v=summed, scale=value.scale / area)


def _flatten(node: fx.Node, value: _Value, start: int, end: int) -> _Value:
    v = value.v
    if v.dim() == 2 and start in (1, -1, 0) and end in (-1, 1):
        return value
    if start != 1 or end not in (-1, v.dim() - 1):
        raise HwflowError(f"integer inference: {node.name}: only flatten(1) is supported")
    per_channel = int(np.prod(v.shape[2:]))
    bias = None if value.bias is None else value.bias.repeat_interleave(per_channel)
    return replace(
        value, v=v.flatten(1), scale=value.scale.repeat_interleave(per_channel), bias=bias
    )


def _layer_sums(mod: nn.Module, codes: Tensor, layer: IntLayer) -> tuple[Tensor, Tensor]:
    """The engines' sums of a layer on its input codes, and t without the bias."""
    from hwflow.nn import quant as Q

    wq, _ = Q.quantize_weight(mod.weight.detach(), mod.per_channel)
    centered = (codes - layer.zero_point).double()
    _, w_int, acc, layout = mod.integer_sums(centered, layer.zero_point, wq)
    t = acc - layer.zero_point * w_int.sum(dim=1, keepdim=True)
    return acc, mod._rows_to_output(t, layout)
