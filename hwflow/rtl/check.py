"""Compare an exported design's accumulator results with the emulation's, exactly.

Plain Python (no numpy, no hwflow imports): `hwflow export` copies this file into every
exported directory as `tb/hwflow_check.py`, where it runs under cocotb alone. Formats
are those of `hwflow.rtl.vectors` and the feeder:
- `<port>_x.hex` / `<port>_w.hex`: one line per cycle, lane 0 in the low byte;
- `<port>_expected.txt`: one decimal accumulator per job (job j: lane j % P, pass j // P);
- `<port>_acc.hex` ($writememh): one line per pass, lane 0 in the low `acc_width` bits.
The whole-network design (`hwflow_net`, when exported) is checked by `check_net` from its
tap log `net_trace.txt` (see `tb/hwflow_net_feeder.v`) against `net_expected.json`.

The engines and the network are two simulations (`manifest["simulations"]`, run in
parallel); each test checks its own part (`check_part`) into its results directory, and
`python3 tb/hwflow_check.py merge EXPORT_DIR RESULTS_DIR` (the exported Makefile's last
step) merges `RESULTS_DIR/<part>/hwflow_verify.json` into `RESULTS_DIR/hwflow_verify.json`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FORMAT = 2  # of manifest.json; 2: separate simulations (engines, network)
PARTS = ("layers", "net")  # the simulations of an export, each with its own harness
REPORT = "hwflow_verify.json"  # what each simulation's test (and the merge) writes


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
                rows = layer.get("row_ids") or range(m_)  # the trace's rows when sampled
                first = {
                    "layer": layer["layer"],
                    "lane": lane,
                    "pass": q,
                    "cycle": (q + 1) * k - 1 + latency,
                    "job": job,
                    "index": [job // (m_ * n_), rows[(job // n_) % m_], job % n_],
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


def read_net_trace(path: Path) -> tuple[dict, dict, dict]:
    """The tap log: {(image, stage): [sum words]}, {(image, buffer, address): word}
    (the last write), {image: class}. X/Z digits raise ValueError naming the line."""
    sums: dict = {}
    words: dict = {}
    classes: dict = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        try:
            if parts[0] == "A":
                sums.setdefault((int(parts[1]), int(parts[2])), []).append(int(parts[3], 16))
            elif parts[0] == "B":
                words[(int(parts[1]), int(parts[2]), int(parts[3]))] = int(parts[4], 16)
            elif parts[0] == "C":
                classes[int(parts[1])] = int(parts[2])
            else:
                raise ValueError(parts[0])
        except (ValueError, IndexError):
            raise ValueError(f"{path}:{lineno}: unreadable tap line: {line[:60]}") from None
    return sums, words, classes


def _compare_tensor(name: str, want: list, word_of, width: int, signed: bool) -> dict:
    """want[image][position][channel] against lane `channel` of word_of(image, position)
    (None: never written)."""
    checked = bad = 0
    first = None
    for image, positions in enumerate(want):
        for pos, channels in enumerate(positions):
            word = word_of(image, pos)
            for ch, value in enumerate(channels):
                got = None
                if word is not None:
                    got = lane_field(word, ch, width)
                    got = to_signed(got, width) if signed else got
                checked += 1
                if got != value:
                    bad += 1
                    if first is None:
                        first = {"tensor": name, "image": image, "position": pos,
                                 "channel": ch, "expected": value, "actual": got}  # fmt: skip
    return {"tensor": name, "checked": checked, "mismatches": bad, "first_mismatch": first}


def _nth(items: list, n: int):
    return items[n] if n < len(items) else None


def check_net(net: dict, vectors: Path, results: Path) -> dict:
    """The whole network: every buffer's codes (input, each layer's codes, each pooled
    map, position by position), every engine's sums, and the classes, exactly."""
    expected = json.loads((Path(vectors) / "net_expected.json").read_text())
    out = {"images": net["images"], "tensors": [], "checked": 0, "mismatches": 0}
    try:
        sums, words, classes = read_net_trace(Path(results) / "net_trace.txt")
    except (OSError, ValueError) as exc:
        return {**out, "ok": False, "error": str(exc), "class_mismatches": net["images"]}

    def buffer(b: int) -> dict:
        return _compare_tensor(
            net["buffers"][b]["tensor"],
            expected["buffers"][b],
            lambda image, pos: words.get((image, b, pos)),
            8,
            net["buffers"][b]["signed"],
        )

    # dataflow order: the input, then per stage its sums (engines) and its output map
    out["tensors"].append(buffer(0))
    sums_expected = iter(expected["acc"])
    for i, stage in enumerate(net["stages"]):
        if stage["kind"] == "mac":
            out["tensors"].append(
                _compare_tensor(
                    f"{stage['name']}.acc",
                    next(sums_expected),
                    lambda image, pos, i=i: _nth(sums.get((image, i), []), pos),
                    stage["acc_width"],
                    True,
                )
            )
        if i + 1 < len(net["buffers"]):
            out["tensors"].append(buffer(i + 1))
    actual = [classes.get(image) for image in range(net["images"])]
    bad = [i for i, (a, b) in enumerate(zip(actual, expected["classes"], strict=True)) if a != b]
    out.update(
        checked=sum(t["checked"] for t in out["tensors"]),
        mismatches=sum(t["mismatches"] for t in out["tensors"]),
        accumulations=sum(t["checked"] for t in out["tensors"] if t["tensor"].endswith(".acc")),
        classes=actual,
        expected_classes=expected["classes"],
        class_mismatches=len(bad),
        first_class_mismatch={
            "image": bad[0],
            "expected": expected["classes"][bad[0]],
            "actual": actual[bad[0]],
        }
        if bad
        else None,  # fmt: skip
    )
    firsts = [t["first_mismatch"] for t in out["tensors"] if t["first_mismatch"]]
    out["first_mismatch"] = firsts[0] if firsts else None
    out["ok"] = not out["mismatches"] and not bad
    return out


