"""The events explorer: its query-string form, its selection of raw events, and its CSV export.

The one dashboard page that lists calls rather than aggregates. It reads them through
ingest.selectors (`calls_read`, `calls_iter`), which builds the SQL over `ingest_event`: every
read bounded by project and time range (partition pruning), filtered in SQL and ordered by
time, latency, cost or tokens, each with its own index, ties broken by the event id. Pages
are keyset pages: the cursor is the last row's (key, id), and the next page is the rows
strictly after it in that order (no OFFSET: page 200 costs what page 1 does). The CSV export
walks the same order in chunks of `CSV_CHUNK` rows, so the whole selection streams in
constant memory.

Parameters (CONTRACT / cross-branch agreement 2): the filter bar's (project, range,
environment, service, model, feature, user) plus `status`, `error_type`, `http_status`,
`kind`, `min_latency_ms`, `min_cost_usd`, `request_id`, `sort`, `cursor`, `format=csv`.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django import forms
from django.db.models import QuerySet
from django.http import QueryDict

from dashboard.forms import Filters
from dashboard.selectors import Scope, scope_resolve
from ingest.selectors import Call, CallSelection, calls_iter, calls_read
from projects.selectors import environment_ids
from rollups.selectors import features_seen, hours_with_calls

if TYPE_CHECKING:
    from projects.models import Project

PAGE_SIZE = 50
CSV_CHUNK = 2000  # rows per keyset read of the export: a few hundred KB in memory at a time

STATUSES = (("", "Any status"), ("ok", "ok"), ("error", "error"))
KINDS = (("", "Batch and online"), ("online", "Online only"), ("batch", "Batch only"))
SORTS = (
    ("time", "Newest first"),
    ("cost", "Most expensive first"),
    ("latency", "Slowest first"),
    ("tokens", "Most tokens first"),
)

_TIME_CURSOR = re.compile(
    r"^(?P<key>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d))_(?P<id>\d{1,19})$"
)
_FLOAT_CURSOR = re.compile(r"^(?P<key>\d+(?:\.\d+)?(?:e[+-]?\d+)?)_(?P<id>\d{1,19})$")
_INT_CURSOR = re.compile(r"^(?P<key>-1|\d{1,19})_(?P<id>\d{1,19})$")
CURSOR_PATTERNS = {"time": _TIME_CURSOR, "latency": _FLOAT_CURSOR, "cost": _INT_CURSOR, "tokens": _INT_CURSOR}


# --- the form -----------------------------------------------------------------------------------


class ExplorerForm(forms.Form):
    status = forms.ChoiceField(choices=STATUSES, required=False)
    error_type = forms.CharField(required=False, max_length=64)
    http_status = forms.IntegerField(required=False, min_value=100, max_value=599)
    kind = forms.ChoiceField(choices=KINDS, required=False)
    min_latency_ms = forms.FloatField(required=False, min_value=0, max_value=3_600_000)
    # At most 10 decimals: costs are stored in 1e-10 USD steps, so the bound converts exactly.
    min_cost_usd = forms.DecimalField(required=False, min_value=0, max_digits=20, decimal_places=10)
    request_id = forms.CharField(required=False, max_length=128)
    sort = forms.ChoiceField(choices=SORTS, required=False)
    cursor = forms.CharField(required=False, max_length=80)
    format = forms.ChoiceField(choices=(("", "page"), ("html", "page"), ("csv", "CSV")), required=False)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        raw = data.get("cursor")
        if raw and "sort" not in self.errors:
            sort = data.get("sort") or "time"
            match = CURSOR_PATTERNS[sort].match(raw)
            if match is None:
                self.add_error("cursor", f"not a cursor of the {sort!r} order; starting from the first page.")
            else:
                key = match["key"]
                value = (
                    datetime.fromisoformat(key.replace("Z", "+00:00"))
                    if sort == "time"
                    else float(key)
                    if sort == "latency"
                    else int(key)
                )
                data["cursor_key"] = (value, int(match["id"]))
        return data


@dataclass(frozen=True)
class Explorer:
    """The explorer's own parameters, parsed. Bad ones are dropped and named in `errors`."""

    status: str = ""
    error_type: str = ""
    http_status: int | None = None
    kind: str = ""
    min_latency_ms: float | None = None
    min_cost_usd: Decimal | None = None
    request_id: str = ""
    sort: str = "time"
    cursor: tuple[Any, int] | None = None
    csv: bool = False
    errors: tuple[str, ...] = ()

    def params(self, **overrides: Any) -> dict[str, str]:
        """Query parameters reproducing these (empty ones, the default sort and no cursor left out)."""
        out: dict[str, Any] = {
            "status": self.status,
            "error_type": self.error_type,
            "http_status": self.http_status,
            "kind": self.kind,
            "min_latency_ms": self.min_latency_ms,
            "min_cost_usd": self.min_cost_usd,
            "sort": "" if self.sort == "time" else self.sort,
        }
        out.update(overrides)
        return {k: _param(v) for k, v in out.items() if v not in ("", None)}

    @property
    def sort_label(self) -> str:
        return dict(SORTS)[self.sort]


