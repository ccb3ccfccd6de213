"""Parameter checkpoints and train-state checkpoints as ``.npz`` files.

A *parameter* checkpoint (`save_params` / `load_params`) is a NumPy archive whose keys are
the toolkit's leaf paths (`heterogeneity.tree.path_str`, e.g. ``layers/0/attn/query/kernel``).
Loading needs a template pytree (the model's freshly initialised params) and checks that
every path and shape matches, naming the offending paths otherwise; a checkpoint is never
silently reshaped or partially loaded.

A *train-state* checkpoint (`save_state` / `load_state`, what `train(run_dir=...)` writes)
holds several pytrees (params, optimizer state, ...), extra named arrays (the history) and
a JSON ``meta`` dict in one archive, written atomically (`atomic_write_bytes`). It is exact:
every leaf keeps its dtype bit for bit (bfloat16 and other ml_dtypes are stored as same-size
unsigned-integer views, typed PRNG keys as their key data plus the implementation name), and
a SHA-256 over every stored array (recorded inside the archive) is checked on load, so a
truncated, bit-flipped or foreign file raises `CheckpointError` instead of being trusted.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity.experiment._store import JsonlWriter, atomic_write_bytes, atomic_write_json, move_aside, to_jsonable
from heterogeneity.tree import leaves_with_paths

__all__ = ["save_params", "load_params", "check_checkpoint", "CheckpointError", "save_state", "load_state",
           "tree_spec", "tree_digest", "run_fingerprint", "RunDir", "RunDirMismatch", "ResumeWarning"]


class CheckpointError(ValueError):
    """A file that is not a checkpoint of these params; ``reason`` omits the path (for CLI messages)."""

    def __init__(self, message: str, *, path: Path, reason: str):
        super().__init__(message)
        self.path, self.reason = path, reason


def _not_npz(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a parameter checkpoint (.npz): {why}", path=path,
                           reason=f"not a .npz parameter checkpoint ({why})")


def check_checkpoint(path: str | os.PathLike) -> list[str]:
    """The parameter paths stored in the ``.npz`` at ``path``, from its index only (no array is read).

    Raises `FileNotFoundError` for a missing file and `CheckpointError` for anything that is not
    a ``.npz`` archive of arrays (a ``.npy`` array, a text or pickle file, a foreign zip)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path} (no such file)")
    if path.is_dir():
        raise _not_npz(path, "a directory")
    with open(path, "rb") as f:
        head = f.read(6)
    if head == b"\x93NUMPY":
        raise _not_npz(path, "a single .npy array; a checkpoint is a .npz of arrays keyed by parameter path, "
                             "as written by save_params")
    if not zipfile.is_zipfile(path):
        raise _not_npz(path, "not a zip archive")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise _not_npz(path, f"unreadable zip archive: {e}") from None
    foreign = [n for n in names if not n.endswith(".npy")]
    if foreign:
        raise _not_npz(path, f"a zip archive with non-array members {foreign[:3]}")
    if not names:
        raise _not_npz(path, "an archive without arrays")
    return [n[: -len(".npy")] for n in names]


def save_params(path: str | os.PathLike, params: Any) -> Path:
    """Write ``params`` to ``path`` (``.npz``) atomically. bfloat16 is stored as float32."""
    arrays = {}
    for p, x in leaves_with_paths(params):
        x = np.asarray(jnp.asarray(x, jnp.float32) if jnp.result_type(x) == jnp.bfloat16 else x)
        arrays[p] = x
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def _short(keys: list[str], limit: int = 8) -> str:
    return repr(keys) if len(keys) <= limit else f"{keys[:limit]!r} (+{len(keys) - limit} more)"


