"""Fast unit tests of the RTL generator's arithmetic, schedule and checker (no simulator)."""

from __future__ import annotations

import gc
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwflow.errors import VerificationError
from hwflow.multipliers.table import exact_table
from hwflow.nn.kernels import table_matmul
from hwflow.rtl import check, mac, vectors
from hwflow.rtl.design import LayerPlan, check_plan


def test_signed_width_is_minimal():
    for lo, hi in [(0, 0), (-1, 0), (0, 1), (-128, 127), (-129, 0), (0, 128), (-5, 1000)]:
        w = mac.signed_width(lo, hi)
        assert -(2 ** (w - 1)) <= lo and hi <= 2 ** (w - 1) - 1
        assert not (-(2 ** (w - 2)) <= lo and hi <= 2 ** (w - 2) - 1) or w == 1


def test_accumulator_width_exact_multipliers():
    # unsigned exact: |product| <= 255 * 128 = 32640 (|w| <= 128), signed: -16256..16384
    assert mac.product_range(exact_table(False), False) == (-32640, 32640)
    assert mac.product_range(exact_table(True), True) == (-16256, 16384)
    k = 144
    lo, hi = mac.product_range(exact_table(False), False)
    width = mac.accumulator_width(lo, hi, k)
    assert 2 ** (width - 1) - 1 >= k * 32640 > 2 ** (width - 2) - 1


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 600),
    st.integers(-(2**15), 2**15 - 1),
    st.integers(-(2**15), 2**15 - 1),
    st.booleans(),
)
def test_accumulator_never_overflows(fan_in, a, b, signed_mult):
    """Worst-case sums (every product at the table's extreme) fit the derived width."""
    table = np.zeros((256, 256), dtype=np.int32)
    table[3, 5], table[7, 9] = a, b
    lo, hi = mac.product_range(table, signed_mult)
    width = mac.accumulator_width(lo, hi, fan_in)
    extremes = [fan_in * lo, fan_in * hi]
    if not signed_mult:
        extremes += [-fan_in * max(abs(a), abs(b)), fan_in * max(abs(a), abs(b))]
    for total in extremes:
        assert -(2 ** (width - 1)) <= total <= 2 ** (width - 1) - 1


def _random_trace(rng, signed, g=2, m=5, k=7, n=3):
    x = rng.integers(-128, 128, (g, m, k)) if signed else rng.integers(0, 256, (g, m, k))
    w = rng.integers(-127, 128, (g, k, n))
    w[0, 0, 0] = 0
    return x, w


@pytest.mark.parametrize("signed", [False, True])
def test_reference_acc_matches_nn_kernel(signed):
    """Two independent implementations of docs/concepts/operands.md's equation agree exactly."""
    rng = np.random.default_rng(1)
    table = rng.integers(-30000, 30000, (256, 256)).astype(np.int32)
    x, w = _random_trace(rng, signed)
    ref = vectors.reference_acc(x, w, table, signed)
    for gi in range(x.shape[0]):
        got = table_matmul(
            torch.from_numpy(x[gi]), torch.from_numpy(w[gi]), table, sign_magnitude=not signed
        )
        np.testing.assert_array_equal(got.numpy().astype(np.int64), ref[gi])


def test_schedule_round_trip():
    rng = np.random.default_rng(2)
    x, w = _random_trace(rng, True, g=2, m=5, k=7, n=3)  # 30 jobs over 4 lanes: 8 passes
    acc = vectors.reference_acc(x, w, exact_table(True), True)
    s = vectors.schedule(x, w, acc, lanes=4)
    assert (s.jobs, s.passes, s.x_mem.shape) == (30, 8, (56, 4))
    for job in range(30):
        q, lane = divmod(job, 4)
        gi, mi, ni = job // 15, (job // 3) % 5, job % 3
        rows = slice(q * 7, q * 7 + 7)
        np.testing.assert_array_equal(s.x_mem[rows, lane], x[gi, mi] & 0xFF)
        np.testing.assert_array_equal(s.w_mem[rows, lane], w[gi, :, ni] & 0xFF)
        assert s.expected[job] == acc[gi, mi, ni]
    assert not s.x_mem[7 * 7 :, 2:].any()  # padding jobs (30, 31) are all-zero operands


def test_hex_lines_lane_zero_in_low_byte():
    mem = np.array([[0x01, 0x02, 0xFF], [0, 0x80, 7]], dtype=np.uint8)
    assert vectors.hex_lines(mem) == "ff0201\n078000\n"
    words = [int(line, 16) for line in vectors.hex_lines(mem).split()]
    assert [check.lane_field(words[0], lane, 8) for lane in range(3)] == [1, 2, 255]


