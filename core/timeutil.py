"""Whole UTC hours and days of aware datetimes, cheaply: ingest asks this of every event.

`int(ts.timestamp())` costs about 0.4 us (it works out the offset and builds a float); for the
usual timestamp, one whose tzinfo is UTC already (`...Z` and `+00:00` both parse to the
`timezone.utc` singleton), the proleptic ordinal and the hour give the same answer in a
quarter of the time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def utc_hour_number(ts: datetime) -> int:
    """Whole hours from 1970-01-01T00:00Z to the hour `ts` falls in (aware `ts`)."""
    if ts.tzinfo is UTC:
        return (ts.toordinal() - EPOCH_ORDINAL) * 24 + ts.hour
    return int(ts.timestamp()) // 3600


def utc_day_number(ts: datetime) -> int:
    """Whole days from 1970-01-01 to the UTC day `ts` falls on (aware `ts`)."""
    if ts.tzinfo is UTC:
        return ts.toordinal() - EPOCH_ORDINAL
    return int(ts.timestamp()) // 86_400


def utc_day(day_number: int) -> date:
    return date.fromordinal(EPOCH_ORDINAL + day_number)


class BoundError(ValueError):
    """A `--from`/`--to` bound that is not one; `reason` says why without repeating the value, so an
    API can put it after the parameter's name (rollups.schemas) and a command after the value."""

    def __init__(self, value: str, reason: str) -> None:
        super().__init__(f"{value!r}: {reason}")
        self.reason = reason


def parse_bound(value: str, *, end: bool) -> datetime:
    """A `--from`/`--to` bound: YYYY-MM-DD (an inclusive UTC day, so as `end` the next midnight)
    or an RFC 3339 time with its offset. BoundError names what is wrong with `value`."""
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)  # noqa: DTZ007 - tz set here
            return day + timedelta(days=1) if end else day
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BoundError(value, "must be YYYY-MM-DD or an RFC 3339 time") from exc
    if parsed.tzinfo is None:
        raise BoundError(value, "an RFC 3339 time needs a UTC offset")
    return parsed
