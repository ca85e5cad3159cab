"""Who a call is for: feature, end user, service and metadata, carried in a ContextVar.

A ContextVar (not a thread-local) so that each thread *and* each asyncio task has its own
value: tasks copy the context they were created in, and threads start from an empty one.
The context is captured when a call starts, so a stream read later elsewhere keeps it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

_current: ContextVar[Mapping[str, Any] | None] = ContextVar("tally_client_context", default=None)


def current() -> Mapping[str, Any] | None:
    return _current.get()


@contextlib.contextmanager
def context(
    *,
    feature: str | None = None,
    user_id: str | None = None,
    service: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """Attach `feature`, `user_id`, `service` and `metadata` to every call made inside the block.
    Nested blocks override the outer values and merge `metadata`."""
    parent = _current.get() or {}
    merged: dict[str, Any] = dict(parent)
    for name, value in (("feature", feature), ("user_id", user_id), ("service", service)):
        if value is not None:
            merged[name] = value
    if metadata:
        merged["metadata"] = {**(parent.get("metadata") or {}), **metadata}
    token = _current.set(merged)
    try:
        yield
    finally:
        # Resetting from another context (a generator resumed elsewhere) raises; the value is
        # then simply left to that context.
        with contextlib.suppress(ValueError):
            _current.reset(token)


def apply(event: dict[str, Any], ctx: Mapping[str, Any] | None) -> None:
    """Fill `event` from a captured context; what the event already has wins."""
    if not ctx:
        return
    for name in ("feature", "user_id", "service"):
        value = ctx.get(name)
        if value is not None and event.get(name) is None:
            event[name] = value
    meta = ctx.get("metadata")
    if meta:
        own = event.get("metadata")
        event["metadata"] = {**meta, **own} if isinstance(own, Mapping) else dict(meta)
