"""Built-in multiplier generators: circuits (simulated in Icarus) equal their reference
models exactly, the models equal independent arithmetic, specs validate, and the built-in
set spans the error/cost range a researcher needs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwflow.errors import ConfigError, HwflowError
from hwflow.multipliers import reference
from hwflow.multipliers.generators import (
    MultiplierSpec,
    build,
    builtin_specs,
    reference_table,
    to_verilog,
)
from hwflow.multipliers.table import compute_metrics, exact_table, operand_values, output_to_int

needs_iverilog = pytest.mark.skipif(
    shutil.which("iverilog") is None, reason="Icarus Verilog (iverilog) is not installed"
)


def simulate(
    specs: list[MultiplierSpec],
    workdir: Path,
    step: int = 1,
    sources: dict[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """Simulate every spec's Verilog in one plain Icarus testbench over the flat operand
    indices 0, step, 2*step, ... < 65,536 (index = a * 256 + b; step 1 = exhaustive).

    Returns {name: int32[n]} holding each output read as the circuit's integer. Any X/Z
    output makes the parse fail, so it cannot pass silently. `sources` ({name: Verilog})
    saves converting designs again.
    """
    texts = [(sources or {}).get(spec.name) or to_verilog(spec) for spec in specs]
    outs = [f"o{n}" for n in range(len(specs))]
    tb = ["`timescale 1ns/1ps", "module tb;", "  reg [7:0] a, b;", "  integer f, i;"]
    tb += [f"  wire [15:0] {o};" for o in outs]
    tb += [f"  {s.name} d{n} (.a(a), .b(b), .o(o{n}));" for n, s in enumerate(specs)]
    fmt = " ".join(["%0d"] * len(specs))
    tb += [
        "  initial begin",
        '    f = $fopen("out.txt", "w");',
        f"    for (i = 0; i < 65536; i = i + {step}) begin",
        "      a = i[15:8]; b = i[7:0]; #1;",
        f'      $fwrite(f, "{fmt}\\n", {", ".join(outs)});',
        "    end",
        "    $fclose(f); $finish;",
        "  end",
        "endmodule",
    ]
    (workdir / "designs.v").write_text("\n".join(texts))
    (workdir / "tb.v").write_text("\n".join(tb) + "\n")
    subprocess.run(
        ["iverilog", "-o", "sim.vvp", "-s", "tb", "tb.v", "designs.v"], cwd=workdir, check=True
    )
    subprocess.run(["vvp", "-n", "sim.vvp"], cwd=workdir, check=True, capture_output=True)
    raw = np.array((workdir / "out.txt").read_text().split(), dtype=np.int64)
    raw = raw.reshape(-1, len(specs))
    assert len(raw) == len(range(0, 65536, step))
    return {spec.name: output_to_int(raw[:, n], spec.signed) for n, spec in enumerate(specs)}


def assert_circuits_equal_reference(
    specs: list[MultiplierSpec], workdir: Path, step: int, sources: dict[str, str] | None = None
) -> None:
    simulated = simulate(specs, workdir, step, sources)
    mismatched = [
        spec.name
        for spec in specs
        if not np.array_equal(simulated[spec.name], reference_table(spec).ravel()[::step])
    ]
    assert not mismatched, f"circuit differs from its reference model: {mismatched}"


# ---- scalar models: a third, per-pair implementation of each family's definition -------


def _value(code: int, signed: bool) -> int:
    return code - 256 if signed and code >= 128 else code


def _wrap(raw: int, signed: bool) -> int:
    raw &= 0xFFFF
    return raw - 0x10000 if signed and raw >= 0x8000 else raw


def _pp_bit(a: int, b: int, signed: bool, i: int, j: int) -> int:
    bit = (a >> i) & (b >> j) & 1
    return bit ^ 1 if signed and (i == 7) ^ (j == 7) else bit


def _pp_sum(a: int, b: int, signed: bool, keep) -> int:
    """Sum of the kept partial-product bits, written as a plain double loop."""
    total = 0
    for i in range(8):
        for j in range(8):
            if keep(i, j):
                bit = (a >> i) & (b >> j) & 1
                if signed and (i == 7) ^ (j == 7):
                    bit ^= 1
                total += bit << (i + j)
    return total


def _scalar(spec: MultiplierSpec, a: int, b: int) -> int:
    p, signed = spec.params, spec.signed
    x, y = _value(a, signed), _value(b, signed)
    if spec.family == "exact":
        return x * y
    if spec.family == "optrunc":
        return _value(a >> p["ta"] << p["ta"], signed) * _value(b >> p["tb"] << p["tb"], signed)
    if spec.family in ("drum", "mitchell"):
        core = _scalar_drum if spec.family == "drum" else _scalar_mitchell
        sign = -1 if (x < 0) != (y < 0) else 1
        return _wrap(sign * core(abs(x), abs(y), next(iter(p.values()))), signed)
    if spec.family == "orcol":
        m = p["m"]
        low = sum(
            any((a >> i) & (b >> (c - i)) & 1 for i in range(max(0, c - 7), min(c, 7) + 1)) << c
            for c in range(m)
        )
        high = _pp_sum(a, b, signed, lambda i, j: i + j >= m)
        return _wrap(high + low + (2**8 + 2**15 if signed else 0), signed)
    raise AssertionError(f"no scalar model for {spec.family}")


def _scalar_drum(x: int, y: int, k: int) -> int:
    def rounded(v: int) -> int:
        if v < 2**k:
            return v
        drop = v.bit_length() - k  # bits below the k-bit segment
        return ((v >> drop) | 1) << drop

    return rounded(x) * rounded(y)


def _scalar_mitchell(x: int, y: int, w: int) -> int:
    if x == 0 or y == 0:
        return 0
    kx, ky = x.bit_length() - 1, y.bit_length() - 1
    fx = ((x - 2**kx) << w) >> kx
    fy = ((y - 2**ky) << w) >> ky
    s = fx + fy
    if s < 2**w:
        return ((2**w + s) << (kx + ky)) >> w
    return (s << (kx + ky + 1)) >> w


def _scalar_vct_sum(spec: MultiplierSpec, a: int, b: int) -> int:
    """vct without its constant: columns >= k, plus n bits of column k-1 (smallest
    |i - j| first, then larger i) counted one column up; with `pair`, a doubled bit whose
    mirror is doubled too counts as the pair's OR, once."""
    k, n, pair = spec.params["k"], spec.params["n"], spec.params["pair"]
    column = [(i, k - 1 - i) for i in range(7, -1, -1) if 0 <= k - 1 - i <= 7]
    doubled = sorted(column, key=lambda ij: abs(ij[0] - ij[1]))[:n]  # stable: larger i first
    total = _pp_sum(a, b, spec.signed, lambda i, j: i + j >= k)
    for i, j in doubled:
        bit = _pp_bit(a, b, spec.signed, i, j)
        if pair and (j, i) in doubled and i != j:
            if i < j:
                continue
            bit |= _pp_bit(a, b, spec.signed, j, i)
        total += bit << k
    return total