def load_params(path: str | os.PathLike, like: Any) -> Any:
    """Read a checkpoint into the structure, shapes and dtypes of ``like``.

    Raises `FileNotFoundError` (no file), `CheckpointError` (not a ``.npz`` of arrays, or paths /
    shapes that do not match ``like``, naming them)."""
    path = Path(path)
    check_checkpoint(path)
    stored = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for k in archive.files:
                try:
                    stored[k] = archive[k]
                except ValueError as e:
                    if "allow_pickle" not in str(e):
                        raise
                    raise _not_npz(path, f"entry {k!r} holds pickled Python objects, not an array") from None
    except CheckpointError:
        raise
    except Exception as e:  # zipfile / format errors from a corrupt file
        raise _not_npz(path, f"unreadable archive: {type(e).__name__}: {e}") from None
    named = leaves_with_paths(like)
    expected = {p for p, _ in named}
    missing = sorted(expected - set(stored))
    extra = sorted(set(stored) - expected)
    reshaped = [f"{p} {stored[p].shape}->{tuple(jnp.shape(x))}" for p, x in named
                if p in stored and stored[p].shape != tuple(jnp.shape(x))]
    if missing or extra or reshaped:
        why = (f"does not match the model: missing {_short(missing)}, unexpected {_short(extra)}, "
               f"shape mismatch {_short(reshaped)}")
        raise CheckpointError(f"checkpoint {path} {why}", path=path, reason=why)
    leaves = [jnp.asarray(stored[p], dtype=jnp.result_type(x)) for p, x in named]
    return jax.tree.unflatten(jax.tree.structure(like), leaves)


_STATE_FORMAT = "heterogeneity-train-state/1"


def _is_key(x) -> bool:
    return jax.dtypes.issubdtype(jnp.result_type(x), jax.dtypes.prng_key)


def tree_spec(tree: Any) -> list[list]:
    """``[[path, dtype, shape], ...]`` per leaf (leaf order); typed PRNG keys as ``key<impl>``."""
    out = []
    for p, x in leaves_with_paths(tree):
        dtype = f"key<{jax.random.key_impl(x)}>" if _is_key(x) else str(jnp.result_type(x))
        out.append([p, dtype, list(jnp.shape(x))])
    return out


def _to_numpy(x) -> np.ndarray:
    """The exact bytes of a leaf as a plain NumPy array (ml_dtypes viewed as uints, keys as key data)."""
    if _is_key(x):
        x = jax.random.key_data(x)
    a = np.asarray(x, order="C")  # (np.ascontiguousarray would make 0-d arrays 1-d)
    if a.dtype.kind == "V" or a.dtype.type.__module__ != "numpy":  # bfloat16, float8, int4 ...
        a = a.view(f"u{a.dtype.itemsize}")
    return a


def _from_numpy(a: np.ndarray, dtype: str) -> np.ndarray:
    """Undo `_to_numpy` for a NumPy dtype (a view; no conversion)."""
    return a.view(jnp.dtype(dtype)) if a.dtype != jnp.dtype(dtype) else a


def _leaf(a: np.ndarray, dtype: str) -> jax.Array:
    if dtype.startswith("key<"):
        return jax.random.wrap_key_data(jnp.asarray(a), impl=dtype[4:-1])
    return jnp.asarray(_from_numpy(a, dtype))


def tree_digest(tree: Any) -> str:
    """SHA-256 of a pytree's leaf paths, dtypes, shapes and exact bytes."""
    return _digest({f"{i}:{p}": _to_numpy(x) for i, (p, x) in enumerate(leaves_with_paths(tree))})


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = arrays[name]
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_state(path: str | os.PathLike, trees: Mapping[str, Any], *, arrays: Mapping[str, Any] | None = None,
               meta: Mapping[str, Any] | None = None) -> Path:
    """Write pytrees ``trees``, named ``arrays`` and a JSON-able ``meta`` dict to one ``.npz``, atomically.

    Leaf ``i`` of tree ``name`` is stored as ``tree/name/i``; the archive's ``__meta__`` member
    records each tree's `tree_spec`, the arrays' dtypes and the SHA-256 of the stored bytes.
    Arrays must be fully addressable (single host): sharded arrays are gathered."""
    stored: dict[str, np.ndarray] = {}
    specs = {}
    for name, tree in trees.items():
        specs[name] = tree_spec(tree)
        for i, x in enumerate(jax.tree.leaves(tree)):
            stored[f"tree/{name}/{i}"] = _to_numpy(x)
    array_dtypes = {}
    for name, x in (arrays or {}).items():
        a = np.asarray(x)
        array_dtypes[name] = str(a.dtype)
        stored[f"array/{name}"] = _to_numpy(a)
    header = {"format": _STATE_FORMAT, "trees": specs, "arrays": array_dtypes, "sha256": _digest(stored),
              "meta": dict(meta or {})}
    stored["__meta__"] = np.frombuffer(json.dumps(header, sort_keys=True, allow_nan=False).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **stored)
    return atomic_write_bytes(path, buf.getvalue())


