"""The run report: figures (matplotlib) and a markdown + self-contained HTML page.

Reads only the files the stages wrote (library.yaml and tables, summary.json,
assignment.yaml, retrain.json, sweep.csv, verify.json); plotting functions are pure
over plain data so they are easy to test and reuse.
"""

from __future__ import annotations

import base64
import csv
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are written on machines without a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hwflow import io  # noqa: E402
from hwflow.artifacts import ASSIGNMENT_FILE, SUMMARY_FILE, Assignment, RunSummary  # noqa: E402
from hwflow.assign.energy import saved_text  # noqa: E402
from hwflow.errors import RunError  # noqa: E402
from hwflow.multipliers.library import Library, save_error_heatmap  # noqa: E402

REPORT_KIND = "report"  # RUN/report's marker: rewritten only if an earlier report made it
_CHOSEN = "tab:red"
_OTHER = "tab:blue"


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    with io.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_library_pareto(points: Sequence[dict[str, Any]], chosen: set[str], path: Path) -> Path:
    """Energy vs error std of every library multiplier, one panel per signedness.

    `points`: dicts with name, signed, std (error std over uniform operands), energy_rel.
    The Pareto front (no other design both cheaper and more accurate) is drawn as a step
    line; chosen multipliers are marked and labelled.
    """
    kinds = [s for s in (False, True) if any(p["signed"] == s for p in points)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.2 * len(kinds), 4.6), squeeze=False)
    for ax, signed in zip(axes[0], kinds, strict=True):
        pts = [p for p in points if p["signed"] == signed]
        std = np.array([max(p["std"], 1e-1) for p in pts])  # exact (std 0) sits on the axis
        energy = np.array([p["energy_rel"] * 100 for p in pts])
        ax.scatter(std, energy, s=18, color=_OTHER, alpha=0.6, label="library")
        order = np.argsort(energy)
        front, best = [], math.inf
        for i in order:
            if std[i] < best:
                best = std[i]
                front.append(i)
        ax.step(std[front], energy[front], where="post", color="gray", lw=1, label="Pareto front")
        for i, p in enumerate(pts):
            if p["name"] in chosen:
                ax.scatter(std[i], energy[i], s=70, color=_CHOSEN, marker="*", zorder=3)
                ax.annotate(
                    p["name"],
                    (std[i], energy[i]),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize=7,
                    color=_CHOSEN,
                )
        ax.set_xscale("log")
        ax.set_xlim(0.05, std.max() * 4)  # room for the labels of the cheapest designs
        ax.set_xlabel("error std over uniform operands (LSB, log; exact drawn at 0.1)")
        ax.set_ylabel("energy per multiplication (% of exact)")
        ax.set_title(f"{'signed' if signed else 'unsigned'} multipliers ({len(pts)})")
        ax.grid(alpha=0.3)
        ax.scatter([], [], s=70, color=_CHOSEN, marker="*", label="chosen")
        ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def plot_layer_sigmas(layers: Sequence[dict[str, Any]], path: Path) -> Path:
    """Per layer: the tolerated accumulator error std (scale x learned sigma) vs the chosen
    multiplier's predicted and measured std, all relative to the std of the layer's exact
    accumulator (the units AGN learns sigma in)."""
    names = [layer["name"] for layer in layers]
    x = np.arange(len(names))
    series = [
        ("sigma_tolerated", "tolerated (scale · learned σ_l)", "tab:green"),
        ("sigma_predicted", "predicted (error model)", "tab:blue"),
        ("sigma_measured", "measured (emulation)", "tab:orange"),
    ]
    present = [s for s in series if any(layer.get(s[0]) is not None for layer in layers)]
    width = 0.8 / max(len(present), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(names) + 2), 4.2))
    for j, (key, label, color) in enumerate(present):
        vals = [max(float(layer.get(key) or 0.0), 1e-3) for layer in layers]
        ax.bar(x + (j - (len(present) - 1) / 2) * width, vals, width, label=label, color=color)
    ax.set_yscale("log")
    ax.set_xticks(
        x,
        [f"{n}\n{layer['multiplier']}" for n, layer in zip(names, layers, strict=True)],
        fontsize=8,
    )
    ax.set_ylabel("error std / std(exact accumulator), log")
    ax.set_title("Per-layer error budget and the chosen multiplier's error")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_predicted_vs_measured(pairs: Sequence[dict[str, Any]], path: Path) -> Path:
    """Scatter of predicted vs measured accumulator error std for validated pairs."""
    # Exact multipliers (no error, predicted and measured) have no place on log axes.
    nonzero = [p for p in pairs if p["predicted"] > 0 or p["measured"] > 0]
    pred = np.array([max(p["predicted"], 1e-3) for p in nonzero])
    meas = np.array([max(p["measured"], 1e-3) for p in nonzero])
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    ax.scatter(meas, pred, s=16, alpha=0.7)
    lo, hi = min(pred.min(), meas.min()) / 1.5, max(pred.max(), meas.max()) * 1.5
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1, label="predicted = measured")
    ax.fill_between(
        [lo, hi],
        [lo * 0.9, hi * 0.9],
        [lo * 1.1, hi * 1.1],
        color="gray",
        alpha=0.15,
        label="±10 %",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured accumulator error std (LSB)")
    ax.set_ylabel("predicted accumulator error std (LSB)")
    ax.set_title(f"Error model validation ({len(nonzero)} layer/multiplier pairs)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_layer_energy(layers: Sequence[dict[str, Any]], path: Path) -> Path:
    """Per layer: its share of the multiplications and its energy relative to exact, under
    uniform operands and (where recorded) under the layer's own operands."""
    names = [layer["name"] for layer in layers]
    ops = np.array([layer["ops"] for layer in layers], dtype=float)
    bars = [
        (ops / ops.sum() * 100, "share of multiplications (%)", "tab:gray"),
        (
            np.array([layer["energy_rel"] for layer in layers], dtype=float) * 100,
            "energy per multiplication, uniform operands (% of exact)",
            "tab:green",
        ),
    ]
    if all("energy_rel_hist" in layer for layer in layers):
        bars.append(
            (
                np.array([layer["energy_rel_hist"] for layer in layers], dtype=float) * 100,
                "energy per multiplication, recorded operands (% of exact)",
                "tab:orange",
            )
        )
    x = np.arange(len(names))
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(names) + 2), 4.0))
    for k, (values, label, color) in enumerate(bars):
        ax.bar(x + (k - (len(bars) - 1) / 2) * width, values, width, label=label, color=color)
    ax.set_xticks(
        x,
        [f"{n}\n{layer['multiplier']}" for n, layer in zip(names, layers, strict=True)],
        fontsize=8,
    )
    ax.set_ylabel("%")
    # recorded-operand energy can exceed exact (a design switching more on real operands)
    ax.set_ylim(0, max(110.0, 1.05 * max(float(v.max()) for v, _, _ in bars)))
    ax.set_title("Per-layer multiplications and energy")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


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
            save_error_heatmap(lib, name, path)
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
