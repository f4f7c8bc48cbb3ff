"""The files an experiment's results are shown in, drawn after the experiment ran."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hwflow.io import write_text
from hwflow.present.plots import study_pareto, sweep_pareto
from hwflow.present.tables import study_markdown


def render_sweep(rows: list[dict], out: str | os.PathLike[str]) -> Path:
    """`OUT/pareto.png` of a sweep's rows (as `sweep_run` returned them)."""
    return sweep_pareto(rows, Path(out) / "pareto.png")


def render_study(result: dict[str, Any], out: str | os.PathLike[str]) -> str:
    """`OUT/study.md` and `OUT/pareto.png` of a study's result (study.json); returns the
    markdown."""
    text = study_markdown(result)
    write_text(Path(out) / "study.md", text)
    study_pareto(result, Path(out) / "pareto.png")
    return text
