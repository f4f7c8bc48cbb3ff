"""`RUN/summary.json`: what `hwflow train` learned (docs/reference/file-formats.md).

seed, split_seed, test accuracies `{float, quant, agn, quant_after_agn}` in [0, 1] (top-1;
`accuracy_top5` likewise), `classes` (names, where the data set has them),
`float_weights`, `val_accuracy`, per layer `{name, ops, fan_in, sigma, signed}` (sigma =
|sigma_l| learned), then `threads` and `device`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwflow.errors import RunError
from hwflow.io import read_json, write_json

SUMMARY_FILE = "summary.json"

_LAYER_TYPES = {
    "name": (str,), "ops": (int,), "fan_in": (int,), "sigma": (int, float), "signed": (bool,)
}  # fmt: skip


@dataclass(frozen=True)
class SummaryLayer:
    """One approximable layer: its multiplications per sample, fan-in, learned |sigma|."""

    name: str
    ops: int
    fan_in: int
    sigma: float
    signed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ops": self.ops,
            "fan_in": self.fan_in,
            "sigma": self.sigma,
            "signed": self.signed,
        }


# Keys in the order train writes them; `accuracy` and `layers` are required.
_ORDER = (
    "seed", "split_seed", "accuracy", "accuracy_top5", "classes", "float_weights",
    "val_accuracy", "layers", "threads", "device",
)  # fmt: skip


@dataclass
class RunSummary:
    """A parsed, validated summary.json. Optional keys older runs lack stay absent on save."""

    accuracy: dict[str, float]
    layers: list[SummaryLayer]
    seed: int | None = None
    split_seed: int | None = None
    accuracy_top5: dict[str, float] | None = None
    classes: list[str] | None = None
    float_weights: str | None = None
    val_accuracy: dict[str, float] | None = None
    threads: int | None = None
    device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know
    present: frozenset[str] = field(default=frozenset(_ORDER), compare=False, repr=False)

    @classmethod
    def from_dict(cls, doc: Any, source: str | os.PathLike[str] = SUMMARY_FILE) -> RunSummary:
        """Validate the fields later stages read, with their types."""
        if not isinstance(doc, dict) or not isinstance(doc.get("accuracy"), dict):
            raise RunError(f"{source}: not a train summary (no `accuracy` mapping)")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise RunError(f"{source}: layers: expected a list")
        typed = []
        for i, layer in enumerate(layers):
            for key, tp in _LAYER_TYPES.items():
                value = layer.get(key) if isinstance(layer, dict) else None
                if not isinstance(value, tp) or (isinstance(value, bool) and bool not in tp):
                    what = " or ".join(t.__name__ for t in tp)
                    raise RunError(f"{source}: layers[{i}].{key}: missing or not a {what}")
            typed.append(SummaryLayer(**{k: layer[k] for k in _LAYER_TYPES}))
        for key in ("accuracy_top5", "val_accuracy"):
            if doc.get(key) is not None and not isinstance(doc[key], dict):
                raise RunError(f"{source}: {key}: expected a mapping")
        threads = doc.get("threads")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
            raise RunError(f"{source}: threads: expected an integer, got {threads!r}")
        return cls(
            accuracy=doc["accuracy"],
            layers=typed,
            **{k: doc.get(k) for k in _ORDER if k not in ("accuracy", "layers")},
            extra={k: v for k, v in doc.items() if k not in _ORDER},
            present=frozenset(k for k in _ORDER if k in doc),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunSummary:
        """Read and validate `path` (RunError naming the file and key)."""
        return cls.from_dict(read_json(path), Path(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically, keys in the documented order."""
        write_json(path, self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in _ORDER:
            if key == "layers":
                out[key] = [layer.to_dict() for layer in self.layers]
            elif key in self.present or getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out | self.extra

    def check_layers(self, names: list[str], source: str | os.PathLike[str]) -> None:
        """The layers are the model's, in its order."""
        if [layer.name for layer in self.layers] != names:
            raise RunError(f"{source}: layers do not match the model's ({', '.join(names)})")

    def sigmas(self) -> dict[str, float]:
        """{layer: learned |sigma|}."""
        return {layer.name: float(layer.sigma) for layer in self.layers}

    def signedness(self) -> dict[str, bool]:
        """{layer: operands signed}."""
        return {layer.name: layer.signed for layer in self.layers}

    def ops(self) -> dict[str, int]:
        """{layer: multiplications per sample}."""
        return {layer.name: layer.ops for layer in self.layers}
