"""Pages built from hwflow's code at documentation time, so they cannot go stale.

- ``hwflow-api``: one section per hwflow package with every module's docstring and public
  members (autodoc), found by walking the package, so a new module appears by itself.
- ``hwflow-imports``: the table of which hwflow parts import which, read from the sources
  with ``ast`` (module-level and deferred imports alike), checked against the layers the
  directive's content declares: an import that points up, or a part with no layer, is a
  build warning, and the docs build fails on warnings.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections import defaultdict
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

PACKAGE = Path(__file__).resolve().parents[2] / "hwflow"
logger = logging.getLogger(__name__)


def modules(package: Path = PACKAGE) -> dict[str, list[str]]:
    """Module names per part: "hwflow" for the top-level modules, else the subpackage."""
    parts: dict[str, list[str]] = defaultdict(list)
    for info in pkgutil.walk_packages([str(package)], prefix="hwflow."):
        name = info.name
        if name.rsplit(".", 1)[-1].startswith("_") and not info.ispkg:
            continue  # private helpers (_cells, _table_kernel...) are not API
        if name.split(".")[1].startswith("_"):
            continue  # hwflow._files: testbenches and templates, not Python API
        part = name.split(".")[1] if (package / name.split(".")[1]).is_dir() else "hwflow"
        parts[part].append(name)
    return dict(parts)


class ApiDirective(SphinxDirective):
    """Every hwflow module's docstring and members, one section per package."""

    def run(self) -> list[nodes.Node]:
        lines: list[str] = []
        for part, names in sorted(modules().items(), key=lambda kv: (kv[0] != "hwflow", kv)):
            title = "hwflow (top-level modules)" if part == "hwflow" else f"hwflow.{part}"
            lines += [title, "-" * len(title), ""]
            for name in sorted(names, key=lambda n: (n.count("."), n)):
                if name == "hwflow.cli":
                    continue  # the CLI reference documents the commands
                members = ["   :members:"]
                if name == f"hwflow.{part}":
                    members = (
                        [f"   :members: {', '.join(n)}"] if (n := private_exports(name)) else []
                    )
                lines += [f".. automodule:: {name}", *members, ""]
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, "hwflow-api"), container)
        return container.children


def private_exports(package: str) -> list[str]:
    """The names a package re-exports from its private modules (`hwflow.artifacts._x`):
    documented with the package. Names from public modules are documented there, once."""
    module = importlib.import_module(package)
    return [
        name
        for name in getattr(module, "__all__", [])
        if getattr(getattr(module, name), "__module__", "").rsplit(".", 1)[-1].startswith("_")
    ]


def part_of(module: str) -> str:
    """`hwflow.nn.train` -> "nn/", `hwflow.io` -> "io", "hwflow" -> "hwflow"."""
    pieces = module.split(".")
    if len(pieces) == 1:
        return "hwflow"
    return pieces[1] + "/" if (PACKAGE / pieces[1]).is_dir() else pieces[1]


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Which parts each part imports (hwflow's own; every import statement counts)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in package.rglob("*.py"):
        relative = path.relative_to(package.parent).with_suffix("")
        module = ".".join(p for p in relative.parts if p != "__init__")
        source = part_of(module)
        graph[source]  # noqa: B018 (a part that imports nothing of hwflow still appears)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "hwflow":
                targets = [f"hwflow.{a.name}" for a in node.names]  # `from hwflow import io`
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
            else:
                continue
            for target in targets:
                if target.startswith("hwflow.") and part_of(target) != source:
                    graph[source].add(part_of(target))
    graph.pop("hwflow", None)  # the package file itself holds only the version
    graph.pop("_files/", None)  # testbenches and templates, copied into a wheel
    return graph


def summary(part: str, package: Path = PACKAGE) -> str | None:
    """The first paragraph of a part's docstring (its package file or its module)."""
    name = part.rstrip("/")
    path = package / name / "__init__.py" if part.endswith("/") else package / f"{name}.py"
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    return " ".join(doc.split("\n\n")[0].split()) if doc else None


class ImportsDirective(SphinxDirective):
    """Content: one line per layer, lowest first, `layer name: part, part, ...`. Renders a
    Markdown table (the page is MyST) of every part: layer, docstring summary, imports."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        layers: dict[str, int] = {}
        names: list[str] = []
        for number, line in enumerate(self.content):
            label, _, parts = line.partition(":")
            names.append(label.strip())
            for part in parts.split(","):
                if part.strip():
                    layers[part.strip()] = number
        graph = import_graph()
        where = f"{self.env.docname}.md"
        lines = ["| part | layer | what it holds | imports (of hwflow) |", "|---|---|---|---|"]
        for part in sorted(graph, key=lambda p: (layers.get(p, len(names)), p)):
            if part not in layers:
                logger.warning(f"hwflow/{part} has no layer in the hwflow-imports list of {where}")
            for target in sorted(graph[part]):
                if layers.get(target, len(names)) >= layers.get(part, -1):
                    logger.warning(f"{part} imports {target}, not a lower layer ({where})")
            text = summary(part)
            if text is None:
                logger.warning(f"hwflow/{part} has no docstring to say what it holds ({where})")
            imports = ", ".join(f"`{t}`" for t in sorted(graph[part])) or "nothing"
            layer = names[layers[part]] if part in layers else "(not placed)"
            cells = (f"`{part}`", layer, (text or "").replace("|", "\\|"), imports)
            lines.append("| " + " | ".join(cells) + " |")
        container = nodes.container()
        self.state.nested_parse(StringList(lines, where), self.content_offset, container)
        return container.children


_LITERAL = re.compile(r"(`[^`]*`)")
_LIST_ITEM = re.compile(r"\s*(?:[-*+]|\d+\.)\s+")
_TRAILING_UNDERSCORE = re.compile(r"(?<=\w)_(?=[\s,.;:)/]|$)")


def plain_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """hwflow's docstrings are plain text with `code` in backticks and ``` fences, not
    reStructuredText: keep `|x|` and `name_` literal, turn fences into literal blocks, and
    give every list item and every change of indentation (but a list item's continuation)
    its blank line, so an indented block reads as a block instead of a markup error."""
    pieces = _LITERAL.split("\n".join(lines))
    for i in range(0, len(pieces), 2):
        pieces[i] = _TRAILING_UNDERSCORE.sub(r"\\_", pieces[i].replace("|", "\\|"))
    fixed: list[str] = []
    previous_indent = None
    item_text = None  # where the text of the current list item starts: its continuation
    fenced = False
    for line in "".join(pieces).split("\n"):
        if line.strip().startswith("```"):
            fenced = not fenced
            fixed += ["::", ""] if fenced else [""]
            continue
        if fenced:
            fixed.append("    " + line)
            continue
        indent = len(line) - len(line.lstrip()) if line.strip() else None
        if indent is not None:
            item = _LIST_ITEM.match(line)
            if item or item_text is not None:  # a list starts, goes on or ends here
                blank = item or indent != item_text
            else:
                blank = previous_indent is not None and indent != previous_indent
            if blank and fixed and fixed[-1]:
                fixed.append("")
            item_text = item.end() if item else (item_text if indent == item_text else None)
            previous_indent = indent
        fixed.append(line)
    lines[:] = fixed


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("autodoc-process-docstring", plain_docstring)
    app.add_directive("hwflow-api", ApiDirective)
    app.add_directive("hwflow-imports", ImportsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
