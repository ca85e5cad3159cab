"""Provider connections (the stored Admin API key) and the sync of the provider's own usage and
cost reports.

Invariants:
- The Admin API key is stored only as a Fernet token (core.secrets), keyed by HKDF from TALLY_ENCRYPTION_KEY
  (or SECRET_KEY when that is empty). It is decrypted only to build the SDK client of one sync,
  and is never logged, rendered or returned: callers get `admin_key_last4`.
- A sync reads whole UTC days [start, today] and *replaces* the connection's figures for those
  days in one transaction (delete, then insert what was read), under a row lock on the
  connection: re-running it, or two syncs at once, leave exactly one row per (day, model), and a
  day the provider revised reads as revised. The last 3 days are read again on every sync
  because the provider revises recent days.
- A sync never raises: any failure (invalid key, 429 past our patience, network, a report we
  cannot read) is recorded on the connection (`last_error`, shown on its page and in the API)
  and the stored figures stay as they were. Beat keeps running; the next hourly run retries.
- Every page of both reports is followed; a 429 waits for its `retry-after` (up to
  RATE_LIMIT_MAX_WAIT_S, at most RATE_LIMIT_ATTEMPTS times) before the page is asked again.
- The SDK reads ANTHROPIC_BASE_URL itself (no base_url is passed), so a proxy or a test fake
  is reached the same way as api.anthropic.com.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anthropic
from cryptography.fernet import InvalidToken
from django.db import transaction
from django.utils import timezone

from core.secrets import SecretPurpose, secret_decrypt, secret_encrypt
from providers.models import ProviderConnection, ProviderDailyUsage
from providers.selectors import Side  # one (day, model)'s figures, the shape both sides share

if TYPE_CHECKING:
    from projects.models import Project

logger = logging.getLogger(__name__)

DEFAULT_SYNC_DAYS = 7  # CONTRACT §2 `sync_provider_usage --days` default, and a new connection's first sync
REREAD_DAYS = 3  # the provider revises recent days: every sync reads at least today and the 2 before
MAX_SYNC_DAYS = 365  # the report's own horizon ("within the last 365 days")
REPORT_EARLIEST = date(2026, 1, 1)  # the report has nothing before this ("no earlier than 2026-01-01")
REPORT_MAX_RANGE_DAYS = 31  # one request spans at most 31 days
PAGE_LIMIT = 1000  # rows per page, the report's maximum: fewest round trips
MAX_PAGES = 500  # a runaway cursor stops here instead of looping forever
RATE_LIMIT_ATTEMPTS = 4
RATE_LIMIT_MAX_WAIT_S = 60.0  # a longer retry-after ends this sync; the next hourly one tries again
RATE_LIMIT_DEFAULT_WAIT_S = 5.0  # a 429 without retry-after
REQUEST_TIMEOUT_S = 30.0

# The salt and info the stored keys were encrypted with: changing them loses every stored key.
ADMIN_KEY_SECRET = SecretPurpose(salt=b"tally/providers", info=b"provider admin key encryption v1")


# --- the stored key ---------------------------------------------------------------------------


def admin_key_encrypt(*, admin_key: str) -> str:
    return secret_encrypt(admin_key, purpose=ADMIN_KEY_SECRET)


def admin_key_decrypt(*, token: str) -> str:
    """Raises cryptography.fernet.InvalidToken when the encryption secret changed since."""
    return secret_decrypt(token, purpose=ADMIN_KEY_SECRET)


# --- the connection ---------------------------------------------------------------------------


def provider_connection_set(
    *, project: Project, admin_key: str | None, api_key_ids: list[str], workspace_ids: list[str]
) -> ProviderConnection:
    """Create or update the project's connection. `admin_key` None keeps the stored key (an update
    of the scope only); a new key clears the last error, which was about the old one."""
    with transaction.atomic():
        connection = ProviderConnection.objects.select_for_update().filter(project=project).first()
        if connection is None:
            if not admin_key:
                raise ValueError("a new connection needs an admin key")
            connection = ProviderConnection(project=project)
        if admin_key:
            connection.admin_key_encrypted = admin_key_encrypt(admin_key=admin_key)
            connection.admin_key_last4 = admin_key[-4:]
            connection.last_error = ""
            connection.last_error_at = None
        connection.api_key_ids = api_key_ids
        connection.workspace_ids = workspace_ids
        connection.save()
    return connection


def provider_connection_delete(*, project: Project) -> bool:
    """Remove the connection and, with it, the figures read with its key. False if there was none."""
    deleted, _ = ProviderConnection.objects.filter(project=project).delete()
    return deleted > 0


# --- sync -------------------------------------------------------------------------------------


class SyncError(Exception):
    """A sync failure worth telling the admin in these words."""


@dataclass
class SyncResult:
    project_slug: str
    ok: bool
    start: date | None = None
    end: date | None = None  # inclusive
    rows: int = 0
    error: str = ""


def sync_window(*, connection: ProviderConnection, today: date, days: int | None) -> date:
    """First day to read: `days` back (default 7 for a connection never synced, else from just
    before the last day read, so a gap since then is filled), never fewer than the last
    REREAD_DAYS days, never beyond what the report holds."""
    if days is not None:
        start = today - timedelta(days=max(days, 1) - 1)
    elif connection.covered_to is None:
        start = today - timedelta(days=DEFAULT_SYNC_DAYS - 1)
    else:
        start = today
    if connection.covered_to is not None:
        start = min(start, connection.covered_to - timedelta(days=REREAD_DAYS - 1))
    start = min(start, today - timedelta(days=REREAD_DAYS - 1))
    return max(start, today - timedelta(days=MAX_SYNC_DAYS - 1), REPORT_EARLIEST)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _retry_after_s(response: Any) -> float:
    raw = response.headers.get("retry-after") if response is not None else None
    try:
        return max(float(raw), 0.0) if raw is not None else RATE_LIMIT_DEFAULT_WAIT_S
    except ValueError:
        return RATE_LIMIT_DEFAULT_WAIT_S


def _call_rate_limited(call: Callable[[], Any], *, sleep: Callable[[float], None]) -> Any:
    for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
        try:
            return call()
        except anthropic.RateLimitError as exc:
            wait = _retry_after_s(exc.response)
            if attempt == RATE_LIMIT_ATTEMPTS or wait > RATE_LIMIT_MAX_WAIT_S:
                raise SyncError(
                    f"Anthropic rate-limited the sync (429, retry-after {wait:g} s) "
                    f"after {attempt} attempt(s); the next hourly sync tries again"
                ) from exc
            logger.info("provider report rate-limited; waiting %.1f s (retry-after)", wait)
            sleep(wait)
    raise AssertionError("unreachable")


def _all_pages(
    list_page: Callable[..., Any], params: dict[str, Any], *, sleep: Callable[[float], None]
) -> Iterable[Any]:
    """Every row of a report, page after page (the SDK's cursor: `next_page` while `has_more`)."""
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page_params = {**params, "page": cursor} if cursor else params
        page = _call_rate_limited(functools.partial(list_page, **page_params), sleep=sleep)
        yield from page.data
        if not page.has_next_page():
            return
        cursor = page.next_page
    raise SyncError(f"the report had more than {MAX_PAGES} pages; stopped")


def _read_reports(
    client: anthropic.Anthropic,
    *,
    connection: ProviderConnection,
    start: date,
    today: date,
    sleep: Callable[[float], None],
) -> dict[tuple[date, str], Side]:
    """The usage and cost reports for [start, today], daily, per model, summed per (day, model)."""
    analytics = client.beta.organization.analytics
    figures: dict[tuple[date, str], Side] = {}
    cost_only: set[tuple[date, str]] = set()
    chunk = start
    while chunk <= today:
        chunk_end = min(chunk + timedelta(days=REPORT_MAX_RANGE_DAYS), today + timedelta(days=1))
        params: dict[str, Any] = {
            "starting_at": _midnight(chunk),
            "ending_at": _midnight(chunk_end),
            "time_bucket_width": "1d",
            "group_by": ["model"],
            "limit": PAGE_LIMIT,
        }
        if connection.api_key_ids:
            params["api_key_ids"] = list(connection.api_key_ids)
        if connection.workspace_ids:
            params["workspace_ids"] = list(connection.workspace_ids)
        for item in _all_pages(analytics.usage.list, params, sleep=sleep):
            day = item.starting_at.astimezone(UTC).date()
            if not start <= day <= today:
                continue
            row = figures.setdefault((day, item.group.model or ""), Side())
            usage = item.usage
            row.requests += usage.requests or 0
            row.uncached_input_tokens += usage.uncached_input_tokens
            row.cache_read_input_tokens += usage.cache_read_input_tokens
            row.cache_creation_5m_input_tokens += usage.cache_creation.ephemeral_5m_input_tokens
            row.cache_creation_1h_input_tokens += usage.cache_creation.ephemeral_1h_input_tokens
            row.output_tokens += usage.output_tokens
        for item in _all_pages(analytics.cost.list, params, sleep=sleep):
            day = item.starting_at.astimezone(UTC).date()
            if not start <= day <= today:
                continue
            if item.cost.currency != "USD":
                raise SyncError(f"the cost report is in {item.cost.currency}; Tally compares USD only")
            key = (day, item.group.model or "")
            if key not in figures:
                cost_only.add(key)
            row = figures.setdefault(key, Side())
            # `amount` is post-discount fractional cents, as a decimal string: exact to the cent's fraction.
            row.cost_usd += Decimal(item.cost.amount) / 100
            if key in cost_only:  # the usage report had no row for it: the cost report's count is all there is
                row.requests += item.cost.requests or 0
        chunk = chunk_end
    return figures


def _api_message(exc: anthropic.APIStatusError) -> str:
    """The API's own words (`error.message` of its error body), not the SDK's dump of the body."""
    body = exc.body
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message)[:300] if message else exc.message[:300]


