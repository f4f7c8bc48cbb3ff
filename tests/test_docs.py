"""The documentation builds without a warning, and the README's links all resolve."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

from hwflow.cli import cli

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and MyST's heading anchors) give a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    fenced = False
    found = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6}\s+(.*)", line)):
            found.add(github_anchor(m.group(1)))
    return found


def broken_links(page: Path) -> list[str]:
    """Relative links of a Markdown page whose file, or heading anchor, does not exist."""
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    return broken


def test_readme_is_short_and_every_link_resolves():
    readme = ROOT / "README.md"
    assert len(readme.read_text(encoding="utf-8").splitlines()) <= 150
    assert not broken_links(readme)


def test_the_link_check_finds_missing_files_and_anchors(tmp_path):
    (tmp_path / "a.md").write_text("# A page\n\n## Two words\n", encoding="utf-8")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#two-words) [file](c.md) [anchor](a.md#three) ![img](x.png) "
        "[web](https://example.org/none)\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "c.md: no such file",
        "a.md#three: no heading with that anchor",
        "x.png: no such file",
    ]


def test_the_documentation_site_builds_without_a_warning(tmp_path):
    # -n -W: every warning (a broken cross-reference or anchor, a docstring that is not valid
    # markup, an import that breaks the architecture page's layers) fails the build.
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-n", "-W", "--keep-going", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    cli_page = (tmp_path / "html" / "reference" / "cli.html").read_text(encoding="utf-8")
    assert all(f'id="hwflow-{name}"' in cli_page for name in cli.commands)  # generated


def test_code_cites_no_tracker_numbers_and_no_files_outside_the_repository():
    cite = re.compile(r"\bissues? \d+|\b(?:TOOLCHAIN|DESIGN)\.md\b|\bdocs/INTERFACES\.md\b")
    folders = ("hwflow", "tests", "bench", "sim", "rtl_templates")
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in {".py", ".v", ".tmpl", ".cpp"} and path.name != "test_docs.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if cite.search(line)
    ]
    assert not found, "\n".join(found)


REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:hwflow|rtl_templates|sim|tests|bench|examples|docs)/[\w./-]*\w)"
)
DOTTED = re.compile(r"(?<![\w.])(hwflow(?:\.\w+)+)(?![\w*{])")


def stale_references(text: str) -> list[str]:
    """Repository files and hwflow names a page mentions that do not exist (any more)."""
    stale = [p for p in REPO_PATH.findall(text) if not (ROOT / p).exists()]
    for name in DOTTED.findall(text):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute, None)
        if obj is None:
            stale.append(name)
    return stale


def test_pages_name_only_files_and_python_names_that_exist():
    pages = [p for p in (ROOT / "docs").rglob("*.md") if "study" not in p.parts]
    stale = {
        str(page.relative_to(ROOT)): found
        for page in [ROOT / "README.md", *pages]
        if (
            found := stale_references(page.read_text(encoding="utf-8").replace("hwflow/_files", ""))
        )
    }
    assert not stale


def test_a_renamed_module_or_file_is_a_stale_reference():
    assert stale_references("`hwflow/io.py`, `hwflow.io.write_json`, hwflow.nn.layers") == []
    assert stale_references("see hwflow/gone.py and `hwflow.nosuch.thing`, hwflow.io.nope") == [
        "hwflow/gone.py",
        "hwflow.nosuch.thing",
        "hwflow.io.nope",
    ]


def test_the_layer_check_sees_every_spelling_of_an_import(tmp_path):
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        from hwflow_docs import import_graph
    finally:
        sys.path.remove(str(ROOT / "docs" / "_ext"))
    package = tmp_path / "hwflow"
    (package / "nn").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nn" / "__init__.py").write_text("import hwflow.io\n")
    (package / "low.py").write_text("from hwflow import io, nn\n")
    (package / "mid.py").write_text("def f():\n    from hwflow.nn.train import x\n")
    (package / "io.py").write_text("import os\n")
    assert import_graph(package) == {
        "nn/": {"io"}, "low": {"io", "nn/"}, "mid": {"nn/"}, "io": set(),
    }  # fmt: skip