def _param(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}" if value == int(value) else repr(value)
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def _message(name: str, messages: Any) -> str:
    text = " ".join(str(m) for m in messages)
    return text if name == "__all__" else f"{name}: {text}"


def explorer_parse(params: QueryDict) -> Explorer:
    form = ExplorerForm(params)
    form.is_valid()
    data = form.cleaned_data
    return Explorer(
        status=data.get("status") or "",
        error_type=data.get("error_type") or "",
        http_status=data.get("http_status"),
        kind=data.get("kind") or "",
        min_latency_ms=data.get("min_latency_ms"),
        min_cost_usd=data.get("min_cost_usd"),
        request_id=data.get("request_id") or "",
        sort=data.get("sort") or "time",
        cursor=data.get("cursor_key"),
        csv=data.get("format") == "csv",
        errors=tuple(_message(name, messages) for name, messages in form.errors.items()),
    )


def cursor_format(sort: str, key: Any, event_id: int) -> str:
    if sort == "time":
        key = key.astimezone(UTC).isoformat().replace("+00:00", "Z")
    elif sort == "latency":
        key = repr(float(key))  # repr round-trips a double exactly
    return f"{key}_{event_id}"


# --- the selection ------------------------------------------------------------------------------

# A service, model or feature found in at most this many hours of the range is read hour by hour.
RARE_HOURS = 48


def selection_of(
    filters: Filters, explorer: Explorer, *, project_id: int, environments: dict[str, int]
) -> CallSelection | None:
    """The explorer's selection; None when it is certainly empty (an unknown environment, a rare
    value in no hour of the range). An unknown request id is ingest's to find empty."""
    environment_id = None
    if filters.environment:
        if filters.environment not in environments:
            return None
        environment_id = environments[filters.environment]
    hours = None
    few_rows = bool(filters.user or explorer.request_id)
    dimensions: dict[str, str | int] = {
        name: value
        for name, value in (("service", filters.service), ("model", filters.model), ("feature", filters.feature))
        if value
    }
    if dimensions and not few_rows:
        # A rare service, model or feature (bench/pages.py: a feature with 6 calls in 30 days took
        # 2 s walking the time index): the aggregates say which hours hold it, and only those are
        # read. Past RARE_HOURS it is common enough for the sort index to meet matches quickly.
        if environment_id is not None:
            dimensions["environment_id"] = environment_id
        found = hours_with_calls(
            project_id=project_id, start=filters.start, end=filters.end, filters=dimensions, limit=RARE_HOURS
        )
        if found is not None:
            if not found:
                return None
            hours = tuple(found)
    return CallSelection(
        project_id=project_id,
        start=filters.start,
        end=filters.end,
        sort=explorer.sort,
        request_id=explorer.request_id,
        environment_id=environment_id,
        service=filters.service,
        model=filters.model,
        feature=filters.feature,
        user_id=filters.user,
        status=explorer.status,
        error_type=explorer.error_type,
        http_status=explorer.http_status,
        batch={"batch": True, "online": False}.get(explorer.kind),
        min_latency_ms=explorer.min_latency_ms,
        min_cost_usd=explorer.min_cost_usd,
        hours=hours,
    )


