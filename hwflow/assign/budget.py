"""`hwflow assign --max-loss PP`: the cheapest assignment within a top-1 loss budget.

The budget is in percentage points of top-1 accuracy against the run's int8 (exact)
accuracy, both measured on the validation split (never the test set), with the real
tables and the free corrections (`hwflow.assign.correct`; a candidate keeps them only
where they help on validation). With `recovery_steps` each candidate is measured after
that many retraining batches instead (`hwflow.assign.retrain.recover`): the loss that
retraining cannot recover, which is what a budget should bound when the assignment will
be retrained; without them the measure is of the tables as they are, and layers whose
loss retraining would recover are backed off needlessly.

Search:
1. the global tolerance scale: from 1, doubling while the budget holds (halving while it
   does not), then bisection (in log scale) between the largest scale within and the
   smallest beyond it;
2. per-layer back-off from the cheapest assignment beyond the budget: the layers where it
   differs from the best one within are reverted one at a time, each round keeping the
   revert that recovers the most accuracy (where the loss concentrates), until it fits;
3. per-layer advance from the cheapest assignment within: each layer's ladder is the
   cheaper choices it alone takes along the scale path up to the largest scale measured;
   each round tries the layers' next rungs, cheapest result first, and takes the first
   that still fits; a layer whose next rung does not fit leaves the race. The scale path
   moves every layer at once, so a layer that cannot take a cheaper design would
   otherwise hold back the layers that can.
The cheapest candidate within the budget wins (the selection's energy); every candidate
measured is listed under `budget:` in assignment.yaml. Identical assignments are measured
once. If none fits, the most accurate one is returned with `budget.met: false`.

Measured candidates are kept in the run folder (`CANDIDATES_FILE`), so a search that was
interrupted (a candidate after a recovery costs minutes on a ResNet) resumes where it
stopped: it asks for the same candidates in the same order and finds them measured.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.assign import energy as energy_mod
from hwflow.errors import AssignmentError, RunError
from hwflow.io import sha256_bytes, sha256_file, write_error

MAX_SCALE = 64.0
MIN_SCALE = 1.0 / 64
BISECT_STEPS = 3
LADDER_STEP = 2**0.25  # the scale grid the per-layer ladders are read from
CANDIDATES_FILE = "budget_candidates.jsonl"  # in the run folder; written and read here only
_RESULT_KEYS = {"doc", "val_top1", "val_top1_uncorrected", "val_top1_corrected", "corrected"}


def check_recovery(recovery_steps: int, max_loss: object) -> None:
    """--recovery-steps measures budget candidates: refused without a budget, or < 0."""
    if recovery_steps < 0:
        raise AssignmentError(f"--recovery-steps must be >= 0, got {recovery_steps}")
    if recovery_steps and not max_loss:
        raise AssignmentError("--recovery-steps measures the --max-loss search: give a budget")


class Evaluator:
    """Validation top-1 of assignment documents, raw and corrected, memoised by choice
    (with `keep`, also in the run folder's CANDIDATES_FILE, across searches)."""

    def __init__(
        self, run: Any, lib: Any, seed: int = 0, recovery_steps: int = 0, keep: bool = False
    ) -> None:
        check_recovery(recovery_steps, max_loss=True)
        self.run, self.lib, self.seed, self.recovery_steps = run, lib, seed, recovery_steps
        self.kept = _Kept(run, lib, seed, recovery_steps) if keep else None
        self.seen: dict[tuple[str, ...], dict[str, Any]] = self.kept.load() if self.kept else {}
        self.int8 = run.evaluate(run.fresh_model(), "val")

    def __call__(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Measures `doc` (recording its corrections in it when they help).

        The memo is by choice of multipliers, which is all the measurement depends on;
        the returned document is always the caller's (its energy summary, its selection
        model), with the memoised corrections copied in."""
        from hwflow.assign.flow import add_corrections

        key = _choices(doc)
        if key not in self.seen:
            best = copy.deepcopy(doc)
            add_corrections(best, self.run, self.lib, seed=self.seed)
            c = best["corrections"]
            raw, fixed = c["val_top1_uncorrected"], c["val_top1_corrected"]
            self.seen[key] = {
                "doc": best,
                "val_top1": max(raw, fixed),
                "val_top1_uncorrected": raw,
                "val_top1_corrected": fixed,
                "corrected": c["applied"],
            }
            if self.recovery_steps:
                self.seen[key]["val_top1"] = self._recovered(best)
            if self.kept is not None:
                self.kept.add(key, self.seen[key])
        seen = self.seen[key]
        return seen | {"doc": _with_corrections(doc, seen["doc"])}

    def _recovered(self, doc: dict[str, Any]) -> float:
        """Validation top-1 of `doc` (tables, its corrections) after the short recovery."""
        from hwflow.assign.correct import apply_corrections
        from hwflow.assign.flow import chosen_tables
        from hwflow.assign.retrain import recover
        from hwflow.nn import apply_tables

        model = self.run.fresh_model()
        apply_tables(model, chosen_tables(doc, self.lib))
        apply_corrections(self.run, model, doc, "assignment")
        recover(self.run, model, self.recovery_steps, seed=self.seed)
        return self.run.evaluate(model, "val")

    def loss_pp(self, result: dict[str, Any]) -> float:
        return 100.0 * (self.int8 - result["val_top1"])


class _Kept:
    """The candidates measured on a run, one JSON line each in its CANDIDATES_FILE.

    Why a file: a study or `assign` killed mid-search would otherwise measure every
    candidate again. A line is reused only when measured in the same context (recovery
    steps, seed, the run's weights) with the same tables for its multipliers; a line cut
    by a kill, or not hwflow's, is skipped. Lines are appended whole, one write each."""

    def __init__(self, run: Any, lib: Any, seed: int, recovery_steps: int) -> None:
        self.path = Path(run.path) / CANDIDATES_FILE
        self.lib = lib
        self._sha: dict[str, str] = {}  # per multiplier: every line names every layer's
        weights = sha256_file(Path(run.path) / "checkpoints" / "agn.pt")
        self.context = {"recovery_steps": recovery_steps, "seed": seed, "weights": weights}

    def _tables(self, choices: tuple[str, ...]) -> dict[str, str] | None:
        names = self.lib.names
        if not all(isinstance(n, str) and n in names for n in choices):
            return None
        for n in set(choices) - self._sha.keys():
            self._sha[n] = sha256_bytes(self.lib.tables[names.index(n)].tobytes())
        return {n: self._sha[n] for n in choices}

    def load(self) -> dict[tuple[str, ...], dict[str, Any]]:
        try:
            lines = self.path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise RunError(f"{self.path}: cannot be read ({exc.strerror})") from None
        found = {}
        for line in lines:
            try:
                entry = json.loads(line)
                choices, result = tuple(entry["choices"]), entry["result"]
                usable = (
                    entry["context"] == self.context
                    and entry["tables"] == self._tables(choices)
                    and _RESULT_KEYS.issubset(result)
                    and isinstance(result["doc"], dict)
                )
            except (ValueError, KeyError, TypeError):  # cut by a kill, or not ours
                continue
            if usable:
                found[choices] = result
        return found

    def add(self, choices: tuple[str, ...], result: dict[str, Any]) -> None:
        entry = {"context": self.context, "choices": list(choices)}
        entry |= {"tables": self._tables(choices), "result": result}
        line = (json.dumps(entry) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            raise write_error(self.path, exc) from None


def _with_corrections(doc: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """A copy of `doc` with the corrections recorded in `measured` (same multipliers)."""
    out = copy.deepcopy(doc)
    offsets = {i["name"]: i.get("acc_offset") for i in measured["layers"]}
    for item in out["layers"]:
        item.pop("acc_offset", None)
        if offsets[item["name"]] is not None:
            item["acc_offset"] = list(offsets[item["name"]])
    out["corrections"] = copy.deepcopy(measured["corrections"])
    return out


# energy model -> (the network's figure in a doc's `energy`, a layer's figure in its item);
# the uniform figures (`relative`, `energy_rel`) for any other model or a missing field
_ENERGY_FIELDS = {
    "histogram": ("relative_histogram", "energy_rel_hist"),
    "published": ("relative_published", "energy_rel_published"),
}


def cost(doc: dict[str, Any]) -> float:
    """The energy the selection minimised (relative to exact)."""
    e = doc["energy"]
    field = _ENERGY_FIELDS.get(e.get("model", ""), ("relative",))[0]
    return float(e.get(field, e["relative"]))


def _layer_cost(item: dict[str, Any], model: str) -> float:
    """One layer's choice's energy under the selection's energy `model`."""
    field = _ENERGY_FIELDS.get(model, ("", "energy_rel"))[1]
    return float(item.get(field, item["energy_rel"]))


def mixed_doc(
    base: dict[str, Any], other: dict[str, Any], layer: str, note: str = "backed_off"
) -> dict[str, Any]:
    """`base` with `layer`'s choice taken from `other`, its energy summary recomputed;
    `layer` is appended to the list under `note` (which layers moved, and which way)."""
    doc = copy.deepcopy(base)
    items = {i["name"]: i for i in other["layers"]}
    doc["layers"] = [
        copy.deepcopy(items[i["name"]]) if i["name"] == layer else i for i in doc["layers"]
    ]
    doc.pop("corrections", None)
    for item in doc["layers"]:
        item.pop("acc_offset", None)
    layers = doc["layers"]
    has_hist = "relative_histogram" in base["energy"]
    hist = [i["energy_rel_hist"] for i in layers] if has_hist else None
    published = [i.get("energy_rel_published", np.nan) for i in layers]
    doc["energy"] = energy_mod.summary(
        [i["ops"] for i in layers],
        [i["energy_rel"] for i in layers],
        hist,
        base["energy"]["model"],
        published,
    )
    doc[note] = [*base.get(note, []), layer]
    return doc


def search(
    make_doc: Callable[[float], dict[str, Any]],
    evaluate: Evaluator,
    max_loss: float,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """The cheapest measured assignment within `max_loss` pp (see the module docstring);
    `make_doc(scale)` gives the selection at a scale."""
    if not max_loss >= 0:
        raise AssignmentError(f"--max-loss must be >= 0 percentage points, got {max_loss}")
    tried: list[tuple[str, dict[str, Any]]] = []
    measured: dict[tuple[str, ...], dict[str, Any]] = {}
    scales: list[float] = []

    def at(scale: float) -> dict[str, Any]:
        scales.append(scale)
        return make_doc(scale)

    def measure(label: str, doc: dict[str, Any], again: bool = True) -> dict[str, Any]:
        """`doc`'s result, listed as a candidate (`again` False: a choice measured
        before is not listed twice)."""
        if not again and (seen := measured.get(_choices(doc))) is not None:
            return seen
        r = measured[_choices(doc)] = evaluate(doc)
        tried.append((label, r))
        log(
            f"budget: {label}: saves {100 * (1 - cost(doc)):.1f} %, val loss "
            f"{evaluate.loss_pp(r):.2f} pp"
        )
        return r

    def fits(r: dict[str, Any]) -> bool:
        return evaluate.loss_pp(r) <= max_loss + 1e-9

    ok, bad = _scale_bracket(at, measure, fits)
    if ok is not None and bad is not None:
        lo, hi = ok[0], bad[0]
        for _ in range(BISECT_STEPS):
            mid = float(np.sqrt(lo * hi)) if lo > 0 else hi / 2
            r = measure(f"scale {mid:.4g}", at(mid))
            if fits(r):
                lo, ok = mid, (mid, r)
            else:
                hi, bad = mid, (mid, r)
    if ok is not None and bad is not None:
        _back_off(ok[1]["doc"], bad[1]["doc"], measure, fits)
        start = min((r["doc"] for _, r in tried if fits(r)), key=cost)
        _advance(start, _ladders(make_doc, start, ok[0], max(scales)), measure, fits)
    return _result(tried, evaluate, max_loss)


def _scale_bracket(make_doc, measure, fits) -> tuple[tuple | None, tuple | None]:
    """(largest scale within, smallest beyond) among 1, 2, 4, ... or 1, 1/2, ..., 0."""
    s = 1.0
    r = measure(f"scale {s:g}", make_doc(s))
    if fits(r):
        ok, bad = (s, r), None
        while s < MAX_SCALE:
            s *= 2
            r = measure(f"scale {s:g}", make_doc(s))
            if not fits(r):
                return ok, (s, r)
            ok = (s, r)
        return ok, None
    bad = (s, r)
    while s > MIN_SCALE:
        s /= 2
        r = measure(f"scale {s:g}", make_doc(s))
        if fits(r):
            return (s, r), bad
        bad = (s, r)
    r = measure("scale 0", make_doc(0.0))
    return ((0.0, r), bad) if fits(r) else (None, bad)


def _back_off(ok: dict, bad: dict, measure, fits) -> None:
    """Revert `bad`'s layers to `ok`'s choices, the most helpful first, until it fits."""
    current = bad
    differing = [
        a["name"]
        for a, b in zip(bad["layers"], ok["layers"], strict=True)
        if a["multiplier"] != b["multiplier"]
    ]
    while len(differing) > 1:  # reverting the last one gives `ok` itself
        trials = [(layer, mixed_doc(current, ok, layer)) for layer in differing]
        results = [(layer, doc, measure(f"back off {layer}", doc)) for layer, doc in trials]
        layer, doc, r = max(results, key=lambda t: (t[2]["val_top1"], -cost(t[1])))
        if fits(r):
            return
        current = doc
        differing.remove(layer)


def _ladders(make_doc, start: dict, lo: float, hi: float) -> dict[str, list[dict]]:
    """{layer: [doc, ...]}: the selections (on a LADDER_STEP grid of scales from `lo` to
    `hi`) at which the layer's choice first gets cheaper than in `start`, and cheaper
    again; layers with no cheaper choice are left out."""
    grid, s = [], max(lo, MIN_SCALE)
    while s * LADDER_STEP < hi:
        s *= LADDER_STEP
        grid.append(s)
    docs = [make_doc(x) for x in [*grid, hi]]
    model = start["energy"].get("model", "")
    ladders: dict[str, list[dict]] = {}
    for i, item in enumerate(start["layers"]):
        floor = _layer_cost(item, model)
        for doc in docs:
            if (c := _layer_cost(doc["layers"][i], model)) < floor:
                ladders.setdefault(item["name"], []).append(doc)
                floor = c
    return ladders


def _advance(start: dict, ladders: dict[str, list[dict]], measure, fits) -> None:
    """Move layers of `start` up their ladders: each round tries the moves cheapest first
    and takes the first that fits; a layer whose next rung does not fit leaves (its
    further rungs cost more accuracy still). First-fit keeps the cost to a measurement
    per rung taken or layer dropped, not per layer and round (ResNets have 10-22 layers)."""
    current = start
    while ladders:
        trials = sorted(
            (
                (layer, mixed_doc(current, rungs[0], layer, "advanced"))
                for layer, rungs in ladders.items()
            ),
            key=lambda t: cost(t[1]),
        )
        for layer, doc in trials:
            if fits(measure(f"advance {layer}", doc, again=False)):
                current = doc
                ladders[layer].pop(0)
                if not ladders[layer]:
                    del ladders[layer]
                break
            del ladders[layer]


def _choices(doc: dict) -> tuple[str, ...]:
    return tuple(i["multiplier"] for i in doc["layers"])


def _result(tried: list, evaluate: Evaluator, max_loss: float) -> dict[str, Any]:
    within = [(label, r) for label, r in tried if evaluate.loss_pp(r) <= max_loss + 1e-9]
    met = bool(within)
    if met:
        label, best = min(within, key=lambda t: (cost(t[1]["doc"]), -t[1]["val_top1"]))
    else:
        label, best = max(tried, key=lambda t: (t[1]["val_top1"], -cost(t[1]["doc"])))
    doc = copy.deepcopy(best["doc"])
    doc["budget"] = {
        "max_loss_pp": float(max_loss),
        "met": met,
        "split": "val",
        "chosen": label,
        "val_top1_int8": round(evaluate.int8, 6),
        "val_top1": round(best["val_top1"], 6),
        "val_top1_uncorrected": round(best["val_top1_uncorrected"], 6),
        "val_top1_corrected": round(best["val_top1_corrected"], 6),
        "val_loss_pp": round(evaluate.loss_pp(best), 4),
        "corrected": best["corrected"],
        "recovery_steps": evaluate.recovery_steps,  # 0: val_top1 is before any retraining
        "candidates": [
            {
                "label": lab,
                "reduction_pct": round(100 * (1 - cost(r["doc"])), 3),
                "val_loss_pp": round(evaluate.loss_pp(r), 4),
                "corrected": r["corrected"],
            }
            for lab, r in tried
        ],
    }
    return doc
