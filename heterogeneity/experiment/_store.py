"""Atomic result files: nothing half-written survives a crash or a killed sweep.

Every result goes through `atomic_write_bytes`: write to a temporary file in the same
directory, flush and fsync it, then `os.replace` it over the target (atomic on POSIX). A
reader therefore sees either the old file or the complete new one, never a torn write.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "read_json", "to_jsonable"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
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