# --- the page -----------------------------------------------------------------------------------


@dataclass
class EventsPage:
    filters: Filters
    scope: Scope
    explorer: Explorer
    events: list[Call] = field(default_factory=list)
    next_cursor: str = ""
    features: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.scope.has_events

    @property
    def searched_request_id(self) -> bool:
        return bool(self.explorer.request_id)

    page_size: int = PAGE_SIZE

    def params(self, **overrides: Any) -> dict[str, str]:
        """The page's whole query (filter bar and explorer), with overrides; empty values left out."""
        out = {**self.filters.params(feature=self.filters.feature, user=self.filters.user), **self.explorer.params()}
        out.update({k: _param(v) for k, v in overrides.items()})
        return {k: v for k, v in out.items() if v not in ("", "None")}

    @property
    def list_querystring(self) -> str:
        return urlencode(self.params())

    @property
    def next_querystring(self) -> str:
        return urlencode(self.params(cursor=self.next_cursor))

    @property
    def csv_querystring(self) -> str:
        return urlencode(self.params(format="csv"))

    @property
    def asks(self) -> list[tuple[str, str]]:
        """Ready-made questions: the current dimension filters with a range and an order of their own."""
        yesterday = (self.filters.now.astimezone(UTC) - timedelta(days=1)).date().isoformat()
        keep = {**self.filters.params(feature=self.filters.feature, user=self.filters.user)}
        for name in ("range", "from", "to"):
            keep.pop(name, None)
        questions = [
            ("Most expensive calls yesterday", {"range": "custom", "from": yesterday, "to": yesterday, "sort": "cost"}),
            ("Slowest online calls, last 24 hours", {"range": "24h", "kind": "online", "sort": "latency"}),
            ("Errors, last 24 hours", {"range": "24h", "status": "error"}),
            ("Most tokens, last 7 days", {"range": "7d", "sort": "tokens"}),
        ]
        return [(label, urlencode({**keep, **extra})) for label, extra in questions]


def _environments(project_id: int) -> dict[str, int]:
    return environment_ids(project_id=project_id)


def _features(project_id: int, filters: Filters) -> list[str]:
    """Features seen in the range (daily aggregates: a few rows a day), for the feature box's suggestions."""
    seen = features_seen(project_id=project_id, first_day=filters.from_date, last_day=filters.to_date)
    return sorted(seen | ({filters.feature} if filters.feature else set()))


def events_page(filters: Filters, explorer: Explorer, *, projects: QuerySet[Project]) -> EventsPage:
    """One page (50 calls) of the selection in the chosen order, and the cursor of the next page."""
    scope = scope_resolve(filters, projects=projects)
    page = EventsPage(filters=filters, scope=scope, explorer=explorer)
    if scope.project is None or not scope.has_events:
        return page
    project_id = scope.project.pk
    page.features = _features(project_id, filters)
    environments = _environments(project_id)
    selection = selection_of(filters, explorer, project_id=project_id, environments=environments)
    if selection is None:
        return page
    rows = calls_read(selection, after=explorer.cursor, limit=PAGE_SIZE + 1)
    names = {pk: name for name, pk in environments.items()}
    for row in rows:
        row.environment = names.get(row.environment_id, "")
    page.events = rows[:PAGE_SIZE]
    if len(rows) > PAGE_SIZE:
        last = page.events[-1]
        page.next_cursor = cursor_format(explorer.sort, last.sort_key, last.id)
    return page


# --- the CSV export -----------------------------------------------------------------------------

