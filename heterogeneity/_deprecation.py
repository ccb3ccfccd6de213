"""Deprecated names: kept for one release, warning on use."""
from __future__ import annotations

import functools
import warnings
from typing import Callable

REMOVED_IN = "0.3"


def deprecated_alias(fn: Callable, old: str, new: str) -> Callable:
    """``fn`` under its old name ``old``: same behaviour, plus a `DeprecationWarning` naming ``new``."""

    @functools.wraps(fn)
    def alias(*args, **kwargs):
        warnings.warn(f"{old} is deprecated and will be removed in heterogeneity {REMOVED_IN}; use {new}",
                      DeprecationWarning, stacklevel=2)
        return fn(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old.rsplit(".", 1)[-1]
    alias.__doc__ = f"Deprecated alias of `{new}` (removed in {REMOVED_IN})."
    alias.__deprecated_alias_of__ = new
    return alias
