"""`hwflow_net`: the whole network in RTL, from the input image's codes to its class.

For plain stacks of conv / ReLU / max-pool / flatten / linear (the digits CNN), the
exported MAC engines (`hwflow.rtl.mac.MacEngine`, one per layer, one lane per output
channel) run one after the other under a sequential controller:

- feature-map buffers between stages, one word per spatial position holding every
  channel's 8-bit code (lane c in bits [8c +: 8]); buffer 0 is the input image;
- a conv (or linear) stage computes one output position at a time: counters walk the
  im2col row in PyTorch's order k = (c, kh, kw), the address generator reads the source
  word at (oh*s - p + kh*d, ow*s - p + kw*d) and selects channel c, and positions in the
  padding feed the layer's input zero-point code (as the emulation does); the weights
  come from a ROM (word k = every lane's weight), the engine's requantized codes are
  written back as one word per position;
- a linear layer is the same stage with a window covering the whole map, so that its
  k = c*H*W + h*W + w is PyTorch's flatten order;
- max-pooling runs on codes (requantization is monotone, so it equals pooling before
  requantizing, which is what `hwflow.rtl.intinfer` does), one window element a cycle;
- the last layer's argmax stage gives the class;
- each engine runs on its own gated clock that ticks only while its stage runs or
  drains (see `_gated_domain`): the stages take turns, so idle engines hold their state
  without clocking their registers.

Ports of `hwflow_net` (clk, rst of the sync domain besides):
  image_code[7:0], image_valid   input codes streamed in PyTorch (C, H, W) order, while idle
  start                          run the stored image; busy until done
  done, cls[7:0]                 one-cycle pulse with the class
  acc_valid, acc_stage, acc      tap: every engine's sums (one position, all lanes)
  buf_we, buf_id, buf_addr, buf_data   tap: every feature-map buffer write
The taps let the testbench check every intermediate integer tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from amaranth.hdl import (
    Cat,
    ClockDomain,
    ClockSignal,
    Const,
    DomainRenamer,
    Elaboratable,
    Module,
    Mux,
    ResetSignal,
    Signal,
    signed,
    unsigned,
)
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwflow.rtl import mac

NET_MODULE = "hwflow_net"
TAP_ID_BITS = 4


@dataclass(frozen=True)
class Geometry:
    """A feature map held in a buffer: one word of `channels` codes per position."""

    channels: int
    height: int
    width: int
    signed: bool  # codes int8 or uint8

    @property
    def positions(self) -> int:
        return self.height * self.width


@dataclass(frozen=True)
class Window:
    """A sliding window: conv kernel, pooling window, or a linear layer's whole map."""

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        dims = []
        for size, k, s, p, d in zip(
            (height, width), self.kernel, self.stride, self.padding, self.dilation, strict=True
        ):
            dims.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        return dims[0], dims[1]


@dataclass(frozen=True, eq=False)
class MacStage:
    """A conv or linear layer on its engine (lanes = output channels)."""

    name: str
    engine: mac.EngineSpec
    src: Geometry
    window: Window
    pad_code: int  # the layer's input zero point as a code
    weights: np.ndarray  # (K, N) int8 values
    offsets: np.ndarray  # (N,) bias - z * sum_k w

    @property
    def out(self) -> Geometry | None:
        """The code map this stage writes (None for the classifier)."""
        rq = self.engine.requant
        if rq is None:
            return None
        oh, ow = self.window.out_size(self.src.height, self.src.width)
        return Geometry(self.engine.lanes, oh, ow, rq.signed)

    @property
    def positions(self) -> int:
        oh, ow = self.window.out_size(self.src.height, self.src.width)
        return oh * ow


@dataclass(frozen=True)
class PoolStage:
    """Max-pooling on codes (no padding)."""

    name: str
    src: Geometry
    window: Window

    @property
    def out(self) -> Geometry:
        oh, ow = self.window.out_size(self.src.height, self.src.width)
        return Geometry(self.src.channels, oh, ow, self.src.signed)

    @property
    def positions(self) -> int:
        return self.out.positions


