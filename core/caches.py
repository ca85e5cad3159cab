"""The registry of process caches: memory a process keeps between requests (remembered keys,
Pricers, known partitions, Redis clients and their outage backoff...).

Each cache registers its own clear function where it is defined, so dropping every cache is
one call (`process_caches_clear`) that can't miss one added later: the tests call it around
each test, since a cache filled by one test would otherwise answer the next from memory.
A module that was never imported has nothing cached, so clearing only what registered is
complete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[[], None])

_clearers: list[Callable[[], None]] = []


def process_cache(clear: F) -> F:
    """Register `clear` (a function that empties one process cache); returns it unchanged, so it
    works as a decorator on a module's own `..._forget()` / `..._reset()` function."""
    _clearers.append(clear)
    return clear


def process_caches_clear() -> None:
    """Empty every registered process cache."""
    for clear in _clearers:
        clear()
