"""Built-in 8x8 -> 16-bit combinational multipliers, generated in Amaranth.

Each family is a parametric gate-level circuit (explicit partial products, adder cells,
leading-one detectors, shifters): the approximation removes or simplifies real hardware,
so yosys gate counts and switching energy fall as the error grows. Each has an
independent numpy model in `reference.py` (`reference_table`).

Families (`MultiplierSpec.family`, parameters, name tags):
- `exact`: array multiplier (unsigned) / modified Baugh-Wooley array (signed).
- `trunc` (k, comp): partial-product columns below k removed; `comp` adds the rounded
  mean of the removed bits under uniform operands as a constant (`_c` in the name).
- `bam` (hbl, vbl): broken-array multiplier (Mahdiani et al.): adder rows of multiplier
  bits j < hbl and cells of columns i + j < vbl removed.
- `perf` (row, n, comp): partial-product rows row .. row+n-1 perforated (removed), with
  an optional constant compensation as in `trunc`.
- `orcol` (m): each column below m is compressed by one OR gate (an approximate n:1
  compressor without carries, like the lower-part OR adder); columns >= m are exact.
- `optrunc` (ta, tb): operand truncation: the low ta bits of a and tb bits of b are zero.
- `drum` (k): DRUM (Hashemi et al., ICCAD 2015): leading-one detection, k-bit segments
  with the lowest kept bit set to 1 (unbiased), a k x k multiplier and a shifter.
- `mitchell` (w): Mitchell's logarithmic multiplier with w fraction bits (truncating).
- `vct` (k, n, pair): truncation with a variable correction term (after King and
  Swartzlander, 1997): columns below k are removed, except that up to n bits of column
  k-1 (those with the most balanced i, j first) are added one column higher, at twice
  their weight, where they stand in for the removed columns as well as for themselves; a
  constant makes the mean error about zero. With `pair` (`_p`), each doubled bit (i, j)
  whose mirror (j, i) is doubled too enters as one bit, a_i b_j OR a_j b_i (an
  approximate half adder that drops the pair's carry). Summed by a Dadda tree (the other
  families use an array).

Signed variants read a and b as two's complement and output the two's complement
product pattern. `drum` and `mitchell` are sign-magnitude around the unsigned core:
|a| and |b| (0..128) go into the core and its output is negated when the signs differ.
All other families act on the Baugh-Wooley partial-product matrix (constants 2^8 and
2^15 included; they are removed with their column in `trunc`/`bam`, and folded into the
compensation constant in `vct`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Cat, Const, Module, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwflow.errors import ConfigError
from hwflow.multipliers import reference
from hwflow.multipliers._cells import BitCircuit, to_value
from hwflow.multipliers.table import check_table

WIDTH = 8
OUT_WIDTH = 16
_BW_CONSTANT_COLUMNS = (WIDTH, 2 * WIDTH - 1)


# ---- specification ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Param:
    name: str
    tag: str  # name fragment: int -> f"{tag}{value}", bool -> tag when True
    kind: type  # int or bool
    low: int = 0
    high: int = 1
    default: int | bool | None = None  # None: required


@dataclass(frozen=True)
class _Family:
    params: tuple[_Param, ...]
    # cross-parameter rules: (params, signed) -> problem or None
    check: Callable[[dict[str, Any], bool], str | None] = lambda p, signed: None


_FAMILIES: dict[str, _Family] = {
    "exact": _Family(()),
    "trunc": _Family((_Param("k", "k", int, 1, 15), _Param("comp", "c", bool, default=False))),
    "bam": _Family((_Param("hbl", "h", int, 0, 7, 0), _Param("vbl", "v", int, 0, 15, 0))),
    "perf": _Family(
        (
            _Param("row", "r", int, 0, 7),
            _Param("n", "n", int, 1, 8, 1),
            _Param("comp", "c", bool, default=False),
        ),
        lambda p, signed: "row + n must be <= 8" if p["row"] + p["n"] > 8 else None,
    ),
    "orcol": _Family((_Param("m", "m", int, 1, 8),)),
    "optrunc": _Family((_Param("ta", "a", int, 0, 7, 0), _Param("tb", "b", int, 0, 7, 0))),
    "drum": _Family(
        (_Param("k", "k", int, 2, 7),),
        # |-128| rounds to 192 with k = 2 and 192 * 192 overflows the signed output
        lambda p, signed: "signed DRUM needs k >= 3" if signed and p["k"] < 3 else None,
    ),
    "mitchell": _Family((_Param("w", "w", int, 1, 7, 7),)),
    "vct": _Family(
        (
            _Param("k", "k", int, 1, 15),
            _Param("n", "n", int, 0, 8, 8),
            _Param("pair", "p", bool, default=False),
        ),
        lambda p, signed: _vct_problem(signed, **p),
    ),
}


@dataclass(frozen=True)
class MultiplierSpec:
    """A built-in multiplier: family, signedness and parameters (defaults filled in).

    Invalid families or parameters raise ConfigError naming the offending key.
    """

    family: str
    signed: bool
    params: dict[str, int | bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        params = _validated_params(self.family, self.signed, self.params)
        object.__setattr__(self, "params", params)

    def __hash__(self) -> int:
        return hash((self.family, self.signed, tuple(sorted(self.params.items()))))

    @property
    def name(self) -> str:
        """Unique, stable, filename-safe name, e.g. `u_trunc_k6_c`, `s_exact`."""
        parts = [("s" if self.signed else "u"), self.family]
        for p in _FAMILIES[self.family].params:
            value = self.params[p.name]
            if p.kind is bool:
                if value:
                    parts.append(p.tag)
            else:
                parts.append(f"{p.tag}{value}")
        return "_".join(parts)

    @classmethod
    def from_name(cls, name: str) -> MultiplierSpec:
        """The spec called `name` (`u_vct_k13_n3`: unsigned, vct, k=13, n=3); the inverse
        of `name`, so any design of a family's parameter range can be named."""
        sign, family, *tags = str(name).split("_") + ([""] if "_" not in str(name) else [])
        if sign not in ("u", "s") or family not in _FAMILIES:
            raise ConfigError(
                f"generator {name!r}: expected u_ or s_, a family ({', '.join(_FAMILIES)}) "
                "and its parameters, e.g. u_vct_k13_n3"
            )
        by_tag = {p.tag: p for p in _FAMILIES[family].params}
        params: dict[str, int | bool] = {}
        for tag in tags:
            key, digits = tag.rstrip("0123456789"), tag[len(tag.rstrip("0123456789")) :]
            p = by_tag.get(key)
            if p is not None and p.name in params:
                raise ConfigError(f"generator {name!r}: {key!r} given twice")
            if p is None or (p.kind is bool) == bool(digits):
                known = ", ".join(f"{t}N" if q.kind is int else t for t, q in by_tag.items())
                raise ConfigError(
                    f"generator {name!r}: {tag!r} is not a parameter of {family} "
                    f"(its parameters: {known or 'none'})"
                )
            params[p.name] = True if p.kind is bool else int(digits)
        try:
            spec = cls(family, sign == "s", params)
        except ConfigError as exc:  # a value out of range
            raise ConfigError(f"generator {name!r}: {exc}") from None
        if spec.name != name:  # defaults left out, or parameters out of order
            raise ConfigError(f"generator {name!r}: write it as {spec.name!r}")
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "signed": self.signed, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MultiplierSpec:
        if not isinstance(d, dict):
            raise ConfigError(f"multiplier spec: expected a mapping, got {type(d).__name__}")
        unknown = set(d) - {"family", "signed", "params"}
        if unknown:
            raise ConfigError(f"multiplier spec: unknown key(s) {sorted(unknown)}")
        for key in ("family", "signed"):
            if key not in d:
                raise ConfigError(f"multiplier spec: missing key '{key}'")
        if not isinstance(d["signed"], bool):
            raise ConfigError("multiplier spec: 'signed' must be true or false")
        params = d.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError("multiplier spec: 'params' must be a mapping")
        return cls(d["family"], d["signed"], params)


