"""The filter bar (GET query string) shared by every page (the explorer's own fields: dashboard/explorer.py).

Forms only parse; the choices shown in the selects come from the page's selector (the
aggregates seen in the range), so a filter value is checked for shape here, not for
existence. An invalid parameter is dropped with a message rather than failing the page:
these are links people paste around.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode

from django import forms
from django.http import QueryDict

RANGES = (("24h", "Last 24 hours"), ("7d", "Last 7 days"), ("30d", "Last 30 days"), ("custom", "Custom"))
DEFAULT_RANGE = "7d"
MAX_CUSTOM_DAYS = 400
# Hourly buckets up to two days, daily beyond (a chart of 720 hourly bars reads as noise).
HOURLY_UP_TO = timedelta(hours=48)
DIMENSIONS = ("environment", "service", "model")


class FilterForm(forms.Form):
    project = forms.SlugField(required=False, max_length=64)
    range = forms.ChoiceField(choices=RANGES, required=False)
    environment = forms.CharField(required=False, max_length=128)
    service = forms.CharField(required=False, max_length=128)
    model = forms.CharField(required=False, max_length=128)
    feature = forms.CharField(required=False, max_length=128)
    user = forms.CharField(required=False, max_length=256)

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        # `from` is a Python keyword, so these two can't be class attributes.
        self.fields["from"] = forms.DateField(required=False, input_formats=["%Y-%m-%d"])
        self.fields["to"] = forms.DateField(required=False, input_formats=["%Y-%m-%d"])

    def clean(self):  # type: ignore[no-untyped-def]
        data = super().clean()
        if data.get("range") == "custom":
            start, end = data.get("from"), data.get("to")
            if start is None or end is None:
                raise forms.ValidationError("A custom range needs both a from and a to date.")
            if end < start:
                raise forms.ValidationError("The to date must not be before the from date.")
            if (end - start).days >= MAX_CUSTOM_DAYS:
                raise forms.ValidationError(f"A custom range may span at most {MAX_CUSTOM_DAYS} days.")
        return data


@dataclass(frozen=True)
class Filters:
    """What every page shows: a project, a half-open UTC range [start, end) and dimension filters."""

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
    errors: tuple[str, ...] = ()

    @property
    def granularity(self) -> str:
        return "hour" if self.end - self.start <= HOURLY_UP_TO else "day"

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
    def metric_filters(self) -> dict[str, list[str]]:
        return {name: [getattr(self, name)] for name in DIMENSIONS if getattr(self, name)}

    @property
    def from_date(self) -> date:
        return self.start.date()

    @property
    def to_date(self) -> date:
        """Inclusive last day, as the date inputs show it."""
        return (self.end - timedelta(microseconds=1)).date()

    @property
    def range_label(self) -> str:
        labels = dict(RANGES)
        span = f"{self.start:%b %d %H:%M} – {self.end:%b %d %H:%M} UTC" if self.granularity == "hour" else (
            f"{self.from_date:%b %d} – {self.to_date:%b %d, %Y} UTC")
        if self.range == "custom":
            return span
        return f"{labels[self.range]} ({span})"

    def params(self, **overrides: str) -> dict[str, str]:
        """The query parameters that reproduce these filters (empty ones left out)."""
        out = {"project": self.project_slug, "range": self.range}
        if self.range == "custom":
            out["from"] = self.from_date.isoformat()
            out["to"] = self.to_date.isoformat()
        for name in DIMENSIONS:
            out[name] = getattr(self, name)
        out.update(overrides)
        return {k: v for k, v in out.items() if v}

    @property
    def querystring(self) -> str:
        return urlencode(self.params())


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def range_bounds(range_: str, *, now: datetime, from_date: date | None = None,
                 to_date: date | None = None) -> tuple[datetime, datetime]:
    """[start, end) in UTC. 24h is the last 24 whole hours including the current one; 7d/30d
    are whole UTC days ending with today, so they read the daily aggregates."""
    now = now.astimezone(UTC)
    if range_ == "24h":
        end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return end - timedelta(hours=24), end
    if range_ == "custom" and from_date is not None and to_date is not None:
        return _midnight(from_date), _midnight(to_date) + timedelta(days=1)
    days = 30 if range_ == "30d" else 7
    end = _midnight(now.date()) + timedelta(days=1)
    return end - timedelta(days=days), end


def _message(name: str, messages: Iterable[object]) -> str:
    text = " ".join(str(m) for m in messages)
    return text if name == "__all__" else f"{name}: {text}"


def filters_parse(params: QueryDict, *, now: datetime) -> Filters:
    form = FilterForm(params)
    form.is_valid()
    data = form.cleaned_data
    errors = [_message(name, messages) for name, messages in form.errors.items()]
    range_ = data.get("range") or DEFAULT_RANGE
    if range_ == "custom" and form.non_field_errors():
        range_ = DEFAULT_RANGE
    start, end = range_bounds(range_, now=now, from_date=data.get("from"), to_date=data.get("to"))
    return Filters(
        project_slug=data.get("project") or "", range=range_, start=start, end=end, now=now,
        environment=data.get("environment") or "", service=data.get("service") or "", model=data.get("model") or "",
        feature=data.get("feature") or "", user=data.get("user") or "",
        errors=tuple(errors),
    )
