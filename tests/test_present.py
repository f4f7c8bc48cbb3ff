"""Presentation: the one Pareto front, and figures drawn from what the stages wrote."""

from __future__ import annotations

import numpy as np

from hwflow.pareto import pareto_front
from hwflow.present.plots import study_pareto, sweep_pareto

PNG = b"\x89PNG\r\n\x1a\n"


def test_pareto_front_keeps_the_undominated_in_order_of_the_first_figure():
    assert pareto_front([(0, 90), (50, 95), (60, 80), (40, 94)]) == [1, 2]
    assert pareto_front([(1, 1), (1, 1), (0, 2)]) == [2, 0, 1]  # equal points both kept
    assert pareto_front([]) == []
    # lower is better: negate (the library figure and the study's homogeneous designs)
    err, energy = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 0.5, 0.6, 0.2])
    assert pareto_front(list(zip(-err, -energy, strict=True))) == [3, 1, 0]


def _sweep_row(point, kind, saved, acc, hist=""):
    return {
        "point": point, "kind": kind, "scale": 1.0, "reduction_pct": saved,
        "reduction_pct_hist": hist, "energy_model": "histogram" if hist != "" else "uniform",
        "acc_quant": 0.9, "acc_after_mean": acc, "acc_after_std": 0.01,
    }  # fmt: skip


def test_sweep_and_study_figures_are_drawn_from_their_rows(tmp_path):
    rows = [
        _sweep_row("scale-1", "heterogeneous", 40.0, 0.89, 45.0),
        _sweep_row("homog-u_a", "homogeneous", 30.0, 0.5, 20.0),  # far below: marked
    ]
    rows[1]["energy_model"] = ""
    assert sweep_pareto(rows, tmp_path / "s.png").read_bytes()[:8] == PNG
    row = {
        "point": "hetero-uniform-x1", "kind": "heterogeneous", "energy_model": "uniform",
        "gradient": "ste", "scale": 1.0, "acc_mean": 0.88, "acc_ci_low": 0.87,
        "acc_ci_high": 0.89, "saved_uniform_mean": 40.0, "saved_uniform_std": 1.0,
        "saved_recorded_mean": 45.0, "saved_recorded_std": 1.0,
    }  # fmt: skip
    result = {"rows": [row], "int8": {"mean": 0.9, "ci": [0.89, 0.91]}}
    assert study_pareto(result, tmp_path / "t.png").read_bytes()[:8] == PNG


def test_report_pages_render_paragraphs_tables_and_figures_from_templates(tmp_path):
    from hwflow.present.report import Section, Table, render

    png = tmp_path / "figures" / "a.png"
    png.parent.mkdir()
    png.write_bytes(PNG + b"rest")
    sections = [
        Section(
            "Accuracy",
            ["**bit-exact**: 1,000 checked <ok>", Table(["layer", "multiplier"], [["0", "`m`"]])],
            [(png, "Error table of `m`")],
        )
    ]
    md = render("report.md.j2", "hwflow report: x", sections, tmp_path)
    assert md == (
        "# hwflow report: x\n\n## Accuracy\n\n**bit-exact**: 1,000 checked <ok>\n\n"
        "| layer | multiplier |\n|---|---|\n| 0 | `m` |\n\n"
        "![Error table of `m`](figures/a.png)\n"
    )
    page = render("report.html.j2", "hwflow report: x", sections, tmp_path)
    assert "<p><b>bit-exact</b>: 1,000 checked &lt;ok&gt;</p>" in page
    assert "<th>multiplier</th>" in page and "<td><code>m</code></td>" in page
    assert (
        'src="data:image/png;base64,' in page
        and "<figcaption>Error table of <code>m</code>" in page
    )


def test_study_points_are_tagged_by_budget_or_scale():
    from hwflow.present.plots import _point_tag

    # a budget point's scale is seed 0's and differs by seed: its budget names it
    budget = {"point": "budget-uniform-3pp", "scale": 5.18736, "max_loss_pp": 3.0}
    assert _point_tag(budget | {"recovery_steps": 0}) == "3pp"
    assert _point_tag(budget | {"recovery_steps": 200}) == "3pp r200"
    assert _point_tag({"point": "hetero-histogram-x2", "scale": 2.0, "max_loss_pp": ""}) == "x2"


def test_p_values_print_readably_down_to_an_underflowed_zero():
    from hwflow.present.experiments import _p

    assert [_p(v) for v in (0.5, 0.0123, 3.7e-140, 0.0)] == ["0.5", "0.012", "3.7e-140", "< 1e-300"]