def _spec_mismatch(name: str, stored: list, expected: list) -> str | None:
    if stored == expected:
        return None
    s, e = {p: (d, sh) for p, d, sh in stored}, {p: (d, sh) for p, d, sh in expected}
    missing, extra = sorted(set(e) - set(s)), sorted(set(s) - set(e))
    changed = [f"{p} {s[p][0]}{s[p][1]}->{e[p][0]}{e[p][1]}" for p in e if p in s and s[p] != e[p]]
    if not (missing or extra or changed):
        return f"{name}: leaf order differs"
    return f"{name}: missing {_short(missing)}, unexpected {_short(extra)}, dtype/shape mismatch {_short(changed)}"


def load_state(path: str | os.PathLike, like: Mapping[str, Any] | None = None, *, check_meta=None):
    """Read a `save_state` archive: ``(trees, arrays, meta)``.

    With ``like`` (name -> template pytree) the trees are rebuilt in the templates' structures
    after checking paths, dtypes and shapes (`CheckpointError` naming the mismatches);
    without it the trees come back as ``None``. ``check_meta(meta)`` runs after the integrity
    check and before the structure check (to refuse a foreign file with a better message).
    Any unreadable, truncated or altered file raises `CheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path} (no such file)")
    try:  # read into memory first: np.load would leak the file handle of an archive it cannot parse
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as archive:
            stored = {k: archive[k] for k in archive.files}
    except Exception as e:  # zipfile / format / CRC errors from a corrupt or truncated file
        raise _not_state(path, f"unreadable archive: {type(e).__name__}: {e}") from None
    if "__meta__" not in stored:
        raise _not_state(path, "no __meta__ member (not written by save_state)")
    try:
        header = json.loads(stored.pop("__meta__").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _not_state(path, f"unreadable __meta__: {e}") from None
    if not isinstance(header, dict) or header.get("format") != _STATE_FORMAT:
        raise _not_state(path, f"format {header.get('format') if isinstance(header, dict) else header!r}, "
                               f"expected {_STATE_FORMAT!r}")
    if _digest(stored) != header.get("sha256"):
        raise _not_state(path, "SHA-256 of the stored arrays does not match the one recorded at save time "
                               "(truncated or altered)")
    if check_meta is not None:
        check_meta(header["meta"])
    arrays = {name: _from_numpy(stored[f"array/{name}"], dtype) for name, dtype in header["arrays"].items()}
    trees: dict[str, Any] = {name: None for name in header["trees"]}
    if like is not None:
        problems = [m for name, tmpl in like.items()
                    if (m := _spec_mismatch(name, header["trees"].get(name, []), tree_spec(tmpl)))]
        if problems:
            why = "does not match the run: " + "; ".join(problems)
            raise CheckpointError(f"checkpoint {path} {why}", path=path, reason=why)
        for name, tmpl in like.items():
            spec = header["trees"][name]
            leaves = [_leaf(stored[f"tree/{name}/{i}"], dtype) for i, (_, dtype, _) in enumerate(spec)]
            trees[name] = jax.tree.unflatten(jax.tree.structure(tmpl), leaves)
    return trees, arrays, header["meta"]


def _not_state(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a valid train-state checkpoint: {why}", path=path,
                           reason=f"not a valid train-state checkpoint ({why})")


class ResumeWarning(UserWarning):
    """A run directory held a corrupt or truncated file; it was moved aside (``NAME.corrupt-N``)."""


class RunDirMismatch(ValueError):
    """A run directory was written by a run with other settings; ``differences`` lists them."""

    def __init__(self, message: str, differences: list[str]):
        super().__init__(message)
        self.differences = differences


_EXPLAIN = {
    "digests.params": "the initial parameter values differ (another init seed or model?)",
    "digests.opt_state": "the initial optimizer state differs (another optimizer, hyperparameter or its seed?)",
    "digests.key": "the PRNG key differs",
    "digests.first_batch": "the first batch differs (other data or data seed?)",
    "digests.program_constants": "arrays closed over by the loss or optimizer differ (other problem data?)",
}


def _short_repr(x: Any, limit: int = 120) -> str:
    r = repr(x)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _differences(stored: Any, given: Any, prefix: str = "") -> list[str]:
    if isinstance(stored, dict) and isinstance(given, dict):
        out = []
        for k in list(stored) + [k for k in given if k not in stored]:
            name = f"{prefix}.{k}" if prefix else str(k)
            if k not in given:
                out.append(f"{name}: {_short_repr(stored[k])} in the run directory, absent now")
            elif k not in stored:
                out.append(f"{name}: absent in the run directory, {_short_repr(given[k])} now")
            else:
                out.extend(_differences(stored[k], given[k], name))
        return out
    if stored == given:
        return []
    if prefix in _EXPLAIN:
        return [f"{prefix}: {_EXPLAIN[prefix]}"]
    return [f"{prefix}: {_short_repr(stored)} in the run directory, {_short_repr(given)} now"]


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def run_fingerprint(*, jaxprs, params, opt_state, key, first_batch, settings, train_args: dict) -> tuple[dict, str]:
    """What identifies a run (`RunDir`): ``train_args``, the caller's ``settings``, leaf specs,
    digests of the initial params, optimizer state, PRNG key and first batch, and the hash of
    the text of the run's programs (``jaxprs``: the step's, the eval's; object addresses such
    as ``<function f at 0x7f..>`` removed, so equal programs compare equal) and of the arrays
    they close over. Returns it with the program text."""
    program = "\n".join(_ADDRESS.sub("", str(j)) for j in jaxprs)
    try:
        json.dumps(to_jsonable(settings), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"train: settings must be JSON-able (numbers, strings, lists, dicts), got {settings!r}: "
                         f"{e}") from None
    fp = {
        "train": to_jsonable(train_args),
        "settings": to_jsonable(settings),
        "params": tree_spec(params),
        "opt_state": tree_spec(opt_state),
        "digests": {
            "params": tree_digest(params),
            "opt_state": tree_digest(opt_state),
            "key": None if key is None else tree_digest(key),
            "first_batch": tree_digest(first_batch),
            "program_constants": tree_digest([c for j in jaxprs for c in j.consts]),
        },
        "program": hashlib.sha256(program.encode()).hexdigest(),
    }
    return fp, program


def _first_difference(old: str, new: str) -> str:
    a, b = old.splitlines(), new.splitlines()
    for i, (x, y) in enumerate(zip(a, b), 1):
        if x != y:
            return f"line {i}: {x.strip()!r} in the run directory, {y.strip()!r} now"
    return f"the program has {len(a)} lines in the run directory, {len(b)} now"


class RunDir:
    """The files of one resumable run (what `heterogeneity.experiment.train` writes under ``run_dir``).

    * ``run.json``: the run's fingerprint (settings, shapes, digests of the initial state and
      the step program's hash), written once; a later run with another fingerprint is refused
      (`RunDirMismatch`, naming every difference). ``program.txt.gz``: the step's program
      text, only to show *where* a changed program differs.
    * ``metrics.jsonl``: the metric log (`open_log`).
    * ``ckpt-STEP.npz`` every ``checkpoint_every`` steps (the newest ``keep`` are kept) and
      ``final.npz`` when the run ends (`save_state` archives whose meta holds the fingerprint).

    `latest` returns the newest checkpoint that loads and passes its integrity check; each one
    that does not is reported (`ResumeWarning`) and moved aside, so the run falls back to the
    previous good one, or restarts when none is left.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: dict, *, program: str | None = None, keep: int = 2):
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))  # canonical JSON values
        self.program, self.keep = program, keep
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"train: run_dir {self.path} exists and is not a directory")
        self.path.mkdir(parents=True, exist_ok=True)
        for tmp in self.path.glob(".*.tmp"):  # temporaries of writes cut short by a kill
            tmp.unlink(missing_ok=True)

    @property
    def log_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def _report(self, path: Path, why: str) -> None:
        moved = move_aside(path)
        warnings.warn(f"train: {path} is corrupt ({why}); moved it aside to {moved.name}", ResumeWarning, stacklevel=3)

    def refuse_if_different(self, stored: dict, where: Path) -> None:
        diffs = _differences(stored, self.fingerprint)
        if not diffs:
            return
        if self.program is not None and any(d.startswith("program") for d in diffs):
            prog = self.path / "program.txt.gz"
            try:
                old = gzip.decompress(prog.read_bytes()).decode()
                where_ = _first_difference(old, self.program)
                diffs = [d if not d.startswith("program") else
                         "program: the compiled train step or eval differs (loss, model, optimizer or a "
                         f"hyperparameter such as the learning rate changed); first difference at {where_}"
                         for d in diffs]
            except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile):
                pass
        raise RunDirMismatch(
            f"train: run_dir {self.path} was written by a run with other settings ({where.name}); refusing to "
            f"resume or overwrite it. Differences: " + "; ".join(diffs)
            + ". Use a new run_dir, or delete this one to start over.", diffs)

    def check_settings(self) -> None:
        """Refuse a directory whose ``run.json`` holds another fingerprint (a corrupt one is moved aside)."""
        run_json = self.path / "run.json"
        if run_json.exists():
            try:
                stored = json.loads(run_json.read_text("utf-8"))
                if not isinstance(stored, dict):
                    raise ValueError(f"expected a JSON object, got {type(stored).__name__}")
            except (UnicodeDecodeError, ValueError) as e:
                self._report(run_json, f"unreadable JSON: {e}")
            else:
                self.refuse_if_different(stored, run_json)

    def write_settings(self) -> None:
        """Record our fingerprint (and program text) unless the directory has it already."""
        run_json = self.path / "run.json"
        if run_json.exists():
            return
        if self.program is not None:
            atomic_write_bytes(self.path / "program.txt.gz", gzip.compress(self.program.encode(), mtime=0))
        atomic_write_json(run_json, self.fingerprint)

    def _checkpoints(self) -> list[Path]:
        periodic = sorted(self.path.glob("ckpt-*.npz"), key=lambda p: p.name, reverse=True)
        final = self.path / "final.npz"
        return ([final] if final.exists() else []) + periodic

    def latest(self, like: Mapping[str, Any]):
        """``(trees, arrays, meta)`` of the newest good checkpoint, or ``None`` (restart from scratch)."""
        for path in self._checkpoints():
            try:
                return load_state(path, like,
                                  check_meta=lambda meta: self.refuse_if_different(meta.get("fingerprint"), path))
            except CheckpointError as e:
                self._report(path, e.reason)
        return None

    def save(self, step: int | None, trees, arrays, meta) -> Path:
        """Write ``ckpt-STEP.npz`` (or ``final.npz`` for ``step=None``); drop periodic ones beyond ``keep``."""
        meta = dict(meta, fingerprint=self.fingerprint)
        name = "final.npz" if step is None else f"ckpt-{step:08d}.npz"
        out = save_state(self.path / name, trees, arrays=arrays, meta=meta)
        if step is not None:
            for old in sorted(self.path.glob("ckpt-*.npz"), key=lambda p: p.name)[: -self.keep]:
                old.unlink(missing_ok=True)
        return out

    def open_log(self, expected: bytes) -> JsonlWriter:
        """Open ``metrics.jsonl`` for appending after ``expected`` (the lines of the state resumed from).

        A file that starts with ``expected`` is cut to it (lines written after the checkpoint are
        dropped and will be rewritten); one that does not (truncated or altered) is reported,
        moved aside and rewritten from ``expected``."""
        path = self.log_path
        if path.exists():
            with open(path, "rb") as f:
                head = f.read(len(expected))
            if head != expected:
                n_ok = next((i for i, (a, b) in enumerate(zip(head, expected)) if a != b),
                            min(len(head), len(expected)))
                line, n_lines = expected[:n_ok].count(b"\n") + 1, expected.count(b"\n")
                self._report(path, f"its first {len(expected)} bytes should be the {n_lines} lines logged up to "
                                   f"the checkpoint, but they differ from line {line} on")
        if expected and not path.exists():
            atomic_write_bytes(path, expected)
        return JsonlWriter(path, truncate_to=len(expected))
