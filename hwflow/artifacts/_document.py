"""The read-only mapping view that JSON-document artifacts (manifest, verify report) share:
callers read them like the dictionaries they were, the class keeps them validated."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

from hwflow import io


class JsonDocument(Mapping[str, Any]):
    """A validated JSON document, read like the dictionary it is."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def to_dict(self) -> dict[str, Any]:
        return self._data


def document_path(path: str | os.PathLike[str], name: str) -> Path:
    """`path` itself, or the file `name` in it when `path` is a folder."""
    path = Path(path)
    return path / name if path.is_dir() else path


class RunDocument(JsonDocument):
    """A JSON document a stage writes into a run under the name `FILE`: `from_dict`
    checks what later stages read; `load` and `save` are the one reader and writer."""

    FILE: ClassVar[str]

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike[str]) -> Self:
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read and check `path` (the file, or the run folder holding `FILE`)."""
        path = document_path(path, cls.FILE)
        return cls.from_dict(io.read_json(path), path)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the document to the file `path`, atomically."""
        io.write_json(path, self._data)