SCALAR_FAMILIES = ("exact", "optrunc", "drum", "mitchell", "orcol")


def _spec_id(spec: MultiplierSpec) -> str:
    return spec.name


@pytest.mark.parametrize(
    "spec", [s for s in builtin_specs() if s.family in SCALAR_FAMILIES], ids=_spec_id
)
def test_reference_equals_scalar_definition(spec: MultiplierSpec) -> None:
    table = reference_table(spec)
    rng = np.random.default_rng(0)
    pairs = [(0, 0), (255, 255), (128, 128), (127, 128), (1, 255)]
    pairs += [tuple(int(v) for v in rng.integers(0, 256, 2)) for _ in range(300)]
    for a, b in pairs:
        assert table[a, b] == _scalar(spec, a, b), (spec.name, a, b)


VCT_SPECS = [s for s in builtin_specs() if s.family == "vct"] + [
    MultiplierSpec("vct", True, {"k": 13, "n": 2}),
    MultiplierSpec("vct", True, {"k": 10, "n": 6, "pair": True}),
    MultiplierSpec("vct", False, {"k": 1, "n": 1}),
    MultiplierSpec("vct", False, {"k": 11, "n": 5, "pair": True}),
]


@pytest.mark.parametrize("spec", VCT_SPECS, ids=_spec_id)
def test_vct_reference_is_the_doubled_sum_plus_the_mean_error(spec: MultiplierSpec) -> None:
    """The table is the scalar definition's sum plus one constant, and that constant
    leaves a mean error within half a unit of zero."""
    table = reference_table(spec).astype(np.int64)
    rng = np.random.default_rng(1)
    pairs = [(0, 0), (255, 255), (128, 128), (127, 128), (1, 255)]
    pairs += [tuple(int(v) for v in rng.integers(0, 256, 2)) for _ in range(200)]
    offsets = {(int(table[a, b]) - _scalar_vct_sum(spec, a, b)) % 65536 for a, b in pairs}
    assert len(offsets) == 1, spec.name
    error = table - exact_table(spec.signed)
    assert -0.5 <= error.mean() < 0.5, spec.name


