"""`RUN/validation.json`: the error model against measurement (`hwflow demo`'s assign step).

`summary`: the assignment's `validation` block (`pairs`, `median_pct`, `p90_pct`), or null
when the assignment was not validated; `pairs`: one entry per (layer, candidate
multiplier): `layer`, `multiplier`, `chosen`, `energy_rel`, `predicted_std`,
`measured_std`, `measured_mean`, `acc_std`.
"""

from __future__ import annotations

import os
from typing import Any

from hwflow.artifacts._document import RunDocument
from hwflow.errors import RunError

VALIDATION_FILE = "validation.json"
_NUMBERS = ("predicted_std", "measured_std")  # what the report plots


class ValidationReport(RunDocument):
    """Predicted vs measured error per layer and multiplier, read like the JSON document."""

    FILE = VALIDATION_FILE

    @classmethod
    def of(cls, summary: dict[str, Any] | None, pairs: list[dict[str, Any]]) -> ValidationReport:
        """The report of `assign --validate`'s summary and pairs."""
        return cls({"summary": summary, "pairs": pairs})

    @classmethod
    def from_dict(
        cls, data: Any, source: str | os.PathLike[str] = VALIDATION_FILE
    ) -> ValidationReport:
        """Check the keys the report reads (RunError naming the file and key)."""
        if not isinstance(data, dict) or not isinstance(data.get("pairs"), list):
            raise RunError(f"{source}: not a validation report (no `pairs` list)")
        if data.get("summary") is not None and not isinstance(data["summary"], dict):
            raise RunError(f"{source}: summary: expected a mapping")
        for i, pair in enumerate(data["pairs"]):
            for key in _NUMBERS:
                value = pair.get(key) if isinstance(pair, dict) else None
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise RunError(f"{source}: pairs[{i}].{key}: missing or not a number")
        return cls(data)
