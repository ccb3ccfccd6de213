"""The documentation site builds with `mkdocs build --strict` and documents every public name.

The API pages are rendered from the docstrings by mkdocstrings (griffe, Google style), so a
documented parameter that does not exist, a malformed section or a broken cross-reference is a
build warning, and ``--strict`` makes it an error. One build (~5 s) serves both tests.
"""
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="mkdocs is not installed (it is in the dev extra: pip install -e '.[dev]')")
pytest.importorskip("mkdocstrings_handlers.python",
                    reason="mkdocstrings[python] is not installed (it is in the dev extra: pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[1]
# Each public module and its API page, as in mkdocs.yml's nav.
API_PAGES = {
    "partition": "api/partition.md",
    "tree": "api/tree.md",
    "curvature": "api/curvature.md",
    "optim": "api/optim.md",
    "metrics": "api/metrics.md",
    "models": "api/models.md",
    "problems": "api/problems.md",
    "data": "api/data.md",
    "experiment": "api/experiment.md",
}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # no __pycache__ next to the docs hook
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return proc, site


def test_mkdocs_build_strict(build):
    proc, _ = build
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if line.startswith(("WARNING", "ERROR")) or "Aborted" in line or "Error" in line]
    assert proc.returncode == 0, (
        f"mkdocs build --strict exited {proc.returncode} with {len(problems)} problem line(s):\n"
        + "\n".join(problems) + "\n--- full stderr tail ---\n" + proc.stderr[-3000:])


def _page_html(site: Path, page: str) -> str:
    html = site / page.removesuffix(".md") / "index.html"
    assert html.is_file(), f"{html} was not built (see test_mkdocs_build_strict)"
    return html.read_text(encoding="utf-8")


def _is_external(obj) -> bool:
    """A function or class defined outside the package (re-exported, e.g. Optax's own)."""
    module = getattr(obj, "__module__", None) if callable(obj) else None
    return isinstance(module, str) and module.split(".")[0] != "heterogeneity"


@pytest.mark.parametrize("name", sorted(API_PAGES))
def test_api_page_lists_every_public_name(build, name):
    _, site = build
    module = importlib.import_module(f"heterogeneity.{name}")
    html = _page_html(site, API_PAGES[name])
    anchors = set(re.findall(r'id="heterogeneity\.' + name + r'\.([A-Za-z_][A-Za-z_0-9]*)"', html))
    text = re.sub(r"<[^>]+>", "", html)
    missing = []
    for public in module.__all__:
        if _is_external(getattr(module, public)):
            # Re-exported from another library: the page must at least say so by name.
            if not re.search(rf"\b{re.escape(public)}\b", text):
                missing.append(f"{public} (re-exported from {getattr(module, public).__module__}; "
                               f"mention it in docs/{API_PAGES[name]})")
        elif public not in anchors:
            missing.append(public)
    assert not missing, (
        f"heterogeneity.{name}.__all__ names not rendered on docs/{API_PAGES[name]}: {missing}. "
        "griffe drops a re-export it cannot resolve statically (a name imported from a module that "
        "no longer defines it, or a runtime-only assignment).")


def _markup():
    """A Markdown converter with the site's docstring-markup extension (docs/_hooks)."""
    hooks = str(ROOT / "docs" / "_hooks")
    sys.path.insert(0, hooks)
    try:
        import markdown

        from heterogeneity_docs import DocstringMarkupExtension, citation_keys
    finally:
        sys.path.remove(hooks)
    keys = citation_keys(ROOT / "REFERENCES.md")
    assert {"Zhang24", "Tomihari25", "Xie24", "SignMomentum25"} <= keys
    extension = DocstringMarkupExtension(keys)
    # The extensions and settings of mkdocs.yml that the markup interacts with.
    return markdown, markdown.Markdown(
        extensions=["tables", "pymdownx.highlight", "pymdownx.superfences", "pymdownx.arithmatex", extension],
        extension_configs={"pymdownx.highlight": {"use_pygments": False}, "pymdownx.arithmatex": {"generic": True}})


def test_citation_keys_stay_literal():
    """Adjacent citations such as ``[Zhang24, App. C.2] [Xie24]`` are text, not a Markdown link."""
    markdown, md = _markup()
    source = "Blocks [Zhang24, App. C.2] [Xie24]; code `x[Zhang24]`.\n\n[xie24]: https://example.org\n"
    assert md.convert(source) == "<p>Blocks [Zhang24, App. C.2] [Xie24]; code <code>x[Zhang24]</code>.</p>"
    assert "<a" in markdown.Markdown().convert(source)  # plain Markdown makes the pair a link


def test_rst_math_and_doctests_render():
    _, md = _markup()
    html = md.convert(".. math::\n\n    v_t = \\beta v_{t-1}\n\nThen :math:`R \\in O(d)`.\n\n"
                      ">>> print([1.0, -1.0])\n[1.0, -1.0]\n")
    assert '<div class="arithmatex">\\[\nv_t = \\beta v_{t-1}\n\\]</div>' in html, html
    assert '<span class="arithmatex">\\(R \\in O(d)\\)</span>' in html, html
    assert '<code class="language-pycon">&gt;&gt;&gt; print([1.0, -1.0])\n[1.0, -1.0]</code>' in html, html
    assert "<blockquote>" not in html and "<a" not in html, html


def test_rst_simple_table_renders():
    _, md = _markup()
    html = md.convert("===  ==========  =====\nname what        ref\n===  ==========  =====\n"
                      "mlp  ``a|b`` c   [Xie24]\n     continued\ngpt  d           e|f\n===  ==========  =====\n")
    assert html.count("<tr>") == 3 and "<th>name</th>" in html, html
    assert "<td><code>a|b</code> c continued</td>" in html and "<td>e|f</td>" in html, html
