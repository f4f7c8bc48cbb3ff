"""The run report: a markdown page and a self-contained HTML page (figures embedded), both
rendered from Jinja2 templates (`templates/report.md.j2`, `templates/report.html.j2`).

Reads only the files the stages wrote (library.yaml and tables, summary.json,
assignment.yaml, retrain.json, validation.json, sweep.csv, verify.json, the export's
manifest); one function builds each section from them.
"""

from __future__ import annotations

import base64
import csv
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwflow import io
from hwflow.artifacts import (
    ASSIGNMENT_FILE,
    MANIFEST_FILE,
    RETRAIN_FILE,
    SUMMARY_FILE,
    VALIDATION_FILE,
    VERIFY_FILE,
    Assignment,
    Manifest,
    RetrainResult,
    RunSummary,
    ValidationReport,
    VerifyReport,
)
from hwflow.errors import RunError
from hwflow.multipliers.library import Library
from hwflow.present.plots import (
    error_heatmap,
    plot_layer_energy,
    plot_layer_sigmas,
    plot_library_pareto,
    plot_predicted_vs_measured,
)
from hwflow.present.tables import saved_text

REPORT_KIND = "report"  # RUN/report's marker: rewritten only if an earlier report made it
TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Table:
    header: list[str]
    rows: list[list[Any]]


@dataclass
class Section:
    title: str
    blocks: list[str | Table] = field(default_factory=list)  # paragraphs (markdown) and tables
    figures: list[tuple[Path, str]] = field(default_factory=list)  # (png, caption)


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
    retrain = _optional(run / RETRAIN_FILE, lambda p: RetrainResult.load(p).to_dict())
    validation = _optional(run / VALIDATION_FILE, lambda p: ValidationReport.load(p).to_dict())
    verify = _optional(out / VERIFY_FILE, lambda p: VerifyReport.load(p).to_dict())
    if library is None and chosen is not None:
        library = chosen.library_path()
    assignment = chosen.to_dict() if chosen is not None else None
    sections = [accuracy_section(summary, retrain)]
    if assignment is not None:
        sections.append(assignment_section(assignment, fig_dir))
    if library is not None and Path(library, "library.yaml").is_file():
        sections.append(library_section(Path(library), assignment, fig_dir))
    if validation is not None and validation.get("pairs"):
        sections.append(validation_section(validation, fig_dir))
    if (run / "sweep" / "sweep.csv").is_file():
        sections.append(sweep_section(run / "sweep", fig_dir))
    if verify is not None:
        manifest = _optional(
            out / "rtl" / MANIFEST_FILE, lambda p: Manifest.load(p.parent).to_dict()
        )
        sections.append(verify_section(verify, manifest))
    return sections


def accuracy_section(summary: RunSummary, retrain: dict | None) -> Section:
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
    s.blocks.append(Table(["network", "top-1", "top-5"], rows))
    if summary.float_weights:
        s.blocks.append(f"Float weights given (not trained here): `{summary.float_weights}`.")
    if summary.classes:
        s.blocks.append(f"Classes: {', '.join(summary.classes)}.")
    s.blocks.append(
        f"Seed {summary.seed}; digits' test set has few images, so one "
        "point of accuracy is a handful of images."
    )
    return s


