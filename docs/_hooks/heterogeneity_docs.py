"""MkDocs hook for the heterogeneity docs: docstring markup, citation keys, optional pages.

mkdocstrings renders docstrings as Markdown. The package's docstrings use Google sections with a
few reStructuredText habits, which Markdown would mangle; this hook adds one Markdown extension
(to every Markdown instance, the ones mkdocstrings renders docstrings with included) that:

* turns reStructuredText simple tables (``=====  =====`` borders) into Markdown tables;
* turns ``.. math::`` blocks into ``$$ ... $$`` and ``:math:`x``` into ``$x$`` (rendered by
  pymdownx.arithmatex and MathJax);
* turns a doctest (a paragraph of ``>>>`` lines and their output, as doctest and Sphinx read it)
  into a fenced ``pycon`` code block; unconverted, ``>>>`` renders as nested block quotes and an
  output such as ``[-1. -1.] [-1. -1.]`` parses as a Markdown reference link;
* keeps citation keys literal. Docstrings cite works as ``[Zhang24, App. C.2]`` with the keys of
  REFERENCES.md, and in Markdown two adjacent citations, ``[Zhang24, App. C.2] [Ubaru17]``, parse
  as one reference-style link (text "Zhang24, App. C.2", target "Ubaru17"): the second citation
  vanishes and mkdocs-autorefs warns. The brackets of any ``[Key...]`` whose key REFERENCES.md
  lists are escaped. Code (spans, fences, indented blocks, doctests) is left alone.

It also adds an Experiments page, including EXPERIMENTS.md, when (and only when) the repo has one:
pymdownx.snippets runs with ``check_paths: true`` so that a missing REFERENCES.md or BENCHMARKS.md
fails the build, which rules out a static page for an optional file. A root file that links into
``docs/`` (EXPERIMENTS.md's figures) is copied in with those links made relative to the page.
"""
from __future__ import annotations

import re
from pathlib import Path

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

_OPTIONAL = {"experiments.md": ("Experiments", "EXPERIMENTS.md")}
_KEY_DEFINITION = re.compile(r"^\|\s*`\[([^\]\s,;]+)\]`", re.MULTILINE)
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_MATH_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<rest>.*)$")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_DOCTEST = re.compile(r"^(?P<indent> {0,3})>>>")
_CODE_LINE = re.compile(r"^( {4}|\t|\s*>>>)")
_CODE_SPAN_OR_PIPE = re.compile(r"(`+).+?(?<!`)\1(?!`)|\|")
_TABLE_BORDER = re.compile(r"^(?P<indent>[ \t]*)=+(?:[ \t]+=+)+[ \t]*$")


def _escape_pipe(m: re.Match) -> str:
    return m.group(0) if m.group(1) else "\\|"


def _simple_table(lines: list[str], i: int) -> tuple[list[str], int] | None:
    """The reStructuredText simple table starting at ``lines[i]`` as a Markdown table, and the
    index after it; None if ``lines[i]`` does not start one."""
    top = _TABLE_BORDER.match(lines[i])
    if not top:
        return None
    starts = [m.start() for m in re.finditer(r"=+", lines[i])]
    rows, borders, j = [], [], i + 1
    while j < len(lines):
        line = lines[j]
        if _TABLE_BORDER.match(line):
            borders.append(len(rows))
            j += 1
            if j == len(lines) or not lines[j].strip():
                break
            continue
        if line.strip():
            cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [len(line)])]
            if rows and not cells[0] and len(rows) not in borders:  # continuation of the row above
                rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells)]
            else:
                rows.append(cells)
        j += 1
    else:
        return None  # no closing border: not a table
    header = rows[: borders[0]] if len(borders) > 1 else []
    header = header[0] if len(header) == 1 else [""] * len(starts)
    body = rows[borders[0]:] if len(borders) > 1 else rows
    indent = top.group("indent")

    def row(cells):  # a "|" inside a code span does not split a Markdown table cell
        return indent + "| " + " | ".join(_CODE_SPAN_OR_PIPE.sub(_escape_pipe, c) for c in cells) + " |"

    return ["", row(header), indent + "|" + "---|" * len(starts), *map(row, body), ""], j


