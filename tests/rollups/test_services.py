"""The rollup's properties (DESIGN "The pipeline"), each on its own."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from ingest.models import DirtyHour
from projects.services import ingest_key_create
from rollups import services
from rollups.models import DailyAggregate, DailySlice, DailyUserSpend, HourlyAggregate
from rollups.services import dirty_hours_rollup, rollup_until_current, rollups_verify
from tests.rollups.helpers import exact_hourly, hour, ingest, snapshot

pytestmark = pytest.mark.usefixtures("clean_events")

NOW = datetime.now(tz=UTC).replace(microsecond=0)
MODELS = ["claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7", "claude-experimental-x"]


def make_events(prefix: str, n: int, *, start: datetime = NOW - timedelta(days=2), span_hours: int = 40) -> list[dict]:
    events = []
    for i in range(n):
        events.append(
            {
                "request_id": f"{prefix}{i}",
                "model": MODELS[i % 4],
                "service": ["checkout", "search", "support"][i % 3],
                "feature": ["", "cart", "faq"][(i // 3) % 3],
                "timestamp": (start + timedelta(minutes=(i * 37) % (span_hours * 60))).isoformat(),
                "latency_ms": 50 + (i * 7919) % 4000,
                "input_tokens": 100 + i,
                "output_tokens": 10 + i % 50,
                "cache_read_input_tokens": 500 if i % 4 == 0 else 0,
                "cache_creation_input_tokens": 200 if i % 10 == 0 else 0,
                "status": "error" if i % 9 == 0 else "ok",
                "error_type": "overloaded_error" if i % 9 == 0 else "",
                "http_status": 529 if i % 9 == 0 else 200,
                "user_id": f"u{i % 7}" if i % 5 else "",
                # Every 11th a Message Batches result (minutes later), every other online one streamed.
                "batch": i % 11 == 0,
                **({"latency_ms": 600_000 + i * 1000} if i % 11 == 0 else {}),
                **({"time_to_first_token_ms": 20 + (i * 31) % 700} if i % 2 == 0 else {}),
            }
        )
    return events


@pytest.fixture
def key(transactional_db):  # type: ignore[no-untyped-def]
    return ingest_key_create(project_slug="acme", environment_name="prod").key


def stored_hourly() -> dict[tuple, HourlyAggregate]:
    return {
        (a.project_id, a.environment_id, a.service, a.model, a.feature, a.hour_start): a
        for a in HourlyAggregate.objects.all()
    }


def assert_matches_raw() -> None:
    exact = exact_hourly()
    stored = stored_hourly()
    assert set(stored) == set(exact)
    for k, want in exact.items():
        got = stored[k]
        for name in (
            "requests",
            "errors",
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_hits",
            "unpriced_requests",
        ):
            assert getattr(got, name) == want[name], (k, name)
        assert got.cost_usd == want["cost_usd"], k
        assert got.batch_requests == want["batch_requests"], k
        assert got.latency_sum_ms == pytest.approx(want["latency_sum_ms"], rel=1e-12), k
        assert got.batch_latency_sum_ms == pytest.approx(want["batch_latency_sum_ms"], rel=1e-12), k
        # Only online calls are in the histograms; batch results are not.
        assert dict(zip(got.latency_hist_idx, got.latency_hist_cnt, strict=True)) == want.get("hist", {}), k
        assert sum(got.latency_hist_cnt) == want["requests"] - want["batch_requests"]
        assert dict(zip(got.ttft_hist_idx, got.ttft_hist_cnt, strict=True)) == want.get("ttft", {}), k
    assert rollups_verify().differences == []


def test_every_committed_event_is_counted_exactly_once(key):
    result = ingest(key, make_events("a", 600))
    assert result.accepted == 600
    rollup_until_current()
    assert_matches_raw()
    assert sum(HourlyAggregate.objects.values_list("requests", flat=True)) == 600
    assert sum(DailyAggregate.objects.values_list("requests", flat=True)) == 600
    assert DirtyHour.objects.count() == 0
    # Per-user spend: every event with a user, once.
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), coalesce(sum(cost_usd), 0) FROM ingest_event WHERE user_id <> ''")
        n, cost = cursor.fetchone()
    assert sum(DailyUserSpend.objects.values_list("requests", flat=True)) == n
    assert sum(DailyUserSpend.objects.values_list("cost_usd", flat=True)) == cost


def test_days_are_the_sums_of_their_hours(key):
    ingest(key, make_events("d", 300))
    rollup_until_current()
    for day in DailyAggregate.objects.all():
        hours = HourlyAggregate.objects.filter(
            project_id=day.project_id,
            environment_id=day.environment_id,
            service=day.service,
            model=day.model,
            feature=day.feature,
            hour_start__date=day.day,
        )
        assert day.requests == sum(h.requests for h in hours)
        assert day.cost_usd == sum((h.cost_usd for h in hours), Decimal(0))
        merged: dict[int, int] = {}
        for h in hours:
            for i, c in zip(h.latency_hist_idx, h.latency_hist_cnt, strict=True):
                merged[i] = merged.get(i, 0) + c
        assert dict(zip(day.latency_hist_idx, day.latency_hist_cnt, strict=True)) == merged
        ttft: dict[int, int] = {}
        for h in hours:
            for i, c in zip(h.ttft_hist_idx, h.ttft_hist_cnt, strict=True):
                ttft[i] = ttft.get(i, 0) + c
        assert dict(zip(day.ttft_hist_idx, day.ttft_hist_cnt, strict=True)) == ttft
        assert day.batch_latency_sum_ms == pytest.approx(sum(h.batch_latency_sum_ms for h in hours), rel=1e-12)


def test_slices_are_the_days_rolled_up_over_every_subset_of_dimensions(key):
    ingest(key, make_events("s", 500))
    prod = ingest_key_create(project_slug="acme", environment_name="staging").key
    ingest(prod, make_events("st", 120))
    rollup_until_current()
    days = list(DailyAggregate.objects.all())
    bits = {services.SLICE_ENV: "environment_id", services.SLICE_SERVICE: "service", services.SLICE_MODEL: "model"}
    expected: dict[tuple, dict] = {}
    for d in days:
        for dims in range(8):
            kept = tuple(
                getattr(d, name) if dims & bit else (0 if name == "environment_id" else "")
                for bit, name in bits.items()
            )
            row = expected.setdefault(
                (d.day, dims, *kept),
                {"requests": 0, "cost_usd": Decimal(0), "hist": {}, "ttft": {}, "errors": {}, "batch": 0.0},
            )
            row["requests"] += d.requests
            row["cost_usd"] += d.cost_usd
            row["batch"] += d.batch_latency_sum_ms
            for i, c in zip(d.latency_hist_idx, d.latency_hist_cnt, strict=True):
                row["hist"][i] = row["hist"].get(i, 0) + c
            for i, c in zip(d.ttft_hist_idx, d.ttft_hist_cnt, strict=True):
                row["ttft"][i] = row["ttft"].get(i, 0) + c
            for t, c in d.errors_by_type.items():
                row["errors"][t] = row["errors"].get(t, 0) + c
    slices = {(s.day, s.dims, s.environment_id, s.service, s.model): s for s in DailySlice.objects.all()}
    assert set(slices) == set(expected)
    # Two environments, 3 services, 4 models: 1 + 2 + 3 + 4 + 6 + 8 + 12 + 24 kept-value combinations at most.
    assert {k[1] for k in slices} == set(range(8))
    for k, want in expected.items():
        got = slices[k]
        assert got.requests == want["requests"], k
        assert got.cost_usd == want["cost_usd"], k
        assert dict(zip(got.latency_hist_idx, got.latency_hist_cnt, strict=True)) == want["hist"], k
        assert got.latency_hist_idx == sorted(got.latency_hist_idx)
        assert dict(zip(got.ttft_hist_idx, got.ttft_hist_cnt, strict=True)) == want["ttft"], k
        assert got.batch_latency_sum_ms == pytest.approx(want["batch"], rel=1e-12), k
        assert got.errors_by_type == want["errors"], k
    totals = [s for s in slices.values() if s.dims == 0]
    assert sum(s.requests for s in totals) == 620


@pytest.mark.parametrize("partial_first", [True, False])
def test_whole_day_and_few_hours_paths_give_identical_aggregates(key, partial_first, monkeypatch):
    # A day with few dirty hours is summed from its stored hours; a busy one is read whole from raw.
    ingest(key, make_events("p", 400, start=NOW - timedelta(days=3), span_hours=60))
    monkeypatch.setattr(services, "PARTIAL_DAY_MAX_HOURS", 24 if partial_first else 0)
    rollup_until_current()
    first = snapshot()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_dirtyhour (project_id, hour_start, created_at) "
            "SELECT DISTINCT project_id, hour_start, now() FROM rollups_hourlyaggregate"
        )
    monkeypatch.setattr(services, "PARTIAL_DAY_MAX_HOURS", 0 if partial_first else 24)
    rollup_until_current()
    assert snapshot() == first
    assert_matches_raw()


def test_lanes_split_the_days_and_agree_with_one_lane(key):
    ingest(key, make_events("ln", 900, start=NOW - timedelta(days=4), span_hours=90))
    first = dirty_hours_rollup(lanes=1)
    assert first.days >= 4
    one_lane = snapshot()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_dirtyhour (project_id, hour_start, created_at) "
            "SELECT DISTINCT project_id, hour_start, now() FROM rollups_hourlyaggregate"
        )
    result = dirty_hours_rollup(lanes=3)
    assert result.hours == first.hours
    assert result.days == first.days  # each day in exactly one lane
    assert result.passes == 3  # every lane had days to do
    assert DirtyHour.objects.count() == 0
    assert snapshot() == one_lane
    assert_matches_raw()


def test_a_late_event_re_rolls_its_hour(key):
    ingest(key, make_events("l", 100))
    rollup_until_current()
    old_hour = hour(NOW - timedelta(days=2))
    before = sum(HourlyAggregate.objects.filter(hour_start=old_hour).values_list("requests", flat=True))
    late = {
        "request_id": "late-1",
        "model": "claude-haiku-4-5",
        "latency_ms": 10,
        "input_tokens": 5,
        "timestamp": (old_hour + timedelta(minutes=1)).isoformat(),
    }
    assert ingest(key, [late]).accepted == 1
    assert list(DirtyHour.objects.values_list("hour_start", flat=True)) == [old_hour]
    rollup_until_current()
    after = sum(HourlyAggregate.objects.filter(hour_start=old_hour).values_list("requests", flat=True))
    assert after == before + 1
    assert_matches_raw()


def test_running_twice_gives_identical_aggregates(key):
    ingest(key, make_events("t", 300))
    rollup_until_current()
    first = snapshot()
    # Mark every hour dirty again and re-roll: replace, never add.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_dirtyhour (project_id, hour_start, created_at) "
            "SELECT DISTINCT project_id, hour_start, now() FROM rollups_hourlyaggregate"
        )
    rollup_until_current()
    assert snapshot() == first


def test_concurrent_passes_give_identical_aggregates(key):
    events = make_events("c", 800)
    ingest(key, events[:400])
    rollup_until_current()
    ingest(key, events[400:])
    # Duplicate every marker so that both passes have work on the same hours.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_dirtyhour (project_id, hour_start, created_at) "
            "SELECT project_id, hour_start, now() FROM ingest_dirtyhour"
        )
    original_batch = services.CLAIM_BATCH
    services.CLAIM_BATCH = 3  # many small transactions, interleaving the two passes
    errors: list[BaseException] = []

    def run() -> None:
        try:
            dirty_hours_rollup()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    try:
        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        services.CLAIM_BATCH = original_batch
    assert errors == []
    concurrent = snapshot()
    assert DirtyHour.objects.count() == 0
    assert_matches_raw()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_dirtyhour (project_id, hour_start, created_at) "
            "SELECT DISTINCT project_id, hour_start, now() FROM rollups_hourlyaggregate"
        )
    rollup_until_current()
    assert snapshot() == concurrent


def test_an_event_committed_while_a_rollup_runs_is_not_missed(key):
    ingest(key, make_events("w", 50, start=hour(NOW - timedelta(hours=3)), span_hours=1))
    claimed = threading.Event()
    resume = threading.Event()

    def pause(hours):  # type: ignore[no-untyped-def]
        claimed.set()
        assert resume.wait(30)

    services._after_hours_hook = pause
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(dirty_hours_rollup(max_batches=1))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert claimed.wait(30)
        # The rollup has claimed the hour and is mid-way; an event for that hour commits now.
        midway = {
            "request_id": "midway",
            "model": "claude-haiku-4-5",
            "latency_ms": 10,
            "timestamp": (hour(NOW - timedelta(hours=3)) + timedelta(minutes=5)).isoformat(),
        }
        assert ingest(key, [midway]).accepted == 1
    finally:
        resume.set()
        thread.join()
        services._after_hours_hook = None
    assert outcome
    # Its marker survived the pass that was running ...
    assert DirtyHour.objects.filter(hour_start=hour(NOW - timedelta(hours=3))).exists()
    rollup_until_current()
    # ... and the next pass counted it.
    assert sum(HourlyAggregate.objects.values_list("requests", flat=True)) == 51
    assert_matches_raw()


def test_a_crash_midway_leaves_nothing_half_written_and_the_next_pass_repairs(key):
    ingest(key, make_events("x", 200))
    rollup_until_current()
    good = snapshot()
    ingest(key, make_events("y", 100))
    markers = DirtyHour.objects.count()
    assert markers > 0

    def crash(hours):  # type: ignore[no-untyped-def]
        raise RuntimeError("injected crash after the hours were rewritten")

    services._after_hours_hook = crash
    try:
        with pytest.raises(RuntimeError, match="injected crash"):
            dirty_hours_rollup()
    finally:
        services._after_hours_hook = None
    assert snapshot() == good  # nothing of the failed pass is visible
    assert DirtyHour.objects.count() == markers  # its claims were rolled back
    rollup_until_current()
    assert sum(HourlyAggregate.objects.values_list("requests", flat=True)) == 300
    assert_matches_raw()


def test_verify_rollups_reports_a_tampered_aggregate(key):
    ingest(key, make_events("v", 100))
    rollup_until_current()
    assert rollups_verify().differences == []
    row = HourlyAggregate.objects.order_by("hour_start").first()
    HourlyAggregate.objects.filter(pk=row.pk).update(requests=row.requests + 1)
    DailyAggregate.objects.filter(
        day=row.hour_start.date(), model=row.model, service=row.service, feature=row.feature
    ).delete()
    differences = rollups_verify().differences
    assert len(differences) == 2
    assert "values differ" in differences[0] or "values differ" in differences[1]
    assert any("missing from stored aggregates" in d for d in differences)


@pytest.mark.parametrize("column", ["batch_latency_sum_ms", "ttft_hist_cnt", "ttft_hist_idx"])
def test_verify_rollups_compares_batch_turnaround_and_ttft(key, column):
    ingest(key, make_events("vb", 60))
    rollup_until_current()
    rows = HourlyAggregate.objects.order_by("hour_start", "model", "service", "feature")
    if column == "batch_latency_sum_ms":
        row = rows.filter(batch_requests__gt=0).first()
        value: object = row.batch_latency_sum_ms + 1.0
    else:
        row = rows.exclude(ttft_hist_idx=[]).first()
        value = [v + 1 for v in getattr(row, column)]
    HourlyAggregate.objects.filter(pk=row.pk).update(**{column: value})
    differences = rollups_verify().differences
    assert len(differences) == 1
    assert differences[0].startswith("hourly ")
    assert differences[0].endswith(": values differ")


def test_verify_skips_hours_still_pending(key):
    ingest(key, make_events("p", 30, start=hour(NOW - timedelta(hours=5)), span_hours=2))
    result = rollups_verify()
    assert result.differences == []
    assert result.pending_hours == 2
    assert result.hours_checked == 0


def test_a_pass_with_a_time_budget_leaves_the_rest_for_the_next(key):
    ingest(key, make_events("tb", 200))
    original = services.CLAIM_BATCH
    services.CLAIM_BATCH = 1
    try:
        first = dirty_hours_rollup(max_seconds=0.0)
        assert first.passes == 0  # no time at all: nothing claimed, nothing half-done
        partial = dirty_hours_rollup(max_batches=2)
        assert partial.passes == 2
        assert DirtyHour.objects.exists()
    finally:
        services.CLAIM_BATCH = original
    rollup_until_current()
    assert_matches_raw()


def test_sql_and_python_bucket_the_same_values():
    from rollups.sketch import bucket_of, bucket_sql

    values = [0.0, 0.001, 0.5, 1.0, 1.01, 7.3, 99.999, 100.0, 812.5, 65_535.0, 3_599_999.9]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {bucket_sql('v')} FROM unnest(%s::float8[]) WITH ORDINALITY AS t(v, o) ORDER BY o", [values]
        )
        assert [b for (b,) in cursor.fetchall()] == [bucket_of(v) for v in values]
        cursor.execute(f"SELECT {bucket_sql('v')} FROM (SELECT NULL::float8 AS v) t")
        assert cursor.fetchone() == (None,)
