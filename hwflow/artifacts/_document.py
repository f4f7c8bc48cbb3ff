"""The read-only mapping view that JSON-document artifacts (manifest, verify report) share:
callers read them like the dictionaries they were, the class keeps them validated."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


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
