"""The run report: figures (matplotlib) and a markdown + self-contained HTML page.

Reads only the files the stages wrote (library.yaml and tables, summary.json,
assignment.yaml, retrain.json, sweep.csv, verify.json); plotting functions are pure
over plain data so they are easy to test and reuse.
"""

from __future__ import annotations

import base64
import csv
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwflow import io  # noqa: E402
from hwflow.artifacts import ASSIGNMENT_FILE, SUMMARY_FILE, Assignment, RunSummary  # noqa: E402
from hwflow.assign.energy import saved_text  # noqa: E402
from hwflow.errors import RunError  # noqa: E402
from hwflow.multipliers.library import Library  # noqa: E402
from hwflow.present.plots import (  # noqa: E402
    error_heatmap,
    plot_layer_energy,
    plot_layer_sigmas,
    plot_library_pareto,
    plot_predicted_vs_measured,
)

REPORT_KIND = "report"  # RUN/report's marker: rewritten only if an earlier report made it


# -- assembling the report from a flow directory ---------------------------------------


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # markdown lines
    figures: list[tuple[Path, str]] = field(default_factory=list)  # (png, caption)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _optional(path: Path, reader: Any) -> Any:
    return reader(path) if path.is_file() else None


def _run_dir(out: Path) -> Path:
    """A flow directory holds the run in `run/`; a plain train run is the directory itself."""
    return out / "run" if (out / "run" / SUMMARY_FILE).is_file() else out


