"""Energy per multiplication from switching activity of the synthesized gate netlist.

Model (dynamic power of static CMOS, E ~ sum over nets of toggles x switched capacitance):

- What is counted: the gate netlist (`synth.Gates`, mapped to AND/NAND/OR/NOR/XOR/XNOR/
  ANDNOT/ORNOT/MUX) is evaluated on an operand stream; a net toggles when its value
  differs between consecutive operations. Zero delay: each net settles once per operation,
  so glitches are not counted (a unit-delay glitch model ranked far worse:
  docs/concepts/error-model.md).
- Weights (`model="fanout"`, the default): a net's switched capacitance is the number of
  gate input pins it drives, plus one unit of downstream load when it is a product bit.
  Every input pin weighs the same (minimum-size cells have about equal input capacitance,
  and abc's gate set is not the publisher's cell library, so per-type weights would
  describe cells that are never built). Only nets driven by the multiplier's own gates
  count: the operand nets are charged by the stage that drives the operands.
- Energy per operation = weighted toggles / (operations - 1), in units of one input-pin
  charge; only ratios are meaningful. `energy_rel` in the library divides by the exact
  multiplier of the same signedness under the same stream.
- Operands of consecutive operations are independent samples (uniform by default, or drawn
  from per-operand histograms); temporal correlation of real operand streams, leakage,
  wires and the accumulator are not modelled.

Why these weights (`python -m bench.characterize --netlists DIR --costs FILE`
on 554 published 8x8 circuits synthesized as `characterize` does: EvoApprox8b's 505
unsigned gate-level netlists with their cells in a separate file, EvoApproxLib's 36
unsigned and 13 signed; Spearman rho against the published 45 nm power, all circuits /
those of >= 0.3 mW):

  estimate                         EvoApprox8b      Lib unsigned     Lib signed
                                   (505 / 177)      (36 / 18)        (13 / 8)
  fanout (this model)              0.995 / 0.964    0.997 / 0.990    1.000 / 1.000
  typed (the former default)       0.995 / 0.947    0.995 / 0.983    0.995 / 0.976
  yosys cell count                 0.995 / 0.967    0.993 / 0.983    0.999 / 0.994
  transistor area                  0.993 / 0.941    0.997 / 0.981    0.995 / 0.976

The typed model (`model="typed"`) weighted each pin and each driver by a per-gate-type
capacitance (XOR/XNOR inputs 2x, driver self-load by transistor count) and counted the
operand nets. Both changes (unit pin weights, operand nets left out) were chosen on each
published set and held on the other. Weighting XOR pins 1.5x or adding a driver self-load
of 0.5-2 per toggle moved either set by at most 0.003 and 2x XOR weights made both worse;
a blend with the cell count gained 0.002 on EvoApprox8b and is left out as not worth a
fitted constant. Differences of about 0.005 are within the noise of synthesis itself:
abc's mapping changes with incidental input (e.g. unused cell modules read alongside),
which moves single circuits' estimates by a few percent.

Evaluation is bit-parallel: operation t = k·W + j of a stream of 64·W operations sits in
bit k of uint64 word j, so every gate is one numpy op over W words.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwflow.characterize.synth import CONST0, CONST1, Gates

DEFAULT_OPS = 1 << 16
DEFAULT_SEED = 0

# The former per-type weights (`model="typed"`), kept for comparison (module docstring):
# switched capacitance per driven input pin / per gate output in minimum-gate units.
PIN_CAP: dict[str, float] = {
    "BUF": 2, "NOT": 2, "NAND": 2, "NOR": 2, "AND": 2, "OR": 2, "ANDNOT": 2, "ORNOT": 2,
    "XOR": 4, "XNOR": 4, "MUX": 3,
}  # fmt: skip
SELF_CAP: dict[str, float] = {t: n / 2 for t, n in {
    "BUF": 4, "NOT": 2, "AND": 6, "NAND": 4, "OR": 6, "NOR": 4,
    "ANDNOT": 6, "ORNOT": 6, "XOR": 12, "XNOR": 12, "MUX": 12,
}.items()}  # fmt: skip
LOAD_MODELS = ("fanout", "typed")
DEFAULT_MODEL = "fanout"
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


def net_loads(gates: Gates, model: str = DEFAULT_MODEL) -> dict[int, float]:
    """Switched capacitance of each net under a load model (module docstring)."""
    load: dict[int, float] = {}
    if model == "fanout":
        operands = set(gates.a) | set(gates.b)
        for _, ins, _ in gates.gates:
            for n in ins:
                if n not in operands:
                    load[n] = load.get(n, 0.0) + 1.0
        for n in gates.o:
            if n not in operands:
                load[n] = load.get(n, 0.0) + OUTPUT_LOAD
        return load
    if model != "typed":
        raise ValueError(f"unknown energy model {model!r} (one of {', '.join(LOAD_MODELS)})")
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


def switching_energy(
    gates: Gates, a_codes: np.ndarray, b_codes: np.ndarray, model: str = DEFAULT_MODEL
) -> float:
    """Energy per operation (arbitrary units) of `gates` over an operand stream.

    `a_codes`, `b_codes`: 8-bit operand codes (`value & 0xFF`) of consecutive operations,
    length a multiple of 64. See the module docstring for the model and its assumptions.
    """
    loads = net_loads(gates, model)
    nets = evaluate(gates, a_codes, b_codes)
    total = sum(_toggles(nets[n]) * c for n, c in loads.items() if n >= 0 and n in nets)
    return float(total) / (np.asarray(a_codes).size - 1)


def uniform_energy(
    gates: Gates, n: int = DEFAULT_OPS, seed: int = DEFAULT_SEED, model: str = DEFAULT_MODEL
) -> float:
    """Energy per operation under independent uniform random 8-bit operands."""
    p = np.full(256, 1 / 256)
    return energy_under_histograms(gates, p, p, n, seed, model)


def energy_under_histograms(
    gates: Gates,
    p_a: np.ndarray,
    p_b: np.ndarray,
    n: int = DEFAULT_OPS,
    seed: int = DEFAULT_SEED,
    model: str = DEFAULT_MODEL,
) -> float:
    """Energy per operation when operands are drawn independently from two histograms.

    `p_a`, `p_b`: 256 non-negative weights over operand codes (`value & 0xFF`; for signed
    layers code 255 is -1), normalised here. `n` operations (rounded up to a multiple of
    64), sampled with `numpy.random.default_rng(seed)`.
    """
    a_codes, b_codes = operand_stream(p_a, p_b, n, seed)
    return switching_energy(gates, a_codes, b_codes, model)


def operand_stream(
    p_a: np.ndarray, p_b: np.ndarray, n: int = DEFAULT_OPS, seed: int = DEFAULT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """The operand codes `energy_under_histograms` feeds its gates: `n` operations (rounded
    up to a multiple of 64, at least 128) drawn independently from `p_a` and `p_b`."""
    rng = np.random.default_rng(seed)
    n = max(128, -(-int(n) // 64) * 64)
    a, b = (_sample(rng, _normalise(p, name), n) for p, name in ((p_a, "p_a"), (p_b, "p_b")))
    return a, b


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


def energy_cost(gates: Gates) -> dict[str, float | str]:
    """The energy part of a library entry's `cost`: the estimate and the model that made it."""
    return {"energy": uniform_energy(gates), "energy_model": DEFAULT_MODEL}


def refresh_library_energy(lib: Any) -> list[str]:
    """Re-estimate the entries whose energy another model made (a library from before a
    model change), from their stored gate netlists: no resimulation, and `energy_rel`
    stays comparable across old and new entries. Returns the names updated."""
    from hwflow.characterize.synth import load_gates
    from hwflow.errors import NetlistError

    stale = []
    for e in lib.entries:
        if "energy" not in e.cost or e.cost.get("energy_model") == DEFAULT_MODEL:
            continue
        try:
            gates = load_gates(lib.gate_netlist_path(e.name))
        except NetlistError:
            continue  # no readable gate netlist (hand-made entries): leave as is
        e.cost.update(energy_cost(gates))
        stale.append(e)
    lib.update(stale)
    return [e.name for e in stale]
