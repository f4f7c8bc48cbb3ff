"""The files an experiment's results are shown in (figures, the study's markdown tables),
drawn after the experiment ran."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.experiments.study import DROP_PP
from hwflow.io import write_text
from hwflow.present.plots import study_pareto, sweep_pareto


def render_sweep(rows: list[dict], out: str | os.PathLike[str]) -> Path:
    """`OUT/pareto.png` of a sweep's rows (as `sweep_run` returned them)."""
    return sweep_pareto(rows, Path(out) / "pareto.png")


def render_study(result: dict[str, Any], out: str | os.PathLike[str]) -> str:
    """`OUT/study.md` and `OUT/pareto.png` of a study's result (study.json); returns the
    markdown."""
    text = study_markdown(result)
    write_text(Path(out) / "study.md", text)
    study_pareto(result, Path(out) / "pareto.png")
    return text


def _pm(mean: float, std: float, scale: float = 1.0, digits: int = 1) -> str:
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def _pct(v: float | None) -> str:
    """An accuracy in %, or '-' where it was not measured (older results)."""
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:.2f}"


def _p(p: float) -> str:
    if p == 0:  # the binomial tail underflowed a double: say so rather than print 0
        return "< 1e-300"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def study_markdown(result: dict[str, Any]) -> str:
    """study.json's tables as markdown (study.md; what the results pages quote)."""
    rows, int8 = result["rows"], result["int8"]
    n = int8["seeds"]
    lines = [
        f"Training seeds {', '.join(map(str, result['seeds']))}; {result['test_images']:,} "
        f"test images; retraining {result['epochs']} epoch(s)"
        + (f" of at most {result['max_steps']} steps" if result["max_steps"] else "")
        + f". int8 (exact) baseline: {_pm(int8['mean'], int8['std'], 100, 2)} % "
        f"(95 % CI {100 * int8['ci'][0]:.2f}-{100 * int8['ci'][1]:.2f}).",
        "Accuracy: mean ± sample std over seeds, 95 % CI = Student t over seeds; p = exact "
        f"McNemar vs int8, pooled over the {n} seeds' paired test images.",
        "",
        "Each lever's share: top-1 with the tables alone, with the free corrections "
        "(bias correction, batch-norm re-estimation), and after retraining (top-1 %).",
        "",
        "| point | saved % (uniform) | saved % (recorded) | tables only % | corrected % "
        "| top-1 % | 95 % CI | loss pp | p vs int8 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["kind"], r["gradient"], -r["saved_uniform_mean"])):
        name = r["point"] + (" (table grad)" if r["gradient"] == "table" else "")
        lines.append(
            f"| {name} | {_pm(r['saved_uniform_mean'], r['saved_uniform_std'])} | "
            f"{_pm(r['saved_recorded_mean'], r['saved_recorded_std'])} | "
            f"{_pct(r.get('acc_uncorrected_mean'))} | {_pct(r.get('acc_before_mean'))} | "
            f"{_pm(r['acc_mean'], r['acc_std'], 100, 2)} | "
            f"{100 * r['acc_ci_low']:.2f}-{100 * r['acc_ci_high']:.2f} | "
            f"{r['loss_pp']:.2f} | {_p(r['p_vs_int8'])} |"
        )
    for energy, comps in result["comparisons"].items():
        lines += [
            "",
            f"Heterogeneous vs the best homogeneous design of equal or higher mean accuracy "
            f"(most energy saved, {energy} operands); p = exact McNemar, pooled over seeds; "
            "last column: homogeneous designs saving more without being significantly less "
            "accurate (p < 0.05).",
            "",
            "| heterogeneous | saved % | top-1 % | best homogeneous (acc >=) | saved % | top-1 % "
            "| only hetero / only homog right | p | cheaper, not significantly worse |",
            "|---|---:|---:|---|---:|---:|---:|---:|---|",
        ]
        for c in comps:
            b = c.get("best_homogeneous")
            best = (
                f"{b['point']} | {b['saved']:.1f} | {100 * b['acc']:.2f} | "
                f"{b['only_a']} / {b['only_b']} | {_p(b['p'])}"
                if b
                else "none | | | |"
            )
            cheaper = ", ".join(f"{g['point']} (p {_p(g['p'])})" for g in c["cheaper_not_worse"])
            lines.append(
                f"| {c['point']} | {c['saved']:.1f} | {100 * c['acc']:.2f} | {best} | "
                f"{cheaper or 'none'} |"
            )
    g = result.get("gradients")
    if g:
        lines += [
            "",
            f"Retraining gradients at {g['point']} (the first scale more than {DROP_PP} pp "
            "below int8): STE vs the table's own slopes.",
            "",
            "| gradient | top-1 % per seed | mean ± std | only STE / only table right | p |",
            "|---|---|---:|---:|---:|",
        ]
        for name in ("ste", "table"):
            accs = g[name]
            t = g["paired"]
            sd = float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0
            lines.append(
                f"| {name} | {', '.join(f'{100 * a:.2f}' for a in accs)} | "
                f"{_pm(float(np.mean(accs)), sd, 100, 2)}"
                f" | {t['only_a']} / {t['only_b']} | {_p(t['p'])} |"
            )
    lines += _sigma_lines(result.get("sigma_history") or {})
    return "\n".join(lines) + "\n"


def _sigma_lines(history: dict[str, dict[str, list[float]]]) -> list[str]:
    """Each layer's learned sigma after every AGN epoch, per seed, and the last epoch's
    change: how far the sigma search had settled when the assignment used it."""
    seeds = [s for s, h in history.items() if h]
    if not seeds:
        return []
    lines = [
        "",
        "Learned sigma after each AGN epoch (per seed: first → … → last); last change = "
        "last epoch's sigma over the one before, per seed.",
        "",
        f"| layer | {' | '.join(f'seed {s}' for s in seeds)} | last change |",
        f"|---|{'---|' * len(seeds)}---:|",
    ]
    for layer in history[seeds[0]]:
        runs = [history[s].get(layer, []) for s in seeds]
        cells = [" → ".join(f"{v:.3g}" for v in run) for run in runs]
        change = ", ".join(f"{r[-1] / r[-2]:.2f}x" if len(r) > 1 and r[-2] else "-" for r in runs)
        lines.append(f"| {layer} | {' | '.join(cells)} | {change} |")
    return lines