@dataclass(frozen=True, eq=False)
class NetSpec:
    """The stages in order; buffers[i] feeds stages[i], buffers[i + 1] is its output."""

    stages: list[MacStage | PoolStage]

    @property
    def buffers(self) -> list[Geometry]:
        return [self.stages[0].src] + [s.out for s in self.stages[:-1]]

    @property
    def macs(self) -> list[MacStage]:
        return [s for s in self.stages if isinstance(s, MacStage)]

    def cycles_per_image(self) -> int:
        """Clock cycles of one image, input streaming included (an upper bound)."""
        total = self.buffers[0].channels * self.buffers[0].positions + 2
        for s in self.stages:
            k = s.engine.fan_in if isinstance(s, MacStage) else int(np.prod(s.window.kernel))
            total += s.positions * k + mac.LATENCY + 3
        return total

    def acc_bits(self) -> int:
        return max(s.engine.lanes * s.engine.acc_width for s in self.macs)

    def word_bits(self) -> int:
        return max(8 * g.channels for g in self.buffers)

    def addr_bits(self) -> int:
        return max(max(g.positions for g in self.buffers) - 1, 1).bit_length()


def _counter(size: int, name: str) -> Signal:
    """A counter over range(size), at least one bit wide."""
    return Signal(range(max(size, 2)), name=name)


def _count(m: Module, counters: list[tuple[Signal, int]], enable) -> Signal:
    """Nested counters, the first the fastest; returns the 'all wrap' (last step) signal."""
    carry = enable
    for sig, size in counters:
        at_end = sig == size - 1
        with m.If(carry):
            m.d.sync += sig.eq(Mux(at_end, 0, sig + 1))
        carry = carry & at_end
    return carry


class _Word(Elaboratable):
    """A one-word stand-in for `Memory`: a register, with ports of Memory's attributes.

    Why: a depth-1 Memory has a zero-bit address, which the Verilog writer declares as
    `[-1:0]` (Verilator's ASCRANGE). Maps of one position (a linear layer's output) and
    one-row weight ROMs take this instead; each port's `addr` is a wire nothing reads."""

    def __init__(self, width: int, init: int = 0) -> None:
        self.word = Signal(width, init=init, reset_less=True)  # a Memory is never reset
        self._reads: list[SimpleNamespace] = []
        self._writes: list[SimpleNamespace] = []

    def read_port(self, domain: str = "comb") -> SimpleNamespace:
        assert domain == "comb", "a word reads combinationally, as the net's buffers do"
        port = SimpleNamespace(addr=Signal(1), data=Signal(len(self.word)))
        self._reads.append(port)
        return port

    def write_port(self, granularity: int) -> SimpleNamespace:
        lanes = len(self.word) // granularity
        port = SimpleNamespace(
            addr=Signal(1), data=Signal(len(self.word)), en=Signal(lanes), granularity=granularity
        )
        self._writes.append(port)
        return port

    def elaborate(self, platform) -> Module:
        m = Module()
        for r in self._reads:
            m.d.comb += r.data.eq(self.word)
        for w in self._writes:
            for n in range(len(w.en)):
                with m.If(w.en[n]):
                    m.d.sync += self.word.word_select(n, w.granularity).eq(
                        w.data.word_select(n, w.granularity)
                    )
        return m


def _memory(width: int, depth: int, init: list[int]) -> Memory | _Word:
    """A `Memory` of `depth` words, or a `_Word` when there is one."""
    if depth == 1:
        return _Word(width, init[0] if init else 0)
    return Memory(shape=unsigned(width), depth=depth, init=init)