def _validated_params(family: str, signed: bool, params: Any) -> dict[str, int | bool]:
    if family not in _FAMILIES:
        raise ConfigError(
            f"multiplier spec: unknown family '{family}' (known: {', '.join(_FAMILIES)})"
        )
    if not isinstance(params, dict):
        raise ConfigError(f"multiplier spec {family}: params must be a mapping")
    schema = _FAMILIES[family]
    known = {p.name for p in schema.params}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(
            f"multiplier spec {family}: unknown parameter(s) {unknown} "
            f"(known: {sorted(known) or 'none'})"
        )
    out: dict[str, int | bool] = {}
    for p in schema.params:
        value = params.get(p.name, p.default)
        where = f"multiplier spec {family}: params.{p.name}"
        if value is None:
            raise ConfigError(f"{where} is required")
        if p.kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        elif not p.low <= value <= p.high:
            raise ConfigError(f"{where} must be in {p.low}..{p.high}, got {value}")
        out[p.name] = value
    problem = schema.check(out, signed)
    if problem:
        raise ConfigError(f"multiplier spec {family}: {problem}")
    return out


# ---- circuits ---------------------------------------------------------------------------


class GeneratedMultiplier(wiring.Component):
    """Combinational 8x8 multiplier: `o` is the 16-bit product pattern of `a` and `b`
    (two's complement if the spec is signed). No clock domain: instantiate it freely."""

    def __init__(self, spec: MultiplierSpec) -> None:
        self.spec = spec
        super().__init__({"a": In(WIDTH), "b": In(WIDTH), "o": Out(OUT_WIDTH)})

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        bc = BitCircuit(m)
        builder = _BUILDERS[self.spec.family]
        m.d.comb += self.o.eq(builder(bc, self.a, self.b, self.spec.signed, **self.spec.params))
        return m