def _failure_message(exc: BaseException) -> str:
    if isinstance(exc, SyncError):
        return str(exc)
    if isinstance(exc, InvalidToken):
        return (
            "the stored Admin API key cannot be decrypted: SECRET_KEY or TALLY_ENCRYPTION_KEY changed "
            "since it was saved; save the key again"
        )
    if isinstance(exc, anthropic.AuthenticationError):
        return f"Anthropic refused the Admin API key (401): {_api_message(exc)}. Save a valid Admin API key."
    if isinstance(exc, anthropic.PermissionDeniedError):
        return f"the key may not read usage and cost reports (403): {_api_message(exc)}. Use an Admin API key."
    if isinstance(exc, anthropic.APIStatusError):
        return f"Anthropic answered {exc.status_code}: {_api_message(exc)}"
    if isinstance(exc, anthropic.APIConnectionError):
        return f"could not reach the Anthropic API: {exc}"
    return f"the sync failed unexpectedly ({type(exc).__name__}); see the worker log"


def _store(
    *, connection_id: int, start: date, today: date, figures: dict[tuple[date, str], Side], now: datetime
) -> int:
    with transaction.atomic():
        # Serialises syncs of one connection: each replaces its days whole, never interleaved.
        connection = ProviderConnection.objects.select_for_update().get(pk=connection_id)
        connection.days.filter(day__gte=start, day__lte=today).delete()
        ProviderDailyUsage.objects.bulk_create(
            [
                ProviderDailyUsage(connection=connection, day=day, model=model, synced_at=now, **vars(values))
                for (day, model), values in sorted(figures.items())
            ]
        )
        connection.covered_from = min(filter(None, (connection.covered_from, start)))
        connection.covered_to = max(filter(None, (connection.covered_to, today)))
        connection.last_synced_at = now
        connection.last_error = ""
        connection.last_error_at = None
        connection.save(
            update_fields=["covered_from", "covered_to", "last_synced_at", "last_error", "last_error_at", "updated_at"]
        )
    return len(figures)