class NetTop(wiring.Component):
    """The network: buffers, address generators, pooling, one MacEngine per layer."""

    def __init__(self, spec: NetSpec) -> None:
        self.spec = spec
        super().__init__(
            {
                "image_code": In(8),
                "image_valid": In(1),
                "start": In(1),
                "busy": Out(1),
                "done": Out(1),
                "cls": Out(8),
                "acc_valid": Out(1),
                "acc_stage": Out(TAP_ID_BITS),
                "acc": Out(spec.acc_bits()),
                "buf_we": Out(1),
                "buf_id": Out(TAP_ID_BITS),
                "buf_addr": Out(spec.addr_bits()),
                "buf_data": Out(spec.word_bits()),
            }
        )

    def elaborate(self, platform) -> Module:
        spec = self.spec
        m = Module()
        ports = []
        for i, geo in enumerate(spec.buffers):
            mem = _memory(8 * geo.channels, geo.positions, [])
            m.submodules[f"buf{i}"] = mem
            ports.append((mem.read_port(domain="comb"), mem.write_port(granularity=8)))
        m.domains.net_fall = ClockDomain("net_fall", clk_edge="neg", local=True, reset_less=True)
        m.d.comb += ClockSignal("net_fall").eq(ClockSignal())
        n_states = 1 + 2 * len(spec.stages)  # IDLE, then RUN and DRAIN per stage
        state = _counter(n_states, "state")
        m.d.comb += self.busy.eq(state != 0)
        m.d.sync += self.done.eq(0)
        self._input(m, state, ports[0][1], spec.buffers[0])
        for i, stage in enumerate(spec.stages):
            nxt = 1 + 2 * (i + 1) if i + 1 < len(spec.stages) else 0
            run, drain = state == 1 + 2 * i, state == 2 + 2 * i
            rd = ports[i][0]
            wr = ports[i + 1][1] if i + 1 < len(ports) else None
            if isinstance(stage, MacStage):
                self._mac(m, i, stage, state, run, drain, nxt, rd, wr)
            else:
                self._pool(m, i, stage, state, run, nxt, rd, wr)
        for i, (_, wr) in enumerate(ports):
            with m.If(wr.en.any()):
                m.d.comb += [
                    self.buf_we.eq(1),
                    self.buf_id.eq(i),
                    self.buf_addr.eq(wr.addr),
                    self.buf_data.eq(wr.data),
                ]
        return m

    def _input(self, m: Module, state: Signal, wr, geo: Geometry) -> None:
        """Idle: store streamed codes (C, H, W order) into buffer 0; `start` runs."""
        c = _counter(geo.channels, "in_c")
        h = _counter(geo.height, "in_h")
        w = _counter(geo.width, "in_w")
        idle = state == 0
        with m.If(idle & self.image_valid):
            m.d.comb += [
                wr.addr.eq(h * geo.width + w),
                wr.data.eq(Cat(*[self.image_code] * geo.channels)),
                wr.en.eq(Const(1, geo.channels) << c),
            ]
        _count(m, [(w, geo.width), (h, geo.height), (c, geo.channels)], idle & self.image_valid)
        with m.If(idle & self.start):
            m.d.sync += [state.eq(1), c.eq(0), h.eq(0), w.eq(0)]

    @staticmethod
    def _gated_domain(m: Module, name: str, active) -> str:
        """A clock domain that ticks only in the cycles where `active` (or reset) is high.

        Why: the stages take turns, so an idle engine would spend every clock edge
        holding its registers, which costs clock power in silicon and about a quarter of
        hwflow_net's simulation time. The enable is sampled on the falling edge and
        ANDed with the clock (the flop-based glitch-free clock gate: it only changes
        while the clock is low); it is forced on during reset so that the engine's
        control registers reset with everything else."""
        domain = f"{name}_clk"
        m.domains += ClockDomain(domain, local=True)
        enable = Signal(name=f"{name}_clk_en")
        m.d.net_fall += enable.eq(active | ResetSignal())
        m.d.comb += [
            ClockSignal(domain).eq(ClockSignal() & enable),
            ResetSignal(domain).eq(ResetSignal()),
        ]
        return domain

    def _mac(self, m, i, stage: MacStage, state, run, drain, nxt, rd, wr) -> None:
        eng = mac.MacEngine(stage.engine)
        domain = self._gated_domain(m, stage.engine.port, run | drain)
        m.submodules[stage.engine.port] = DomainRenamer(domain)(eng)
        src, win = stage.src, stage.window
        oh_n, ow_n = win.out_size(src.height, src.width)
        kh_n, kw_n = win.kernel
        k_n, lanes = stage.engine.fan_in, stage.engine.lanes
        p = f"s{i}_"
        oh, ow = _counter(oh_n, p + "oh"), _counter(ow_n, p + "ow")
        c = _counter(src.channels, p + "c")
        kh, kw = _counter(kh_n, p + "kh"), _counter(kw_n, p + "kw")
        k = _counter(k_n, p + "k")
        # im2col address generation; outside the map: the zero-point code
        ih, iw = Signal(signed(16), name=p + "ih"), Signal(signed(16), name=p + "iw")
        m.d.comb += [
            ih.eq(oh * win.stride[0] + kh * win.dilation[0] - win.padding[0]),
            iw.eq(ow * win.stride[1] + kw * win.dilation[1] - win.padding[1]),
        ]
        inside = (ih >= 0) & (ih < src.height) & (iw >= 0) & (iw < src.width)
        m.d.comb += rd.addr.eq(ih * src.width + iw)
        x = Signal(8, name=p + "x")
        m.d.comb += x.eq(Mux(inside, rd.data.word_select(c, 8), stage.pad_code & 0xFF))
        words = [
            sum((int(v) & 0xFF) << (8 * n) for n, v in enumerate(row)) for row in stage.weights
        ]
        rom = _memory(8 * lanes, k_n, words)
        m.submodules[p + "weights"] = rom
        rom_rd = rom.read_port(domain="comb")
        ow_bits = stage.engine.stage.offset_width
        m.d.comb += [
            rom_rd.addr.eq(k),
            eng.x.eq(Cat(*[x] * lanes)),
            eng.w.eq(rom_rd.data),
            eng.valid.eq(run),
            eng.clear.eq(run & (k == 0)),
            eng.last.eq(run & (k == k_n - 1)),
            eng.offset.eq(Cat(*[Const(int(o), signed(ow_bits)) for o in stage.offsets])),
        ]
        _count(m, [(k, k_n)], run)
        finished = _count(
            m, [(kw, kw_n), (kh, kh_n), (c, src.channels), (ow, ow_n), (oh, oh_n)], run
        )
        with m.If(finished):
            m.d.sync += state.eq(state + 1)
        # taps and write-back: the engine's results arrive in position order
        with m.If(eng.acc_valid):
            m.d.comb += [
                self.acc_valid.eq(1),
                self.acc_stage.eq(i),
                self.acc.eq(eng.acc),
            ]
        if wr is None:  # the classifier: lane 0 of the code bus is the class
            with m.If(drain & eng.acc_valid):
                m.d.sync += [self.cls.eq(eng.code[:8]), self.done.eq(1), state.eq(nxt)]
            return
        written = _counter(oh_n * ow_n + 1, p + "written")
        with m.If(eng.acc_valid):
            m.d.comb += [
                wr.addr.eq(written),
                wr.data.eq(eng.code),
                wr.en.eq((1 << lanes) - 1),
            ]
            m.d.sync += written.eq(written + 1)
        with m.If(drain & (written == oh_n * ow_n)):
            m.d.sync += [state.eq(nxt), written.eq(0)]

    def _pool(self, m, i, stage: PoolStage, state, run, nxt, rd, wr) -> None:
        src, win, out = stage.src, stage.window, stage.out
        kh_n, kw_n = win.kernel
        p = f"s{i}_"
        oh, ow = _counter(out.height, p + "oh"), _counter(out.width, p + "ow")
        kh, kw = _counter(kh_n, p + "kh"), _counter(kw_n, p + "kw")
        m.d.comb += rd.addr.eq((oh * win.stride[0] + kh) * src.width + ow * win.stride[1] + kw)
        best = Signal(8 * src.channels, name=p + "max")
        first = (kh == 0) & (kw == 0)
        lanes = []
        for c in range(src.channels):
            a, b = rd.data[8 * c : 8 * c + 8], best[8 * c : 8 * c + 8]
            if src.signed:
                a, b = a.as_signed(), b.as_signed()
            lanes.append(Mux(first | (a > b), a, b)[:8])
        new = Signal(8 * src.channels, name=p + "new")
        m.d.comb += new.eq(Cat(*lanes))
        with m.If(run):
            m.d.sync += best.eq(new)
        window_done = _count(m, [(kw, kw_n), (kh, kh_n)], run)
        with m.If(window_done):
            m.d.comb += [
                wr.addr.eq(oh * out.width + ow),
                wr.data.eq(new),
                wr.en.eq((1 << src.channels) - 1),
            ]
        finished = _count(m, [(ow, out.width), (oh, out.height)], window_done)
        with m.If(finished):
            m.d.sync += state.eq(nxt)


