# Sphinx configuration for hwflow's documentation site (`make docs`).
#
# Sphinx, because it is what cocotb, Amaranth, hls4ml and FINN build their documentation
# with: the readers hwflow is for already know its layout, autodoc reads the API from the
# docstrings, sphinx-click generates the CLI reference from the click commands themselves,
# and MyST-Parser lets the pages stay Markdown. `make docs` builds with warnings as errors;
# tests/test_docs.py does the same in `make test`.

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document this checkout's hwflow, not an installed copy
sys.path.insert(0, str(DOCS / "_ext"))

project = "hwflow"
author = "the hwflow developers"
copyright = "the hwflow developers"  # noqa: A001 (Sphinx's name)

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx_click",
    "hwflow_docs",  # docs/_ext: the API pages and the import table, built from the code
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# docs/study and docs/assign hold files the study and sweep commands write; pages include
# or link them, they are not pages of their own.
exclude_patterns = ["_build", "study/*.md", "assign/*", "_ext", "README.md"]

myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 4  # `page.md#a-heading` links, as GitHub renders them

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # signatures show them; torch/numpy types would not resolve
# nitpicky (-n): every cross-reference must resolve, except the string annotations autodoc
# prints verbatim for dataclass fields (`from __future__ import annotations`)
nitpick_ignore_regex = [("py:class", r"[\'\"].*")]
autodoc_inherit_docstrings = False  # torch's own docstrings are torch's documentation
default_role = "code"  # docstrings write `name` for code, as in Markdown

html_theme = "alabaster"
html_title = "hwflow"
html_theme_options = {"description": "approximate multipliers, from netlist to bit-exact Verilog"}
