"""Multiplication energy of an assignment, relative to exact multipliers everywhere.

`E_rel = sum_l (ops_l / ops_total) * e_l / e_exact` (docs/concepts/error-model.md);
reduction = 1 - E_rel.
Two per-layer ratios e_l / e_exact feed it:
- `uniform`: the library's `cost.energy_rel` (switching estimate under uniform operands);
- `histogram`: the same switching model fed with the layer's recorded operand
  histograms (`characterize.energy.energy_under_histograms`), chosen and exact multiplier
  under the same operand stream, since real activations are far from uniform (ReLU zeros,
  small weights) and a multiplier's saving can shift with them;
- `published`: the publisher's power figure (`cost.published.power`, attached by
  `characterize --costs`) over that of an exact multiplier of the same signedness.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hwflow.assign.stats import LayerStats
from hwflow.errors import LibraryError

ENERGY_MODELS = ("uniform", "histogram", "published")
# What the selection minimises by default: the recorded-operand energy. On a layer's real
# (ReLU-sparse) operands designs cheap under uniform operands can cost more than the exact
# array (Fashion-MNIST LeNet-5 study, README), so only the recorded figure is trusted.
DEFAULT_MODEL = "histogram"


def relative_energy(ops: Sequence[int], ratios: Sequence[float]) -> float:
    """sum_l ops_l * ratio_l / sum_l ops_l."""
    ops_a = np.asarray(ops, dtype=np.float64)
    if ops_a.sum() <= 0:
        raise ValueError("relative_energy: total ops must be positive")
    return float((ops_a * np.asarray(ratios, dtype=np.float64)).sum() / ops_a.sum())


def selection_model(requested: str | None, recorded: bool) -> str:
    """The energy a selection minimises: `requested`, else the default when the recorded-
    operand figure is computed (`recorded`), else the uniform-operand one."""
    if requested is not None:
        return requested
    return DEFAULT_MODEL if recorded else "uniform"


def summary(
    ops: Sequence[int],
    uniform: Sequence[float],
    hist: Sequence[float] | None,
    model: str = "uniform",
    published: Sequence[float] | None = None,
) -> dict:
    """The `energy:` block of assignment.yaml / retrain.json; `model`: what selected."""
    rel = relative_energy(ops, uniform)
    out: dict[str, Any] = {
        "relative": round(rel, 6),
        "reduction_pct": round(100.0 * (1.0 - rel), 3),
        "model": model,
        "model_note": f"the selection minimised the {model} energy; `relative` is the "
        "library's uniform-operand figure, `relative_histogram` the recorded-operand one, "
        "`relative_published` the published-power one",
    }
    if hist is not None:
        rel_h = relative_energy(ops, hist)
        out["relative_histogram"] = round(rel_h, 6)
        out["reduction_pct_histogram"] = round(100.0 * (1.0 - rel_h), 3)
    if published is not None and np.isfinite(published).all():
        rel_p = relative_energy(ops, published)
        out["relative_published"] = round(rel_p, 6)
        out["reduction_pct_published"] = round(100.0 * (1.0 - rel_p), 3)
    return out


def published_ratios(entries: Sequence[Any], exact: Sequence[bool]) -> np.ndarray:
    """Published power of each entry over that of an exact multiplier of its signedness.

    `exact[i]`: entry i computes the exact product. The reference of a signedness is the
    published power of its exact entries (the first by name that has one); an exact entry
    without a figure of its own (the library's built-in reference) takes the reference's,
    as it computes the same function. NaN where there is no figure or no reference.
    """
    power = np.array([_published_power(e) for e in entries])
    out = np.full(len(entries), np.nan)
    for signed in (False, True):
        idx = [i for i, e in enumerate(entries) if bool(e.signed) == signed]
        refs = sorted(
            (entries[i].name, power[i]) for i in idx if exact[i] and np.isfinite(power[i])
        )
        if not refs or refs[0][1] <= 0:
            continue
        ref = refs[0][1]
        for i in idx:
            p = ref if exact[i] and not np.isfinite(power[i]) else power[i]
            out[i] = p / ref
    return out


def _published_power(entry: Any) -> float:
    try:
        return float(entry.cost["published"]["power"])
    except (KeyError, TypeError, ValueError):
        return float("nan")


def uniform_ratio(entry: Any) -> float:
    """A library entry's energy per op relative to the exact multiplier (uniform operands)."""
    try:
        return float(entry.cost["energy_rel"])
    except (KeyError, TypeError, ValueError):
        raise LibraryError(f"library entry {entry.name}: cost.energy_rel is missing") from None


class HistogramEnergy:
    """Per-layer energy ratios under recorded operand histograms, cached per pair."""

    def __init__(self, library: Any, samples: int = 1 << 16, seed: int = 0) -> None:
        self.library = library
        self.samples = samples
        self.seed = seed
        self._gates: dict[str, Any] = {}
        self._cache: dict[tuple[str, str], float] = {}

    def _energy(self, name: str, p_a: np.ndarray, p_b: np.ndarray) -> float:
        from hwflow.characterize.energy import energy_under_histograms
        from hwflow.characterize.synth import load_gates

        if name not in self._gates:
            path = self.library.gate_netlist_path(name)
            if not path.is_file():
                raise LibraryError(f"{path}: gate netlist missing; rerun `hwflow characterize`")
            self._gates[name] = load_gates(path)
        return float(energy_under_histograms(self._gates[name], p_a, p_b, self.samples, self.seed))

    def ratio(self, layer: LayerStats, name: str) -> float:
        """e(name) / e(exact) for this layer's operands (same sampled stream for both)."""
        key = (layer.name, name)
        if key not in self._cache:
            p_a, p_b = layer.multiplier_operand_hists()
            exact = self.library.exact_name(layer.signed)
            e_exact = self._energy(exact, p_a, p_b)
            e = self._energy(name, p_a, p_b)
            self._cache[key] = e / e_exact if e_exact > 0 else float("nan")
        return self._cache[key]
