"""Typed stage artifacts: each file a stage hands to the next has one class here, with the
one `load` (validated once: errors name the file and key) and the one `save` (atomic).
No other module reads or writes these files.

- `Assignment`, `LayerChoice`, `EnergySummary`: assignment.yaml (`hwflow assign`, sweep and
  study points; its `energy:` block).
- `RunSummary`, `SummaryLayer`: RUN/summary.json (`hwflow train`).
- `Manifest`: an export's manifest.json (`hwflow export`; `hwflow verify` checks it).
- `VerifyReport`: verify.json (`hwflow verify`, the demo).
- `RetrainResult`: RUN/retrain.json (`hwflow retrain`; sweep and study points per seed).
- `ValidationReport`: RUN/validation.json (the demo's error model vs measurement).
"""

from hwflow.artifacts._assignment import ASSIGNMENT_FILE, Assignment, LayerChoice
from hwflow.artifacts._energy import EnergySummary
from hwflow.artifacts._manifest import MANIFEST_FILE, Manifest
from hwflow.artifacts._retrain_result import RETRAIN_FILE, RetrainResult
from hwflow.artifacts._run_summary import SUMMARY_FILE, RunSummary, SummaryLayer
from hwflow.artifacts._validation_report import VALIDATION_FILE, ValidationReport
from hwflow.artifacts._verify_report import VERIFY_FILE, VerifyReport

__all__ = [
    "ASSIGNMENT_FILE",
    "MANIFEST_FILE",
    "RETRAIN_FILE",
    "SUMMARY_FILE",
    "VALIDATION_FILE",
    "VERIFY_FILE",
    "Assignment",
    "EnergySummary",
    "LayerChoice",
    "Manifest",
    "RetrainResult",
    "RunSummary",
    "SummaryLayer",
    "ValidationReport",
    "VerifyReport",
]
