"""Delivery: a bounded in-memory queue drained by one background thread.

Invariants:
- Nothing here raises into the application. `enqueue` is a lock, a deque append and, once per
  batch, an Event.set(); all I/O happens on the sender thread.
- The queue holds at most `queue_size` events. When full, the OLDEST event is dropped and
  counted (`dropped`): during an outage the most recent events are the ones worth keeping.
- A batch that could not be delivered (connection error, timeout, 429, 5xx) goes back to the
  FRONT of the queue, so order is kept and the bound still holds, then is re-sent after a
  backoff (exponential with jitter, or the server's `Retry-After` on 429/503). Re-sends carry
  the same `request_id`s, which the server deduplicates: delivery is at-least-once on the
  wire and exactly-once in storage.
- A batch the server refuses for good (400, 401, 403, 415) is dropped with a warning; 413 splits it.
- Warnings go to the `tally_client` logger, at most one per kind per `WARN_INTERVAL_S`.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import random
import threading
import time
from collections import deque
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from tally_client._events import to_wire
from tally_client._http import KeepAliveConnection

logger = logging.getLogger("tally_client")

WARN_INTERVAL_S = 60.0
MAX_RETRY_AFTER_S = 300.0
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_USER_AGENT = "tally-client/0.1"


class RateLimitedLog:
    """logger.warning, at most once per `interval` per key; counts what it held back."""

    def __init__(self, interval: float = WARN_INTERVAL_S) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self.suppressed = 0

    def warning(self, key: str, message: str, *args: Any, exc_info: bool = False) -> None:
        try:
            now = time.monotonic()
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self.suppressed += 1
                return
            self._last[key] = now
            logger.warning(message, *args, exc_info=exc_info)
        except Exception:  # noqa: S110 - logging must never break the application
            pass


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER_S))
    except ValueError:
        pass
    try:
        return max(0.0, min(parsedate_to_datetime(value).timestamp() - time.time(), MAX_RETRY_AFTER_S))
    except (TypeError, ValueError, OverflowError):
        return None


class Sender:
    """The queue and the thread that empties it into `POST <endpoint>/api/v1/events`."""

    def __init__(
        self,
        *,
        url: str,
        key: str,
        queue_size: int,
        batch_size: int,
        flush_interval: float,
        timeout: float,
        initial_backoff: float,
        max_backoff: float,
        gzip_body: bool,
        user_id_key: bytes | None,
        warn: RateLimitedLog,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Tally endpoint must be an http(s) URL, got {url!r}")
        https = parts.scheme == "https"
        self._path = parts.path or "/"
        self._headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
        }
        if gzip_body:
            self._headers["Content-Encoding"] = "gzip"
        self._gzip = gzip_body
        self._queue_size = max(1, queue_size)
        self._batch_size = max(1, min(batch_size, 1000))
        self._flush_interval = flush_interval
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._user_id_key = user_id_key
        self._warn = warn
        self._http = KeepAliveConnection(
            parts.hostname, parts.port or (443 if https else 80), https=https, timeout=timeout
        )
        self._reset_state()
        self.counts = {"sent": 0, "duplicates": 0, "rejected": 0, "dropped": 0, "retries": 0, "lost": 0}

    def _reset_state(self) -> None:
        self._queue: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._interrupt = threading.Event()
        self._inflight = 0
        self._thread: threading.Thread | None = None
        self._closing = False
        self._deadline = float("inf")

    def after_fork(self) -> None:
        """In a forked child: the parent's thread does not exist here and its queue is the
        parent's to send; start empty (the thread restarts on the next event)."""
        self._http.forget()
        self._reset_state()

    # -- application side -------------------------------------------------------------

    def enqueue(self, event: dict[str, Any]) -> None:
        dropped = False
        with self._lock:
            if self._closing:
                self.counts["lost"] += 1  # recorded after close(): nobody will send it
                return
            queue = self._queue
            if len(queue) >= self._queue_size:
                queue.popleft()
                self.counts["dropped"] += 1
                dropped = True
            queue.append(event)
            full = len(queue) >= self._batch_size
            if self._thread is None:
                self._start()
        if full:
            self._wake.set()
        if dropped:
            self._warn.warning(
                "dropped",
                "tally_client: queue full (%d events), dropping the oldest; %d dropped so far",
                self._queue_size,
                self.counts["dropped"],
            )

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tally-client-sender", daemon=True)
        self._thread.start()

    def pending(self) -> int:
        return len(self._queue) + self._inflight

    def flush(self, timeout: float) -> bool:
        """Send everything queued now; True once it is all delivered (or refused for good)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._queue and not self._inflight:
                return True
            if self._thread is None:
                self._start()
        self._wake.set()
        with self._idle:
            while self._queue or self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
                self._wake.set()
        return True

    def close(self, timeout: float) -> None:
        """Deliver what is queued for up to `timeout` seconds, then stop the thread."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._deadline = time.monotonic() + timeout
            thread = self._thread
        self._wake.set()
        self._interrupt.set()
        if thread is not None:
            thread.join(timeout + 1.0)
        with self._lock:
            left = len(self._queue)
            if left:
                self.counts["lost"] += left
                self._queue.clear()
        if left:
            self._warn.warning("lost", "tally_client: %d events not delivered at shutdown", left)

    # -- sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._wake.wait(self._flush_interval)
                self._wake.clear()
                self._drain()
            except Exception:
                # A bug here must not kill delivery for the rest of the process.
                self._warn.warning("bug", "tally_client: sender error", exc_info=True)
                time.sleep(self._initial_backoff)
            if self._closing:
                self._http.close()
                return

    def _drain(self) -> None:
        attempt = 0
        while True:
            with self._lock:
                if not self._queue:
                    self._idle.notify_all()
                    return
                take = min(len(self._queue), self._batch_size)
                batch = [self._queue.popleft() for _ in range(take)]
                self._inflight = take
            delay, undelivered = self._deliver(batch)
            if delay is None:
                attempt = 0
                with self._lock:
                    self._inflight = 0
                    self._idle.notify_all()
                continue
            self._requeue(undelivered)
            if self._closing and time.monotonic() >= self._deadline:
                return
            self.counts["retries"] += 1
            if delay <= 0:
                base = min(self._max_backoff, self._initial_backoff * 2**attempt)
                delay = base / 2 + random.uniform(0, base / 2)  # "equal jitter"
                attempt += 1
            if self._closing:
                delay = min(delay, max(0.0, self._deadline - time.monotonic()))
            self._interrupt.wait(delay)

    def _requeue(self, batch: list[dict[str, Any]]) -> None:
        with self._lock:
            self._queue.extendleft(reversed(batch))
            self._inflight = 0
            over = len(self._queue) - self._queue_size
            for _ in range(max(0, over)):
                self._queue.popleft()
            if over > 0:
                self.counts["dropped"] += over
            self._idle.notify_all()

    def _deliver(self, batch: list[dict[str, Any]]) -> tuple[float | None, list[dict[str, Any]]]:
        """One attempt: (None, []) when the batch is done with (delivered or refused for good),
        else (seconds to wait before retrying, 0 meaning "use the backoff"; the undelivered events)."""
        try:
            events = [to_wire(e, user_id_key=self._user_id_key) for e in batch]
            body = json.dumps({"events": events}, separators=(",", ":"), default=str).encode()
        except Exception:
            self._warn.warning(
                "encode", "tally_client: could not encode events, dropping %d", len(batch), exc_info=True
            )
            self.counts["rejected"] += len(batch)
            return None, []
        if self._gzip:
            body = gzip.compress(body, compresslevel=5)
        try:
            status, headers, data = self._post(body)
        except (OSError, http.client.HTTPException) as exc:
            self._warn.warning(
                "unreachable", "tally_client: Tally unreachable (%s); %d events queued, retrying", exc, self.pending()
            )
            return 0.0, batch
        if status in (200, 202, 400):
            self._account(status, data, len(batch))
            return None, []
        if status == 413 and len(batch) > 1:
            half = len(batch) // 2
            delay, _ = self._deliver(batch[:half])
            if delay is not None:
                return delay, batch
            return self._deliver(batch[half:])
        if status in _RETRY_STATUSES or status >= 500:
            self._warn.warning(f"status{status}", "tally_client: Tally answered %d; retrying", status)
            return _retry_after(headers.get("retry-after")) or 0.0, batch
        self._warn.warning(
            f"status{status}", "tally_client: Tally refused %d events with %d: %s", len(batch), status, data[:200]
        )
        self.counts["rejected"] += len(batch)
        return None, []

    def _account(self, status: int, data: bytes, sent: int) -> None:
        try:
            result = json.loads(data)
            accepted = int(result.get("accepted", 0))
            duplicates = int(result.get("duplicates", 0))
            rejected = result.get("rejected") or []
        except (ValueError, TypeError, AttributeError):
            accepted, duplicates, rejected = (sent, 0, []) if status == 202 else (0, 0, [{}] * sent)
        self.counts["sent"] += accepted
        self.counts["duplicates"] += duplicates
        if rejected or (status == 400 and not accepted):
            self.counts["rejected"] += len(rejected) or sent
            first = rejected[0] if rejected else data[:200]
            self._warn.warning(
                "rejected", "tally_client: Tally rejected %d events, e.g. %s", len(rejected) or sent, first
            )

    def _post(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return self._http.request("POST", self._path, body, self._headers)
