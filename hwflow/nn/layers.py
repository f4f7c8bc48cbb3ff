"""Quantized approximate layers: drop-in nn.Conv2d / nn.Linear with four modes.

Modes (`layer.mode`):
- `float`: the plain float layer.
- `quant`: exact int8 arithmetic (quantization-aware training with STE gradients).
- `agn`: `quant` plus the learnable Gaussian noise of `hwflow.nn.agn` (training only,
  unless `agn_eval_noise` is set).
- `approx`: every product comes from the layer's multiplier table (`set_table`), through
  `hwflow.nn.kernels.approx_matmul`; gradients are the exact product's (straight-through),
  or with `layer.gradient = "table"` the table's own slopes (retraining's option).

Integer path (identical for conv and linear; what the RTL computes):
1. quantize the input to codes `q = clamp(round(x / s_x) + z, code range)`; im2col
   (`F.unfold`) of the quantized input, where padding holds the code `z` (real zero);
   operand rows `x_int (M, K)`, first table index = activation; weights `w_int (K, N)`.
2. `acc = table_matmul(x_int, w_int, table)`; unsigned layers use sign-magnitude weights
   (`sum_k sign(w) * table[x, |w|]`).
3. subtract the zero-point correction `z * sum_k w_int[k, n]` (padded positions therefore
   contribute `table[z, w] - z * w`, exactly as in hardware), scale by `s_x * s_w`, then
   AGN noise (agn mode), then add the bias.
Approx-mode convolutions with straight-through gradients never materialize the im2col
rows: `kernels.approx_conv2d` reads each operand from the zero-point-padded input codes in
place (same operands, same sums) and takes its gradients from torch's conv backward.
`quant`/`agn` compute step 2-3 as a float conv of the centered codes `q - z` with the
integer weights: bit-identical to `approx` with the exact table while accumulators stay
below 2^24 in magnitude (float32 integers are exact up to there).

Signedness (`layer.signed`): `operands="signed"` (int8 activations and weights),
`"unsigned"` (uint8 activations, sign-magnitude weights) or `"auto"`: decided at
calibration, unsigned when the calibrated input is non-negative (after ReLU, images in
[0, 1]). Conv operand rows are ordered (batch, output position) and columns (input channel
within the group, kernel row, kernel column), the F.unfold order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hwflow.errors import AssignmentError, HwflowError
from hwflow.multipliers.table import exact_table
from hwflow.nn import kernels, quant
from hwflow.nn.agn import SIGMA_INIT, add_noise

MODES = ("float", "quant", "agn", "approx")
OPERANDS = ("auto", "signed", "unsigned")
_SIGNED_CODE = {"auto": -1, "unsigned": 0, "signed": 1}


@dataclass(frozen=True)
class LayerInfo:
    name: str
    fan_in: int
    ops: int  # multiplications per inference (one input sample)
    signed: bool | None  # None: "auto" and not calibrated yet


@dataclass
class LayerTrace:
    """Integer operands and accumulators of one layer for one forward (see `trace`)."""

    x_int: Tensor  # (G, M, K) int64 activation codes (values: int8, or 0..255 unsigned)
    w_int: Tensor  # (G, K, Ng) int64 weights in [-127, 127]
    acc: Tensor  # (G, M, Ng) int64 sum of multiplier outputs (sign-magnitude applied)
    acc_exact: Tensor  # (G, M, Ng) int64 the same with exact products
    signed: bool
    zero_point: int  # activation zero-point z (the pad code)
    x_scale: float
    w_scale: Tensor  # () or (out_channels,) float32
    output: Tensor  # the layer's float output in this forward, before the bias is added


class _ApproxMixin:
    """State and integer arithmetic shared by ApproxConv2d and ApproxLinear."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    groups: int

    def __init__(
        self,
        *args,
        operands: str = "auto",
        per_channel: bool = False,
        observer: str = "ema",
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)  # the torch layer's own arguments
        self._check_supported()
        self._init_approx(operands, per_channel, observer)

    def _check_supported(self) -> None:
        """Refuse torch-layer settings the integer emulation does not model."""

    def forward(self, x: Tensor) -> Tensor:
        return self._approx_forward(x)

    def _init_approx(self, operands: str, per_channel: bool, observer: str) -> None:
        if operands not in OPERANDS:
            raise ValueError(f"operands: expected one of {OPERANDS}, got {operands!r}")
        self.mode = "float"
        self.operands = operands
        self.per_channel = per_channel
        self.calibrating = False
        self.agn_eval_noise = False
        self.agn_noise = "pool"  # noise source, see hwflow.nn.agn.standard_noise
        self.gradient = "ste"  # approx-mode backward, see hwflow.nn.kernels.GRADIENTS
        self.act_obs = quant.ActObserver(observer)
        self.sigma = nn.Parameter(torch.tensor(SIGMA_INIT))
        self.register_buffer("signed_code", torch.tensor(_SIGNED_CODE[operands]))
        self.table: Tensor | None = None
        self.table_signed: bool | None = None
        self._ops: int | None = None
        self._trace_sink: list[LayerTrace] | None = None
        self._offset_probe: list[Tensor] | None = None  # see measure_acc_offsets
        self._cache: kernels.PreparedCache | None = None
        self._train_tables: kernels.TrainingTables | None = None
        # per output channel, added to the approx accumulator (bias correction); the
        # integer pipeline folds it into the integer bias (hwflow.rtl.intinfer)
        self.acc_offset: Tensor | None = None

    # -- properties -------------------------------------------------------------------
    @property
    def signed(self) -> bool | None:
        code = int(self.signed_code)
        return None if code < 0 else bool(code)

    @property
    def fan_in(self) -> int:
        return self.weight[0].numel()

    @property
    def ops(self) -> int:
        if self._ops is None:
            raise HwflowError("layer ops are unknown until one forward pass has run")
        return self._ops

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if mode == "approx" and self.table is None:
            raise AssignmentError("approx mode needs a multiplier table: call set_table first")
        self.mode = mode

    def set_table(self, table: np.ndarray | Tensor, signed: bool) -> None:
        """Use `table` (int32[256, 256]) for products and switch to approx mode."""
        if self.signed is None:
            raise AssignmentError("layer signedness is not decided yet: calibrate the model")
        if bool(signed) != self.signed:
            want = "signed" if self.signed else "unsigned"
            got = "signed" if signed else "unsigned"
            raise AssignmentError(
                f"a {got} multiplier cannot serve a layer with {want} operands "
                f"(choose a {want} multiplier)"
            )
        self.table = kernels._as_table(table)
        self.table_signed = bool(signed)
        self.mode = "approx"

    def set_acc_offset(self, offset: np.ndarray | Tensor | None) -> None:
        """Integer per-output-channel offset added to the accumulator in approx mode
        (None: none). It corrects a multiplier's expected error (`hwflow.assign.correct`)."""
        if offset is None:
            self.acc_offset = None
            return
        off = torch.as_tensor(np.asarray(offset), dtype=torch.int64).reshape(-1)
        if off.numel() != self.weight.shape[0]:
            raise AssignmentError(
                f"accumulator offset has {off.numel()} entries, the layer "
                f"{self.weight.shape[0]} output channels"
            )
        self.acc_offset = off

    def decide_signedness(self) -> None:
        """After calibration: auto layers become unsigned iff their input is non-negative."""
        if self.operands == "auto":
            if not bool(self.act_obs.seen):
                raise HwflowError("cannot decide operand signedness: no calibration data seen")
            self.signed_code.fill_(0 if float(self.act_obs.lo) >= 0.0 else 1)

    # -- quantization -----------------------------------------------------------------
    def _act_qparams(self) -> tuple[Tensor, int, bool]:
        signed = self.signed
        if signed is None or not bool(self.act_obs.seen):
            raise HwflowError("quantized modes need calibration first (hwflow.nn.calibrate)")
        scale, zp = self.act_obs.params(signed)
        return torch.tensor(scale, dtype=torch.float32), zp, signed

    def _out_scale(self, sx: Tensor, sw: Tensor, ndim: int) -> Tensor:
        """s_x * s_w broadcast over the output's channel dimension (dim 1)."""
        s = sx * sw
        if s.dim() == 1 and ndim > 2:
            s = s.reshape(-1, *([1] * (ndim - 2)))
        return s

    # -- per-type hooks (conv / linear) -------------------------------------------------
    def _float_op(self, x: Tensor, w: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _operand_rows(self, xc: Tensor) -> tuple[Tensor, tuple]:  # pragma: no cover
        raise NotImplementedError

    def _rows_to_output(self, acc: Tensor, meta: tuple) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def _grouped_weight(self, wq: Tensor) -> Tensor:
        """(G, K, Ng): column n of group g is output channel g * Ng + n."""
        g = self.groups
        return wq.reshape(g, wq.shape[0] // g, -1).transpose(1, 2)

    # -- forward ----------------------------------------------------------------------
    def _approx_forward(self, x: Tensor) -> Tensor:
        if self.calibrating:
            self.act_obs.observe(x)
        if self.mode == "float" or self.calibrating:
            y = self._float_op(x, self.weight)
            self._record_ops(y)
            return y + self._bias_view(y) if self.bias is not None else y
        if self.training and self.act_obs.enabled:
            self.act_obs.observe(x)
        sx, zp, signed = self._act_qparams()
        xc = quant.quantize_centered(x, sx, zp, signed)
        wq, sw = quant.quantize_weight(self.weight, self.per_channel)
        approx = self.mode == "approx"
        y = self._table_op(xc, zp, wq, signed) if approx else self._float_op(xc, wq)
        if self._offset_probe is not None:
            self._measure_offset(xc, zp, wq, signed)
        if approx and self.acc_offset is not None:  # the bias correction, integer
            y = y + self._channel_view(self.acc_offset.to(y.device, y.dtype), y)
        y = y * self._out_scale(sx, sw, y.dim())
        if self.mode == "agn" and (self.training or self.agn_eval_noise):
            y = add_noise(y, self.sigma, self.agn_noise)
        self._record_ops(y)
        if self._trace_sink is not None:
            self._trace_sink.append(self._make_trace(xc, zp, wq, sx, sw, signed, y))
        return y + self._bias_view(y) if self.bias is not None else y

    def _table_op(self, xc: Tensor, zp: int, wq: Tensor, signed: bool) -> Tensor:
        """Accumulators through the table, zero-point term removed, in the output layout."""
        rows, meta = self._operand_rows(xc)  # (G, M, K) centered
        wg = self._grouped_weight(wq)  # (G, K, Ng)
        table = self._table_on(rows.device)
        accs = [
            kernels.approx_matmul(
                (rows[g] + zp).contiguous(),
                wg[g],
                table,
                not signed,
                cache=self._weight_cache(),
                gradient=self.gradient,
                slot=g,
            )
            for g in range(rows.shape[0])
        ]
        acc = torch.stack(accs) - zp * wg.sum(dim=1, keepdim=True)
        return self._rows_to_output(acc, meta)

    def _weight_cache(self) -> kernels.PreparedCache | kernels.TrainingTables:
        # eval: weights are fixed batch after batch, so reuse their prepared tables;
        # training: the tables follow the weights, updated where an SGD step changed them
        if not self.training:
            return self._prepared_cache()
        if self._train_tables is None:
            self._train_tables = kernels.TrainingTables()
        return self._train_tables

    def _table_on(self, device: torch.device) -> Tensor:
        """The table on `device` (copied there once, not every step)."""
        assert self.table is not None
        if self.table.device != device:
            self.table = self.table.to(device)
        return self.table

    def _prepared_cache(self) -> kernels.PreparedCache:
        if self._cache is None:
            self._cache = kernels.PreparedCache(max_entries=max(4, 2 * self.groups))
        return self._cache

    def _bias_view(self, y: Tensor) -> Tensor:
        assert self.bias is not None
        return self._channel_view(self.bias, y)

    def _channel_view(self, v: Tensor, y: Tensor) -> Tensor:
        """Per-output-channel `v` shaped to broadcast over `y` (channels in dim 1)."""
        return v.reshape(-1, *([1] * (y.dim() - 2))) if y.dim() > 2 else v

    def _record_ops(self, y: Tensor) -> None:
        per_sample = y[0].numel() if y.dim() > 1 else y.numel()
        self._ops = int(per_sample * self.fan_in)

    @torch.no_grad()
    def _measure_offset(self, xc: Tensor, zp: int, wq: Tensor, signed: bool) -> None:
        """Set (and record in the probe) the offset that cancels each output channel's
        mean accumulator error, table against exact, over this forward's rows."""
        if self._offset_probe:
            raise HwflowError("measure_acc_offsets: a layer ran twice in one forward")
        rows, _ = self._operand_rows(xc.detach())
        w_int = self._grouped_weight(wq.detach()).round().to(torch.int64)
        table = self.product_table()
        # each code's operand value: the exact products' sum is the histogram's too
        values = torch.arange(256, dtype=torch.int64)
        if signed:
            values = torch.where(values >= 128, values - 256, values)
        errors = []
        for g in range(rows.shape[0]):
            # in slices of rows: the integer codes of a whole batch at once would be GBs
            hist = sum(kernels.code_histogram(part + zp) for part in rows[g].split(_PROBE_ROWS))
            approx = kernels.table_sum(hist, w_int[g], table, sign_magnitude=not signed)
            errors.append(approx - (hist @ values) @ w_int[g])
        total = torch.stack(errors).to(torch.float64)  # (G, Ng), integers: exact
        offset = (-torch.round(total / max(rows.shape[1], 1))).to(torch.int64).reshape(-1)
        self.acc_offset = offset
        self._offset_probe.append(offset)

    @torch.no_grad()
    def integer_sums(self, xc: Tensor, zp: int, wq: Tensor) -> tuple[Tensor, Tensor, Tensor, tuple]:
        """(x_int (G, M, K) input codes, w_int (G, K, Ng), acc (G, M, Ng) int64, the rows'
        layout for `_rows_to_output`): the operand rows of centered codes `xc` and the
        sums through the layer's table (the exact products without one), as the MAC
        engines compute them."""
        signed = bool(self.signed)
        rows, meta = self._operand_rows(xc.detach())
        x_int = (rows.round().to(torch.int64) + zp).contiguous()
        w_int = self._grouped_weight(wq.detach()).round().to(torch.int64)
        table = self.product_table()
        acc = torch.stack(
            [
                kernels.table_matmul(x_int[g], w_int[g], table, sign_magnitude=not signed).to(
                    torch.int64
                )
                for g in range(x_int.shape[0])
            ]
        )
        return x_int, w_int, acc, meta

    def product_table(self) -> Tensor:
        """The table the products come from: the assigned one, else the exact one."""
        return exact_table(bool(self.signed)) if self.table is None else self.table

    @torch.no_grad()
    def _make_trace(self, xc, zp, wq, sx, sw, signed, y) -> LayerTrace:
        x_int, w_int, acc, _ = self.integer_sums(xc, zp, wq)
        acc_exact = torch.matmul(x_int, w_int)
        # traces feed numpy (statistics, export): they live on the CPU whatever the device
        return LayerTrace(
            x_int=x_int.cpu(),
            w_int=w_int.cpu(),
            acc=acc.cpu(),
            acc_exact=acc_exact.cpu(),
            signed=signed,
            zero_point=zp,
            x_scale=float(sx),
            w_scale=sw.detach().cpu().clone(),
            output=y.detach().cpu().clone(),
        )


class ApproxConv2d(_ApproxMixin, nn.Conv2d):
    """nn.Conv2d with float / quant / agn / approx modes (see the module docstring)."""

    def _check_supported(self) -> None:
        if self.padding_mode != "zeros":
            raise ValueError("ApproxConv2d supports padding_mode='zeros' only")
        if isinstance(self.padding, str):
            raise ValueError("ApproxConv2d needs explicit integer padding, not 'same'/'valid'")

    def _float_op(self, x: Tensor, w: Tensor) -> Tensor:
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)

    def _table_op(self, xc: Tensor, zp: int, wq: Tensor, signed: bool) -> Tensor:
        if self.gradient != "ste":  # the table's slopes need the operand rows
            return super()._table_op(xc, zp, wq, signed)
        # Straight-through: the input is read in place (no im2col rows) and the backward
        # is torch's own convolution backward.
        return kernels.approx_conv2d(
            xc,
            wq,
            self._table_on(xc.device),
            not signed,
            zero_point=zp,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            cache=self._weight_cache(),
        )

    def _operand_rows(self, xc: Tensor) -> tuple[Tensor, tuple]:
        n, _, h, w = xc.shape
        kh, kw = self.kernel_size
        # Padding zeros of the centered codes are the code z: real zero.
        cols = F.unfold(xc, (kh, kw), self.dilation, self.padding, self.stride)  # (N, C*kh*kw, L)
        ho = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        g = self.groups
        length = cols.shape[2]
        rows = cols.reshape(n, g, -1, length).permute(1, 0, 3, 2).reshape(g, n * length, -1)
        return rows, (n, ho, wo)

    def _rows_to_output(self, acc: Tensor, meta: tuple) -> Tensor:
        n, ho, wo = meta
        g, _, ng = acc.shape
        return acc.reshape(g, n, ho * wo, ng).permute(1, 0, 3, 2).reshape(n, g * ng, ho, wo)

    @classmethod
    def from_module(cls, m: nn.Conv2d, **opts) -> ApproxConv2d:
        new = cls(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            stride=m.stride,
            padding=m.padding,
            dilation=m.dilation,
            groups=m.groups,
            bias=m.bias is not None,
            padding_mode=m.padding_mode,
            **opts,
        )
        new.weight = m.weight
        new.bias = m.bias
        return new


class ApproxLinear(_ApproxMixin, nn.Linear):
    """nn.Linear with float / quant / agn / approx modes (see the module docstring)."""

    groups = 1

    def _bias_view(self, y: Tensor) -> Tensor:
        assert self.bias is not None
        return self.bias

    def _channel_view(self, v: Tensor, y: Tensor) -> Tensor:
        return v  # channels are the last dim: broadcasts as is

    def _out_scale(self, sx: Tensor, sw: Tensor, ndim: int) -> Tensor:
        return sx * sw  # channels are the last dim: broadcasts as is

    def _float_op(self, x: Tensor, w: Tensor) -> Tensor:
        return F.linear(x, w)

    def _operand_rows(self, xc: Tensor) -> tuple[Tensor, tuple]:
        return xc.reshape(1, -1, xc.shape[-1]), tuple(xc.shape[:-1])

    def _rows_to_output(self, acc: Tensor, meta: tuple) -> Tensor:
        return acc[0].reshape(*meta, acc.shape[-1])

    def _record_ops(self, y: Tensor) -> None:
        # per sample: every leading dim except the batch multiplies the work
        per_sample = math.prod(y.shape[1:-1]) if y.dim() > 2 else 1
        self._ops = int(per_sample * self.in_features * self.out_features)

    @classmethod
    def from_module(cls, m: nn.Linear, **opts) -> ApproxLinear:
        new = cls(m.in_features, m.out_features, bias=m.bias is not None, **opts)
        new.weight = m.weight
        new.bias = m.bias
        return new


ApproxLayer = ApproxConv2d | ApproxLinear


# -- model-level helpers ---------------------------------------------------------------
def approx_layers(model: nn.Module) -> list[tuple[str, ApproxConv2d | ApproxLinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _ApproxMixin)]


def _find(model: nn.Module, name: str) -> ApproxConv2d | ApproxLinear:
    layers = dict(approx_layers(model))
    if name not in layers:
        raise AssignmentError(
            f"unknown layer {name!r} (approximate layers: {', '.join(layers) or 'none'})"
        )
    return layers[name]


def approximate(
    model: nn.Module,
    example_input: Tensor | None = None,
    *,
    operands: str = "auto",
    per_channel: bool = False,
    observer: str = "ema",
    skip: Iterable[str] = (),
) -> list[LayerInfo]:
    """Replace every nn.Conv2d / nn.Linear of `model` in place (parameters are shared).

    `example_input` (one batch) runs once in float mode to count each layer's ops.
    Returns per-layer info; `signed` stays None for "auto" layers until `calibrate`.
    """
    skip = set(skip)
    opts = {"operands": operands, "per_channel": per_channel, "observer": observer}
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if full in skip or isinstance(child, _ApproxMixin):
                continue
            if isinstance(child, nn.Conv2d):
                setattr(module, child_name, ApproxConv2d.from_module(child, **opts))
            elif isinstance(child, nn.Linear):
                setattr(module, child_name, ApproxLinear.from_module(child, **opts))
    if example_input is not None:
        set_mode(model, "float")
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(example_input)
        model.train(was_training)
    return layer_info(model)


def layer_info(model: nn.Module) -> list[LayerInfo]:
    return [
        LayerInfo(name, layer.fan_in, layer._ops if layer._ops is not None else 0, layer.signed)
        for name, layer in approx_layers(model)
    ]


def set_mode(model: nn.Module, mode: str) -> None:
    for _, layer in approx_layers(model):
        layer.set_mode(mode)


def set_observing(model: nn.Module, enabled: bool) -> None:
    """Let activation observers keep adapting during training (QAT) or freeze them."""
    for _, layer in approx_layers(model):
        layer.act_obs.enabled = enabled


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[Tensor]) -> list[LayerInfo]:
    """Observe activation ranges on `batches` (float forward), then fix signedness.

    Resets the observers first. Returns the layer info with `signed` decided.
    """
    layers = [layer for _, layer in approx_layers(model)]
    was_training = model.training
    model.eval()
    for layer in layers:
        layer.act_obs.reset()
        layer.calibrating = True
    try:
        seen = 0
        for x in batches:
            model(x)
            seen += 1
        if seen == 0:
            raise HwflowError("calibration needs at least one batch")
    finally:
        for layer in layers:
            layer.calibrating = False
        model.train(was_training)
    for layer in layers:
        layer.decide_signedness()
    return layer_info(model)


