"""YAML configs loaded into dataclasses, strictly.

`load_dataclass(cls, data)` walks a (nested) dataclass type and the safe_loaded YAML
together; an unknown key, a missing required key, a value of the wrong type or outside
its field's range (`ranged`) raises ConfigError naming the full key path (e.g.
`train.qat.lr: expected float, got 'fast'`, `qat.lr: must be > 0, got -1`).
`check_ranges` applies the same ranges to a config built in Python.
Stage configs (train, assign, export...) are dataclasses declared next to the stage
and loaded through here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from hwflow.errors import ConfigError
from hwflow.io import read_yaml

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Check `value` against annotation `tp`, converting where YAML is looser (int -> float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for alt in args:
            if alt is type(None):
                continue
            try:
                return _convert(alt, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return load_dataclass(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
            pairs = enumerate(zip(args, value, strict=True))
            return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in pairs)
        item = args[0] if args else Any
        out = [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        kt, vt = args or (Any, Any)
        return {_convert(kt, k, path): _convert(vt, v, f"{path}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if not math.isfinite(value):  # YAML's .nan / .inf would poison a run silently
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric config field may take (None: no bound on that side)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: Any, key: str) -> None:
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            return  # the type check names that; None is an optional field's "unset"
        ok = not (
            (self.ge is not None and not value >= self.ge)
            or (self.gt is not None and not value > self.gt)
            or (self.le is not None and not value <= self.le)
            or (self.lt is not None and not value < self.lt)
        )
        if not ok:
            raise ConfigError(f"{key}: must be {self}, got {value!r}")

    def __str__(self) -> str:
        parts = [
            f"{op} {bound:g}" if isinstance(bound, float) else f"{op} {bound}"
            for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if bound is not None
        ]
        return " and ".join(parts)


def ranged(default: Any, **bounds: float) -> Any:
    """A dataclass field whose value must lie in `Range(**bounds)` (checked on load and
    by `check_ranges`), e.g. `lr: float = ranged(0.05, gt=0)`."""
    return dataclasses.field(default=default, metadata={"range": Range(**bounds)})


def check_ranges(obj: Any, path: str = "") -> None:
    """Check every ranged field of dataclass `obj` and of the dataclasses it holds."""
    for f in dataclasses.fields(obj):
        key = f"{path}.{f.name}" if path else f.name
        value = getattr(obj, f.name)
        if "range" in f.metadata:
            f.metadata["range"].check(value, key)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_ranges(value, key)


def load_dataclass(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass `cls` from a mapping; every error names its key path."""
    where = path or "<top>"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise ConfigError(f"{key}: unknown key (allowed: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, field in fields.items():
        key = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], key)
            if "range" in field.metadata:
                field.metadata["range"].check(kwargs[name], key)
        elif (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING  # type: ignore[misc]
        ):
            raise ConfigError(f"{key}: required key is missing")
    return cls(**kwargs)


def load_config(cls: type[T], path: str | os.PathLike[str], required: Sequence[str] = ()) -> T:
    """Load YAML file `path` into dataclass `cls`; errors name the file and the key path.

    `required`: dotted key paths the file must spell out even where the dataclass has a
    default (an empty file must not quietly run on built-in defaults)."""
    data = read_yaml(path)
    try:
        cfg = load_dataclass(cls, data)
        for key in required:
            node = data
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise ConfigError(f"{key}: required key is missing")
                node = node[part]
        return cfg
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def dump_dataclass(obj: Any) -> Any:
    """A dataclass as plain YAML/JSON-ready data (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: dump_dataclass(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [dump_dataclass(v) for v in obj]
    if isinstance(obj, dict):
        return {k: dump_dataclass(v) for k, v in obj.items()}
    return obj
