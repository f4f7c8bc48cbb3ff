"""The tables of docs/guides/evolve.md from finished runs (no timing measured here).

    .venv/bin/python -m bench.evolve_table layers RUN|SUMMARY [--published LIB]
    .venv/bin/python -m bench.evolve_table network STUDY_A STUDY_B [--point P[,P_B]]

`layers`: one markdown row per layer of RUN/evolve/summary.json (`hwflow evolve`; or a
copy of one, whose run is read): the
best existing design (the library evolve wrote into, evolved designs left out), with
`--published` also the best design of another library (e.g. the built-in one plus
EvoApproxLib's), the evolved design, its energy ratio to each, evaluations and wall time.
Energies are relative to exact under the operands the evolution minimised (the layer's
recorded ones, or uniform ones for `evolve --energy uniform`), as assign measures them on
the characterized netlists.

`network`: one point of two `hwflow study` folders (same seeds, e.g. without and with
evolved designs in the library; or a point of each): per seed the energy saved under
recorded operands (`--energy uniform`: uniform ones) and the retrained test accuracy,
then the means, the designs, and McNemar's test on the test images pooled over the
seeds (A against B).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hwflow.evolve.flow import OUT_DIR, SUMMARY, best_existing, read_run
from hwflow.io import read_json


def layer_rows(where: Path, published: str | None) -> list[str]:
    """`where`: a run (its evolve summary) or a copy of an evolve summary."""
    summary = read_json(where if where.is_file() else where / OUT_DIR / SUMMARY)
    items = summary["layers"]
    _, stats, sigmas = read_run(Path(summary["run"]), [i["layer"] for i in items])
    fan_in = {s.name: s.fan_in for s in stats}
    energy = summary["options"].get("energy", "histogram")
    key = "uniform" if energy == "uniform" else "hist"
    field = "energy_rel" if energy == "uniform" else "energy_rel_hist"
    other = {}
    if published:
        scale = summary["options"]["scale"]
        _, doc = best_existing(stats, sigmas, published, scale, energy)
        other = {i["name"]: i for i in doc["layers"]}
    rows = []
    for i in items:
        e, base = i[f"evolved_energy_{key}"], i[f"best_existing_energy_{key}"]
        cells = [f"{i['layer']} (K = {fan_in[i['layer']]})", f"{i['sigma']:.4f}"]
        cells += [i["best_existing"], f"{base:.4f}"]
        ratios = [_ratio(e, base)]
        if published:
            p = other[i["layer"]]
            cells += [p["multiplier"], f"{p[field]:.4f}"]
            ratios.append(_ratio(e, p[field]))
        fits = "" if i["fits"] else " (does not fit)"
        cells += [i["evolved"] + fits, f"{e:.4f}", *ratios]
        cells += [f"{i['evaluations']:,}", f"{i['wall_s']:.1f} s"]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _ratio(e: float, base: float) -> str:
    return f"{e / base:.2f}x" if base > 0 else "-"  # both constant circuits: no toggles


def point_of(
    study: Path, point: str, seeds: list[int], energy: str = "histogram"
) -> tuple[dict, dict, list[str]]:
    """(point_row of the study's `point` over `seeds`, {seed: correct per test image},
    per seed "saved % / top-1 %")."""
    from hwflow.artifacts import ASSIGNMENT_FILE, Assignment
    from hwflow.experiments.study import point_row
    from hwflow.nn.run import load_run

    labels = load_run(study / f"seed-{seeds[0]}").data.test.y.numpy()
    docs, results, correct, int8 = {}, {}, {}, {}
    for s in seeds:
        home = study / f"seed-{s}" / "study"
        docs[s] = Assignment.load(home / point / ASSIGNMENT_FILE).to_dict()
        results[s] = read_json(home / point / f"retrain-s{s}.json")
        correct[s] = np.load(home / point / f"retrain-s{s}.pred.npy") == labels
        int8[s] = np.load(home / "int8.pred.npy") == labels
    saved = "reduction_pct" if energy == "uniform" else "reduction_pct_histogram"
    per_seed = [
        f"{docs[s]['energy'][saved]:.2f} / {100 * results[s]['accuracy']['approx_after']:.2f}"
        for s in seeds
    ]
    return point_row(point, docs, results, correct, int8), correct, per_seed


def network_rows(
    a: Path, b: Path, points: list[str], seeds: list[int], energy: str = "histogram"
) -> list[str]:
    """`points`: the point compared in both studies, or A's and B's."""
    from hwflow.experiments.statistics import paired

    rows, pairs = [], []
    for study, point in zip((a, b), points if len(points) == 2 else points * 2, strict=True):
        row, correct, per_seed = point_of(study, point, seeds, energy)
        pairs.append(correct)
        which = "uniform" if energy == "uniform" else "recorded"
        saved = f"{row[f'saved_{which}_mean']:.2f} % (sd {row[f'saved_{which}_std']:.2f})"
        acc = f"{100 * row['acc_mean']:.2f} % (sd {100 * row['acc_std']:.2f})"
        cells = [f"{study} {point}", *per_seed, saved, acc, f"{row['loss_pp']:.2f} pp"]
        rows.append("| " + " | ".join([*cells, row["multipliers"]]) + " |")
    rows.append(f"McNemar A vs B, pooled over seeds {seeds}: {paired(*pairs)}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    lay = sub.add_parser("layers")
    lay.add_argument("where", type=Path)
    lay.add_argument("--published", default=None)
    net = sub.add_parser("network")
    net.add_argument("a", type=Path)
    net.add_argument("b", type=Path)
    net.add_argument("--point", default="budget-histogram-1pp", help="P, or A's,B's")
    net.add_argument("--seeds", default="0,1,2")
    net.add_argument("--energy", choices=["histogram", "uniform"], default="histogram")
    args = ap.parse_args()
    if args.what == "layers":
        lines = layer_rows(args.where, args.published)
    else:
        seeds = [int(s) for s in args.seeds.split(",")]
        lines = network_rows(args.a, args.b, args.point.split(","), seeds, args.energy)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