def apply_tables(model: nn.Module, tables: Mapping[str, tuple[np.ndarray | Tensor, bool]]) -> None:
    """Put the named layers in approx mode with their multiplier tables.

    A layer whose operand signedness differs from the table's is an AssignmentError.
    """
    for name, (table, signed) in tables.items():
        try:
            _find(model, name).set_table(table, signed)
        except AssignmentError as exc:
            raise AssignmentError(f"layer {name}: {exc}") from None


@torch.no_grad()
def measure_acc_offsets(model: nn.Module, x: Tensor, names: Iterable[str]) -> dict[str, Tensor]:
    """{layer: (out_channels,) int64 offsets} cancelling each named layer's mean
    accumulator error (its table against exact) over the rows of `x`, each set on its
    layer (`set_acc_offset`) as one eval-mode forward reaches it: every later layer
    sees the earlier ones corrected, as the RTL computes. The same offsets as tracing
    each layer in turn (`hwflow.assign.correct`), in one forward: the error's sum over
    the rows needs only each operand column's code histogram (`kernels.table_sum`)."""
    wanted = set(names)
    probes: dict[str, list[Tensor]] = {n: [] for n, _ in approx_layers(model) if n in wanted}
    _forward_into(model, x, "_offset_probe", probes)
    missing = sorted(name for name, found in probes.items() if not found)
    if missing:
        raise HwflowError(f"measure_acc_offsets: {', '.join(missing)} did not run quantized")
    return {name: found[0] for name, found in probes.items()}


