"""Atomic result files: nothing half-written survives a crash or a killed sweep.

Every result goes through `atomic_write_bytes`: write to a temporary file in the same
directory, flush and fsync it, then `os.replace` it over the target (atomic on POSIX). A
reader therefore sees either the old file or the complete new one, never a torn write.

Logs that grow while a run is alive are JSON lines (`JsonlWriter`): one compact record per
line, appended and flushed at once (a killed process loses at most the line it was
writing, and a torn last line is detectable); `read_jsonl` reads them back and names the
first bad line. A file found corrupt is never deleted: `move_aside` renames it next to
itself (``NAME.corrupt-N``) so that it can be inspected.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "read_json", "to_jsonable",
    "JsonlWriter", "jsonl_line", "read_jsonl", "move_aside",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename); returns the path. The
    file gets the permissions of a normally created one (0666 less the umask, e.g. 0644), not
    the 0600 of the temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Convert arrays, NamedTuples, numpy scalars and non-finite floats to strict JSON values.

    NaN and ±inf become the strings "nan", "inf", "-inf" (JSON has no such numbers), so a
    diverged run is recorded, not silently dropped or written as invalid JSON.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if hasattr(obj, "_asdict"):
        return {k: to_jsonable(v) for k, v in obj._asdict().items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
        arr = np.asarray(obj)
        return to_jsonable(arr.item()) if arr.ndim == 0 else [to_jsonable(v) for v in arr.tolist()]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """`to_jsonable` then `atomic_write_text`, with sorted keys for stable diffs."""
    text = json.dumps(to_jsonable(obj), indent=indent, sort_keys=True, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, with the path in the error when it is missing or corrupt."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such result file: {path}")
    try:
        return json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"corrupt JSON in {path}: {e}") from None


def jsonl_line(record: Any, *, sort_keys: bool = True) -> bytes:
    """One JSON-lines record: `to_jsonable`, compact separators, ``\\n``-terminated.

    Deterministic (same record and key order, same bytes; ``sort_keys`` makes the order
    canonical), so a log can be regenerated exactly from the values it holds. Floats are
    written with Python's shortest round-trip repr: float32 and float64 read back bit-exact."""
    text = json.dumps(to_jsonable(record), separators=(",", ":"), sort_keys=sort_keys, allow_nan=False)
    return (text + "\n").encode("utf-8")


class JsonlWriter:
    """Append JSON lines to ``path``, flushing each line to the OS as it is written.

    ``truncate_to`` first cuts an existing file to that many bytes (dropping lines written
    after the state a resumed run restarts from). `sync` fsyncs (call it before recording
    that the file holds a given prefix, e.g. in a checkpoint). ``nbytes`` is the file size.
    """

    def __init__(self, path: str | os.PathLike, *, truncate_to: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab")
        if truncate_to is not None:
            self._f.truncate(truncate_to)
        self._f.seek(0, os.SEEK_END)
        self.nbytes = self._f.tell()

    def append(self, record: Any, *, sort_keys: bool = True) -> None:
        self.write_line(jsonl_line(record, sort_keys=sort_keys))

    def write_line(self, line: bytes) -> None:
        self._f.write(line)
        self._f.flush()
        self.nbytes += len(line)

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """The records of a JSON-lines file; ``ValueError`` naming the path and line of the first bad one
    (including a last line without its newline, i.e. a write cut short)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such JSON-lines file: {path}")
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines[-1]:
        raise ValueError(f"corrupt JSON lines in {path}: line {len(lines)} is cut short (no newline at the end)")
    out = []
    for i, line in enumerate(lines[:-1], 1):
        try:
            out.append(json.loads(line.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"corrupt JSON lines in {path}: line {i}: {e}") from None
    return out


def move_aside(path: str | os.PathLike) -> Path:
    """Rename ``path`` to the first free ``NAME.corrupt-N`` beside it (kept for inspection); returns the new path."""
    path = Path(path)
    n = 1
    while (target := path.with_name(f"{path.name}.corrupt-{n}")).exists():
        n += 1
    os.replace(path, target)
    return target