@pytest.mark.parametrize("signed", [False, True])
def test_partial_product_models_against_exact(signed: bool) -> None:
    exact = exact_table(signed)
    # the (Baugh-Wooley) partial-product matrix with nothing removed is the exact product
    assert np.array_equal(reference.bam(signed, 0, 0), exact)
    assert np.array_equal(reference.orcol(signed, 1), exact)  # column 0 is a single bit
    assert np.array_equal(reference.optrunc(signed, 0, 0), exact)


def test_truncation_error_is_the_dropped_low_product() -> None:
    a = np.arange(256)[:, None]
    b = np.arange(256)[None, :]
    for k in (3, 6, 9, 12):
        # columns < k of a*b hold a_i * (b mod 2^(k-i)) * 2^i for i < k
        dropped = sum(((a >> i) & 1) * (b % 2 ** (k - i)) << i for i in range(min(k, 8)))
        assert np.array_equal(reference.trunc(False, k, False), a * b - dropped)


def test_compensation_is_rounded_mean_of_removed_bits() -> None:
    for signed in (False, True):
        for k in (4, 8, 10):
            plain = reference.trunc(signed, k, False).astype(np.int64)
            comp = reference.trunc(signed, k, True).astype(np.int64)
            error = plain - exact_table(signed)
            expected = int(np.floor(-error.mean() + 0.5))
            assert np.all(((comp - plain) - expected) % 65536 == 0)
        assert abs(compute_metrics(reference.trunc(signed, 10, True), signed)["bias"]) < 1


def test_perforation_removes_whole_rows() -> None:
    a = np.arange(256)[:, None]
    b = np.arange(256)[None, :]
    for row, n in ((0, 1), (1, 2), (5, 3)):
        kept_b = b & ~(((1 << n) - 1) << row)
        assert np.array_equal(reference.perf(False, row, n, False), a * kept_b)


def test_known_answers() -> None:
    mitchell = reference_table(MultiplierSpec("mitchell", False, {"w": 7}))
    assert mitchell[3, 3] == 8  # log2(3) ~ 1.5: Mitchell's classic 3 x 3 = 8
    assert mitchell[255, 255] == 65024
    assert mitchell[64, 200] == 64 * 200  # a power of two is exact
    drum = reference_table(MultiplierSpec("drum", False, {"k": 3}))
    assert drum[182, 5] == 160 * 5  # 1011_0110 keeps 101 and the shift: 101_00000 | lsb
    assert drum[0b1000_0000, 7] == 0b1010_0000 * 7  # forced lowest kept bit
    signed_drum = reference_table(MultiplierSpec("drum", True, {"k": 3}))
    assert signed_drum[0x80, 0x80] == 160 * 160  # sign-magnitude: |-128| -> 160
    assert signed_drum[0x80, 3] == -160 * 3
    bam = reference_table(MultiplierSpec("bam", False, {"hbl": 2, "vbl": 0}))
    assert bam[255, 3] == 0  # rows of b_0 and b_1 removed


def test_sign_magnitude_families_are_odd_symmetric() -> None:
    codes = np.arange(256)
    neg = (-operand_values(True)) & 0xFF  # code of -v (0x80 maps to itself)
    for spec in (MultiplierSpec("drum", True, {"k": 4}), MultiplierSpec("mitchell", True, {})):
        t = reference_table(spec)
        ok = codes != 0x80
        assert np.array_equal(t[neg[ok]][:, ok], -t[ok][:, ok]), spec.name


def test_mitchell_never_overestimates() -> None:
    for w in (3, 7):
        error = reference.mitchell(False, w) - exact_table(False)
        assert error.max() == 0 and error.min() < 0