# Each CSV column: its header and how its value is written (see csv_row).
CSV_COLUMNS: tuple[tuple[str, str], ...] = (
    ("timestamp", "time"),
    ("request_id", "text"),
    ("environment", "text"),
    ("service", "text"),
    ("feature", "text"),
    ("user_id", "text"),
    ("model", "text"),
    ("provider", "text"),
    ("status", "raw"),
    ("error_type", "text"),
    ("http_status", "number"),
    ("stop_reason", "text"),
    ("batch", "bool"),
    ("service_tier", "text"),
    ("latency_ms", "number"),
    ("time_to_first_token_ms", "number"),
    ("input_tokens", "number"),
    ("output_tokens", "number"),
    ("cache_read_input_tokens", "number"),
    ("cache_creation_input_tokens", "number"),
    ("cache_write_5m_tokens", "number"),
    ("cache_write_1h_tokens", "number"),
    ("total_tokens", "number"),
    ("cost_usd", "number"),
    ("cache_savings_usd", "number"),
    ("client_cost_usd", "number"),
    ("price_source", "text"),
    ("metadata", "json"),
    ("event_id", "id"),
)
CSV_HEADER = tuple(name for name, _ in CSV_COLUMNS)
# Text a client sent that a spreadsheet would run as a formula (CSV injection): prefixed with
# a quote, as OWASP advises. Only client-supplied text columns; numbers are written as numbers.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, float):
        return repr(value) if value != int(value) else str(int(value))
    return str(value)


_CSV_WRITE: dict[str, Callable[[Call, str], str]] = {
    "time": lambda call, _: call.timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    "text": lambda call, name: _text(getattr(call, name)),
    "number": lambda call, name: _number(getattr(call, name)),
    "raw": lambda call, name: getattr(call, name),
    "bool": lambda call, name: "true" if getattr(call, name) else "false",
    "json": lambda call, _: _text(_metadata_json(call.metadata)),
    "id": lambda call, _: str(call.id),
}


def csv_row(call: Call) -> list[str]:
    return [_CSV_WRITE[kind](call, name) for name, kind in CSV_COLUMNS]


def _metadata_json(value: Any) -> str:
    """Metadata as compact JSON with sorted keys ("" when none); the driver may hand jsonb over as text."""
    if value in (None, "", {}):
        return ""
    data = json.loads(value) if isinstance(value, str) else value
    return json.dumps(data, sort_keys=True, separators=(",", ":")) if data else ""


class _Line:
    """A file-like that hands back what csv.writer writes, so each row can be yielded."""

    def write(self, value: str) -> str:
        return value


@dataclass(frozen=True)
class Export:
    """A CSV export ready to stream, or the problems that stop it (bad parameters, nothing visible)."""

    filename: str = ""
    lines: Iterator[str] | None = None
    errors: tuple[str, ...] = ()


def events_csv(filters: Filters, explorer: Explorer, *, projects: QuerySet[Project]) -> Export:
    """The whole selection as CSV lines (a header first), read lazily in keyset chunks.

    Unlike the page, which ignores a bad parameter with a note, an export refuses it: a file
    that silently covers more than was asked for would be read as the answer.
    """
    errors = (*filters.errors, *explorer.errors)
    if errors:
        return Export(errors=errors)
    scope = scope_resolve(filters, projects=projects)
    if scope.project is None or (filters.project_slug and scope.project.slug != filters.project_slug):
        # The page falls back to another project with a note; a file must not.
        name = f" {filters.project_slug!r}" if filters.project_slug else ""
        return Export(errors=(f"no project{name} that you can see",))
    project = scope.project
    environments = _environments(project.pk)
    selection = selection_of(filters, explorer, project_id=project.pk, environments=environments)
    names = {pk: name for name, pk in environments.items()}
    writer = csv.writer(_Line())

    def lines() -> Iterator[str]:
        yield writer.writerow(CSV_HEADER)
        if selection is None:
            return
        for call in calls_iter(selection, chunk=CSV_CHUNK):
            call.environment = names.get(call.environment_id, "")
            yield writer.writerow(csv_row(call))

    stamp = f"{filters.from_date:%Y%m%d}-{filters.to_date:%Y%m%d}"
    return Export(filename=f"tally-calls-{project.slug}-{stamp}.csv", lines=lines())
