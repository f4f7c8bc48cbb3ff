"""`RUN/retrain.json`: what `hwflow retrain` kept (docs/reference/interfaces.md).

`assignment` and `checkpoint` (absolute paths; the checkpoint holds the kept weights),
`epochs`, `best_epoch`, `lr`, `seed`, `gradient`, `schedule`, test accuracies `accuracy`
and `accuracy_top5` (`quant`, `approx_uncorrected` when the assignment corrects,
`approx_before`, `approx_after`), `val_accuracy`, `energy` (the assignment's block),
`layers` ({layer: multiplier}) and the per-epoch `history`. Older runs lack `gradient`,
`schedule` and `accuracy_top5`. Sweep and study points keep one per seed under their own
names (`retrain --out`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hwflow.artifacts._document import RunDocument
from hwflow.errors import RunError

RETRAIN_FILE = "retrain.json"
_MAPPINGS = ("accuracy_top5", "val_accuracy", "energy", "layers")  # optional ones


class RetrainResult(RunDocument):
    """A retrain result, read like the JSON document it is."""

    FILE = RETRAIN_FILE

    @property
    def checkpoint(self) -> Path:
        """The kept weights (`hwflow export --retrained`)."""
        return Path(self._data["checkpoint"])

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike[str] = RETRAIN_FILE) -> RetrainResult:
        """Check the keys later stages read (RunError naming the file and key)."""
        if not isinstance(data, dict) or not isinstance(data.get("accuracy"), dict):
            raise RunError(f"{source}: not a retrain result (no `accuracy` mapping); retrain again")
        if not isinstance(data.get("checkpoint"), str):
            raise RunError(f"{source}: checkpoint: missing or not a string; retrain again")
        for key in _MAPPINGS:
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise RunError(f"{source}: {key}: expected a mapping")
        return cls(data)
