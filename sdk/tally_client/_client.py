"""`Tally`: configuration, context, `record()`, `instrument()`, flush and shutdown.

Invariants:
- No public method raises into the application once the object is built (a bad endpoint URL
  fails in the constructor, at start-up, where it belongs). Failures are logged, rate-limited,
  to the `tally_client` logger and counted in `stats()`.
- The application's thread never does I/O on Tally's behalf: calls enqueue a dict and return.
- At interpreter exit, queued events get up to `shutdown_timeout` seconds to be delivered.
- The one deliberate exception: with `enforce_budgets=True`, an instrumented call raises
  `BudgetExceeded` (before any request) while a budget covering it is exceeded (budget.py).
"""

from __future__ import annotations

import atexit
import os
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from tally_client import _context
from tally_client._events import FIELDS
from tally_client._sender import RateLimitedLog, Sender
from tally_client.budget import BudgetGuard

ClientT = TypeVar("ClientT")
EVENTS_PATH = "/api/v1/events"
_BATCHES_REMEMBERED = 256


def _events_url(endpoint: str) -> str:
    url = endpoint.rstrip("/")
    return url if url.endswith(EVENTS_PATH) else url + EVENTS_PATH


class Tally:
    """Sends one event per Claude API call to a Tally server.

    ```python
    tally = Tally("https://tally.example.com", "tly_...", service="search-api")
    client = tally.instrument(anthropic.Anthropic())
    with tally.context(feature="search", user_id=user.id):
        client.messages.create(...)
    ```
    """

    def __init__(
        self,
        endpoint: str,
        key: str,
        service: str = "default",
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        timeout: float = 10.0,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        shutdown_timeout: float = 5.0,
        gzip: bool = True,
        user_id_hmac_key: str | bytes | None = None,
        enabled: bool = True,
        enforce_budgets: bool = False,
        budget_refresh_interval: float = 30.0,
    ) -> None:
        """
        endpoint: the Tally base URL (events go to `<endpoint>/api/v1/events`).
        key: an ingest key; it fixes the project and environment.
        service: the default `service` of every event (a context can override it).
        queue_size: events kept in memory while Tally is slow or down; past it the oldest are dropped.
        batch_size, flush_interval: a batch is sent when it has `batch_size` events or every
            `flush_interval` seconds.
        user_id_hmac_key: if set, user ids are sent as HMAC-SHA256(key, user_id) hex digests.
        enabled: False makes `instrument()` return the client untouched and `record()` a no-op.
        enforce_budgets: if True, instrumented calls raise `BudgetExceeded`, before the request is
            sent, while a Tally budget covering them (project-wide, this call's service or its
            context's user id) is exceeded. The status is refreshed in the background every
            `budget_refresh_interval` seconds; the check reads the cached copy. Fails open.
        """
        self.service = service
        self.enabled = enabled
        self._shutdown_timeout = shutdown_timeout
        self._warn = RateLimitedLog()
        if isinstance(user_id_hmac_key, str):
            user_id_hmac_key = user_id_hmac_key.encode()
        self._sender = Sender(
            url=_events_url(endpoint),
            key=key,
            queue_size=queue_size,
            batch_size=batch_size,
            flush_interval=flush_interval,
            timeout=timeout,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
            gzip_body=gzip,
            user_id_key=user_id_hmac_key,
            warn=self._warn,
        )
        self._guard: BudgetGuard | None = None
        if enabled and enforce_budgets:
            self._guard = BudgetGuard(
                endpoint=endpoint,
                key=key,
                service=service,
                interval=budget_refresh_interval,
                timeout=timeout,
                user_id_key=user_id_hmac_key,
                warn=self._warn,
            )
        # batch id -> (created_at epoch seconds, the one model of its requests or None), learnt
        # from batches.create/retrieve so results can be dated and errored results attributed.
        self._batches: OrderedDict[str, tuple[float | None, str | None]] = OrderedDict()
        ref = weakref.ref(self)
        atexit.register(_close_at_exit, ref)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    # -- public API ------------------------------------------------------------------------

    def instrument(self, client: ClientT) -> ClientT:
        """Instrument this `anthropic.Anthropic` or `anthropic.AsyncAnthropic` instance (and the
        copies `with_options()` makes of it), in place; returns the same client.

        Only this instance's `messages` resource is wrapped: no class is patched, so other
        clients, and other libraries' instrumentation, are unaffected.
        """
        if not self.enabled:
            return client
        try:
            from tally_client._anthropic import instrument  # imports anthropic: only when asked to
        except ImportError as exc:
            raise ImportError(
                "Tally.instrument() needs the anthropic package (pip install 'tally-client[anthropic]')"
            ) from exc
        return instrument(self, client)

    def context(
        self,
        *,
        feature: str | None = None,
        user_id: str | None = None,
        service: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> AbstractContextManager[None]:
        """`with tally.context(feature="search", user_id=u.id): ...` tags the calls made inside.

        Per thread and per asyncio task (contextvars); nested blocks override and merge metadata.
        """
        return _context.context(feature=feature, user_id=user_id, service=service, metadata=metadata)

    def check_budgets(self) -> None:
        """Raise `BudgetExceeded` if a budget covering a call made here (this context's service
        and user id) is exceeded, as of the last status. Instrumented calls do this themselves;
        call it before work that is not (`client.beta.messages`, other providers) or before
        costly preparation. A no-op unless `enforce_budgets=True`."""
        guard = self._guard
        if guard is not None:
            guard.check(_context.current(), count=False)

    def record(self, **event: Any) -> None:
        """Queue one event for a call made some other way (CONTRACT §3 field names).

        `model` is required; `request_id` is generated if missing (pass the API's request id
        to make re-sends idempotent); `timestamp` defaults to now. Never raises.
        """
        if not self.enabled:
            return
        try:
            unknown = sorted(name for name in event if name not in FIELDS)
            if unknown:
                self._warn.warning("record-fields", "tally_client: record() ignores unknown fields %s", unknown)
                for name in unknown:
                    del event[name]
            if not event.get("model"):
                self._warn.warning("record-model", "tally_client: record() needs a model; event ignored")
                return
            event.setdefault("timestamp", time.time())
            self._emit(event, _context.current())
        except Exception:
            self._warn.warning("record", "tally_client: record() failed", exc_info=True)

    def flush(self, timeout: float = 5.0) -> bool:
        """Send what is queued now; True if everything was delivered within `timeout` seconds."""
        try:
            return self._sender.flush(timeout)
        except Exception:
            self._warn.warning("flush", "tally_client: flush failed", exc_info=True)
            return False

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (for up to `timeout`, default `shutdown_timeout`) and stop.
        Called automatically at interpreter exit."""
        if self._guard is not None:
            self._guard.close()
        try:
            self._sender.close(self._shutdown_timeout if timeout is None else timeout)
        except Exception:
            self._warn.warning("close", "tally_client: close failed", exc_info=True)

    def stats(self) -> dict[str, int]:
        """Counters: sent, duplicates, rejected, dropped (queue full), lost (at shutdown),
        retries, queued (waiting now), blocked (calls refused by the budget guard),
        warnings_suppressed."""
        return {
            **self._sender.counts,
            "queued": self._sender.pending(),
            "blocked": self._guard.blocked if self._guard is not None else 0,
            "warnings_suppressed": self._warn.suppressed,
        }

    # -- internal --------------------------------------------------------------------------

    def _emit(self, event: dict[str, Any], ctx: Mapping[str, Any] | None) -> None:
        _context.apply(event, ctx)
        if event.get("service") is None:
            event["service"] = self.service
        self._sender.enqueue(event)

    def _batch_seen(self, batch_id: str, created_at: float | None, model: str | None) -> None:
        known = self._batches.get(batch_id)
        if known is not None:
            created_at = created_at or known[0]
            model = model or known[1]
        self._batches[batch_id] = (created_at, model)
        self._batches.move_to_end(batch_id)
        while len(self._batches) > _BATCHES_REMEMBERED:
            self._batches.popitem(last=False)

    def _batch_info(self, batch_id: str) -> tuple[float | None, str | None]:
        return self._batches.get(batch_id, (None, None))


def _close_at_exit(ref: weakref.ref[Tally]) -> None:
    tally = ref()
    if tally is not None:
        tally.close()


def _after_fork(ref: weakref.ref[Tally]) -> None:
    tally = ref()
    if tally is not None:
        tally._sender.after_fork()
        if tally._guard is not None:
            tally._guard.after_fork()