def collect_sections(out: Path, library: Path | None, fig_dir: Path) -> list[Section]:
    """Read what the stages wrote under `out` and draw the figures into `fig_dir`."""
    run = _run_dir(out)
    summary = _optional(run / SUMMARY_FILE, RunSummary.load)
    if summary is None:
        raise RunError(f"{out}: no summary.json (run `hwflow train` or `hwflow demo` first)")
    chosen = _optional(run / ASSIGNMENT_FILE, Assignment.load)
    retrain = _optional(run / "retrain.json", io.read_json)
    validation = _optional(run / "validation.json", io.read_json)
    verify = _optional(out / "verify.json", io.read_json)
    sweep_csv = run / "sweep" / "sweep.csv"
    if library is None and chosen is not None:
        library = chosen.library_path()
    assignment = chosen.to_dict() if chosen is not None else None
    sections: list[Section] = []

    acc, acc5 = summary.accuracy, summary.accuracy_top5 or {}
    s = Section("Accuracy (test set, top-1 and top-5)")
    rows = [
        ["float", _pct(acc.get("float")), _pct(acc5.get("float"))],
        ["int8 QAT (exact multipliers)", _pct(acc.get("quant")), _pct(acc5.get("quant"))],
        ["int8 + learned noise (AGN)", _pct(acc.get("agn")), _pct(acc5.get("agn"))],
    ]
    if retrain is not None:
        ra, ra5 = retrain["accuracy"], retrain.get("accuracy_top5") or {}
        rows += [
            [f"approximate, {when} retraining", _pct(ra.get(key)), _pct(ra5.get(key))]
            for when, key in (("before", "approx_before"), ("after", "approx_after"))
        ]
    s.text += _table(["network", "top-1", "top-5"], rows)
    if summary.float_weights:
        s.text.append(f"\nFloat weights given (not trained here): `{summary.float_weights}`.")
    if summary.classes:
        s.text.append(f"\nClasses: {', '.join(summary.classes)}.")
    s.text.append(
        f"\nSeed {summary.seed}; digits' test set has few images, so one "
        "point of accuracy is a handful of images."
    )
    sections.append(s)

    if assignment is not None:
        layers = assignment["layers"]
        e = assignment["energy"]
        s = Section("Assignment and energy")
        first, *rest = saved_text(e).split("; ")
        s.text.append(
            f"Multiplication energy against exact int8 everywhere: **{first}**"
            + "".join(f"; {part}" for part in rest)
            + f". The selection minimised the `{e.get('model')}` energy; the recorded-operand "
            "figure feeds each layer's operand histograms to the same gate-level switching "
            "model as the library's uniform-operand one."
        )
        s.text.append("")
        s.text += _table(
            [
                "layer",
                "multiplier",
                "ops",
                "σ learned",
                "σ tolerated",
                "σ predicted",
                "σ measured",
                "energy, uniform",
                "energy, recorded",
            ],
            [
                [
                    la["name"],
                    f"`{la['multiplier']}`",
                    f"{la['ops']:,}",
                    f"{la['sigma_learned']:.3f}",
                    f"{la['sigma_tolerated']:.3f}",
                    f"{la['sigma_predicted']:.3f}",
                    f"{la['sigma_measured']:.3f}"
                    if la.get("sigma_measured") is not None
                    else "n/a",
                    _pct(la["energy_rel"]),
                    _pct(la.get("energy_rel_hist")),
                ]
                for la in layers
            ],
        )
        s.text.append(
            "\nσ columns are accumulator error std relative to the std of the layer's "
            "exact accumulator."
        )
        s.figures.append(
            (
                plot_layer_sigmas(layers, fig_dir / "layer_sigmas.png"),
                "Per-layer error budget vs the chosen multiplier's error",
            )
        )
        s.figures.append(
            (
                plot_layer_energy(layers, fig_dir / "layer_energy.png"),
                "Per-layer share of multiplications and energy per multiplication",
            )
        )
        sections.append(s)

    if library is not None and Path(library, "library.yaml").is_file():
        lib = Library.open(library)
        chosen = {la["multiplier"] for la in assignment["layers"]} if assignment else set()
        points = [
            {
                "name": en.name,
                "signed": en.signed,
                "std": en.metrics["std"],
                "energy_rel": en.cost["energy_rel"],
            }
            for en in lib.entries
        ]
        s = Section("Multiplier library")
        s.text.append(
            f"{len(points)} characterized multipliers in `{library}`; the chosen ones are starred."
        )
        s.figures.append(
            (
                plot_library_pareto(points, chosen, fig_dir / "library_pareto.png"),
                "Energy vs error std of the library, Pareto front and chosen designs",
            )
        )
        for name in sorted(chosen):
            path = fig_dir / f"heatmap_{name}.png"
            error_heatmap(lib, name, path)
            s.figures.append((path, f"Error table of `{name}`"))
        sections.append(s)

    if validation is not None and validation.get("pairs"):
        pairs = [
            {"predicted": p["predicted_std"], "measured": p["measured_std"]}
            for p in validation["pairs"]
        ]
        s = Section("Error model vs measurement")
        summ = validation.get("summary") or {}
        if summ:
            s.text.append(
                ", ".join(
                    f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}"
                    for k, v in summ.items()
                )
            )
        s.figures.append(
            (
                plot_predicted_vs_measured(pairs, fig_dir / "predicted_vs_measured.png"),
                "Predicted vs measured accumulator error std",
            )
        )
        sections.append(s)

    if sweep_csv.is_file():
        with sweep_csv.open() as f:
            rows = list(csv.DictReader(f))
        s = Section("Accuracy vs energy (sweep)")
        het = [r for r in rows if r["kind"] == "heterogeneous"]
        hom = sorted(
            (r for r in rows if r["kind"] == "homogeneous"),
            key=lambda r: -float(r["acc_after_mean"]),
        )[:8]

        def saved(value: str | None) -> str:  # empty: no recorded figure (or an older CSV)
            return f"{float(value):.1f} %" if value else "n/a"

        s.text += _table(
            ["point", "saved, uniform operands", "saved, recorded operands", "accuracy after"],
            [
                [
                    r["point"],
                    saved(r["reduction_pct"]),
                    saved(r.get("reduction_pct_hist")),
                    _pct(float(r["acc_after_mean"])),
                ]
                for r in het + hom
            ],
        )
        s.text.append("\n(homogeneous: the 8 most accurate single-multiplier baselines)")
        model = next((r["energy_model"] for r in het if r.get("energy_model")), None)
        if model:
            s.text.append(f"\nThe heterogeneous selections minimised the `{model}` energy.")
        if (run / "sweep" / "pareto.png").is_file():
            io.write_bytes(
                fig_dir / "sweep_pareto.png", (run / "sweep" / "pareto.png").read_bytes()
            )
            s.figures.append(
                (
                    fig_dir / "sweep_pareto.png",
                    "Accuracy vs energy: heterogeneous vs homogeneous assignments",
                )
            )
        sections.append(s)

    if verify is not None:
        s = Section("Hardware verification (RTL vs PyTorch emulation)")
        verdict = "bit-exact" if verify["ok"] else "MISMATCHES"
        sims = verify.get("simulations", [])
        s.text.append(
            f"**{verdict}**: {verify['checked']:,} accumulations of the per-layer MAC array "
            f"checked, {verify['mismatches']:,} mismatches; "
            f"{verify.get('accumulations_checked', verify['checked']):,} accumulations in all; "
            f"{verify['seconds']:.1f} s"
            + (f" ({len(sims)} simulations in parallel)." if len(sims) > 1 else ".")
        )
        lint = verify.get("lint") or {}
        if lint.get("tool"):
            counts = ", ".join(
                f"`{top}` {len(res['warnings']) + len(res['errors'])}"
                for top, res in lint["tops"].items()
            )
            s.text.append(
                f"Lint ({lint['tool']}, `-Wall` less {', '.join(lint['waived'])}): "
                f"findings per top: {counts}."
            )
        net = verify.get("net")
        if net:
            s.text.append(
                f"End-to-end network in RTL (`hwflow_net`, input codes in, class out): "
                f"{net['images']} images, {net['checked']:,} integers over "
                f"{len(net['tensors'])} intermediate tensors ({net['mismatches']:,} mismatches), "
                f"{len(net['classes'])} classes ({net['class_mismatches']} mismatches)."
            )
        if verify.get("codes_checked"):
            s.text.append(
                f"Per-layer integer output stages: {verify['codes_checked']:,} requantized codes "
                f"({verify['code_mismatches']:,} mismatches) checked."
            )
        manifest = _optional(out / "rtl" / "manifest.json", io.read_json)
        accuracy = (manifest or {}).get("accuracy", {})
        top5 = (manifest or {}).get("accuracy_top5", {})  # absent in earlier exports
        if accuracy:
            s.text.append(
                "Test accuracy with the assigned multipliers (top-1"
                + (" / top-5" if top5 else "")
                + "): "
                + ", ".join(
                    f"{k.replace('_', ' ')} {_pct(v)}" + (f" / {_pct(top5.get(k))}" if top5 else "")
                    for k, v in accuracy.items()
                )
                + "."
            )
        s.text.append("")
        s.text += _table(
            ["layer", "multiplier", "checked", "mismatches"],
            [
                [la["layer"], f"`{la['multiplier']}`", f"{la['checked']:,}", la["mismatches"]]
                for la in verify["layers"]
            ],
        )
        sections.append(s)
    return sections


