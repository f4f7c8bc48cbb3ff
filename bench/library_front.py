"""The built-in library's unsigned error/energy front against EvoApprox's, in one plot.

    .venv/bin/python -m bench.library_front --library hwflow-lib \\
        --evoapproxlib evo-lib [--evoapprox8b evo8b-lib] --out docs/results/library_front.png

Every library was made by `hwflow characterize` (the built-ins with `--builtin`, the
published netlists as the netlists guide describes), so all energies come from the same
switching-activity model, relative to the same exact array multiplier. EvoApproxLib is
also drawn by its published 45 nm power (relative to its exact design's), the figure its
authors and the reference method quote. Prints the fronts as Markdown tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hwflow.multipliers.library import Library  # noqa: E402

# families added to fill the front's hole; drawn apart from the earlier built-ins
NEW_FAMILIES = ("vct",)


def unsigned_points(lib: Library) -> list[tuple[str, float, float, float | None]]:
    """(name, mae_pct, energy saved %, published-power saved % or None) per unsigned
    approximate entry; the published figure is relative to the exact entry's power."""
    entries = [e for e in lib.entries if not e.signed]
    exact_power = max(
        (e.cost.get("published", {}).get("power", 0.0) for e in entries if e.metrics["wce"] == 0),
        default=0.0,
    )
    out = []
    for e in entries:
        if e.metrics["wce"] == 0 or e.cost.get("energy_rel") is None:
            continue
        power = e.cost.get("published", {}).get("power")
        published = 100 * (1 - power / exact_power) if power is not None and exact_power else None
        out.append((e.name, e.metrics["mae_pct"], 100 * (1 - e.cost["energy_rel"]), published))
    return out


def front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both error (lower) and saving (higher), by error."""
    best = -float("inf")
    keep = []
    for mae, saved in sorted(points, key=lambda p: (p[0], -p[1])):
        if saved > best:
            keep.append((mae, saved))
            best = saved
    return keep


def _draw(ax, points, style: dict, label: str, line: bool = True) -> None:
    if not points:
        return
    xs, ys = zip(*points, strict=True)
    ax.scatter(xs, ys, label=label, **style)
    if line:
        fx, fy = zip(*front(list(points)), strict=True)
        ax.step(fx, fy, where="post", color=style.get("color", style.get("edgecolors")), lw=1)


def plot(ours, evolib, evo8b, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 5))
    old = [(m, s) for n, m, s, _ in ours if n.split("_")[1] not in NEW_FAMILIES]
    new = [(n, m, s) for n, m, s, _ in ours if n.split("_")[1] in NEW_FAMILIES]
    if evo8b:
        _draw(
            ax,
            [(m, s) for _, m, s, _ in evo8b],
            {"s": 6, "color": "0.7"},
            f"EvoApprox8b ({len(evo8b)})",
        )
    _draw(
        ax,
        [(m, s) for _, m, s, _ in evolib],
        {"s": 30, "marker": "^", "color": "tab:orange"},
        "EvoApproxLib unsigned",
    )
    published = [(m, p) for _, m, _, p in evolib if p is not None]
    _draw(
        ax,
        published,
        {"s": 30, "marker": "^", "facecolors": "none", "edgecolors": "tab:brown"},
        "EvoApproxLib, published power",
        line=False,
    )
    _draw(ax, old, {"s": 18, "color": "tab:blue"}, "hwflow built-ins before vct")
    fx, fy = zip(*front(old + [(m, s) for _, m, s in new]), strict=True)
    ax.step(fx, fy, where="post", color="tab:red", lw=1.5, label="hwflow front now")
    ax.scatter(
        [m for _, m, _ in new],
        [s for _, _, s in new],
        s=40,
        marker="D",
        color="tab:red",
        label="hwflow vct (new)",
    )
    for n, m, s in new:
        ax.annotate(
            n.removeprefix("u_vct_"),
            (m, s),
            textcoords="offset points",
            xytext=(4, -9),
            fontsize=7,
            color="tab:red",
        )
    ax.axvspan(0.3, 1.5, color="0.95", zorder=-1)
    ax.set_xscale("log")
    ax.set_xlim(0.05, 6)
    ax.set_ylim(20, 100)
    ax.set_xlabel("MAE (% of 2^16), all 65,536 operand pairs")
    ax.set_ylabel("multiplication energy saved (%), uniform operands")
    ax.set_title("Unsigned 8x8 multipliers: energy saved against error")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(title: str, points, band=(0.0, float("inf"))) -> str:
    on = set(front([(m, s) for _, m, s, _ in points]))
    rows = [p for p in sorted(points, key=lambda p: p[1]) if (p[1], p[2]) in on]
    lines = [
        f"{title}",
        "",
        "| design | MAE % | saved % (model) | saved % (published) |",
        "|---|---:|---:|---:|",
    ]
    for n, m, s, p in rows:
        if band[0] <= m <= band[1]:
            pub = f"{p:.1f}" if p is not None else ""
            lines.append(f"| {n} | {m:.3f} | {s:.1f} | {pub} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", type=Path, required=True, help="built-in library")
    ap.add_argument("--evoapproxlib", type=Path, required=True)
    ap.add_argument("--evoapprox8b", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/results/library_front.png"))
    args = ap.parse_args()
    ours = unsigned_points(Library.open(args.library))
    evolib = unsigned_points(Library.open(args.evoapproxlib))
    evo8b = unsigned_points(Library.open(args.evoapprox8b)) if args.evoapprox8b else []
    plot(ours, evolib, evo8b, args.out)
    band = (0.1, 3.0)
    print(table("hwflow built-ins (unsigned front, MAE 0.1-3 %)", ours, band), "\n")
    print(table("EvoApproxLib unsigned (front by the model)", evolib, band), "\n")
    if evo8b:
        print(table("EvoApprox8b (front by the model)", evo8b, band))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