# ---- specs ------------------------------------------------------------------------------


def test_spec_defaults_names_roundtrip_and_hash() -> None:
    spec = MultiplierSpec("trunc", False, {"k": 6, "comp": True})
    assert spec.name == "u_trunc_k6_c"
    assert MultiplierSpec("vct", False, {"k": 10, "pair": True}).name == "u_vct_k10_n8_p"
    assert MultiplierSpec("exact", True).name == "s_exact"
    assert MultiplierSpec("trunc", False, {"k": 6}).params == {"k": 6, "comp": False}
    assert MultiplierSpec.from_dict(spec.to_dict()) == spec
    assert hash(MultiplierSpec.from_dict(spec.to_dict())) == hash(spec)
    assert len({spec, MultiplierSpec("trunc", False, {"comp": True, "k": 6})}) == 1
    with pytest.raises(AttributeError):
        spec.family = "exact"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("family", "signed", "params", "message"),
    [
        ("booth", False, {}, "unknown family 'booth'"),
        ("trunc", False, {}, "params.k is required"),
        ("trunc", False, {"k": 0}, "params.k must be in 1..15"),
        ("trunc", False, {"k": "6"}, "params.k must be an integer"),
        ("trunc", False, {"k": True}, "params.k must be an integer"),
        ("trunc", False, {"k": 6, "comp": 1}, "params.comp must be true or false"),
        ("trunc", False, {"k": 6, "kk": 1}, "unknown parameter(s) ['kk']"),
        ("perf", False, {"row": 6, "n": 3}, "row + n must be <= 8"),
        ("drum", True, {"k": 2}, "signed DRUM needs k >= 3"),
        ("vct", False, {"k": 5}, "unsigned compensation would be negative"),
        ("vct", False, {"k": 10, "n": 9}, "params.n must be in 0..8"),
        ("exact", False, [1], "params must be a mapping"),
    ],
)
def test_bad_specs_raise_config_error(family, signed, params, message) -> None:
    with pytest.raises(ConfigError) as info:
        MultiplierSpec(family, signed, params)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"family": "exact"}, "missing key 'signed'"),
        ({"family": "exact", "signed": "yes"}, "'signed' must be true or false"),
        ({"family": "exact", "signed": False, "extra": 1}, "unknown key(s) ['extra']"),
        ({"family": "trunc", "signed": False, "params": 3}, "'params' must be a mapping"),
        ([], "expected a mapping"),
    ],
)
def test_bad_spec_dicts_raise_config_error(d, message) -> None:
    with pytest.raises(HwflowError) as info:
        MultiplierSpec.from_dict(d)
    assert message in str(info.value)


# ---- the built-in set ---------------------------------------------------------------------


def test_builtin_set_spans_the_range() -> None:
    specs = builtin_specs()
    names = [s.name for s in specs]
    assert len(specs) >= 40 and len(set(names)) == len(names)
    assert sum(s.signed for s in specs) >= 12
    assert {"u_exact", "s_exact"} <= set(names)
    assert {s.family for s in specs} >= set(reference.FAMILIES)
    tables = [reference_table(s) for s in specs]
    assert len({t.tobytes() for t in tables}) == len(specs)  # distinct circuits
    for signed in (False, True):
        maes = sorted(
            compute_metrics(t, s.signed)["mae_pct"]
            for s, t in zip(specs, tables, strict=True)
            if s.signed == signed
        )
        assert maes[0] == 0.0 and 0 < maes[1] < 0.01  # exact and a near-exact design
        assert sum(0.5 <= m <= 1.5 for m in maes) >= 3  # several around 1 % MAE


# ---- circuits ---------------------------------------------------------------------------


def test_verilog_is_stable_and_has_the_ports() -> None:
    spec = MultiplierSpec("drum", False, {"k": 4})
    text = to_verilog(spec)
    assert text == to_verilog(spec)
    assert "module u_drum_k4(" in text
    assert "module top(" in to_verilog(spec, "top")
    for port in ("input [7:0] a;", "input [7:0] b;", "output [15:0] o;"):
        assert port in text
    assert "/work" not in text  # no source paths: stable sha256 across checkouts


def test_exact_circuits_use_gates_not_a_multiply_operator() -> None:
    for signed in (False, True):
        text = to_verilog(MultiplierSpec("exact", signed))
        assert " * " not in text


