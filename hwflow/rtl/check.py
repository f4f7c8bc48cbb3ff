"""Compare an exported design's accumulator results with the emulation's, exactly.

Plain Python (no numpy, no hwflow imports): `hwflow export` copies this file into every
exported directory as `tb/hwflow_check.py`, where it runs under cocotb alone. Formats
are those of `hwflow.rtl.vectors` and the feeder:
- `<port>_x.hex` / `<port>_w.hex`: one line per cycle, lane 0 in the low byte;
- `<port>_expected.txt`: one decimal accumulator per job (job j: lane j % P, pass j // P);
- `<port>_acc.hex` ($writememh): one line per pass, lane 0 in the low `acc_width` bits.
"""

from __future__ import annotations

from pathlib import Path


def read_hex_words(path: Path) -> list[int]:
    """The words of a $readmemh/$writememh file; X/Z digits raise ValueError naming the line."""
    words = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        text = line.split("//", 1)[0].strip()
        if not text:
            continue
        try:
            words.append(int(text, 16))
        except ValueError:
            raise ValueError(
                f"{path}:{lineno}: not a hex word (X/Z output?): {text[:40]}"
            ) from None
    return words


def to_signed(value: int, width: int) -> int:
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


def lane_field(word: int, lane: int, width: int) -> int:
    return (word >> (lane * width)) & ((1 << width) - 1)


def slot(layer: dict, job: int) -> tuple[int, int]:
    """(pass, lane) of a job: round-robin, or row by row for row-aligned layers."""
    if layer.get("row_aligned"):
        return divmod(job, layer["shape"][2])
    return divmod(job, layer["lanes"])


def job_operands(layer: dict, vectors: Path, job: int) -> dict:
    """The K activation and weight values of one job, as the emulation recorded them."""
    k = layer["fan_in"]
    q, lane = slot(layer, job)
    port = layer["port"]
    x_rows = read_hex_words(vectors / f"{port}_x.hex")[q * k : (q + 1) * k]
    w_rows = read_hex_words(vectors / f"{port}_w.hex")[q * k : (q + 1) * k]
    x = [lane_field(r, lane, 8) for r in x_rows]
    if layer["signed"]:
        x = [to_signed(v, 8) for v in x]
    w = [to_signed(lane_field(r, lane, 8), 8) for r in w_rows]
    return {"x": x, "w": w}


