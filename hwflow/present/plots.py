"""Every figure hwflow draws, set up once (headless matplotlib) and saved one way.

Functions take what the stages wrote (library entries and tables, assignment layers,
validation pairs, sweep rows, study.json) and write one PNG each, atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: figures are drawn on machines without a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hwflow.io import PNG_SOFTWARE, atomic_path  # noqa: E402
from hwflow.multipliers.table import error_table, operand_values  # noqa: E402
from hwflow.pareto import pareto_front  # noqa: E402

_CHOSEN = "tab:red"
_OTHER = "tab:blue"


def save(fig: plt.Figure, path: str | os.PathLike[str], dpi: int, kind: str = "figure") -> Path:
    """Lay out, write the PNG atomically, free the figure. The PNG's `Software` text says
    which hwflow figure it is (`kind`): an output option may replace it, and only it."""
    fig.tight_layout()
    software = PNG_SOFTWARE.format(kind=kind)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", metadata={"Software": software})
    plt.close(fig)
    return Path(path)


# -- the run report's figures ----------------------------------------------------------
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
        # lower is better on both axes: the front of the negated points, by falling std
        front = pareto_front(list(zip(-std, -energy, strict=True)))
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
    return save(fig, path, dpi=110)


def plot_layer_sigmas(layers: Sequence[dict[str, Any]], path: Path) -> Path:
    """Per layer: the tolerated accumulator error std (scale x learned sigma) vs the chosen
    multiplier's predicted and measured std, all relative to the std of the layer's exact
    accumulator (the units AGN learns sigma in)."""
    names = [layer["name"] for layer in layers]
    series = [
        ("sigma_tolerated", "tolerated (scale · learned σ_l)", "tab:green"),
        ("sigma_predicted", "predicted (error model)", "tab:blue"),
        ("sigma_measured", "measured (emulation)", "tab:orange"),
    ]
    bars = [
        ([max(float(layer.get(key) or 0.0), 1e-3) for layer in layers], label, color)
        for key, label, color in series
        if any(layer.get(key) is not None for layer in layers)
    ]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(names) + 2), 4.2))
    _per_layer_bars(ax, layers, bars)
    ax.set_yscale("log")
    ax.set_ylabel("error std / std(exact accumulator), log")
    ax.set_title("Per-layer error budget and the chosen multiplier's error")
    return save(fig, path, dpi=110)


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
    return save(fig, path, dpi=110)


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
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(names) + 2), 4.0))
    _per_layer_bars(ax, layers, bars)
    ax.set_ylabel("%")
    # recorded-operand energy can exceed exact (a design switching more on real operands)
    ax.set_ylim(0, max(110.0, 1.05 * max(float(v.max()) for v, _, _ in bars)))
    ax.set_title("Per-layer multiplications and energy")
    return save(fig, path, dpi=110)


def _per_layer_bars(ax: Any, layers: Sequence[dict[str, Any]], bars: Sequence[tuple]) -> None:
    """Grouped bars (values, label, color), one group per layer, each tick naming the layer
    and its multiplier."""
    x = np.arange(len(layers))
    width = 0.8 / max(len(bars), 1)
    for k, (values, label, color) in enumerate(bars):
        ax.bar(x + (k - (len(bars) - 1) / 2) * width, values, width, label=label, color=color)
    ax.set_xticks(x, [f"{layer['name']}\n{layer['multiplier']}" for layer in layers], fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


# -- the library ------------------------------------------------------------------------
def error_heatmap(lib: Any, name: str, path: str | os.PathLike[str]) -> Path:
    """`hwflow library show --heatmap`: PNG of multiplier `name`'s error table
    E = table - exact, axes in operand values (first operand a down, second operand b
    across), diverging colours centred on zero, with a colorbar."""
    entry = lib.get(name)
    values = operand_values(entry.signed)
    order = np.argsort(values, kind="stable")  # signed: -128..127 instead of code order
    err = error_table(lib.table(name), entry.signed)[np.ix_(order, order)]
    lim = max(1, int(np.abs(err).max()))
    lo, hi = int(values[order[0]]), int(values[order[-1]])
    fig, ax = plt.subplots(figsize=(6.4, 5.4), dpi=100)
    im = ax.imshow(
        err,
        cmap="RdBu_r",
        vmin=-lim,
        vmax=lim,
        origin="lower",
        extent=(lo - 0.5, hi + 0.5, lo - 0.5, hi + 0.5),
        interpolation="nearest",
    )
    ax.set_xlabel("b (second operand, weight)")
    ax.set_ylabel("a (first operand, activation)")
    kind = "signed" if entry.signed else "unsigned"
    ax.set_title(
        f"{name} ({kind}): error approx - exact\n"
        f"MAE {entry.metrics['mae']:.3g}, WCE {entry.metrics['wce']:.0f}"
    )
    fig.colorbar(im, ax=ax, label="error (approx - exact)")
    return save(fig, path, dpi=100, kind="error heatmap")  # the figure's own dpi


# -- experiments ------------------------------------------------------------------------
def sweep_pareto(rows: list[dict], path: Path) -> Path:
    """`hwflow sweep`'s figure from its rows: energy saved vs test accuracy after
    retraining, against the exact int8 baseline. The x axis is the recorded-operand figure
    where the selection minimised it and every row has it, else the uniform-operand one."""
    baseline = rows[0]["acc_quant"]
    recorded = any(r["energy_model"] == "histogram" for r in rows) and all(
        r["reduction_pct_hist"] != "" for r in rows
    )
    saved = "reduction_pct_hist" if recorded else "reduction_pct"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, marker, color in (("homogeneous", "s", "tab:gray"), ("heterogeneous", "o", "C0")):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        x = [r[saved] for r in sel]
        y = [100 * r["acc_after_mean"] for r in sel]
        e = [100 * r["acc_after_std"] for r in sel]
        ax.errorbar(x, y, yerr=e, fmt=marker, color=color, label=kind, ms=5, capsize=2, alpha=0.8)
        front = pareto_front(list(zip(x, y, strict=True)))
        ax.plot([x[i] for i in front], [y[i] for i in front], "-", color=color, lw=1)
        if kind == "heterogeneous":
            for r, xi, yi in zip(sel, x, y, strict=True):
                ax.annotate(
                    f"x{r['scale']:g}",
                    (xi, yi),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    ax.axhline(100 * baseline, color="k", lw=0.8, label="int8 (exact) baseline")
    ax.axhline(100 * baseline - 1, color="k", lw=0.8, ls="--", label="baseline - 1 pp")
    which = "recorded" if recorded else "uniform"
    ax.set_xlabel(f"multiplication energy saved [%] ({which}-operand estimate)")
    ax.set_ylabel("test top-1 accuracy after retraining [%]")
    # Zoom on the interesting band; points far below it are marked at its bottom edge so
    # that one broken design doesn't flatten every other point into a line.
    ys = [100 * r["acc_after_mean"] for r in rows]
    floor = 100 * baseline - 15
    lo = max(0.0, min([100 * baseline - 3, *(y for y in ys if y >= floor)]) - 1)
    hi = max([100 * baseline, *ys]) + 1
    below = [r for r, y in zip(rows, ys, strict=True) if y < lo]
    if below:
        ax.scatter(
            [r[saved] for r in below],
            [lo + 0.15] * len(below),
            marker="v",
            color="tab:red",
            s=30,
            label=f"below {lo:.0f} % ({len(below)})",
            zorder=3,
        )
    ax.set_ylim(lo, hi)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return save(fig, path, dpi=120)


def study_pareto(result: dict[str, Any], path: Path) -> Path:
    """`hwflow study`'s figure from study.json: accuracy after retraining (mean, 95 % CI
    over seeds) vs energy saved, under uniform operands (left) and each layer's recorded
    operands (right)."""
    rows = result["rows"]
    int8 = (result["int8"]["mean"], *result["int8"]["ci"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    styles = {
        ("homogeneous", ""): ("s", "tab:gray", "homogeneous (library front)"),
        ("heterogeneous", "uniform"): ("o", "C0", "heterogeneous, selection: uniform energy"),
        ("heterogeneous", "histogram"): ("D", "C1", "heterogeneous, selection: recorded energy"),
    }
    accs = [100 * r["acc_mean"] for r in rows]
    floor = 100 * int8[0] - 10
    lo = max(0.0, min([100 * int8[0] - 3, *(a for a in accs if a >= floor)]) - 1)
    hi = max([100 * int8[0], *accs]) + 1
    for ax, energy in zip(axes, ("uniform", "recorded"), strict=True):
        for (kind, em), (marker, color, label) in styles.items():
            sel = [
                r
                for r in rows
                if r["kind"] == kind
                and r["energy_model"] == em
                and r["gradient"] == "ste"
                and 100 * r["acc_mean"] >= lo  # those below: marked at the bottom edge
            ]
            if not sel:
                continue
            x = [r[f"saved_{energy}_mean"] for r in sel]
            xe = [r[f"saved_{energy}_std"] for r in sel]
            y = [100 * r["acc_mean"] for r in sel]
            ye = [
                [100 * (r["acc_mean"] - r["acc_ci_low"]) for r in sel],
                [100 * (r["acc_ci_high"] - r["acc_mean"]) for r in sel],
            ]
            ax.errorbar(x, y, xerr=xe, yerr=ye, fmt=marker, color=color, label=label, ms=5,
                        capsize=2, alpha=0.85)  # fmt: skip
            front = pareto_front(list(zip(x, y, strict=True)))
            ax.plot([x[i] for i in front], [y[i] for i in front], "-", color=color, lw=1)
            if kind == "heterogeneous":
                for r, xi, yi in zip(sel, x, y, strict=True):
                    ax.annotate(_point_tag(r), (xi, yi), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")  # fmt: skip
        below = [r for r, a in zip(rows, accs, strict=True) if a < lo and r["gradient"] == "ste"]
        if below:
            ax.scatter([r[f"saved_{energy}_mean"] for r in below], [lo + 0.15] * len(below),
                       marker="v", color="tab:red", s=30, zorder=3,
                       label=f"below {lo:.0f} % ({len(below)})")  # fmt: skip
        ax.axhspan(100 * int8[1], 100 * int8[2], color="k", alpha=0.08)
        ax.axhline(100 * int8[0], color="k", lw=0.8, label="int8 (exact), 95 % CI band")
        ax.axhline(100 * int8[0] - 1, color="k", lw=0.8, ls="--", label="int8 - 1 pp")
        which = "uniform operands" if energy == "uniform" else "recorded operands per layer"
        ax.set_xlabel(f"multiplication energy saved [%] ({which})")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test top-1 after retraining [%] (mean, 95 % CI over seeds)")
    axes[0].set_ylim(lo, hi)
    axes[0].legend(fontsize=7, loc="lower left")
    return save(fig, path, dpi=110)


def _point_tag(row: dict) -> str:
    """A heterogeneous study point's tag: its loss budget (`3pp`, `1pp r200` measured
    after 200 recovery steps; its scale differs by seed) or its tolerance scale (`x2`)."""
    if row.get("max_loss_pp", "") != "":
        steps = row.get("recovery_steps") or 0
        return f"{row['max_loss_pp']:g}pp" + (f" r{steps}" if steps else "")
    return f"x{row['scale']:g}"