def _forward_into(model: nn.Module, x: Tensor, attr: str, sinks: Mapping[str, list]) -> None:
    """One eval-mode forward of `x` with each approximate layer's `attr` set to its list
    in `sinks` (None for the others), unset after; the model's mode is restored."""
    layers = approx_layers(model)
    was_training = model.training
    model.eval()
    for name, layer in layers:
        setattr(layer, attr, sinks.get(name))
    try:
        model(x)
    finally:
        for _, layer in layers:
            setattr(layer, attr, None)
        model.train(was_training)


def set_acc_offsets(model: nn.Module, offsets: Mapping[str, np.ndarray | Tensor | None]) -> None:
    """Set the named layers' accumulator offsets (see `set_acc_offset`)."""
    for name, offset in offsets.items():
        try:
            _find(model, name).set_acc_offset(offset)
        except AssignmentError as exc:
            raise AssignmentError(f"layer {name}: {exc}") from None


_PROBE_ROWS = 1 << 16  # operand rows turned into integer codes at a time (offsets)


@torch.no_grad()
def trace(model: nn.Module, x: Tensor, only: Iterable[str] | None = None) -> dict[str, LayerTrace]:
    """One eval-mode forward of `x`, capturing every approximate layer's integer operands
    (with `only`: just those layers').

    Per layer: `x_int (G, M, K)`, `w_int (G, K, Ng)`, `acc (G, M, Ng)` (sum of multiplier
    outputs, sign-magnitude applied, before zero-point correction, scales and bias, using
    the layer's table or the exact one), `acc_exact`, `signed`. Column n of group g is
    output channel g * Ng + n. Layers must be in a quantized mode; AGN noise is off.
    """
    layers = approx_layers(model)
    for name, layer in layers:
        if layer.mode == "float":
            raise HwflowError(f"trace: layer {name} is in float mode; use quant or approx")
    wanted = None if only is None else set(only)
    sinks: dict[str, list[LayerTrace]] = {
        name: [] for name, _ in layers if wanted is None or name in wanted
    }
    _forward_into(model, x, "_trace_sink", sinks)
    out = {}
    for name, captured in sinks.items():
        if len(captured) != 1:
            raise HwflowError(f"trace: layer {name} ran {len(captured)} times in one forward")
        out[name] = captured[0]
    return out