def _markdown(title: str, sections: Sequence[Section], base: Path) -> str:
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.title}", "", *s.text, ""]
        for png, caption in s.figures:
            lines += [
                f"![{caption}]({png.relative_to(base) if png.is_relative_to(base) else png})",
                "",
            ]
    return "\n".join(lines)


def _html(title: str, sections: Sequence[Section]) -> str:
    """Self-contained page: PNGs embedded as data URIs; markdown tables turned into HTML."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        "</title><style>body{font-family:sans-serif;max-width:1000px;margin:auto;padding:1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
        "img{max-width:100%}figcaption{color:#555;font-size:90%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        table: list[list[str]] = []
        for line in [*s.text, ""]:
            if line.startswith("|"):
                if not line.startswith("|---"):
                    table.append([c.strip() for c in line.strip("|").split("|")])
                continue
            if table:
                head, *body = table
                parts.append(
                    "<table><tr>"
                    + "".join(f"<th>{_inline(c)}</th>" for c in head)
                    + "</tr>"
                    + "".join(
                        "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                        for r in body
                    )
                    + "</table>"
                )
                table = []
            if line.strip():
                parts.append(f"<p>{_inline(line)}</p>")
        for png, caption in s.figures:
            data = base64.b64encode(png.read_bytes()).decode()
            parts.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
                f"<figcaption>{_inline(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


def _inline(text: str) -> str:
    """The little markdown the report uses: **bold** and `code`."""
    out = html.escape(text)
    for mark, tag in (("**", "b"), ("`", "code")):
        pieces = out.split(mark)
        out = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(pieces))
    return out


def write_report(
    out: str | Path, library: str | Path | None = None, html: bool = True
) -> list[Path]:
    """Write `out/report/report.md` (+ figures, + `report.html` with them embedded)."""
    out = Path(out)
    report_dir = out / "report"
    fig_dir = io.claim_dir(report_dir, REPORT_KIND) / "figures"
    fig_dir.mkdir(exist_ok=True)
    sections = collect_sections(out, Path(library) if library else None, fig_dir)
    title = f"hwflow report: {out.name}"
    written = [report_dir / "report.md"]
    io.write_text(written[0], _markdown(title, sections, report_dir))
    if html:
        written.append(report_dir / "report.html")
        io.write_text(written[1], _html(title, sections))
    return written
