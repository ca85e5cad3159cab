"""Query-string parsing for GET /api/v1/metrics (CONTRACT §4), with errors naming the parameter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.http import QueryDict
from django.utils import timezone

from core.timeutil import BoundError, parse_bound
from rollups.selectors import FILTERS, GRANULARITIES, GROUPS, MetricsQuery, per_user_problem

MAX_HOURLY_BUCKETS = 24 * 93  # about three months of hours per series
MAX_RANGE = timedelta(days=800)
FORMATS = ("json", "csv")


class QueryError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


def parse_time(value: str, *, param: str, end: bool) -> datetime:
    """YYYY-MM-DD (a whole UTC day, inclusive) or an RFC 3339 time with offset."""
    try:
        return parse_bound(value, end=end)
    except BoundError as exc:
        raise QueryError(param, exc.reason) from exc


def metrics_format_parse(params: QueryDict) -> str:
    value = params.get("format", "json")
    if value not in FORMATS:
        raise QueryError("format", "must be json or csv")
    return value


def metrics_query_parse(params: QueryDict, *, project_ids: list[int]) -> MetricsQuery:
    known = {"from", "to", "granularity", "group_by", *FILTERS, "project", "format"}
    for name in params:
        if name not in known:
            raise QueryError(name, "unknown parameter")
    granularity = params.get("granularity", "day")
    if granularity not in GRANULARITIES:
        raise QueryError("granularity", "must be hour or day")
    now = timezone.now()
    to_value, from_value = params.get("to"), params.get("from")
    per_user = "user_id" in params or any(
        part.strip() == "user_id" for raw in params.getlist("group_by") for part in raw.split(",")
    )
    if per_user and not to_value:
        # Per-user numbers are per UTC day: the default range ends with today, whole.
        now = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    end = parse_time(to_value, param="to", end=True) if to_value else now
    if from_value:
        start = parse_time(from_value, param="from", end=False)
    else:
        start = (end - timedelta(days=7)).replace(hour=0, minute=0, second=0, microsecond=0)
    # Aggregates are hourly: a time inside an hour widens the range to whole hours.
    start = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if end.astimezone(UTC).replace(minute=0, second=0, microsecond=0) != end:
        end = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if end <= start:
        raise QueryError("to", "must be after from")
    if end - start > MAX_RANGE:
        raise QueryError("from", f"the range may span at most {MAX_RANGE.days} days")
    if granularity == "hour" and (end - start) > timedelta(hours=MAX_HOURLY_BUCKETS):
        raise QueryError("granularity", f"hourly series are limited to {MAX_HOURLY_BUCKETS} hours; use day")
    group_by: list[str] = []
    for raw in params.getlist("group_by"):
        for name in filter(None, (part.strip() for part in raw.split(","))):
            if name not in GROUPS:
                raise QueryError("group_by", f"{name!r} is not one of {', '.join(GROUPS)}")
            if name not in group_by:
                group_by.append(name)
    filters = {name: params.getlist(name) for name in FILTERS if params.getlist(name)}
    query = MetricsQuery(
        project_ids=project_ids, start=start, end=end, granularity=granularity, group_by=group_by, filters=filters
    )
    problem = per_user_problem(query)
    if problem:
        raise QueryError(*problem)
    return query