def net_verilog(spec: NetSpec) -> str:
    from amaranth.back import verilog

    return verilog.convert(NetTop(spec), name=NET_MODULE, emit_src=False)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def plan_network(model, x, plans: list) -> NetSpec | None:
    """The network's `NetSpec` from its export plans (`hwflow.rtl.export.trace_plans`,
    network order), or None where it is not a plain conv / ReLU / max-pool / flatten /
    linear stack ending in its classifier (then only the per-layer engines are exported).
    `x`: the (N, C, H, W) images the plans were traced on."""
    from torch import nn

    from hwflow import nn as hnn

    if not isinstance(model, nn.Sequential) or x.dim() != 4 or not plans:
        return None
    approx = dict(hnn.approx_layers(model))
    by_name = {p.layer: p for p in plans}
    geo: Geometry | None = Geometry(*map(int, x.shape[1:]), signed=bool(plans[0].signed))
    stages: list[MacStage | PoolStage] = []
    flat = False
    for name, mod in model.named_children():
        if geo is None:  # something after the classifier
            return None
        if name in approx:
            plan = by_name.get(name)
            if plan is None or plan.w_int.shape[0] != 1 or (plan.requant or plan.argmax) is None:
                return None
            if isinstance(mod, nn.Conv2d):
                if flat or mod.padding_mode != "zeros" or isinstance(mod.padding, str):
                    return None
                window = Window(
                    _pair(mod.kernel_size), _pair(mod.stride), _pair(mod.padding),
                    _pair(mod.dilation),
                )  # fmt: skip
            elif flat or geo.positions == 1:  # linear over PyTorch's flatten of the map
                window = Window((geo.height, geo.width))
            else:
                return None
            k, lanes = plan.w_int.shape[1], plan.w_int.shape[2]
            if k != geo.channels * window.kernel[0] * window.kernel[1]:
                return None
            _, zero_point, _ = mod._act_qparams()
            engine = mac.engine_spec(
                name, lanes, k, plan.multiplier, plan.table, plan.requant, plan.argmax
            )
            stage = MacStage(
                name, engine, geo, window, int(zero_point), plan.w_int[0], plan.offsets[0]
            )
            geo = stage.out
        elif isinstance(mod, nn.ReLU):
            continue  # fused into the previous engine's requantization
        elif isinstance(mod, nn.MaxPool2d):
            if _pair(mod.padding) != (0, 0) or _pair(mod.dilation) != (1, 1) or mod.ceil_mode:
                return None
            stride = mod.stride if mod.stride is not None else mod.kernel_size
            stage = PoolStage(name, geo, Window(_pair(mod.kernel_size), _pair(stride)))
            geo = stage.out
        elif isinstance(mod, nn.Flatten):
            if mod.start_dim != 1 or mod.end_dim != -1:
                return None
            flat = True
            continue
        else:
            return None
        stages.append(stage)
    if not stages or geo is not None or len(stages) >= 2**TAP_ID_BITS:
        return None  # the last stage must be the classifier
    return NetSpec(stages)


