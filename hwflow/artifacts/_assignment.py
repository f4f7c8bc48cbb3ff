"""`assignment.yaml`: which multiplier serves which layer (docs/reference/file-formats.md).

    library: /abs/path/to/library     # a relative path is relative to this file's folder
    run: /abs/path/to/run
    model: seed | channel | sampled | homogeneous   # how the layers were chosen
    scale: 1.0
    layers:
    - {name, multiplier, signed, ops, sigma_learned, sigma_tolerated, sigma_predicted,
       mean_predicted, energy_rel, energy_rel_hist, energy_rel_published,
       sigma_measured (with --validate), acc_offset (per output channel, integers)}
    energy: {relative, reduction_pct, model, relative_histogram, reduction_pct_histogram}
    validation: {...}
    corrections: {applied, val_top1_uncorrected, val_top1_corrected, acc_offset: method,
                  batches, seed, bn: {batches, seed}}  # free corrections (where they help)
    budget: {max_loss_pp, met, split: val, val_top1, val_top1_int8, ..., candidates}

Only `layers` (with `name` and `multiplier`) is required: users write short ones by hand.
`sigma_*` are relative to the std of the layer's exact accumulator, like the learned AGN
sigma: `sigma_tolerated = scale * |sigma_learned|`, `sigma_predicted` = predicted error
std / std(exact accumulator). In Python the file's `model:` is `Assignment.error_model`,
so that `model` names only the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hwflow.artifacts._energy import EnergySummary
from hwflow.errors import AssignmentError
from hwflow.io import read_yaml, write_yaml

ASSIGNMENT_FILE = "assignment.yaml"

# LayerChoice's optional numeric fields, in the order the file lists them.
_NUMBERS = (
    "sigma_learned", "sigma_tolerated", "sigma_predicted", "mean_predicted", "energy_rel",
    "energy_rel_hist", "energy_rel_published", "sigma_measured",
)  # fmt: skip


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class LayerChoice:
    """One layer's multiplier and the figures the selection recorded for it (None: absent)."""

    name: str
    multiplier: str
    signed: bool | None = None
    ops: int | None = None
    sigma_learned: float | None = None
    sigma_tolerated: float | None = None
    sigma_predicted: float | None = None
    mean_predicted: float | None = None
    energy_rel: float | None = None
    energy_rel_hist: float | None = None
    energy_rel_published: float | None = None
    sigma_measured: float | None = None
    acc_offset: list[int] | None = None  # per output channel: the bias correction
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    @classmethod
    def from_dict(cls, item: Any, where: str) -> LayerChoice:
        if not isinstance(item, dict):
            raise AssignmentError(f"{where}: expected a mapping with name and multiplier")
        name, mult = item.get("name"), item.get("multiplier")
        if not isinstance(name, str) or not isinstance(mult, str):
            raise AssignmentError(f"{where}: `name` and `multiplier` must be strings")
        signed, ops = item.get("signed"), item.get("ops")
        if signed is not None and not isinstance(signed, bool):
            raise AssignmentError(f"{where}.signed: expected true or false, got {signed!r}")
        if ops is not None and (isinstance(ops, bool) or not isinstance(ops, int)):
            raise AssignmentError(f"{where}.ops: expected an integer, got {ops!r}")
        numbers = {}
        for key in _NUMBERS:
            value = item.get(key)
            if value is not None and not _is_number(value):
                raise AssignmentError(f"{where}.{key}: expected a number, got {value!r}")
            numbers[key] = value
        offset = item.get("acc_offset")
        if offset is not None and (
            not isinstance(offset, list)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in offset)
        ):
            raise AssignmentError(f"{where}.acc_offset: expected a list of integers")
        known = {"name", "multiplier", "signed", "ops", "acc_offset", *_NUMBERS}
        extra = {k: v for k, v in item.items() if k not in known}
        return cls(name, mult, signed, ops, **numbers, acc_offset=offset, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "multiplier": self.multiplier}
        for f in fields(self)[2:]:
            value = getattr(self, f.name)
            if f.name != "extra" and value is not None:
                out[f.name] = value
        return out | self.extra


