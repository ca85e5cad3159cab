"""The demo data shows what the Latency page is about: streamed calls with a time to first token,
and nightly Message Batches results whose turnaround stays out of online latency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Avg

from ingest.models import Event
from ingest.services import demo_seed
from projects.models import Project
from rollups.selectors import MetricsQuery, metrics_query
from rollups.services import rollup_until_current
from tests.rollups.helpers import exact_quantile

pytestmark = pytest.mark.usefixtures("clean_events")


def test_demo_batches_are_apart_from_online_latency_and_streamed_calls_report_ttft(transactional_db):
    now = datetime.now(tz=UTC).replace(microsecond=0)
    demo_seed(days=3, events=500, project_slug="demo-latency", now=now)
    rollup_until_current()
    project = Project.objects.get(slug="demo-latency")
    events = Event.objects.filter(project=project)
    batch = events.filter(batch=True)
    online = events.filter(batch=False)
    assert batch.count() == 25  # the nightly-digest quota: 5% of 500
    assert not batch.filter(time_to_first_token_ms__isnull=False).exists()  # batch results are not streamed
    ttfts = list(online.exclude(time_to_first_token_ms=None).values_list("time_to_first_token_ms", flat=True))
    assert len(ttfts) > 50
    start = (now - timedelta(days=4)).replace(hour=0, minute=0, second=0)
    totals = metrics_query(MetricsQuery(project_ids=[project.pk], start=start, end=now + timedelta(hours=1))).totals
    d = totals.as_dict()
    assert (d["requests"], d["batch_requests"]) == (500, 25)
    batch_avg = batch.aggregate(v=Avg("latency_ms"))["v"]
    assert d["batch_latency_avg_ms"] == pytest.approx(batch_avg, rel=1e-9)
    assert batch_avg > 10 * 60_000  # minutes to hours, not seconds
    assert d["latency_avg_ms"] == pytest.approx(online.aggregate(v=Avg("latency_ms"))["v"], rel=1e-9)
    latencies = list(online.values_list("latency_ms", flat=True))
    exact_p95 = exact_quantile(latencies, 0.95)
    assert abs(d["latency_p95_ms"] - exact_p95) <= 0.01 * exact_p95
    assert d["latency_p95_ms"] < 60_000  # interactive, as the demo's online calls are
    for q, name in ((0.5, "ttft_p50_ms"), (0.95, "ttft_p95_ms")):
        exact = exact_quantile(ttfts, q)
        assert abs(d[name] - exact) <= 0.01 * exact, name
