"""Typed stage artifacts: each file a stage hands to the next has one class here, with the
one `load` (validated once: errors name the file and key) and the one `save` (atomic).
No other module reads or writes these files.

- `Assignment`, `LayerChoice`, `EnergySummary`: assignment.yaml (`hwflow assign`, sweep and
  study points; its `energy:` block).
- `RunSummary`, `SummaryLayer`: RUN/summary.json (`hwflow train`).
- `Manifest`: an export's manifest.json (`hwflow export`; `hwflow verify` checks it).
- `VerifyReport`: verify.json (`hwflow verify`, the demo).
"""

from hwflow.artifacts._assignment import ASSIGNMENT_FILE, Assignment, LayerChoice
from hwflow.artifacts._energy import EnergySummary
from hwflow.artifacts._manifest import MANIFEST_FILE, Manifest
from hwflow.artifacts._run_summary import SUMMARY_FILE, RunSummary, SummaryLayer
from hwflow.artifacts._verify_report import VERIFY_FILE, VerifyReport

__all__ = [
    "ASSIGNMENT_FILE",
    "MANIFEST_FILE",
    "SUMMARY_FILE",
    "VERIFY_FILE",
    "Assignment",
    "EnergySummary",
    "LayerChoice",
    "Manifest",
    "RunSummary",
    "SummaryLayer",
    "VerifyReport",
]
