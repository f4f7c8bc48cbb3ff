"""MAC engines in Amaranth: one engine per approximate layer, one top over all layers.

Each lane of an engine is the layer's multiplier (a Verilog module named after it,
instantiated with `Instance`, so that synthesis reports show which multiplier each engine
uses and a multiplier's sha256 is that of its own module text) feeding an accumulator
wide enough that the layer's fan-in can never overflow it.

Lane arithmetic (docs/concepts/operands.md):
- signed multipliers: product = o read as two's complement, acc += product;
- unsigned multipliers (sign-magnitude weights): the multiplier sees |w| (0..128) and the
  lane adds or subtracts its output by the weight's sign bit; a zero weight adds 0
  (sign(0) = 0, as in `hwflow.nn.kernels`), whatever the circuit outputs for b = 0.

Engine timing (all lanes in lockstep, one MAC per lane per cycle):
  cycle c:    x, w, valid, clear, last presented (registered by the driver)
  cycle c+1:  product register (p), with valid/clear/last delayed alongside
  cycle c+2:  accumulator updated; when `last` was set, `acc` holds the finished sums
              and `acc_valid` is high for exactly one cycle.
So a new accumulation may start the cycle after `last` (back-to-back passes), and the
result of the pass whose last operands were presented at cycle c appears at c + LATENCY.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Instance, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

LATENCY = 2  # cycles from the `last` operands to `acc_valid`


@dataclass(frozen=True)
class MultiplierRTL:
    """A multiplier as the engines see it: a Verilog module with ports a[7:0], b[7:0], o[15:0].

    `verilog` defines `module` (and anything it instantiates); `name` is the library name.
    """

    name: str
    module: str
    signed: bool
    verilog: str
    source: dict | None = None  # library provenance (generator params or netlist + sha256)


class _OffsetStage:
    """An output stage whose per-lane offsets span [offset_min, offset_max] (fields of the
    dataclasses below)."""

    offset_min: int
    offset_max: int

    @property
    def offset_width(self) -> int:
        return signed_width(self.offset_min, self.offset_max)


@dataclass(frozen=True)
class Requant(_OffsetStage):
    """Integer-only output stage of an engine (hwflow.rtl.intinfer's arithmetic).

    Per lane: t = sum + offset (offset = integer bias - z * sum_k w of the lane's output
    channel, streamed with the operands and latched with `last`), ReLU if `relu`, then
    code = clamp(((t * m0 + 2^(shift-1)) >> shift) + zero_point, lo, hi), 8 bits.
    """

    m0: int
    shift: int
    zero_point: int
    signed: bool  # code range of the next layer: int8 or uint8
    relu: bool
    offset_min: int
    offset_max: int


@dataclass(frozen=True)
class Argmax(_OffsetStage):
    """Classifier output stage of the last layer: one pass = one row (image), lane n =
    class n; t_n = sum_n + offset_n and the class is the first n with the largest t_n
    (torch.argmax's rule), on lane 0 of `code` when `acc_valid` pulses."""

    classes: int
    offset_min: int
    offset_max: int


@dataclass(frozen=True)
class EngineSpec:
    """One layer's engine: `lanes` parallel MACs of `fan_in` products each."""

    layer: str
    lanes: int
    fan_in: int
    multiplier: MultiplierRTL
    product_min: int  # smallest product a lane can add (sign-magnitude applied)
    product_max: int  # largest
    requant: Requant | None = None  # integer-only output stage (codes of the next layer)
    argmax: Argmax | None = None  # classifier output stage (the last layer)

    @property
    def stage(self) -> Requant | Argmax | None:
        return self.requant or self.argmax

    @property
    def port(self) -> str:
        return port_name(self.layer)

    @property
    def product_width(self) -> int:
        return signed_width(self.product_min, self.product_max)

    @property
    def acc_width(self) -> int:
        return accumulator_width(self.product_min, self.product_max, self.fan_in)


def port_name(layer: str) -> str:
    """A Verilog/Python identifier for a layer name (`features.0` -> `features_0`)."""
    name = re.sub(r"\W", "_", layer)
    return name if re.match(r"[A-Za-z]", name) else f"l_{name}"


def signed_width(lo: int, hi: int) -> int:
    """Smallest two's complement width holding every integer in [lo, hi]."""
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


def product_range(table: np.ndarray, signed_mult: bool) -> tuple[int, int]:
    """The range of values a lane adds per cycle, from the multiplier's actual table.

    Signed: every pattern pair can occur. Unsigned: activations 0..255, magnitudes
    0..128 (|-128|), and the weight's sign can negate any of those products.
    """
    table = np.asarray(table, dtype=np.int64)
    if signed_mult:
        return int(min(table.min(), 0)), int(max(table.max(), 0))
    magnitude = int(np.abs(table[:, :129]).max())
    return -magnitude, magnitude


def accumulator_width(product_min: int, product_max: int, fan_in: int) -> int:
    """Width at which `fan_in` products in [product_min, product_max] can never overflow."""
    return signed_width(fan_in * min(product_min, 0), fan_in * max(product_max, 0))


def engine_spec(
    layer: str,
    lanes: int,
    fan_in: int,
    multiplier: MultiplierRTL,
    table: np.ndarray,
    requant: Requant | None = None,
    argmax: Argmax | None = None,
) -> EngineSpec:
    if lanes < 1:
        raise ValueError(f"lanes must be >= 1, got {lanes}")
    if fan_in < 1:
        raise ValueError(f"layer {layer}: fan-in must be >= 1, got {fan_in}")
    lo, hi = product_range(table, multiplier.signed)
    if argmax is not None and argmax.classes > lanes:
        raise ValueError(f"layer {layer}: argmax over {argmax.classes} classes needs as many lanes")
    return EngineSpec(layer, lanes, fan_in, multiplier, lo, hi, requant, argmax)


class MacEngine(wiring.Component):
    """`lanes` multiply-accumulate lanes sharing clear/last/valid control.

    Ports (lane p occupies bits [p*8 +: 8] of x and w, [p*AW +: AW] of acc):
      x, w        8-bit operand codes per lane (w two's complement in both signednesses)
      valid       operands present this cycle
      clear       first operands of a new accumulation
      last        last operands of the accumulation
      acc         registered sums, two's complement, AW = spec.acc_width bits per lane
      acc_valid   one-cycle pulse: acc holds a finished accumulation
    """

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        p, aw = spec.lanes, spec.acc_width
        members = {
            "x": In(8 * p),
            "w": In(8 * p),
            "valid": In(1),
            "clear": In(1),
            "last": In(1),
            "acc": Out(aw * p),
            "acc_valid": Out(1),
        }
        if spec.stage is not None:
            members["offset"] = In(spec.stage.offset_width * p)
            members["code"] = Out(8 * p)
        super().__init__(members)

    def elaborate(self, platform) -> Module:
        spec = self.spec
        m = Module()
        v1, clear1, last1 = Signal(name="v1"), Signal(name="clear1"), Signal(name="last1")
        m.d.sync += [v1.eq(self.valid), clear1.eq(self.clear), last1.eq(self.last)]
        m.d.sync += self.acc_valid.eq(v1 & last1)
        sums, codes, ts = [], [], []
        for lane in range(spec.lanes):
            x = self.x[lane * 8 : lane * 8 + 8]
            w = self.w[lane * 8 : lane * 8 + 8]
            o = Signal(16, name=f"o{lane}")
            if spec.multiplier.signed:
                b = w
            else:
                # |w| of an int8 fits 8 unsigned bits (|-128| = 0x80)
                b = Signal(8, name=f"mag{lane}")
                m.d.comb += b.eq(Mux(w[7], -w.as_signed(), w))
            m.submodules[f"lane{lane}"] = Instance(spec.multiplier.module, i_a=x, i_b=b, o_o=o)
            # datapath registers need no reset (`clear` starts every accumulation); only
            # the control pipeline (v1, clear1, last1, acc_valid) is reset
            prod = Signal(signed(spec.product_width), name=f"p{lane}", reset_less=True)
            if spec.multiplier.signed:
                m.d.sync += prod.eq(o.as_signed())
            else:
                # sign(0) = 0: a zero weight adds nothing, whatever table[x, 0] holds
                m.d.sync += prod.eq(Mux(w == 0, 0, Mux(w[7], -o, o)))
            run = Signal(signed(spec.acc_width), name=f"run{lane}", reset_less=True)
            total = Signal(signed(spec.acc_width), name=f"sum{lane}")
            out = Signal(signed(spec.acc_width), name=f"acc{lane}", reset_less=True)
            m.d.comb += total.eq(Mux(clear1, 0, run) + prod)
            with m.If(v1):
                m.d.sync += run.eq(total)
                with m.If(last1):
                    m.d.sync += out.eq(total)
            sums.append(out)
            if spec.stage is not None:
                ts.append(self._offset_sum(m, lane, total, v1 & last1))
            if spec.requant is not None:
                codes.append(self._requant(m, lane, ts[-1]))
        m.d.comb += self.acc.eq(Cat(*sums))
        if spec.argmax is not None:
            codes = [self._argmax(m, ts[: spec.argmax.classes])]
        if spec.stage is not None:
            m.d.comb += self.code.eq(Cat(*codes))
        return m

    def _offset_sum(self, m: Module, lane: int, total, done) -> Signal:
        """t = sum + offset (the offset presented with `last`), registered with the sum."""
        ow = self.spec.stage.offset_width
        off = self.offset[lane * ow : lane * ow + ow].as_signed()
        off1 = Signal(signed(ow), name=f"off{lane}", reset_less=True)
        m.d.sync += off1.eq(off)
        t = Signal(signed(max(self.spec.acc_width, ow) + 1), name=f"t{lane}", reset_less=True)
        with m.If(done):
            m.d.sync += t.eq(total + off1)
        return t

    def _argmax(self, m: Module, ts: list) -> Signal:
        """Index of the first largest t (combinational compare chain over the classes)."""
        best, index = ts[0], Const(0, 8)
        for n, t in enumerate(ts[1:], 1):
            better = Signal(name=f"gt{n}")
            m.d.comb += better.eq(t > best)
            best = Mux(better, t, best)
            index = Mux(better, n, index)
        cls = Signal(8, name="cls")
        m.d.comb += cls.eq(index)
        return cls

    def _requant(self, m: Module, lane: int, t: Signal) -> Signal:
        """The next layer's code, combinational from the registered t."""
        rq = self.spec.requant
        r = Mux(t < 0, 0, t) if rq.relu else t
        scaled = Signal(signed(len(t) + 17), name=f"scaled{lane}")
        m.d.comb += scaled.eq((r * rq.m0 + (1 << (rq.shift - 1))) >> rq.shift)
        q = Signal(signed(len(scaled) + 9), name=f"q{lane}")
        m.d.comb += q.eq(scaled + rq.zero_point)
        lo, hi = (-128, 127) if rq.signed else (0, 255)
        code = Signal(8, name=f"code{lane}")
        m.d.comb += code.eq(Mux(q < lo, lo, Mux(q > hi, hi, q))[:8])
        return code


class MacArray(wiring.Component):
    """The top: one MacEngine per layer, its ports prefixed with the layer's port name.

    For layer L: L__x, L__w, L__valid, L__clear, L__last (in), L__acc, L__acc_valid (out),
    plus the shared clk and rst of the sync domain. Engines are independent (one per
    layer, like a layer-pipelined dataflow accelerator).
    """

    def __init__(self, engines: list[EngineSpec]) -> None:
        ports = [e.port for e in engines]
        dup = sorted({p for p in ports if ports.count(p) > 1})
        if dup:
            raise ValueError(f"layer names collide as Verilog identifiers: {dup}")
        self.engines = {e.port: MacEngine(e) for e in engines}
        members = {}
        for port, engine in self.engines.items():
            for member, flow in engine.signature.members.items():
                members[f"{port}__{member}"] = flow
        super().__init__(members)

    def elaborate(self, platform) -> Module:
        m = Module()
        for port, engine in self.engines.items():
            m.submodules[port] = engine
            for member, flow in engine.signature.members.items():
                outer = getattr(self, f"{port}__{member}")
                inner = getattr(engine, member)
                if flow.flow == wiring.In:
                    m.d.comb += inner.eq(outer)
                else:
                    m.d.comb += outer.eq(inner)
        return m


TOP_MODULE = "hwflow_top"


def top_verilog(engines: list[EngineSpec]) -> str:
    """Verilog of the top and its engines (multiplier modules are separate: see
    `multiplier_verilog`)."""
    from amaranth.back import verilog

    return verilog.convert(MacArray(engines), name=TOP_MODULE, emit_src=False)


def multiplier_verilog(engines: list[EngineSpec]) -> dict[str, str]:
    """Each distinct multiplier module used by the engines: module name -> Verilog text."""
    out: dict[str, MultiplierRTL] = {}
    for e in engines:
        mult = e.multiplier
        seen = out.get(mult.module)
        if seen is not None and seen != mult:
            raise ValueError(
                f"two different multipliers use the Verilog module name {mult.module!r}"
            )
        out[mult.module] = mult
    return {name: mult.verilog for name, mult in sorted(out.items())}


__all__ = [
    "LATENCY",
    "TOP_MODULE",
    "Argmax",
    "EngineSpec",
    "Requant",
    "MacArray",
    "MacEngine",
    "MultiplierRTL",
    "accumulator_width",
    "engine_spec",
    "multiplier_verilog",
    "port_name",
    "product_range",
    "signed_width",
    "top_verilog",
]
