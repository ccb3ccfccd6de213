"""The README's Python code runs as written.

Every ```python fenced block of README.md is executed, in README order, in one fresh Python
subprocess with one shared namespace (as a reader pasting them into one session: a later block
may use the names an earlier one defined). Each block is compiled under the file name
``README.md:<line>``, so a traceback points at the README line that failed, and the driver
names the failing block. A block preceded by the HTML comment ``<!-- skip-test -->`` (only
blank lines between them) is not run: keep that for shell-like or long-running snippets.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP_MARKER = "<!-- skip-test -->"
TIMEOUT_S = 600  # the subprocess is killed (and the test fails) after this long

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")


class Block(NamedTuple):
    line: int  # 1-based README line of the first code line (the line after the opening fence)
    source: str
    skip: bool


def python_blocks(text: str) -> list[Block]:
    """Every fenced block whose info string starts with ``python`` (``py`` too), in order.

    A fence closes on a line of the same character, at least as long as the opening one (CommonMark);
    an unclosed block runs to the end of the text, as Markdown renders it.
    """
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m["fence"], (m["info"].strip().split() or [""])[0].lower()
        j = i + 1
        while j < len(lines):
            close = _FENCE.match(lines[j])
            if close and close["fence"][0] == fence[0] and len(close["fence"]) >= len(fence) and not close["info"].strip():
                break
            j += 1
        if lang in ("python", "py", "python3"):
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            skip = k >= 0 and lines[k].strip() == SKIP_MARKER
            body = "\n".join(line[len(m["indent"]):] if line.startswith(m["indent"]) else line.lstrip()
                             for line in lines[i + 1:j])
            blocks.append(Block(i + 2, textwrap.dedent(body) + "\n", skip))
        i = j + 1
    return blocks


# Runs the blocks in one namespace; on the first failure prints which block and exits 1.
_DRIVER = """\
import sys, time, traceback
blocks = {blocks!r}
namespace = {{"__name__": "__main__"}}
for number, (line, source) in enumerate(blocks, 1):
    print(f"--- README block {{number}} of {{len(blocks)}} (README.md line {{line}})", flush=True)
    start = time.perf_counter()
    try:
        exec(compile(source, f"README.md:{{line}}", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"README block {{number}} (README.md line {{line}}) failed", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"--- README block {{number}} ran in {{time.perf_counter() - start:.1f}} s", flush=True)
print("all README blocks ran", flush=True)
"""


def test_python_blocks_are_found():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```python block: nothing would be tested"
    assert any(not b.skip for b in blocks), "every README python block is marked skip-test"
    for b in blocks:
        compile(b.source, f"README.md:{b.line}", "exec")  # a syntax error fails fast, before the slow run


def test_extractor():
    text = textwrap.dedent("""\
        intro
        ```bash
        echo no
        ```
        ```python
        a = 1
        ```
        <!-- skip-test -->

        ```python
        raise SystemExit(3)
        ```
        ````python title="x"
        b = a + 1
        ```
        still inside
        ````
        ~~~py
        c = 2
        ~~~
        ```text
        not python
        ```
        """)
    blocks = python_blocks(text)
    assert [b.line for b in blocks] == [6, 11, 14, 19]
    assert [b.skip for b in blocks] == [False, True, False, False]
    assert blocks[0].source == "a = 1\n"
    assert blocks[2].source == "b = a + 1\n```\nstill inside\n"
    assert blocks[3].source == "c = 2\n"
    assert python_blocks("```python\nx = 1\n") == [Block(2, "x = 1\n", False)]  # unclosed: to the end


def _run(blocks: list[Block], tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "readme_blocks.py"
    script.write_text(_DRIVER.format(blocks=[(b.line, b.source) for b in blocks if not b.skip]), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def test_driver_names_the_failing_block(tmp_path):
    blocks = python_blocks("```python\nx = 1\n```\n\n```python\nassert x == 2, x\n```\n")
    proc = _run(blocks, tmp_path)
    assert proc.returncode == 1
    assert "README block 2 (README.md line 6) failed" in proc.stderr
    assert 'File "README.md:6", line 1' in proc.stderr and "AssertionError: 1" in proc.stderr


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path):
    """Every non-skipped ```python block of README.md runs, in order, in one fresh interpreter."""
    proc = _run(python_blocks(README.read_text(encoding="utf-8")), tmp_path)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-6000:])
    assert proc.stdout.rstrip().endswith("all README blocks ran"), proc.stdout[-3000:]
