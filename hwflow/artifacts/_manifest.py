"""`manifest.json` of an export: what the design holds and how it is checked.

An export may come from anyone, so everything `hwflow verify` takes from the manifest is
checked here once: names that end up in Verilog (harness, ports, modules) are plain
identifiers, paths stay inside the export, counts are non-negative integers. The
exported checker (`tb/hwflow_check.py`, plain Python for users without hwflow) reads the
same file on its own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from hwflow import io
from hwflow.artifacts._document import JsonDocument
from hwflow.errors import HwflowError, VerificationError

MANIFEST_FILE = "manifest.json"
# 2: separate simulations (engines, network). The exported checker (`hwflow.rtl.check`,
# plain Python without hwflow) holds the same number as its FORMAT.
FORMAT = 2
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_PARTS = ("layers", "net")


class Manifest(JsonDocument):
    """A validated export manifest, read like the JSON document it is."""

    @classmethod
    def load(cls, export_dir: str | os.PathLike[str]) -> Manifest:
        """Read and check `export_dir/manifest.json` (VerificationError naming the key)."""
        path = Path(export_dir) / MANIFEST_FILE
        if not path.is_file():
            raise VerificationError(
                f"{path}: not found (is {export_dir} an `hwflow export` directory?)"
            )
        try:
            data = io.read_json(path)
        except (HwflowError, UnicodeDecodeError) as exc:
            raise VerificationError(f"{path}: unreadable ({exc})") from None
        if not isinstance(data, dict):
            raise VerificationError(f"{path}: not a JSON object; export the design again")
        if data.get("format") != FORMAT:
            raise VerificationError(
                f"{path}: export format {data.get('format')!r}, this hwflow reads format "
                f"{FORMAT}; export the design again"
            )
        _check_document(data, _Where(str(path)))
        return cls(data)

    def save(self, export_dir: str | os.PathLike[str]) -> None:
        io.write_json(Path(export_dir) / MANIFEST_FILE, self._data)


class _Where:
    """Builds `file: key.path: problem` messages."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> VerificationError:
        return VerificationError(
            f"{self.path}: `{key}` {problem}; export the design again with `hwflow export`"
        )

    def get(self, obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            raise self.fail(where, "is missing")
        value = obj[key]
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is int)
        if not ok:
            raise self.fail(where, f"has the wrong type ({type(value).__name__})")
        return value

    def count(self, obj: Any, key: str, where: str, minimum: int = 0) -> int:
        value = self.get(obj, key, int, where)
        if value < minimum:
            raise self.fail(where, f"must be >= {minimum}, got {value}")
        return value

    def name(self, obj: Any, key: str, where: str) -> str:
        value = self.get(obj, key, str, where)
        if not _IDENTIFIER.match(value):
            raise self.fail(where, f"is not a plain Verilog identifier: {value[:60]!r}")
        return value

    def relpath(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, "must be a path string")
        parts = value.split("/")
        if value.startswith("/") or "\\" in value or any(p in ("", ".", "..") for p in parts):
            raise self.fail(where, f"is not a plain path inside the export: {value[:60]!r}")
        return value


def _check_document(data: dict[str, Any], w: _Where) -> None:
    w.name(data, "top", "top")
    w.name(data, "test_module", "test_module")
    w.count(data, "latency", "latency")
    for i, rel in enumerate(w.get(data, "sources", list, "sources")):
        w.relpath(rel, f"sources[{i}]")
    for rel, digest in w.get(data, "files", dict, "files").items():
        w.relpath(rel, f"files[{rel!r}]")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise w.fail(f"files[{rel!r}]", "is not a sha256 hex digest")
    sims = w.get(data, "simulations", list, "simulations")
    if not sims:
        raise w.fail("simulations", "is empty")
    for i, sim in enumerate(sims):
        key = f"simulations[{i}]"
        if w.get(sim, "name", str, f"{key}.name") not in _PARTS:
            raise w.fail(f"{key}.name", f"must be one of {', '.join(_PARTS)}")
        w.name(sim, "harness", f"{key}.harness")
        w.count(sim, "cycles", f"{key}.cycles")
        for j, rel in enumerate(w.get(sim, "sources", list, f"{key}.sources")):
            w.relpath(rel, f"{key}.sources[{j}]")
    for i, mult in enumerate(w.get(data, "multipliers", list, "multipliers")):
        key = f"multipliers[{i}]"
        w.get(mult, "name", str, f"{key}.name")
        w.name(mult, "module", f"{key}.module")
        w.relpath(w.get(mult, "file", str, f"{key}.file"), f"{key}.file")
        if not _SHA256.match(w.get(mult, "sha256", str, f"{key}.sha256")):
            raise w.fail(f"{key}.sha256", "is not a sha256 hex digest")
    for i, layer in enumerate(w.get(data, "layers", list, "layers")):
        _check_layer(layer, f"layers[{i}]", w)
    if data.get("net") is not None:
        _check_net(data["net"], w)


def _check_layer(layer: Any, key: str, w: _Where) -> None:
    if not w.get(layer, "layer", str, f"{key}.layer").isprintable():  # it lands in a comment
        raise w.fail(f"{key}.layer", "holds control characters")
    w.get(layer, "multiplier", str, f"{key}.multiplier")
    w.name(layer, "port", f"{key}.port")
    w.name(layer, "module", f"{key}.module")
    w.get(layer, "signed", bool, f"{key}.signed")
    for field in ("lanes", "fan_in", "jobs", "passes", "acc_width"):
        w.count(layer, field, f"{key}.{field}", minimum=1)
    shape = w.get(layer, "shape", list, f"{key}.shape")
    if len(shape) != 3 or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise w.fail(f"{key}.shape", "must be three non-negative integers")
    for stage in ("requant", "argmax"):
        if layer.get(stage) is not None:
            w.count(layer[stage], "offset_width", f"{key}.{stage}.offset_width", minimum=1)
    if layer.get("argmax") is not None:
        w.count(layer["argmax"], "classes", f"{key}.argmax.classes", minimum=1)
    rows = layer.get("row_ids")
    if rows is not None and not (
        isinstance(rows, list) and all(isinstance(r, int) and r >= 0 for r in rows)
    ):
        raise w.fail(f"{key}.row_ids", "must be a list of non-negative integers")


def _check_net(net: Any, w: _Where) -> None:
    w.name(net, "module", "net.module")
    for field in ("images", "pixels", "cycles", "acc_bits", "word_bits", "addr_bits"):
        w.count(net, field, f"net.{field}", minimum=1)
    for i, buffer in enumerate(w.get(net, "buffers", list, "net.buffers")):
        w.get(buffer, "signed", bool, f"net.buffers[{i}].signed")
        w.get(buffer, "tensor", str, f"net.buffers[{i}].tensor")
    for i, stage in enumerate(w.get(net, "stages", list, "net.stages")):
        w.get(stage, "name", str, f"net.stages[{i}].name")
        if w.get(stage, "kind", str, f"net.stages[{i}].kind") == "mac":
            w.count(stage, "acc_width", f"net.stages[{i}].acc_width", minimum=1)