def check_part(manifest: dict, part: str, vectors: Path, results: Path) -> dict:
    """What one simulation checks: `layers` (every engine of the MAC array) or `net` (the
    whole network); the report has the shape of `merge_reports`'s."""
    if part not in PARTS:
        raise ValueError(f"unknown simulation {part!r} (expected one of {PARTS})")
    layers = []
    if part == "layers":
        layers = [
            check_layer(layer, Path(vectors), Path(results), manifest["latency"])
            for layer in manifest["layers"]
        ]
    network = check_net(manifest["net"], Path(vectors), Path(results)) if part == "net" else None
    return _report(layers, network)


def merge_reports(reports: list[dict]) -> dict:
    """One report over the simulations' reports (per-layer engines, network)."""
    layers = [lay for r in reports for lay in r["layers"]]
    network = next((r["net"] for r in reports if r.get("net")), None)
    merged = _report(layers, network)
    merged["errors"] += [e for r in reports for e in r["errors"] if e not in merged["errors"]]
    merged["ok"] = merged["ok"] and all(r["ok"] for r in reports) and not merged["errors"]
    return merged


def _report(layers: list[dict], network: dict | None) -> dict:
    """Totals over checked layers and the network; `ok` only when everything matches."""
    first = next((lay["first_mismatch"] for lay in layers if lay["first_mismatch"]), None)
    errors = [f"{lay['layer']}: {lay['error']}" for lay in layers if lay.get("error")]
    if network is not None and network.get("error"):
        errors.append(f"network: {network['error']}")
    return {
        "ok": (network is None or network["ok"])
        and all(
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
        "net": network,
    }


def describe_net(net: dict) -> str:
    """One line on the whole-network check."""
    text = (
        f"network: {net['images']} images, {net['checked']:,} integers in "
        f"{len(net['tensors'])} tensors ({net.get('accumulations', 0):,} sums), "
        f"{net['mismatches']} mismatches, "
        f"{net['class_mismatches']} class mismatches"
    )
    m = net.get("first_mismatch")
    if m:
        text += (
            f"; first: {m['tensor']} image {m['image']} position {m['position']} "
            f"channel {m['channel']}: expected {m['expected']}, actual {m['actual']}"
        )
    c = net.get("first_class_mismatch")
    if c:
        text += f"; image {c['image']}: class {c['actual']}, expected {c['expected']}"
    return text


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
        done = [f"all {report['checked']} accumulations match"] if report["layers"] else []
        return "; ".join(done + ([describe_net(report["net"])] if report.get("net") else []))
    parts = []
    if report["layers"]:
        parts.append(f"{report['mismatches']} of {report['checked']} accumulations mismatch")
    if report.get("code_mismatches"):
        parts.append(f"{report['code_mismatches']} requantized codes mismatch")
    if report.get("class_mismatches"):
        parts.append(f"{report['class_mismatches']} classes mismatch")
    if report.get("net") and not report["net"]["ok"]:
        parts.append(describe_net(report["net"]))
    parts += report["errors"]
    if report["first_mismatch"]:
        parts.append("first: " + describe_mismatch(report["first_mismatch"]))
    return "; ".join(parts)


def failure_message(export_dir: str | Path, report: dict, saved: str | Path) -> str:
    """The one line a failed verification ends with (`hwflow verify`, the demo): what
    differs, the first mismatch, the failing parts and where the whole report was written."""
    failing = [
        str(lay["layer"])
        for lay in report["layers"]
        if lay.get("mismatches") or lay.get("code_mismatches") or lay.get("error")
    ]
    if report.get("net") and not report["net"]["ok"]:
        failing.append("network")
    parts = f" (layers: {', '.join(failing)})" if failing else ""
    return f"{export_dir}: {summary(report)}{parts} (see {saved})"


def simulation_outputs(results: Path, manifest: dict) -> dict[str, list]:
    """Every value the simulations under `results` (one folder per simulation) wrote: the
    words of the sums and codes ($writememh: Icarus adds `// 0x...` address comments,
    Verilator does not) and the lines of the network's tap log; keyed `<sim>/<file>`.
    Two simulators agree bit for bit when these are equal."""
    names = [f"{lay['port']}_{kind}.hex" for lay in manifest["layers"] for kind in ("acc", "code")]
    found: dict[str, list] = {}
    for sim in manifest["simulations"]:
        folder = Path(results) / sim["name"]
        for name in names:
            if (folder / name).is_file():
                found[f"{sim['name']}/{name}"] = read_hex_words(folder / name)
        if (folder / "net_trace.txt").is_file():
            found[f"{sim['name']}/net_trace.txt"] = (
                (folder / "net_trace.txt").read_text().split("\n")
            )
    return found


def merge_results(export_dir: Path, results: Path) -> dict:
    """Merge the per-simulation reports under `results` (a missing one is an error)."""
    manifest = json.loads((Path(export_dir) / "manifest.json").read_text())
    reports = []
    for sim in manifest["simulations"]:
        path = Path(results) / sim["name"] / REPORT
        if path.is_file():
            reports.append(json.loads(path.read_text()))
        else:
            missing = {**_report([], None), "ok": False}
            missing["errors"] = [f"simulation {sim['name']}: no report ({path})"]
            reports.append(missing)
    report = merge_reports(reports)
    (Path(results) / REPORT).write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "merge":
        print("usage: hwflow_check.py merge EXPORT_DIR RESULTS_DIR", file=sys.stderr)
        return 2
    report = merge_results(Path(argv[1]), Path(argv[2]))
    print(("PASS: " if report["ok"] else "FAIL: ") + summary(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