def buffer_names(spec: NetSpec) -> list[str]:
    """Tensor names of the buffers: the input, each layer's codes, each pooled map."""
    return ["input"] + [
        f"{s.name}.codes" if isinstance(s, MacStage) else f"{s.name}.pool" for s in spec.stages[:-1]
    ]


def expected_tensors(model, x, spec: NetSpec) -> dict:
    """What the RTL must produce, from the integer-only reference (`hwflow.rtl.intinfer`):
    per buffer (images, positions, channels) codes, per engine (images, positions, lanes)
    sums, and the classes. Pooled codes are intinfer's pooled t requantized (pooling
    before requantizing), so the RTL's pooling on codes is checked, not copied; every
    layer's input buffer must equal intinfer's input codes of that layer."""
    import torch

    from hwflow.errors import VerificationError
    from hwflow.rtl.intinfer import integer_inference, requantize

    ref = integer_inference(model, x)
    t = ref.tensors
    n = x.shape[0]

    def hwc(v: torch.Tensor) -> np.ndarray:  # (N, C, H, W) or (N, C) -> (N, H*W, C)
        v = v.reshape(v.shape[0], v.shape[1], -1)
        return v.permute(0, 2, 1).numpy().astype(np.int64)

    buffers = [hwc(t["input"])]
    accs = []
    rq = None
    for i, stage in enumerate(spec.stages):
        if isinstance(stage, MacStage):
            chw = np.transpose(buffers[i], (0, 2, 1)).reshape(n, -1)  # PyTorch's flatten
            if i > 0 and not np.array_equal(chw, t[f"{stage.name}.input"].reshape(n, -1)):
                raise VerificationError(f"layer {stage.name}: input codes disagree with intinfer")
            accs.append(t[f"{stage.name}.acc"].reshape(n, stage.positions, -1).numpy())
            rq = stage.engine.requant
            value = t[f"{stage.name}.t"] if rq is not None else None
        else:
            value = t[f"{stage.name}.pool"]
        if i + 1 < len(spec.stages):
            value = value.clamp(min=0) if rq.relu else value
            buffers.append(hwc(requantize(value, rq.m0, rq.shift, rq.zero_point, rq.signed)))
    return {
        "images": n,
        "buffers": [b.tolist() for b in buffers],
        "acc": [a.astype(np.int64).tolist() for a in accs],
        "classes": ref.classes.tolist(),
    }