def citation_keys(references: Path) -> frozenset[str]:
    """The keys REFERENCES.md defines: the `` `[Key]` `` in the first cell of its table rows."""
    return frozenset(_KEY_DEFINITION.findall(references.read_text(encoding="utf-8")))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


class _RestructuredBits(Preprocessor):
    """Simple tables, ``.. math::`` blocks, ``:math:`` roles and doctests, outside fenced code."""

    def run(self, lines):
        out, i, fence = [], 0, None
        while i < len(lines):
            line = lines[i]
            marker = _FENCE.match(line)
            if fence is not None:
                if marker and marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence):
                    fence = None
                out.append(line)
                i += 1
                continue
            if marker:
                fence = marker.group(1)
                out.append(line)
                i += 1
                continue
            table = _simple_table(lines, i)
            if table:
                converted, i = table
                out += converted
                continue
            math = _MATH_DIRECTIVE.match(line)
            if math:
                # As in reStructuredText: the content is every following line that is blank or
                # indented deeper than the directive.
                indent, body, i = math.group("indent"), [math.group("rest")], i + 1
                while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(indent)):
                    body.append(lines[i])
                    i += 1
                body = [b.strip() for b in body if b.strip()]
                out += ["", indent + "$$", *(indent + b for b in body), indent + "$$", ""]
                continue
            doctest = _DOCTEST.match(line)
            if doctest:
                indent = doctest.group("indent")
                block = []
                while i < len(lines) and lines[i].strip():
                    block.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
                    i += 1
                out += ["", indent + "```pycon", *(indent + b for b in block), indent + "```", ""]
                continue
            out.append(line if _CODE_LINE.match(line) else _MATH_ROLE.sub(r"$\1$", line))
            i += 1
        return out


class _EscapeCitations(Preprocessor):
    def __init__(self, md, keys):
        super().__init__(md)
        keys = "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
        # A code span (left as is) or a citation [Key] / [Key, where] / [Key; Key2, where].
        self._pattern = re.compile(r"(`+)(?:.+?)(?<!`)\1(?!`)|\[((?:" + keys + r")\b[^\[\]\n]*)\]")

    def _escape(self, m):
        return m.group(0) if m.group(1) else r"\[" + m.group(2) + r"\]"

    def run(self, lines):
        # Indented code blocks and doctest lines are code: left as is.
        return [line if _CODE_LINE.match(line) else self._pattern.sub(self._escape, line) for line in lines]


class DocstringMarkupExtension(Extension):
    """The Markdown extension described in the module docstring; ``keys``: the citation keys."""

    def __init__(self, keys=frozenset()):
        super().__init__()
        self._keys = frozenset(keys)

    def extendMarkdown(self, md):
        # After pymdownx.snippets (32) has included files, before the fences (superfences 25 or
        # fenced_code 25) are parsed, so that the doctest fences made here are code blocks.
        md.preprocessors.register(_RestructuredBits(md), "heterogeneity_rst", 29)
        if self._keys:
            # After the fences have been stashed, before anything parses links.
            md.preprocessors.register(_EscapeCitations(md, self._keys), "heterogeneity_citations", 20)


def _root(config) -> Path:
    return Path(config.config_file_path).parent


def _present(config) -> dict[str, tuple[str, str]]:
    return {page: (title, src) for page, (title, src) in _OPTIONAL.items() if (_root(config) / src).is_file()}


@event_priority(100)  # before mkdocstrings reads the Markdown extensions
def on_config(config):
    config.markdown_extensions.append(DocstringMarkupExtension(citation_keys(_root(config) / "REFERENCES.md")))
    for page, (title, _) in _present(config).items():
        config.nav.append({title: page})
    return config


def on_files(files, config):
    for page, (_, src) in _present(config).items():
        text = (_root(config) / src).read_text(encoding="utf-8")
        if "](docs/" in text:  # a root file's links into docs/ (its figures), relative to the generated page instead
            files.append(File.generated(config, page, content=text.replace("](docs/", "](")))
        else:
            files.append(File.generated(config, page, content=f'--8<-- "{src}"\n'))
    return files