def test_checker_reads_writememh_and_rejects_x(tmp_path):
    p = tmp_path / "r.hex"
    p.write_text("// 0x00000000\nfff\n001\n")
    assert check.read_hex_words(p) == [0xFFF, 1]
    assert check.to_signed(0xFFF, 12) == -1 and check.to_signed(0x7FF, 12) == 2047
    p.write_text("0x1\nxxxx\n")
    with pytest.raises(ValueError, match=r"r.hex:2"):
        check.read_hex_words(p)


def _plan(signed_mult=False, signed=False, acc_delta=0, x_hi=255):
    rng = np.random.default_rng(3)
    x, w = _random_trace(rng, signed)
    x = np.minimum(x, x_hi)
    table = exact_table(signed_mult)
    acc = vectors.reference_acc(x, w, table, signed) + acc_delta
    rtl = mac.MultiplierRTL("m", "mul_m", signed_mult, "")
    return LayerPlan("conv.1", rtl, table, signed, x, w, acc)


def test_check_plan_accepts_consistent_and_rejects_bad_input():
    check_plan(_plan())
    with pytest.raises(VerificationError, match="unsigned but the layer's operands are signed"):
        check_plan(_plan(signed_mult=False, signed=True))
    with pytest.raises(VerificationError, match="disagree with the table equation"):
        check_plan(_plan(acc_delta=1))
    bad = _plan()
    bad.x_int[0, 0, 0] = 256
    with pytest.raises(VerificationError, match="activations span"):
        check_plan(bad)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_port_names_and_collisions():
    assert mac.port_name("features.0") == "features_0"
    assert mac.port_name("0") == "l_0"
    rtl = mac.MultiplierRTL("m", "mul_m", False, "")
    specs = [mac.engine_spec(n, 2, 3, rtl, exact_table(False)) for n in ("a.b", "a_b")]
    with pytest.raises(ValueError, match="collide"):
        mac.MacArray(specs)
    gc.collect()  # the refused, never-elaborated component warns when collected: here


@settings(max_examples=40, deadline=None)
@given(st.floats(1e-6, 0.9), st.integers(-(2**24), 2**24), st.sampled_from([0, 3, 128]))
def test_requantize_matches_exact_rational_rounding(m, t, zp):
    """Fixed-point requantization = round-half-up of t * M0 / 2^shift, clamped (Fraction)."""
    from fractions import Fraction

    from hwflow.rtl.intinfer import fixed_point, requantize

    m0, shift = fixed_point(m)
    assert 2**14 <= m0 < 2**15 and abs(m0 / 2**shift - m) <= m * 2**-14
    rounded = math.floor(Fraction(t * m0, 2**shift) + Fraction(1, 2))  # half up
    got = requantize(torch.tensor([t]), m0, shift, zp, signed=False)
    assert int(got[0]) == min(max(rounded + zp, 0), 255)


def _net_case():
    """A two-engine network's manifest entry, expectations and a correct tap log."""
    net = {
        "images": 2,
        "buffers": [
            {"tensor": "input", "channels": 2, "signed": True},
            {"tensor": "a.codes", "channels": 1, "signed": False},
        ],
        "stages": [
            {"kind": "mac", "name": "a", "acc_width": 12},
            {"kind": "mac", "name": "b", "acc_width": 10},
        ],
    }
    expected = {
        "buffers": [
            [[[-128, 127], [0, -1]], [[5, -6], [7, 8]]],
            [[[255], [0]], [[17], [3]]],
        ],
        "acc": [[[[-2048], [2047]], [[1], [-1]]], [[[-512, 511]], [[0, 9]]]],
        "classes": [1, 0],
    }

    def word(values, width):
        return f"{sum((v & ((1 << width) - 1)) << (i * width) for i, v in enumerate(values)):x}"

    lines = []
    for image in range(2):
        for b, width in ((0, 8), (1, 8)):
            for pos, values in enumerate(expected["buffers"][b][image]):
                lines.append(f"B {image} {b} {pos} {word(values, width)}")
        for stage, width in ((0, 12), (1, 10)):
            for values in expected["acc"][stage][image]:
                lines.append(f"A {image} {stage} {word(values, width)}")
        lines.append(f"C {image} {expected['classes'][image]}")
    return net, expected, lines


def _check_net(tmp_path, net, expected, lines):
    (tmp_path / "net_expected.json").write_text(json.dumps(expected))
    (tmp_path / "net_trace.txt").write_text("\n".join(lines) + "\n")
    return check.check_net(net, tmp_path, tmp_path)


