"""Energy per multiplication from switching activity of the synthesized gate netlist.

Model (dynamic power of static CMOS, E ~ Σ_nets toggles · C_net):

- The gate netlist (`synth.Gates`, mapped to AND/NAND/OR/NOR/XOR/XNOR/ANDNOT/ORNOT/MUX)
  is evaluated on an operand stream; consecutive operations toggle the nets whose value
  changes. Zero-delay: each net settles once per operation, so glitches (hazards from
  unequal path delays) are not counted. DESIGN.md: fanout-weighted zero-delay toggles
  ranked designs best against published 45 nm power; a unit-delay glitch model ranked
  far worse.
- A net's switched capacitance is the input capacitance of every gate pin it drives
  (fanout-weighted; `PIN_CAP` per gate type) plus its driver's own output/internal
  capacitance (`SELF_CAP`); a product bit also drives one unit of downstream load.
  Operand bits count as nets too (their fanout is the multiplier's input load).
  Units are those of one minimum transistor gate; only ratios are meaningful.
- Energy per operation = weighted toggles / (operations - 1). `energy_rel` in the
  library divides by the exact multiplier of the same signedness under the same stream.
- Operands of consecutive operations are independent samples (uniform by default, or
  drawn from per-operand histograms): temporal correlation in real operand streams is
  not modelled, and neither are leakage, wires or the accumulator.

Evaluation is bit-parallel: operation t = k·W + j of a stream of 64·W operations sits in
bit k of uint64 word j, so every gate is one numpy op over W words.
"""

from __future__ import annotations

import numpy as np

from hwflow.characterize.synth import CONST0, CONST1, Gates

DEFAULT_OPS = 1 << 16
DEFAULT_SEED = 0

# Switched capacitance per driven input pin / per gate output (minimum-gate units):
# a simple gate's input drives one n/p transistor pair; XOR/XNOR and MUX inputs also
# feed an internal inverter; compound gates (AND = NAND + NOT) have an internal node.
PIN_CAP: dict[str, float] = {
    "BUF": 2, "NOT": 2, "NAND": 2, "NOR": 2, "AND": 2, "OR": 2, "ANDNOT": 2, "ORNOT": 2,
    "XOR": 4, "XNOR": 4, "MUX": 3,
}  # fmt: skip
SELF_CAP: dict[str, float] = {t: n / 2 for t, n in {
    "BUF": 4, "NOT": 2, "AND": 6, "NAND": 4, "OR": 6, "NOR": 4,
    "ANDNOT": 6, "ORNOT": 6, "XOR": 12, "XNOR": 12, "MUX": 12,
}.items()}  # fmt: skip
OUTPUT_LOAD = 1.0
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


def _pack(bits: np.ndarray) -> np.ndarray:
    """bool[64·W] stream -> uint64[W]: operation k·W + j in bit k of word j."""
    w = bits.size // 64
    shifts = np.arange(64, dtype=np.uint64)[:, None]
    return np.bitwise_or.reduce(bits.reshape(64, w).astype(np.uint64) << shifts, axis=0)


def _toggles(x: np.ndarray) -> int:
    """Value changes between consecutive operations of a packed stream."""
    inner = int(np.bitwise_count(x[:-1] ^ x[1:]).sum())
    wrap = (x[-1] ^ (x[0] >> np.uint64(1))) & np.uint64(0x7FFFFFFFFFFFFFFF)  # word W-1 -> 0
    return inner + int(np.bitwise_count(wrap))


def _eval(kind: str, v: list[np.ndarray]) -> np.ndarray:
    if kind == "AND":
        return v[0] & v[1]
    if kind == "NAND":
        return ~(v[0] & v[1])
    if kind == "OR":
        return v[0] | v[1]
    if kind == "NOR":
        return ~(v[0] | v[1])
    if kind == "XOR":
        return v[0] ^ v[1]
    if kind == "XNOR":
        return ~(v[0] ^ v[1])
    if kind == "ANDNOT":
        return v[0] & ~v[1]
    if kind == "ORNOT":
        return v[0] | ~v[1]
    if kind == "MUX":  # Y = S ? B : A
        return (v[1] & v[2]) | (v[0] & ~v[2])
    if kind == "NOT":
        return ~v[0]
    if kind == "BUF":
        return v[0].copy()
    raise ValueError(f"unknown gate type {kind}")