def check_layer(layer: dict, vectors: Path, results: Path, latency: int) -> dict:
    """Compare one layer; report counts and the first mismatch (lane, cycle, operands)."""
    port, width = layer["port"], layer["acc_width"]
    jobs, k = layer["jobs"], layer["fan_in"]
    out = {"layer": layer["layer"], "multiplier": layer["multiplier"], "checked": 0}
    expected = [int(s) for s in (vectors / f"{port}_expected.txt").read_text().split()]
    if len(expected) != jobs:
        raise ValueError(f"{port}_expected.txt: {len(expected)} values, manifest says {jobs}")
    acc_file = results / f"{port}_acc.hex"
    try:
        words = read_hex_words(acc_file)
        if len(words) < layer["passes"]:
            raise ValueError(f"{acc_file}: {len(words)} passes, expected {layer['passes']}")
    except (OSError, ValueError) as exc:
        return {**out, "mismatches": jobs, "error": str(exc), "first_mismatch": None}
    mismatches = 0
    first = None
    for job, want in enumerate(expected):
        q, lane = slot(layer, job)
        got = to_signed(lane_field(words[q], lane, width), width)
        if got != want:
            mismatches += 1
            if first is None:
                g_, m_, n_ = layer["shape"]
                first = {
                    "layer": layer["layer"],
                    "lane": lane,
                    "pass": q,
                    "cycle": (q + 1) * k - 1 + latency,
                    "job": job,
                    "index": [job // (m_ * n_), (job // n_) % m_, job % n_],
                    "expected": want,
                    "actual": got,
                    **job_operands(layer, vectors, job),
                }
    out = {**out, "checked": jobs, "mismatches": mismatches, "first_mismatch": first}
    if layer.get("requant"):
        out.update(check_codes(layer, vectors, results))
    if layer.get("argmax"):
        out.update(check_classes(layer, vectors, results))
    return out


def check_classes(layer: dict, vectors: Path, results: Path) -> dict:
    """The classifier stage: one class per row (lane 0 of the code bus of its pass)."""
    port = layer["port"]
    expected = [int(s) for s in (vectors / f"{port}_expected_class.txt").read_text().split()]
    try:
        words = read_hex_words(results / f"{port}_code.hex")
    except (OSError, ValueError) as exc:
        return {"classes_checked": 0, "class_mismatches": len(expected), "error": str(exc)}
    actual = [lane_field(words[row], 0, 8) for row in range(len(expected))]
    bad = [row for row, (a, b) in enumerate(zip(actual, expected, strict=True)) if a != b]
    first = {"row": bad[0], "expected": expected[bad[0]], "actual": actual[bad[0]]} if bad else None
    return {
        "classes_checked": len(expected),
        "class_mismatches": len(bad),
        "first_class_mismatch": first,
        "classes": actual,
    }


def check_codes(layer: dict, vectors: Path, results: Path) -> dict:
    """The integer-only output stage: every job's 8-bit code, exactly."""
    port = layer["port"]
    signed = layer["requant"]["signed"]
    expected = [int(s) for s in (vectors / f"{port}_expected_code.txt").read_text().split()]
    code_file = results / f"{port}_code.hex"
    try:
        words = read_hex_words(code_file)
    except (OSError, ValueError) as exc:
        return {"codes_checked": 0, "code_mismatches": len(expected), "error": str(exc)}
    bad, first = 0, None
    for job, want in enumerate(expected):
        q, lane = slot(layer, job)
        got = lane_field(words[q], lane, 8)
        got = to_signed(got, 8) if signed else got
        if got != want:
            bad += 1
            if first is None:
                first = {"lane": lane, "pass": q, "job": job, "expected": want, "actual": got}
    return {"codes_checked": len(expected), "code_mismatches": bad, "first_code_mismatch": first}


def check_design(manifest: dict, vectors: Path, results: Path) -> dict:
    """Every layer of the manifest; `ok` only when every accumulator matches."""
    layers = [
        check_layer(layer, Path(vectors), Path(results), manifest["latency"])
        for layer in manifest["layers"]
    ]
    first = next((lay["first_mismatch"] for lay in layers if lay["first_mismatch"]), None)
    errors = [f"{lay['layer']}: {lay['error']}" for lay in layers if lay.get("error")]
    return {
        "ok": all(
            lay["mismatches"] == 0
            and not lay.get("code_mismatches")
            and not lay.get("class_mismatches")
            and not lay.get("error")
            for lay in layers
        ),
        "classes_checked": sum(lay.get("classes_checked", 0) for lay in layers),
        "class_mismatches": sum(lay.get("class_mismatches", 0) for lay in layers),
        "codes_checked": sum(lay.get("codes_checked", 0) for lay in layers),
        "code_mismatches": sum(lay.get("code_mismatches", 0) for lay in layers),
        "checked": sum(lay["checked"] for lay in layers),
        "mismatches": sum(lay["mismatches"] for lay in layers),
        "layers": layers,
        "first_mismatch": first,
        "errors": errors,
    }


def describe_mismatch(m: dict) -> str:
    def short(values: list[int]) -> str:
        text = ",".join(str(v) for v in values[:12])
        return f"[{text}{',...' if len(values) > 12 else ''}] ({len(values)})"

    return (
        f"layer {m['layer']} lane {m['lane']} cycle {m['cycle']} (pass {m['pass']}, "
        f"acc index {tuple(m['index'])}): expected {m['expected']}, actual {m['actual']}; "
        f"x={short(m['x'])} w={short(m['w'])}"
    )


def summary(report: dict) -> str:
    if report["ok"]:
        return f"all {report['checked']} accumulations match"
    parts = [f"{report['mismatches']} of {report['checked']} accumulations mismatch"]
    if report.get("code_mismatches"):
        bad = [lay["layer"] for lay in report["layers"] if lay.get("code_mismatches")]
        parts.append(f"{report['code_mismatches']} requantized codes mismatch (layers {bad})")
    if report.get("class_mismatches"):
        parts.append(f"{report['class_mismatches']} classes mismatch")
    parts += report["errors"]
    if report["first_mismatch"]:
        parts.append("first: " + describe_mismatch(report["first_mismatch"]))
    return "; ".join(parts)