def test_check_net_compares_every_tensor_in_dataflow_order(tmp_path):
    net, expected, lines = _net_case()
    report = _check_net(tmp_path, net, expected, lines)
    assert report["ok"] and report["classes"] == [1, 0]
    assert [t["tensor"] for t in report["tensors"]] == ["input", "a.acc", "a.codes", "b.acc"]
    assert [t["checked"] for t in report["tensors"]] == [8, 4, 4, 4]
    assert report["accumulations"] == 8 and report["mismatches"] == 0
    # one lane of one pooled/code word wrong: named exactly
    bad = [line.replace("B 1 1 1 3", "B 1 1 1 4") for line in lines]
    report = _check_net(tmp_path, net, expected, bad)
    assert not report["ok"] and report["mismatches"] == 1
    assert report["first_mismatch"] == {
        "tensor": "a.codes", "image": 1, "position": 1, "channel": 0, "expected": 3,
        "actual": 4,
    }  # fmt: skip
    # a missing engine result and a wrong class
    bad = [line for line in lines if not line.startswith("A 0 1")]
    bad = [line.replace("C 1 0", "C 1 3") for line in bad]
    report = _check_net(tmp_path, net, expected, bad)
    assert report["mismatches"] == 2 and report["first_mismatch"]["actual"] is None
    assert report["first_class_mismatch"] == {"image": 1, "expected": 0, "actual": 3}
    assert "1 class mismatches" in check.describe_net(report)


def test_check_net_reports_unreadable_output(tmp_path):
    net, expected, lines = _net_case()
    report = _check_net(tmp_path, net, expected, [*lines[:3], "A 0 0 xxx"])
    assert not report["ok"] and "net_trace.txt:4" in report["error"]
    (tmp_path / "net_trace.txt").unlink()
    report = check.check_net(net, tmp_path, tmp_path)
    assert not report["ok"] and "net_trace.txt" in report["error"]


def _layer_result(name: str, mismatches: int) -> dict:
    first = {"layer": name, "lane": 0} if mismatches else None
    return {"layer": name, "multiplier": "m", "checked": 6, "mismatches": mismatches,
            "first_mismatch": first}  # fmt: skip


def test_merge_reports_combines_the_engines_and_the_network(tmp_path):
    """Each simulation reports its part; the merge is one report over both, and is ok
    only when both are."""
    net, expected, lines = _net_case()
    network = _check_net(tmp_path, net, expected, lines)
    engines = check._report([_layer_result("a", 0), _layer_result("b", 0)], None)
    merged = check.merge_reports([engines, check._report([], network)])
    assert merged["ok"] and merged["checked"] == 12 and merged["net"] == network
    assert [lay["layer"] for lay in merged["layers"]] == ["a", "b"]
    assert "all 12 accumulations match; network: 2 images" in check.summary(merged)
    # a wrong class in the network alone fails the merge, naming the network
    bad = _check_net(tmp_path, net, expected, [ln.replace("C 1 0", "C 1 3") for ln in lines])
    merged = check.merge_reports([engines, check._report([], bad)])
    assert not merged["ok"] and merged["mismatches"] == 0
    assert "1 class mismatches" in check.summary(merged)
    # a layer mismatch: the first mismatch is the layer's
    failing = check._report([_layer_result("a", 0), _layer_result("b", 2)], None)
    merged = check.merge_reports([failing, check._report([], network)])
    assert not merged["ok"] and merged["first_mismatch"]["layer"] == "b"


def test_merge_script_flags_a_missing_simulation(tmp_path, capsys):
    """`python3 tb/hwflow_check.py merge` (the exported Makefile's last step): a part
    without a report (its simulation never ran) is a failure, not a pass."""
    manifest = {"simulations": [{"name": "layers"}, {"name": "net"}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    results = tmp_path / "sim_build"
    (results / "layers").mkdir(parents=True)
    engines = check._report([_layer_result("a", 0)], None)
    (results / "layers" / check.REPORT).write_text(json.dumps(engines))
    assert check.main(["merge", str(tmp_path), str(results)]) == 1
    merged = json.loads((results / check.REPORT).read_text())
    assert not merged["ok"] and "simulation net: no report" in merged["errors"][0]
    assert "FAIL" in capsys.readouterr().out
    net, expected, lines = _net_case()
    (results / "net").mkdir()
    (results / "net" / check.REPORT).write_text(
        json.dumps(check._report([], _check_net(tmp_path, net, expected, lines)))
    )
    assert check.main(["merge", str(tmp_path), str(results)]) == 0
    assert json.loads((results / check.REPORT).read_text())["ok"]
    assert check.main(["nonsense"]) == 2


def test_verify_failure_message_is_one_line_for_cli_and_demo(tmp_path):
    failing = check._report([_layer_result("a", 0), _layer_result("b", 2)], None)
    failing["first_mismatch"] |= {"cycle": 3, "pass": 0, "index": [1, 2], "expected": 5,
                                  "actual": 6, "x": [1, 2], "w": [3, 4]}  # fmt: skip
    message = check.failure_message("design", failing, tmp_path / "verify.json")
    assert message.startswith("design: 2 of 12 accumulations mismatch; first: layer b lane 0")
    assert message.endswith(f"(see {tmp_path / 'verify.json'})") and "\n" not in message