def net_loads(gates: Gates) -> dict[int, float]:
    """Switched capacitance of each net: driven pins + driver self + product-bit load."""
    load: dict[int, float] = {}
    for kind, ins, out in gates.gates:
        for n in ins:
            load[n] = load.get(n, 0.0) + PIN_CAP[kind]
        load[out] = load.get(out, 0.0) + SELF_CAP[kind]
    for n in gates.o:
        load[n] = load.get(n, 0.0) + OUTPUT_LOAD
    return load


def evaluate(gates: Gates, a_codes: np.ndarray, b_codes: np.ndarray) -> dict[int, np.ndarray]:
    """Packed values of every net over the stream (length a multiple of 64)."""
    a_codes, b_codes = np.asarray(a_codes), np.asarray(b_codes)
    if a_codes.shape != b_codes.shape or a_codes.ndim != 1:
        raise ValueError("a_codes and b_codes must be 1-D arrays of the same length")
    if a_codes.size < 128 or a_codes.size % 64:
        raise ValueError(f"stream length must be a multiple of 64 (>= 128), got {a_codes.size}")
    w = a_codes.size // 64
    nets: dict[int, np.ndarray] = {
        CONST0: np.zeros(w, dtype=np.uint64),
        CONST1: np.full(w, _ALL, dtype=np.uint64),
    }
    for codes, bits in (
        (a_codes.astype(np.int64) & 0xFF, gates.a),
        (b_codes.astype(np.int64) & 0xFF, gates.b),
    ):
        for i, net in enumerate(bits):
            if net >= 0:
                nets[net] = _pack(((codes >> i) & 1).astype(bool))
    zero = nets[CONST0]
    for kind, ins, out in gates.gates:
        nets[out] = _eval(kind, [nets.get(n, zero) for n in ins])
    return nets


def output_codes(gates: Gates, a_codes: np.ndarray, b_codes: np.ndarray) -> np.ndarray:
    """The 16-bit product patterns the gate netlist computes (for checks against the RTL)."""
    nets = evaluate(gates, a_codes, b_codes)
    n = np.asarray(a_codes).size
    w = n // 64
    shifts = np.arange(64, dtype=np.uint64)[:, None]
    out = np.zeros(n, dtype=np.int64)
    for i, net in enumerate(gates.o):
        packed = nets.get(net, nets[CONST0])
        bits = ((packed[None, :] >> shifts) & np.uint64(1)).reshape(64 * w)  # index k·W + j
        out |= bits.astype(np.int64) << i
    return out


def switching_energy(gates: Gates, a_codes: np.ndarray, b_codes: np.ndarray) -> float:
    """Energy per operation (arbitrary units) of `gates` over an operand stream.

    `a_codes`, `b_codes`: 8-bit operand codes (`value & 0xFF`) of consecutive operations,
    length a multiple of 64. See the module docstring for the model and its assumptions.
    """
    nets = evaluate(gates, a_codes, b_codes)
    loads = net_loads(gates)
    total = sum(_toggles(nets[n]) * c for n, c in loads.items() if n >= 0 and n in nets)
    return float(total) / (np.asarray(a_codes).size - 1)


def uniform_energy(gates: Gates, n: int = DEFAULT_OPS, seed: int = DEFAULT_SEED) -> float:
    """Energy per operation under independent uniform random 8-bit operands."""
    p = np.full(256, 1 / 256)
    return energy_under_histograms(gates, p, p, n, seed)


def energy_under_histograms(
    gates: Gates, p_a: np.ndarray, p_b: np.ndarray, n: int = DEFAULT_OPS, seed: int = DEFAULT_SEED
) -> float:
    """Energy per operation when operands are drawn independently from two histograms.

    `p_a`, `p_b`: 256 non-negative weights over operand codes (`value & 0xFF`; for signed
    layers code 255 is -1), normalised here. `n` operations (rounded up to a multiple of
    64), sampled with `numpy.random.default_rng(seed)`.
    """
    rng = np.random.default_rng(seed)
    n = max(128, -(-int(n) // 64) * 64)
    codes = [_sample(rng, _normalise(p, name), n) for p, name in ((p_a, "p_a"), (p_b, "p_b"))]
    return switching_energy(gates, codes[0], codes[1])


def _sample(rng: np.random.Generator, p: np.ndarray, n: int) -> np.ndarray:
    """n codes drawn from p by inverse CDF (3x faster than Generator.choice with p)."""
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), 255)


def _normalise(p: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (256,) or (p < 0).any() or not np.isfinite(p).all() or p.sum() <= 0:
        raise ValueError(f"{name} must be 256 non-negative finite weights with a positive sum")
    return p / p.sum()
