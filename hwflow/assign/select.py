"""Per-layer multiplier selection: the cheapest multiplier whose predicted error fits.

A layer tolerates accumulator noise of std `scale * |sigma_l| * std(exact accumulator)`
(its learned AGN sigma); a multiplier of the layer's signedness fits when the error
model's predicted std stays within it. Among the fitting ones the lowest energy wins
(ties: lower predicted std, then name). The exact multiplier (std 0) always fits, so a
library holding it for the layer's signedness always yields a choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwflow.errors import AssignmentError


@dataclass(frozen=True)
class Choice:
    layer: str
    index: int  # into the library's multiplier list
    tolerated: float  # accumulator error std the layer tolerates (integer units)
    predicted: float  # the chosen multiplier's predicted accumulator error std
    predicted_mean: float


def tolerances(sigmas: Sequence[float], acc_stds: Sequence[float], scale: float) -> np.ndarray:
    """Tolerated accumulator error std per layer: scale * |sigma_l| * std(acc_l)."""
    if scale < 0:
        raise AssignmentError(f"--scale must be >= 0, got {scale}")
    return scale * np.abs(np.asarray(sigmas, dtype=np.float64)) * np.asarray(acc_stds, float)


def choose(
    layer_names: Sequence[str],
    multiplier_names: Sequence[str],
    pred_mean: np.ndarray,
    pred_std: np.ndarray,
    energy: np.ndarray,
    tolerated: np.ndarray,
) -> list[Choice]:
    """One choice per layer from (layers, multipliers) predictions; NaN = not eligible.

    `energy`: per multiplier (M,), or per layer and multiplier (layers, M).
    """
    energy = np.asarray(energy, dtype=np.float64)
    choices = []
    for i, layer in enumerate(layer_names):
        std = pred_std[i]
        e = energy[i] if energy.ndim == 2 else energy
        fits = np.isfinite(std) & (std <= tolerated[i] * (1 + 1e-12))
        if not fits.any():
            raise AssignmentError(
                f"layer {layer}: no multiplier of its signedness in the library fits "
                f"(tolerated std {tolerated[i]:.4g}); add the exact multiplier to the library"
            )
        cand = np.nonzero(fits)[0]
        best = min(cand, key=lambda j: (e[j], std[j], multiplier_names[j]))
        choices.append(
            Choice(
                layer=layer,
                index=int(best),
                tolerated=float(tolerated[i]),
                predicted=float(std[best]),
                predicted_mean=float(pred_mean[i, best]),
            )
        )
    return choices