def provider_usage_sync(
    *,
    connection: ProviderConnection,
    days: int | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncResult:
    """Read the provider's reports for the sync window and replace those days. Never raises for
    a failure of the provider, the network or the stored key: it is recorded on the connection."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    start = sync_window(connection=connection, today=today, days=days)
    slug = connection.project.slug
    try:
        admin_key = admin_key_decrypt(token=connection.admin_key_encrypted)
        # No base_url: the SDK takes ANTHROPIC_BASE_URL from the environment itself. Our own
        # retry loop honours retry-after with a cap, so the SDK's (uncapped) retries are off.
        with anthropic.Anthropic(api_key=admin_key, max_retries=0, timeout=REQUEST_TIMEOUT_S) as client:
            figures = _read_reports(client, connection=connection, start=start, today=today, sleep=sleep)
    except Exception as exc:  # noqa: BLE001 - recorded and shown, never raised into beat (module docstring)
        message = _failure_message(exc)
        if not isinstance(exc, SyncError | InvalidToken | anthropic.APIError):
            logger.exception("provider sync of %s failed", slug)
        else:
            logger.warning("provider sync of %s failed: %s", slug, message)
        ProviderConnection.objects.filter(pk=connection.pk).update(last_error=message, last_error_at=now)
        return SyncResult(project_slug=slug, ok=False, start=start, end=today, error=message)
    rows = _store(connection_id=connection.pk, start=start, today=today, figures=figures, now=now)
    return SyncResult(project_slug=slug, ok=True, start=start, end=today, rows=rows)


def provider_usage_sync_all(
    *,
    project_slug: str | None = None,
    days: int | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[SyncResult]:
    """Sync every connected project (or just `project_slug`), one after the other."""
    connections = ProviderConnection.objects.select_related("project").order_by("project__slug")
    if project_slug is not None:
        connections = connections.filter(project__slug=project_slug)
    return [provider_usage_sync(connection=c, days=days, now=now, sleep=sleep) for c in connections]