def assignment_section(assignment: dict, fig_dir: Path) -> Section:
    layers = assignment["layers"]
    e = assignment["energy"]
    s = Section("Assignment and energy")
    first, *rest = saved_text(e).split("; ")
    s.blocks.append(
        f"Multiplication energy against exact int8 everywhere: **{first}**"
        + "".join(f"; {part}" for part in rest)
        + f". The selection minimised the `{e.get('model')}` energy; the recorded-operand "
        "figure feeds each layer's operand histograms to the same gate-level switching "
        "model as the library's uniform-operand one."
    )
    header = [
        "layer", "multiplier", "ops", "σ learned", "σ tolerated", "σ predicted", "σ measured",
        "energy, uniform", "energy, recorded",
    ]  # fmt: skip
    rows = [
        [
            la["name"],
            f"`{la['multiplier']}`",
            f"{la['ops']:,}",
            f"{la['sigma_learned']:.3f}",
            f"{la['sigma_tolerated']:.3f}",
            f"{la['sigma_predicted']:.3f}",
            f"{la['sigma_measured']:.3f}" if la.get("sigma_measured") is not None else "n/a",
            _pct(la["energy_rel"]),
            _pct(la.get("energy_rel_hist")),
        ]
        for la in layers
    ]
    s.blocks.append(Table(header, rows))
    s.blocks.append(
        "σ columns are accumulator error std relative to the std of the layer's exact accumulator."
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
    return s


def library_section(library: Path, assignment: dict | None, fig_dir: Path) -> Section:
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
    s.blocks.append(
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
    return s


def validation_section(validation: dict, fig_dir: Path) -> Section:
    pairs = [
        {"predicted": p["predicted_std"], "measured": p["measured_std"]}
        for p in validation["pairs"]
    ]
    s = Section("Error model vs measurement")
    summ = validation.get("summary") or {}
    if summ:
        s.blocks.append(
            ", ".join(
                f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in summ.items()
            )
        )
    s.figures.append(
        (
            plot_predicted_vs_measured(pairs, fig_dir / "predicted_vs_measured.png"),
            "Predicted vs measured accumulator error std",
        )
    )
    return s


def sweep_section(sweep: Path, fig_dir: Path) -> Section:
    """From RUN/sweep: sweep.csv and the figure the sweep drew."""
    with (sweep / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    s = Section("Accuracy vs energy (sweep)")
    het = [r for r in rows if r["kind"] == "heterogeneous"]
    hom = sorted(
        (r for r in rows if r["kind"] == "homogeneous"),
        key=lambda r: -float(r["acc_after_mean"]),
    )[:8]

    def saved(value: str | None) -> str:  # empty: no recorded figure (or an older CSV)
        return f"{float(value):.1f} %" if value else "n/a"

    s.blocks.append(
        Table(
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
    )
    s.blocks.append("(homogeneous: the 8 most accurate single-multiplier baselines)")
    model = next((r["energy_model"] for r in het if r.get("energy_model")), None)
    if model:
        s.blocks.append(f"The heterogeneous selections minimised the `{model}` energy.")
    if (sweep / "pareto.png").is_file():
        io.write_bytes(fig_dir / "sweep_pareto.png", (sweep / "pareto.png").read_bytes())
        s.figures.append(
            (
                fig_dir / "sweep_pareto.png",
                "Accuracy vs energy: heterogeneous vs homogeneous assignments",
            )
        )
    return s


def verify_section(verify: dict, manifest: dict | None) -> Section:
    """From verify.json and the export's manifest (its accuracies)."""
    s = Section("Hardware verification (RTL vs PyTorch emulation)")
    verdict = "bit-exact" if verify["ok"] else "MISMATCHES"
    sims = verify.get("simulations", [])
    s.blocks.append(
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
        s.blocks.append(
            f"Lint ({lint['tool']}, `-Wall` less {', '.join(lint['waived'])}): "
            f"findings per top: {counts}."
        )
    net = verify.get("net")
    if net:
        s.blocks.append(
            f"End-to-end network in RTL (`hwflow_net`, input codes in, class out): "
            f"{net['images']} images, {net['checked']:,} integers over "
            f"{len(net['tensors'])} intermediate tensors ({net['mismatches']:,} mismatches), "
            f"{len(net['classes'])} classes ({net['class_mismatches']} mismatches)."
        )
    if verify.get("codes_checked"):
        s.blocks.append(
            f"Per-layer integer output stages: {verify['codes_checked']:,} requantized codes "
            f"({verify['code_mismatches']:,} mismatches) checked."
        )
    accuracy = (manifest or {}).get("accuracy", {})
    top5 = (manifest or {}).get("accuracy_top5", {})  # absent in earlier exports
    if accuracy:
        s.blocks.append(
            "Test accuracy with the assigned multipliers (top-1"
            + (" / top-5" if top5 else "")
            + "): "
            + ", ".join(
                f"{k.replace('_', ' ')} {_pct(v)}" + (f" / {_pct(top5.get(k))}" if top5 else "")
                for k, v in accuracy.items()
            )
            + "."
        )
    s.blocks.append(
        Table(
            ["layer", "multiplier", "checked", "mismatches"],
            [
                [la["layer"], f"`{la['multiplier']}`", f"{la['checked']:,}", la["mismatches"]]
                for la in verify["layers"]
            ],
        )
    )
    return s


# -- rendering ---------------------------------------------------------------------------
def _inline(text: Any) -> Any:
    """HTML of the little markdown the report's text uses: **bold** and `code`."""
    from markupsafe import Markup

    out = html.escape(str(text))
    for mark, tag in (("**", "b"), ("`", "code")):
        pieces = out.split(mark)
        out = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(pieces))
    return Markup(out)


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["inline"] = _inline
    env.tests["table"] = lambda block: isinstance(block, Table)
    return env


def render(template: str, title: str, sections: list[Section], base: Path) -> str:
    """`report.md.j2` or `report.html.j2` over the sections; figures are linked relative
    to `base` (markdown) or embedded as data URIs (HTML)."""

    def link(png: Path) -> str:
        return str(png.relative_to(base) if png.is_relative_to(base) else png)

    def data_uri(png: Path) -> str:
        return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()

    return (
        _environment()
        .get_template(template)
        .render(title=title, sections=sections, link=link, data_uri=data_uri)
    )


def write_report(
    out: str | os.PathLike[str], library: str | os.PathLike[str] | None = None, html: bool = True
) -> list[Path]:
    """Write `out/report/report.md` (+ figures, + `report.html` with them embedded)."""
    out = Path(out)
    report_dir = out / "report"
    fig_dir = io.claim_dir(report_dir, REPORT_KIND) / "figures"
    fig_dir.mkdir(exist_ok=True)
    sections = collect_sections(out, Path(library) if library else None, fig_dir)
    title = f"hwflow report: {out.name}"
    written = [report_dir / "report.md"]
    io.write_text(written[0], render("report.md.j2", title, sections, report_dir))
    if html:
        written.append(report_dir / "report.html")
        io.write_text(written[1], render("report.html.j2", title, sections, report_dir))
    return written