def manifest_entry(spec: NetSpec, images: int) -> dict:
    """What the checker and the harness need to know about the network design."""
    return {
        "module": NET_MODULE,
        "images": images,
        "pixels": spec.buffers[0].channels * spec.buffers[0].positions,
        "cycles": images * spec.cycles_per_image(),
        "acc_bits": spec.acc_bits(),
        "word_bits": spec.word_bits(),
        "addr_bits": spec.addr_bits(),
        "buffers": [
            {
                "tensor": name,
                "channels": g.channels,
                "height": g.height,
                "width": g.width,
                "signed": g.signed,
            }
            for name, g in zip(buffer_names(spec), spec.buffers, strict=True)
        ],  # fmt: skip
        "stages": [
            {
                "kind": "mac",
                "name": s.name,
                "multiplier": s.engine.multiplier.name,
                "lanes": s.engine.lanes,
                "fan_in": s.engine.fan_in,
                "acc_width": s.engine.acc_width,
                "positions": s.positions,
            }
            if isinstance(s, MacStage)
            else {
                "kind": "pool",
                "name": s.name,
                "kernel": list(s.window.kernel),
                "positions": s.positions,
            }
            for s in spec.stages
        ],  # fmt: skip
        "macs_per_image": sum(s.positions * s.engine.fan_in * s.engine.lanes for s in spec.macs),
    }
