"""The budget guard: `Tally(..., enforce_budgets=True)` refuses a call, before it reaches the API,
while a Tally budget covering it is exceeded.

Design:
- One background thread per `Tally` ("tally-client-budgets") asks `GET <endpoint>/api/v1/budgets/status`
  every `budget_refresh_interval` seconds. The request has no query parameters, so the answer
  lists every enabled budget of the key's project with its scope (service, user id) and whether
  it is `exceeded`. One request per interval covers every service and every end user of the
  process, however many users there are, and a user's first call is already judged.
- The answer is turned into a `_Verdicts` (only the EXCEEDED budgets, indexed by scope) and
  published by a single attribute assignment. The pre-call check reads that attribute: when no
  budget is exceeded (the normal case) it is one attribute read and one comparison. Nothing on
  the application's thread ever waits for the network.
- Fail open: when Tally is unreachable, slow, answers an error or something unparseable, the
  verdicts are cleared, so nothing is blocked, and a warning is logged (at most once a minute).
  A call made before the first answer arrived is not blocked either.
- A budget covers a call when its service is unset or the call's service (the context's, else
  the client's), and its user id is unset or the call's user id (the context's) as sent on the
  wire: hashed with `user_id_hmac_key` when one is set, so it matches the ids the events carry.
  A budget scoped by a dimension this client does not know is ignored (fail open).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from tally_client._events import wire_service, wire_user_id
from tally_client._http import KeepAliveConnection

STATUS_PATH = "/api/v1/budgets/status"
_KNOWN_SCOPE = frozenset({"environment", "service", "user_id"})
_USER_IDS_REMEMBERED = 4096
_USER_AGENT = "tally-client/0.1"


class BudgetExceeded(Exception):  # noqa: N818 - the name says what happened, as in the issue
    """A Tally budget covering this call is exceeded; raised before the request is sent.

    Attributes: `budget` (its name), `budget_id`, `period` ("day" or "month"), `limit_usd`,
    `spent_usd` and `scope` ({"environment", "service", "user_id"}, None meaning any).
    """

    def __init__(
        self,
        message: str,
        *,
        budget: str | None = None,
        limit_usd: float | None = None,
        spent_usd: float | None = None,
        period: str | None = None,
        budget_id: int | None = None,
        scope: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.budget = budget
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.period = period
        self.budget_id = budget_id
        self.scope = dict(scope or {})


class _Exceeded:
    """One exceeded budget, as the status API described it."""

    __slots__ = ("id", "limit_usd", "name", "period", "scope", "service", "spent_usd", "user_id")

    def __init__(self, item: Mapping[str, Any]) -> None:
        scope = item.get("scope") or {}
        self.id = item.get("id")
        self.name = str(item.get("name") or "")
        self.period = item.get("period")
        self.limit_usd = _number(item.get("limit_usd"))
        self.spent_usd = _number(item.get("spent_usd"))
        self.scope = dict(scope)
        self.service: str | None = scope.get("service") or None
        self.user_id: str | None = scope.get("user_id") or None

    def error(self) -> BudgetExceeded:
        period = {"day": "daily", "month": "monthly"}.get(str(self.period), str(self.period))
        spent = "?" if self.spent_usd is None else f"${self.spent_usd:,.2f}"
        limit = "?" if self.limit_usd is None else f"${self.limit_usd:,.2f}"
        return BudgetExceeded(
            f"Tally budget {self.name!r} exceeded: {spent} spent of {limit} ({period}); call not sent",
            budget=self.name,
            limit_usd=self.limit_usd,
            spent_usd=self.spent_usd,
            period=self.period,
            budget_id=self.id,
            scope=self.scope,
        )


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class _Verdicts:
    """The exceeded budgets of the last answer, indexed for the check. Never mutated: a new
    answer builds a new one (readers on other threads see either the old or the new)."""

    __slots__ = ("by_service", "by_user", "everyone")

    def __init__(self) -> None:
        self.everyone: _Exceeded | None = None  # project-wide: every call is over
        self.by_service: dict[str, _Exceeded] = {}  # scoped to a service only
        self.by_user: dict[str, list[_Exceeded]] = {}  # scoped to a (wire) user id, maybe a service too


def verdicts_from(budgets: Any) -> _Verdicts | None:
    """The `budgets` list of a status answer -> verdicts, or None when none is exceeded."""
    if not isinstance(budgets, list):
        raise TypeError("budgets is not a list")
    found = _Verdicts()
    any_exceeded = False
    for item in budgets:
        if not isinstance(item, Mapping) or item.get("exceeded") is not True:
            continue
        scope = item.get("scope") or {}
        if not isinstance(scope, Mapping) or any(v for k, v in scope.items() if k not in _KNOWN_SCOPE):
            continue  # scoped by something this client cannot judge: fail open
        budget = _Exceeded(item)
        any_exceeded = True
        if budget.user_id is not None:
            found.by_user.setdefault(budget.user_id, []).append(budget)
        elif budget.service is not None:
            found.by_service.setdefault(budget.service, budget)
        elif found.everyone is None:
            found.everyone = budget
    return found if any_exceeded else None


# Set in a forked child: the parent's thread does not exist there; the next check restarts it.
_RESTART = _Verdicts()


class BudgetGuard:
    """The refresher thread and the pre-call check of one `Tally`."""

    def __init__(
        self,
        *,
        endpoint: str,
        key: str,
        service: str,
        interval: float,
        timeout: float,
        user_id_key: bytes | None,
        warn: Any,
    ) -> None:
        base = endpoint.rstrip("/")
        if base.endswith("/api/v1/events"):
            base = base[: -len("/api/v1/events")]
        parts = urlsplit(base + STATUS_PATH)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Tally endpoint must be an http(s) URL, got {endpoint!r}")
        https = parts.scheme == "https"
        self._path = parts.path
        self._headers = {"Authorization": f"Bearer {key}", "Accept": "application/json", "User-Agent": _USER_AGENT}
        self._service = wire_service(service)
        self._interval = max(0.01, float(interval))
        self._user_id_key = user_id_key
        self._warn = warn
        self._users: dict[Any, str] = {}  # user id as given -> as on the wire (hashing is not free)
        self._http = KeepAliveConnection(
            parts.hostname, parts.port or (443 if https else 80), https=https, timeout=timeout
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._verdicts: _Verdicts | None = None
        self.blocked = 0
        self.refreshed = 0  # answers received (for tests and debugging)
        self._start()

    # -- the application's thread ------------------------------------------------------------

    def check(self, ctx: Mapping[str, Any] | None, *, count: bool = True) -> None:
        """Raise BudgetExceeded if a budget covering a call in context `ctx` is exceeded
        (counted in `blocked` unless `count` is False: `Tally.check_budgets()` only asks).
        The hot path: when nothing is exceeded, one attribute read and one comparison."""
        verdicts = self._verdicts
        if verdicts is None:
            return
        try:
            over = self._over(verdicts, ctx)
        except Exception:
            self._warn.warning("budget-check", "tally_client: budget check failed (call not blocked)", exc_info=True)
            return
        if over is not None:
            if count:
                with self._lock:
                    self.blocked += 1
                self._warn.warning(
                    f"budget-blocked:{over.id}",
                    "tally_client: budget %r exceeded, calls in its scope are refused (%d so far)",
                    over.name,
                    self.blocked,
                )
            raise over.error()

    def _over(self, verdicts: _Verdicts, ctx: Mapping[str, Any] | None) -> _Exceeded | None:
        if verdicts is _RESTART:
            self._start()
            return None
        service = self._service
        user = None
        if ctx:
            if ctx.get("service"):
                service = wire_service(ctx["service"])
            if verdicts.by_user and ctx.get("user_id") not in (None, ""):
                user = self._wire_user(ctx["user_id"])
        # The most specific budget names the reason.
        if user is not None:
            for budget in verdicts.by_user.get(user, ()):
                if budget.service is None or budget.service == service:
                    return budget
        if verdicts.by_service:
            found = verdicts.by_service.get(service)
            if found is not None:
                return found
        return verdicts.everyone

    def _wire_user(self, user_id: Any) -> str:
        wire = self._users.get(user_id)
        if wire is None:
            wire = wire_user_id(user_id, self._user_id_key)
            if len(self._users) >= _USER_IDS_REMEMBERED:
                self._users.clear()
            self._users[user_id] = wire
        return wire

    # -- lifecycle ----------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._verdicts is _RESTART:
                self._verdicts = None
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="tally-client-budgets", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._verdicts = None

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._thread = None
        self._http.forget()
        self._verdicts = None if self._stop.is_set() else _RESTART

    # -- the refresher thread -----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:
                self._verdicts = None
                self._warn.warning(
                    "budget-bug", "tally_client: budget refresher error (calls not blocked)", exc_info=True
                )
            self._stop.wait(self._interval)
        self._http.close()

    def refresh(self) -> None:
        """Ask Tally once and publish the verdicts (None, i.e. nothing blocked, on any failure)."""
        try:
            status, data = self._get()
        except (OSError, http.client.HTTPException) as exc:
            self._fail(
                "budget-unreachable",
                "tally_client: budget status unavailable (%s); budgets are not enforced until Tally answers",
                exc,
            )
            return
        if status != 200:
            self._fail(
                f"budget-status{status}",
                "tally_client: budget status answered %d (%s); budgets are not enforced until it answers 200",
                status,
                data[:200],
            )
            return
        try:
            verdicts = verdicts_from(json.loads(data)["budgets"])
        except (ValueError, KeyError, TypeError, AttributeError):
            self._fail(
                "budget-parse", "tally_client: budget status not understood (%s); budgets are not enforced", data[:200]
            )
            return
        if not self._stop.is_set():
            self._verdicts = verdicts
        self.refreshed += 1

    def _fail(self, kind: str, message: str, *args: Any) -> None:
        self._verdicts = None  # fail open
        self._warn.warning(kind, message, *args)

    def _get(self) -> tuple[int, bytes]:
        status, _, data = self._http.request("GET", self._path, None, self._headers)
        return status, data
