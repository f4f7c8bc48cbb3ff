"""Text: the `energy:` block of an assignment (or retrain.json) in words."""

from __future__ import annotations

from typing import Any

# The label each figure of the `energy:` block carries wherever it is printed.
FIGURES = {
    "uniform": ("reduction_pct", "under uniform operands"),
    "histogram": ("reduction_pct_histogram", "under recorded operands"),
    "published": ("reduction_pct_published", "by published power"),
}


def saved_text(energy: dict[str, Any]) -> str:
    """The `energy:` block's savings in words, the selection's figure first, e.g.
    "82.4 % saved under recorded operands; 77.3 % under uniform operands"."""
    model = energy.get("model", "uniform")
    parts = []
    for m in [model, *(m for m in FIGURES if m != model)]:
        key, label = FIGURES.get(m, (None, ""))
        if key is not None and key in energy:
            parts.append(f"{energy[key]:.1f} %" + (" saved" if not parts else "") + f" {label}")
    return "; ".join(parts)
