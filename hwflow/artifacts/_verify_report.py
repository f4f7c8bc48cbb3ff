"""`verify.json`: what `hwflow verify` found (written beside the export and by the demo).

The report is the dictionary `hwflow.rtl.verify.verify` returns: `ok`, `checked`,
`mismatches`, `layers`, `first_mismatch`, `net`, `multipliers` (the library cross-check),
`simulations`, `simulator`, timings, `lint`, `errors`.
"""

from __future__ import annotations

import os

from hwflow import io
from hwflow.artifacts._document import JsonDocument, document_path
from hwflow.errors import HwflowError, VerificationError

VERIFY_FILE = "verify.json"


class VerifyReport(JsonDocument):
    """A verify report, read like the JSON document it is."""

    @property
    def ok(self) -> bool:
        return bool(self._data["ok"])

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VerifyReport:
        """Read a report (`path`: the file, or the folder holding `verify.json`)."""
        path = document_path(path, VERIFY_FILE)
        try:
            data = io.read_json(path)
        except (HwflowError, UnicodeDecodeError, OSError) as exc:
            raise VerificationError(f"{path}: unreadable verify report ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
            raise VerificationError(f"{path}: not a verify report (no `ok`); verify again")
        for key in ("checked", "mismatches"):
            if not isinstance(data.get(key), int):
                raise VerificationError(f"{path}: `{key}` missing or not an integer")
        if not isinstance(data.get("layers"), list):
            raise VerificationError(f"{path}: `layers` missing or not a list")
        return cls(data)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the report to `path` (a file, or a folder: its `verify.json`)."""
        io.write_json(document_path(path, VERIFY_FILE), self._data)
