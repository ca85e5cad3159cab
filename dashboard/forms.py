"""The filter bar (GET query string) shared by every page (the explorer's own fields: dashboard/explorer.py).

Forms only parse; the choices shown in the selects come from the page's selector (the
aggregates seen in the range), so a filter value is checked for shape here, not for
existence. An invalid parameter is dropped with a message rather than failing the page:
these are links people paste around.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.http import QueryDict

RANGES = (
    ("1h", "Last hour"),
    ("6h", "Last 6 hours"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("custom", "Custom"),
)
# Presets in whole hours ending with the current hour; the others are whole UTC days ending today.
HOUR_PRESETS = {"1h": 1, "6h": 6, "24h": 24}
DEFAULT_RANGE = "7d"
MAX_CUSTOM_DAYS = 400
# Hourly buckets up to two days, daily beyond (a chart of 720 hourly bars reads as noise).
HOURLY_UP_TO = timedelta(hours=48)
DIMENSIONS = ("environment", "service", "model")
# Filters that metrics_query answers from the aggregates (user_id is kept per day apart).
METRIC_DIMENSIONS = (*DIMENSIONS, "feature")
_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")


@dataclass(frozen=True)
class Instant:
    """A `from`/`to` bound as given: a date (whole days, `to` inclusive) or an instant."""

    at: datetime
    is_date: bool


class InstantField(forms.Field):
    """RFC 3339 (`2026-12-03T01:00:00Z`, any offset), a date (`2026-12-03`), or what a datetime-local
    input sends (`2026-12-03T01:00`, read as UTC: the filter bar labels its inputs UTC)."""

    def to_python(self, value: Any) -> Instant | None:
        text = "" if value in self.empty_values else str(value).strip()
        if not text:
            return None
        if len(text) > 40:
            raise forms.ValidationError("Not a date or time (too long).")
        try:
            if _DATE.match(text):
                return Instant(datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC), True)
            at = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError as exc:
            raise forms.ValidationError(
                f"{text!r} is neither a date (2026-12-03) nor an RFC 3339 time (2026-12-03T01:00:00Z)."
            ) from exc
        return Instant(at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC), False)


class FilterForm(forms.Form):
    project = forms.SlugField(required=False, max_length=64)
    range = forms.ChoiceField(choices=RANGES, required=False)
    environment = forms.CharField(required=False, max_length=128)
    service = forms.CharField(required=False, max_length=128)
    model = forms.CharField(required=False, max_length=128)
    feature = forms.CharField(required=False, max_length=128)
    user = forms.CharField(required=False, max_length=256)
    compare = forms.BooleanField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # `from` is a Python keyword, so these two can't be class attributes.
        self.fields["from"] = InstantField(required=False)
        self.fields["to"] = InstantField(required=False)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        start, end = data.get("from"), data.get("to")
        if start is None and end is None:
            if data.get("range") == "custom":
                raise forms.ValidationError("A custom range needs a from (and a to) date or time.")
            return data
        if start is None:
            raise forms.ValidationError("A custom range needs a from date or time.")
        if end is not None:
            end_at = end.at + timedelta(days=1) if end.is_date else end.at
            if end_at <= start.at:
                raise forms.ValidationError("The range must end after it starts (to is before from).")
            if end_at - start.at > timedelta(days=MAX_CUSTOM_DAYS):
                raise forms.ValidationError(f"A custom range may span at most {MAX_CUSTOM_DAYS} days.")
        return data


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_midnight(at: datetime) -> bool:
    return at.astimezone(UTC).time() == time(0)


@dataclass(frozen=True)
class Filters:
    """What every page shows: a project, a half-open UTC range [start, end) and dimension filters.

    `user` (an end user's user_id) is kept apart from the other dimensions: the aggregates
    keep per-user numbers per UTC day and environment only (requests, errors, spend).
    """

    project_slug: str
    range: str
    start: datetime
    end: datetime
    now: datetime
    environment: str = ""
    service: str = ""
    model: str = ""
    feature: str = ""
    user: str = ""
    compare: bool = False
    errors: tuple[str, ...] = ()

    @property
    def granularity(self) -> str:
        return "hour" if self.end - self.start <= HOURLY_UP_TO else "day"

    @property
    def step(self) -> timedelta:
        return timedelta(hours=1) if self.granularity == "hour" else timedelta(days=1)

    @property
    def effective_end(self) -> datetime:
        """The end of what can have data: the range end, or the end of the current hour."""
        current_hour_end = self.now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return max(self.start, min(self.end, current_hour_end))

    @property
    def previous(self) -> tuple[datetime, datetime]:
        """The period of equal length just before the elapsed part of this one (for KPI changes).

        A "last 7 days" range ends at tomorrow's midnight; comparing its elapsed 6.3 days with
        7 whole days would show a fake drop every morning, so both sides are equally long.
        """
        length = self.effective_end - self.start
        return self.start - length, self.start

    @property
    def previous_whole(self) -> tuple[datetime, datetime]:
        """The whole period of equal length just before this one: the compare overlay, bucket for bucket."""
        return self.start - (self.end - self.start), self.start

    @property
    def metric_filters(self) -> dict[str, list[str]]:
        return {name: [getattr(self, name)] for name in METRIC_DIMENSIONS if getattr(self, name)}

    @property
    def from_date(self) -> date:
        return self.start.date()

    @property
    def to_date(self) -> date:
        """Inclusive last day, as the date inputs show it."""
        return (self.end - timedelta(microseconds=1)).date()

    @property
    def from_input(self) -> str:
        """The start as a datetime-local input shows it (UTC)."""
        return self.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")

    @property
    def to_input(self) -> str:
        return self.end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")

    @property
    def range_label(self) -> str:
        labels = dict(RANGES)
        span = (
            f"{self.start:%b %d %H:%M} – {self.end:%b %d %H:%M} UTC"
            if self.granularity == "hour"
            else (f"{self.from_date:%b %d} – {self.to_date:%b %d, %Y} UTC")
        )
        if self.range == "custom":
            return span
        return f"{labels[self.range]} ({span})"

    def range_params(self, start: datetime | None = None, end: datetime | None = None) -> dict[str, str]:
        """`from`/`to` for a window (default: this custom range): dates when it is whole days, else
        RFC 3339 instants; a preset range is just its name."""
        if start is None and end is None and self.range != "custom":
            return {"range": self.range}
        start, end = start or self.start, end or self.end
        if _is_midnight(start) and _is_midnight(end):
            return {"from": start.date().isoformat(), "to": (end - timedelta(days=1)).date().isoformat()}
        return {"from": rfc3339(start), "to": rfc3339(end)}

    def dimension_params(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in (*METRIC_DIMENSIONS, "user") if getattr(self, name)}

    def params(self, **overrides: str) -> dict[str, str]:
        """The query parameters that reproduce these filters (empty ones left out)."""
        out = {"project": self.project_slug, **self.range_params(), **self.dimension_params()}
        if self.compare:
            out["compare"] = "1"
        out.update(overrides)
        return {k: v for k, v in out.items() if v}

    @property
    def querystring(self) -> str:
        return urlencode(self.params())

    def calls_params(self, start: datetime | None = None, end: datetime | None = None, **extra: str) -> dict[str, str]:
        """The events explorer's parameters (agreement 2) for the calls behind a window of this page:
        the project, the window as RFC 3339 instants (the explorer's half-open [from, to)), the
        page's dimension filters, plus `extra` (status, error_type, http_status, ...)."""
        out = {
            "project": self.project_slug,
            "from": rfc3339(start or self.start),
            "to": rfc3339(end or self.end),
            **self.dimension_params(),
            **extra,
        }
        return {k: v for k, v in out.items() if v}


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def range_bounds(
    range_: str, *, now: datetime, start: Instant | None = None, end: Instant | None = None
) -> tuple[datetime, datetime]:
    """[start, end) in UTC. Hour presets are whole hours ending with the current one; 7d/30d are
    whole UTC days ending with today, so they read the daily aggregates. A custom range snaps
    outwards to whole hours (the aggregates' smallest bucket); a `to` date is inclusive, a `to`
    time exclusive, and a missing `to` is the end of the current hour."""
    now = now.astimezone(UTC)
    current_hour_end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if start is not None:
        first = start.at.replace(minute=0, second=0, microsecond=0)
        if end is None:
            last = max(current_hour_end, first + timedelta(hours=1))
        elif end.is_date:
            last = end.at + timedelta(days=1)
        else:
            last = end.at.replace(minute=0, second=0, microsecond=0)
            if last < end.at:
                last += timedelta(hours=1)
        return first, last
    if range_ in HOUR_PRESETS:
        return current_hour_end - timedelta(hours=HOUR_PRESETS[range_]), current_hour_end
    days = 30 if range_ == "30d" else 7
    end_day = _midnight(now.date()) + timedelta(days=1)
    return end_day - timedelta(days=days), end_day


def _message(name: str, messages: Iterable[object]) -> str:
    text = " ".join(str(m) for m in messages)
    return text if name == "__all__" else f"{name}: {text}"


def filters_parse(params: QueryDict, *, now: datetime) -> Filters:
    form = FilterForm(params)
    form.is_valid()
    data = form.cleaned_data
    errors = [_message(name, messages) for name, messages in form.errors.items()]
    custom = data.get("from") is not None and not form.non_field_errors()
    range_ = "custom" if custom else (data.get("range") or DEFAULT_RANGE)
    if range_ == "custom" and not custom:
        range_ = DEFAULT_RANGE
    start, end = range_bounds(
        range_, now=now, start=data.get("from") if custom else None, end=data.get("to") if custom else None
    )
    return Filters(
        project_slug=data.get("project") or "",
        range=range_,
        start=start,
        end=end,
        now=now,
        environment=data.get("environment") or "",
        service=data.get("service") or "",
        model=data.get("model") or "",
        feature=data.get("feature") or "",
        user=data.get("user") or "",
        compare=bool(data.get("compare")),
        errors=tuple(errors),
    )