def _bits(x: Value) -> list[Value]:
    return [x[i] for i in range(len(x))]


def _pp_rows(bc, a_bits, b_bits, signed: bool, keep_bit) -> list[dict[int, Any]]:
    """Partial-product rows (row j = multiplier bit b_j) of the kept bits; Baugh-Wooley
    NAND bits where exactly one index is the sign bit when signed."""
    top = WIDTH - 1
    rows = []
    for j, bj in enumerate(b_bits):
        row = {}
        for i, ai in enumerate(a_bits):
            if keep_bit(i, j):
                invert = signed and ((i == top) != (j == top))
                row[i + j] = bc.partial_product(ai, bj, invert, f"pp{i}_{j}")
        rows.append(row)
    return rows


def _constant_row(value: int) -> dict[int, int]:
    value &= (1 << OUT_WIDTH) - 1
    return {c: 1 for c in range(OUT_WIDTH) if value >> c & 1}


def _bits_mean(signed: bool, select) -> Fraction:
    """Mean of the weighted partial-product bits with `select(i, j)` true, for uniform
    independent operands: an AND bit is 1 with probability 1/4, a Baugh-Wooley NAND 3/4."""
    top = WIDTH - 1
    mean = Fraction(0)
    for i in range(WIDTH):
        for j in range(WIDTH):
            if select(i, j):
                nand = signed and ((i == top) != (j == top))
                mean += Fraction(3 if nand else 1, 4) * 2 ** (i + j)
    return mean


def _expected_dropped(signed: bool, keep_bit, keep_column) -> int:
    """Mean of the removed bits (and removed Baugh-Wooley constants) for uniform
    independent operands, rounded to nearest."""
    mean = _bits_mean(signed, lambda i, j: not keep_bit(i, j))
    if signed:
        mean += sum(2**c for c in _BW_CONSTANT_COLUMNS if not keep_column(c))
    return math.floor(mean + Fraction(1, 2))


def _selected_sum(
    bc: BitCircuit,
    a: Value,
    b: Value,
    signed: bool,
    keep_bit=lambda i, j: True,
    keep_column=lambda c: True,
    compensate: bool = False,
    a_bits=None,
    b_bits=None,
) -> list:
    """Array sum of the kept partial products (+ Baugh-Wooley constants, + compensation)."""
    rows = _pp_rows(bc, a_bits or _bits(a), b_bits or _bits(b), signed, keep_bit)
    constant = 0
    if signed:
        constant += sum(1 << c for c in _BW_CONSTANT_COLUMNS if keep_column(c))
    if compensate:
        constant += _expected_dropped(signed, keep_bit, keep_column)
    if constant:
        rows.insert(0, _constant_row(constant))
    return bc.array_sum(rows, OUT_WIDTH, "acc")


def _exact(bc, a, b, signed):
    return to_value(_selected_sum(bc, a, b, signed))


def _trunc(bc, a, b, signed, k, comp):
    bits = _selected_sum(bc, a, b, signed, lambda i, j: i + j >= k, lambda c: c >= k, comp)
    return to_value(bits)


def _bam(bc, a, b, signed, hbl, vbl):
    bits = _selected_sum(
        bc, a, b, signed, lambda i, j: j >= hbl and i + j >= vbl, lambda c: c >= vbl
    )
    return to_value(bits)