# Top-level keys in the order the file lists them; `model` is held as `error_model`.
_TOP = (
    "library", "model", "scale", "layers", "energy", "run", "validation", "corrections",
    "budget",
)  # fmt: skip


@dataclass
class Assignment:
    """A parsed, validated assignment.yaml. `path`: the file it was read from (None: not
    read from disk), against whose folder a relative `library:` resolves."""

    layers: list[LayerChoice]
    library: str | None = None
    error_model: str | None = None
    scale: float | None = None
    energy: EnergySummary | None = None
    run: str | None = None
    validation: dict[str, Any] | None = None
    # the free corrections recorded (hwflow.assign.correct): method, batch-norm settings
    corrections: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None  # --max-loss: the validation figures relied on
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)
    raw: bytes = field(default=b"", compare=False, repr=False)  # the file's bytes as read

    @classmethod
    def from_dict(cls, doc: Any, source: str | os.PathLike[str] = "assignment") -> Assignment:
        """Validate a document (as `hwflow assign` builds it, or as read from `source`)."""
        if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list):
            raise AssignmentError(f"{source}: expected a mapping with a `layers:` list")
        layers: list[LayerChoice] = []
        seen: set[str] = set()
        for i, item in enumerate(doc["layers"]):
            where = f"{source}: layers[{i}]"
            layer = LayerChoice.from_dict(item, where)
            if layer.name in seen:
                raise AssignmentError(f"{where}: layer {layer.name} is assigned twice")
            seen.add(layer.name)
            layers.append(layer)
        for key, kinds in (("library", str), ("model", str), ("run", str)):
            if doc.get(key) is not None and not isinstance(doc[key], kinds):
                raise AssignmentError(f"{source}: {key}: expected a string, got {doc[key]!r}")
        energy = doc.get("energy")
        for key in ("validation", "corrections", "budget"):
            if doc.get(key) is not None and not isinstance(doc[key], dict):
                raise AssignmentError(f"{source}: {key}: expected a mapping")
        scale = doc.get("scale")
        if scale is not None and not _is_number(scale):
            raise AssignmentError(f"{source}: scale: expected a number, got {scale!r}")
        return cls(
            layers=layers,
            library=doc.get("library"),
            error_model=doc.get("model"),
            scale=scale,
            energy=None if energy is None else EnergySummary.from_dict(energy, source),
            run=doc.get("run"),
            validation=doc.get("validation"),
            corrections=doc.get("corrections"),
            budget=doc.get("budget"),
            extra={k: v for k, v in doc.items() if k not in _TOP},
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Assignment:
        """Read and validate `path` (AssignmentError/ConfigError naming file and key)."""
        path = Path(path)
        doc = read_yaml(path)
        out = cls.from_dict(doc, path)
        out.path, out.raw = path, path.read_bytes()
        return out

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically, keys in the documented order."""
        write_yaml(path, self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        values = {
            "library": self.library,
            "model": self.error_model,
            "scale": self.scale,
            "layers": [layer.to_dict() for layer in self.layers],
            "energy": None if self.energy is None else self.energy.to_dict(),
            "run": self.run,
            "validation": self.validation,
            "corrections": self.corrections,
            "budget": self.budget,
        }
        return {k: v for k, v in values.items() if v is not None} | self.extra

    def library_path(self, override: str | os.PathLike[str] | None = None) -> Path:
        """The library to read: `override` (a command-line --library, as given), else the
        recorded `library:`, a relative one taken relative to this file's folder (one
        rule for every stage, whatever the working directory)."""
        if override is not None:
            return Path(override)
        if not self.library:
            where = self.path or "assignment"
            raise AssignmentError(f"{where}: no `library:` recorded; pass --library")
        lib = Path(self.library)
        if not lib.is_absolute() and self.path is not None:
            lib = self.path.parent / lib
        return lib

    def multipliers(self) -> dict[str, str]:
        """{layer: multiplier}."""
        return {layer.name: layer.multiplier for layer in self.layers}
