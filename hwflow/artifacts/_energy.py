"""The `energy:` block of assignment.yaml (and retrain.json): multiplication energy of an
assignment relative to exact multipliers everywhere.

    relative, reduction_pct          # the library's uniform-operand figure
    model: uniform | histogram | published   # what the selection minimised
    model_note
    relative_histogram, reduction_pct_histogram    # each layer's recorded operands
    relative_published, reduction_pct_published    # published power
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from hwflow.errors import AssignmentError

_NUMBERS = (
    "relative", "reduction_pct", "relative_histogram", "reduction_pct_histogram",
    "relative_published", "reduction_pct_published",
)  # fmt: skip


@dataclass
class EnergySummary:
    """A parsed `energy:` block; `energy_model` is the file's `model` (None: absent)."""

    relative: float
    reduction_pct: float
    energy_model: str | None = None
    model_note: str | None = None
    relative_histogram: float | None = None
    reduction_pct_histogram: float | None = None
    relative_published: float | None = None
    reduction_pct_published: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    @classmethod
    def from_dict(cls, doc: Any, source: str | os.PathLike[str] = "energy") -> EnergySummary:
        if not isinstance(doc, dict):
            raise AssignmentError(f"{source}: energy: expected a mapping")
        for key in _NUMBERS:
            value = doc.get(key)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number and (value is not None or key in ("relative", "reduction_pct")):
                raise AssignmentError(f"{source}: energy.{key}: expected a number, got {value!r}")
        for key in ("model", "model_note"):
            if doc.get(key) is not None and not isinstance(doc[key], str):
                raise AssignmentError(f"{source}: energy.{key}: expected a string")
        known = {*_NUMBERS, "model", "model_note"}
        return cls(
            **{k: doc.get(k) for k in _NUMBERS},
            energy_model=doc.get("model"),
            model_note=doc.get("model_note"),
            extra={k: v for k, v in doc.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """Keys in the order `hwflow.assign.energy.summary` writes them."""
        out: dict[str, Any] = {}
        for f in fields(self):
            name = "model" if f.name == "energy_model" else f.name
            value = getattr(self, f.name)
            if f.name != "extra" and value is not None:
                out[name] = value
        return out | self.extra