def _perf(bc, a, b, signed, row, n, comp):
    keep = lambda i, j: not row <= j < row + n  # noqa: E731
    return to_value(_selected_sum(bc, a, b, signed, keep, compensate=comp))


def _orcol(bc, a, b, signed, m):
    bits = _selected_sum(bc, a, b, signed, lambda i, j: i + j >= m, lambda c: c >= m)
    a_bits, b_bits = _bits(a), _bits(b)
    top = WIDTH - 1
    for c in range(m):
        column = []
        for i in range(max(0, c - top), min(c, top) + 1):
            j = c - i
            invert = signed and ((i == top) != (j == top))
            column.append(bc.partial_product(a_bits[i], b_bits[j], invert, f"pp{i}_{j}"))
        bits[c] = bc.wire(Cat(*column).any(), f"or{c}")
    return to_value(bits)


def _optrunc(bc, a, b, signed, ta, tb):
    a_bits = [0] * ta + _bits(a)[ta:]
    b_bits = [0] * tb + _bits(b)[tb:]
    return to_value(_selected_sum(bc, a, b, signed, a_bits=a_bits, b_bits=b_bits))


def _vct_doubled(k: int, n: int) -> list[tuple[int, int]]:
    """The (i, j) bits of column k-1 that `vct` moves up a column: most balanced first."""
    column = [(i, k - 1 - i) for i in range(WIDTH) if 0 <= k - 1 - i < WIDTH]
    return sorted(column, key=lambda ij: (abs(ij[0] - ij[1]), -ij[0]))[:n]


def _vct_groups(k: int, n: int, pair: bool) -> list[tuple[tuple[int, int], ...]]:
    """The doubled bits as the groups that enter column k: one bit, or a mirror pair."""
    doubled = _vct_doubled(k, n)
    groups = []
    for i, j in doubled:
        if pair and i != j and (j, i) in doubled:
            if i < j:  # listed once, its member in the lower row first
                groups.append(((j, i), (i, j)))
        else:
            groups.append(((i, j),))
    return groups


def _bit_probability(signed: bool, i: int, j: int) -> Fraction:
    nand = signed and ((i == WIDTH - 1) != (j == WIDTH - 1))
    return Fraction(3 if nand else 1, 4)


def _vct_constant(signed: bool, k: int, n: int, pair: bool) -> int:
    """Rounded mean of exact minus the approximate sum under uniform operands, the
    Baugh-Wooley constants included. A group's bits count once at weight 2^(k-1) in the
    exact sum and as their OR at 2^k in the approximate one; a mirror pair's bits are
    independent (distinct operand bits), so their OR is 1 with probability p + q - pq."""
    doubled = _vct_doubled(k, n)
    mean = _bits_mean(signed, lambda i, j: i + j < k and (i, j) not in doubled)
    for group in _vct_groups(k, n, pair):
        p = [_bit_probability(signed, i, j) for i, j in group]
        either = p[0] + p[1] - p[0] * p[1] if len(p) == 2 else p[0]
        mean += sum(p) * 2 ** (k - 1) - either * 2**k
    if signed:
        mean += sum(2**c for c in _BW_CONSTANT_COLUMNS)
    return math.floor(mean + Fraction(1, 2))


def _vct_problem(signed: bool, k: int, n: int, pair: bool) -> str | None:
    if not signed and _vct_constant(signed, k, n, pair) < 0:
        return (
            f"k={k}, n={n} doubles more than it removes, so the unsigned compensation "
            "would be negative: use k >= 9 or a smaller n"
        )
    return None


def _vct(bc, a, b, signed, k, n, pair):
    a_bits, b_bits = _bits(a), _bits(b)
    top = WIDTH - 1

    def pp(i: int, j: int):
        invert = signed and ((i == top) != (j == top))
        return bc.partial_product(a_bits[i], b_bits[j], invert, f"pp{i}_{j}")

    groups = {group[0]: group for group in _vct_groups(k, n, pair)}
    columns: dict[int, list] = {}
    for j in range(WIDTH):
        for i in range(WIDTH):
            if i + j >= k:
                columns.setdefault(i + j, []).append(pp(i, j))
            elif (i, j) in groups:  # a doubled bit, or the first of a mirror pair
                bits = [pp(*ij) for ij in groups[i, j]]
                bit = bits[0] if len(bits) == 1 else bc.wire(bits[0] | bits[1], f"or{i}_{j}")
                columns.setdefault(k, []).append(bit)
    for c, bit in _constant_row(_vct_constant(signed, k, n, pair)).items():
        columns.setdefault(c, []).append(bit)
    return to_value(bc.tree_sum(columns, OUT_WIDTH, "acc"))


