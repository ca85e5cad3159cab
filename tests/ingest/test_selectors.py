"""ingest.selectors' explorer read (calls_read, calls_iter) on its own, without the dashboard page:
the hours it is told to read, keyset chunks, and the selections that are certainly empty."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ingest.selectors import CallSelection, calls_iter, calls_read


@pytest.fixture
def project(transactional_db, clean_events):  # type: ignore[no-untyped-def]
    """Five calls, one per hour from 1 h to 5 h ago (mid-hour), r1 newest; r3 is unpriced."""
    from ingest.services import events_ingest
    from projects.services import ingest_key_create

    now = datetime.now(tz=UTC).replace(minute=30, second=0, microsecond=0)
    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    events = [
        {
            "request_id": f"r{i}",
            "timestamp": (now - timedelta(hours=i)).isoformat(),
            "latency_ms": 100 * i,
            "model": "claude-experimental-x" if i == 3 else "claude-sonnet-4-6",
            "input_tokens": 10 * i,
        }
        for i in range(1, 6)
    ]
    result = events_ingest(
        project_id=key.project_id, environment_id=key.environment_id, body={"events": events}, max_batch=1000
    )
    assert result.accepted == 5, result.rejected
    return key.project_id, now


def _selection(project: tuple[int, datetime], **fields: Any) -> CallSelection:
    project_id, now = project
    return CallSelection(project_id=project_id, start=now - timedelta(days=1), end=now, **fields)


def test_only_the_hours_given_are_read(project):
    _, now = project
    hour = now.replace(minute=0)
    hours = (hour - timedelta(hours=4), hour - timedelta(hours=2))  # r4's and r2's hours
    for sort, expected in (("time", ["r2", "r4"]), ("latency", ["r4", "r2"]), ("tokens", ["r4", "r2"])):
        rows = calls_read(_selection(project, sort=sort, hours=hours), after=None, limit=10)
        assert [r.request_id for r in rows] == expected, sort


def test_chunks_walk_the_whole_order_by_keyset(project):
    assert [c.request_id for c in calls_iter(_selection(project, sort="latency"), chunk=2)] == [
        "r5",
        "r4",
        "r3",
        "r2",
        "r1",
    ]
    cost = list(calls_iter(_selection(project, sort="cost"), chunk=1))
    assert [c.request_id for c in cost] == ["r5", "r4", "r2", "r1", "r3"]  # unpriced r3 last
    assert cost[-1].sort_key == -1
    assert cost[-1].cost_usd is None


def test_filters_and_minimums(project):
    rows = calls_read(_selection(project, min_latency_ms=250.0, sort="tokens"), after=None, limit=10)
    assert [(r.request_id, r.total_tokens) for r in rows] == [("r5", 50), ("r4", 40), ("r3", 30)]
    rows = calls_read(_selection(project, min_cost_usd=Decimal(0)), after=None, limit=10)
    assert [r.request_id for r in rows] == ["r1", "r2", "r4", "r5"]  # unpriced has no cost to compare
    assert calls_read(_selection(project, request_id="r5"), after=None, limit=10)[0].latency_ms == 500


def test_a_certainly_empty_selection_reads_nothing(project, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert calls_read(_selection(project, hours=()), after=None, limit=10) == []
        assert list(calls_iter(_selection(project, hours=()), chunk=10)) == []
    with django_assert_num_queries(1):  # the key table only
        assert calls_read(_selection(project, request_id="nope"), after=None, limit=10) == []


def test_an_unknown_order_is_refused(project):
    with pytest.raises(ValueError, match="unknown sort 'price'"):
        _selection(project, sort="price")