def test_component_instantiates_inside_a_bigger_design() -> None:
    """Two lanes of different multipliers in one Amaranth design, simulated with
    Amaranth's own simulator on a few pairs, match the reference tables."""
    from amaranth.sim import Simulator

    specs = [
        MultiplierSpec("trunc", True, {"k": 8, "comp": True}),
        MultiplierSpec("drum", False, {"k": 3}),
    ]

    class TwoLanes(wiring.Component):
        def __init__(self):
            super().__init__({"x": In(8), "y": In(8), "s": Out(17)})

        def elaborate(self, platform):
            m = Module()
            outs = []
            for n, spec in enumerate(specs):
                lane = m.submodules[f"lane{n}"] = build(spec)
                m.d.comb += [lane.a.eq(self.x), lane.b.eq(self.y)]
                outs.append(lane.o)
            m.d.comb += self.s.eq(outs[0] + outs[1])  # raw patterns, checked below
            lanes.extend(outs)
            return m

    lanes: list[Signal] = []
    dut = TwoLanes()
    tables = [reference_table(s) & 0xFFFF for s in specs]
    pairs = [(0, 0), (255, 255), (128, 3), (77, 200), (5, 250)]
    seen = []

    async def bench(ctx):
        for a, b in pairs:
            ctx.set(dut.x, a)
            ctx.set(dut.y, b)
            seen.append((ctx.get(dut.s), [ctx.get(o) for o in lanes]))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    for (a, b), (total, outs) in zip(pairs, seen, strict=True):
        assert outs == [int(t[a, b]) for t in tables]
        assert total == sum(outs)


def _representative() -> list[MultiplierSpec]:
    """One built-in design of each family and signedness."""
    seen: dict[tuple[str, bool], MultiplierSpec] = {}
    for spec in builtin_specs():
        seen.setdefault((spec.family, spec.signed), spec)
    return list(seen.values())


EDGE_SPECS = [
    MultiplierSpec("trunc", True, {"k": 13, "comp": True}),
    MultiplierSpec("bam", True, {"hbl": 3, "vbl": 15}),
    MultiplierSpec("perf", True, {"row": 5, "n": 3, "comp": True}),
    MultiplierSpec("orcol", True, {"m": 8}),
    MultiplierSpec("optrunc", True, {"ta": 7, "tb": 0}),
    MultiplierSpec("drum", False, {"k": 2}),
    MultiplierSpec("drum", True, {"k": 7}),
    MultiplierSpec("mitchell", False, {"w": 1}),
    MultiplierSpec("vct", True, {"k": 15, "n": 1}),
    MultiplierSpec("vct", False, {"k": 3, "n": 1}),
    MultiplierSpec("vct", True, {"k": 6, "n": 8, "pair": True}),
    MultiplierSpec("vct", False, {"k": 12, "n": 3, "pair": True}),
]


@needs_iverilog
def test_circuits_equal_reference_on_sampled_pairs(tmp_path: Path) -> None:
    """Every family and signedness plus edge parameters, on every 7th operand pair
    (all a and b values occur); the slow test below is exhaustive over the built-ins."""
    assert_circuits_equal_reference(_representative() + EDGE_SPECS, tmp_path, step=7)


def test_a_spec_is_named_back_from_its_name():
    """`MultiplierSpec.from_name` inverts `name` over every built-in design and across a
    family's range, and refuses what `name` would not write, in one line."""
    for spec in builtin_specs():
        assert MultiplierSpec.from_name(spec.name) == spec
    assert MultiplierSpec.from_name("u_vct_k13_n3").params == {"k": 13, "n": 3, "pair": False}
    assert MultiplierSpec.from_name("s_optrunc_a5_b4").signed
    for bad, message in [
        ("vct", "expected u_ or s_"),
        ("u_nope_k1", "expected u_ or s_"),
        ("u_vct_k13_n3_z", "'z' is not a parameter of vct (its parameters: kN, nN, p)"),
        ("u_trunc_k6_c1", "'c1' is not a parameter of trunc"),
        ("u_vct_k13_n3_n4", "'n' given twice"),
        ("u_vct_n3_k13", "write it as 'u_vct_k13_n3'"),
        ("u_trunc_k16", "params.k must be in 1..15, got 16"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            MultiplierSpec.from_name(bad)