def _sign_magnitude(bc: BitCircuit, a: Value, b: Value, signed: bool, core) -> Value:
    """Wrap an unsigned core: magnitudes in (|-128| = 128 fits 8 bits), sign applied out."""
    if not signed:
        return core(a, b)
    sign_a, sign_b = a[WIDTH - 1], b[WIDTH - 1]
    mag_a = bc.conditional_negate(a, sign_a, "mag_a")
    mag_b = bc.conditional_negate(b, sign_b, "mag_b")
    product = bc.wire(core(mag_a, mag_b), "mag_o", OUT_WIDTH)
    return bc.conditional_negate(product, bc.wire(sign_a ^ sign_b, "neg"), "signed_o")


def _drum(bc, a, b, signed, k):
    def round_operand(x: Value, name: str):
        # shift = leading-one index - (k - 1) when it is > 0: keep k bits from the top
        shift = bc.leading_one(x, k, f"{name}_shift")
        discarded = bc.wire(shift.any(), f"{name}_rounded")
        segment = bc.wire((x >> shift)[:k], f"{name}_seg", k)
        # unbiased rounding: the lowest kept bit is forced to 1 when bits were discarded
        return [bc.wire(segment[0] | discarded, f"{name}_lsb")] + _bits(segment)[1:], shift

    def core(x: Value, y: Value) -> Value:
        seg_x, shift_x = round_operand(x, "a")
        seg_y, shift_y = round_operand(y, "b")
        product = bc.wire(to_value(bc.multiply_unsigned(seg_x, seg_y, "core")), "core", 2 * k)
        shift = bc.wire(shift_x + shift_y, "shift", 4)
        return (product << shift)[:OUT_WIDTH]

    return _sign_magnitude(bc, a, b, signed, core)


def _mitchell(bc, a, b, signed, w):
    top = WIDTH - 1

    def log2(x: Value, name: str):
        characteristic = bc.leading_one(x, 1, f"{name}_k")
        # normalise: shift the leading one to bit 7, the 7 bits below are the fraction
        fraction = bc.wire((x << (characteristic ^ top))[top - w : top], f"{name}_f", w)
        return characteristic, fraction

    def core(x: Value, y: Value) -> Value:
        kx, fx = log2(x, "a")
        ky, fy = log2(y, "b")
        total = bc.wire(fx + fy, "fsum", w + 1)
        carry = total[w]
        # antilog: mantissa 1.f, f = fraction sum mod 1; the carry raises the exponent
        mantissa = Cat(total[:w], Const(1, 1))
        exponent = bc.wire(kx + ky + carry, "exponent", 4)  # <= 7 + 7 + 1
        product = bc.wire((mantissa << exponent)[w : w + OUT_WIDTH], "antilog", OUT_WIDTH)
        nonzero = bc.wire(x.any() & y.any(), "nonzero")
        return product & nonzero.replicate(OUT_WIDTH)

    return _sign_magnitude(bc, a, b, signed, core)


_BUILDERS = {
    "exact": _exact,
    "trunc": _trunc,
    "bam": _bam,
    "perf": _perf,
    "orcol": _orcol,
    "optrunc": _optrunc,
    "drum": _drum,
    "mitchell": _mitchell,
    "vct": _vct,
}


# ---- public API -------------------------------------------------------------------------


def build(spec: MultiplierSpec) -> GeneratedMultiplier:
    """The Amaranth component of `spec` (ports a: In(8), b: In(8), o: Out(16))."""
    return GeneratedMultiplier(spec)


def reference_table(spec: MultiplierSpec) -> np.ndarray:
    """int32[256, 256] from the independent numpy model of the spec's arithmetic."""
    table = reference.FAMILIES[spec.family](spec.signed, **spec.params)
    return check_table(table, spec.name)


def to_verilog(spec: MultiplierSpec, module_name: str | None = None) -> str:
    """Verilog of the circuit (no source paths, so the text and its sha256 are stable)."""
    return verilog.convert(build(spec), name=module_name or spec.name, emit_src=False)


def builtin_specs() -> list[MultiplierSpec]:
    """The built-in library: exact signed and unsigned, and approximate designs spanning
    tiny error to about 1 % MAE and down to a fifth of the exact multiplier's gates."""
    return [MultiplierSpec(family, signed, params) for family, signed, params in _BUILTIN]


_U, _S = False, True
# (family, signed, params). Chosen from a sweep of metrics and yosys cell counts so that
# every family appears and the set spans tiny error to ~1-3 % MAE, 100 % to <20 % cells.
_BUILTIN: list[tuple[str, bool, dict[str, int | bool]]] = [
    ("exact", _U, {}),
    ("orcol", _U, {"m": 3}),
    ("orcol", _U, {"m": 5}),
    ("orcol", _U, {"m": 7}),
    ("orcol", _U, {"m": 8}),
    ("trunc", _U, {"k": 4, "comp": True}),
    ("trunc", _U, {"k": 6}),
    ("trunc", _U, {"k": 6, "comp": True}),
    ("trunc", _U, {"k": 8}),
    ("trunc", _U, {"k": 8, "comp": True}),
    ("trunc", _U, {"k": 9, "comp": True}),
    ("trunc", _U, {"k": 10, "comp": True}),
    ("trunc", _U, {"k": 11, "comp": True}),
    ("bam", _U, {"hbl": 1, "vbl": 4}),
    ("bam", _U, {"hbl": 2, "vbl": 6}),
    ("bam", _U, {"hbl": 2, "vbl": 8}),
    ("bam", _U, {"hbl": 3, "vbl": 8}),
    ("bam", _U, {"hbl": 4, "vbl": 10}),
    ("perf", _U, {"row": 0, "n": 1, "comp": True}),
    ("perf", _U, {"row": 0, "n": 2, "comp": True}),
    ("perf", _U, {"row": 0, "n": 3, "comp": True}),
    ("optrunc", _U, {"ta": 1, "tb": 1}),
    ("optrunc", _U, {"ta": 0, "tb": 3}),
    ("optrunc", _U, {"ta": 2, "tb": 2}),
    ("optrunc", _U, {"ta": 2, "tb": 3}),
    ("optrunc", _U, {"ta": 3, "tb": 3}),
    ("optrunc", _U, {"ta": 4, "tb": 4}),
    ("drum", _U, {"k": 3}),
    ("drum", _U, {"k": 4}),
    ("drum", _U, {"k": 5}),
    ("drum", _U, {"k": 6}),
    ("mitchell", _U, {"w": 5}),
    ("mitchell", _U, {"w": 7}),
    # variable correction: the unsigned front from 58 % to 87 % energy saved
    ("vct", _U, {"k": 9, "n": 7, "pair": True}),
    ("vct", _U, {"k": 10, "n": 6}),
    ("vct", _U, {"k": 10, "n": 6, "pair": True}),
    ("vct", _U, {"k": 10, "n": 4, "pair": True}),
    ("vct", _U, {"k": 11, "n": 5}),
    ("vct", _U, {"k": 11, "n": 4}),
    ("vct", _U, {"k": 12, "n": 4}),
    ("exact", _S, {}),
    ("orcol", _S, {"m": 3}),
    ("orcol", _S, {"m": 5}),
    ("orcol", _S, {"m": 7}),
    ("trunc", _S, {"k": 6, "comp": True}),
    ("trunc", _S, {"k": 7}),
    ("trunc", _S, {"k": 8, "comp": True}),
    ("trunc", _S, {"k": 9, "comp": True}),
    ("trunc", _S, {"k": 10, "comp": True}),
    ("trunc", _S, {"k": 11, "comp": True}),
    ("bam", _S, {"hbl": 1, "vbl": 4}),
    ("bam", _S, {"hbl": 2, "vbl": 8}),
    ("perf", _S, {"row": 0, "n": 2, "comp": True}),
    ("optrunc", _S, {"ta": 1, "tb": 1}),
    ("optrunc", _S, {"ta": 2, "tb": 2}),
    ("optrunc", _S, {"ta": 3, "tb": 3}),
    ("optrunc", _S, {"ta": 4, "tb": 4}),
    ("drum", _S, {"k": 3}),
    ("drum", _S, {"k": 4}),
    ("drum", _S, {"k": 5}),
    ("mitchell", _S, {"w": 3}),
    ("mitchell", _S, {"w": 6}),
    ("vct", _S, {"k": 9, "n": 5}),
    ("vct", _S, {"k": 10, "n": 4}),
    ("vct", _S, {"k": 11, "n": 3}),
]
