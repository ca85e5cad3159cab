"""GET /api/v1/metrics (CONTRACT §4)."""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.models import Event
from projects.models import Environment, IngestKey
from projects.services import ingest_key_create
from rollups import sketch
from rollups.selectors import TOTAL, MetricsQuery, metrics_query, per_user_problem
from rollups.services import rollup_until_current, rollups_verify
from tests.rollups.helpers import exact_quantile, ingest

pytestmark = pytest.mark.usefixtures("clean_events")

TODAY = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture
def keys(transactional_db):  # type: ignore[no-untyped-def]
    prod = ingest_key_create(project_slug="acme", environment_name="prod").key
    dev = ingest_key_create(project_slug="acme", environment_name="dev").key
    read = ingest_key_create(project_slug="acme", environment_name="prod", scope=IngestKey.Scope.READ).secret
    return prod, dev, read


def get(client: Client, secret: str | None, **params):  # type: ignore[no-untyped-def]
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}
    return client.get("/api/v1/metrics", params, **headers)


def event(rid: str, ts: datetime, **fields):  # type: ignore[no-untyped-def]
    base = {
        "request_id": rid,
        "model": "claude-sonnet-4-6",
        "latency_ms": 100,
        "timestamp": ts.isoformat(),
        "input_tokens": 1000,
        "output_tokens": 100,
    }
    base.update(fields)
    return base


def test_daily_series_and_totals_with_exact_numbers(keys):
    prod, dev, read = keys
    day1 = TODAY - timedelta(days=2)
    ingest(
        prod,
        [
            event("a", day1 + timedelta(hours=3), latency_ms=100),
            event("b", day1 + timedelta(hours=5), latency_ms=300, status="error", error_type="overloaded_error"),
            event("c", day1 + timedelta(days=1, hours=1), latency_ms=200, cache_read_input_tokens=5000),
        ],
    )
    ingest(dev, [event("d", day1 + timedelta(hours=4), model="claude-haiku-4-5", latency_ms=50)])
    rollup_until_current()
    resp = get(Client(), read, **{"from": day1.date().isoformat(), "to": (day1 + timedelta(days=1)).date().isoformat()})
    assert resp.status_code == 200
    body = resp.json()
    assert body["granularity"] == "day"
    assert [row["bucket"] for row in body["series"]] == [
        day1.strftime("%Y-%m-%dT00:00:00Z"),
        (day1 + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z"),
    ]
    first, second = body["series"]
    assert (first["requests"], first["errors"], first["error_rate"]) == (3, 1, 1 / 3)
    assert (second["requests"], second["cache_hits"], second["cache_hit_rate"]) == (1, 1, 1.0)
    totals = body["totals"]
    assert totals["requests"] == 4
    assert totals["input_tokens"] == 4000
    assert totals["output_tokens"] == 400
    assert totals["cache_read_input_tokens"] == 5000
    # Sonnet 4.6: 3 x (1000 x $3 + 100 x $15)/1e6, plus 5000 reads x $0.30; Haiku 4.5: $1 / $5.
    expected = 3 * 0.0045 + 5000 * 0.3 / 1e6 + (1000 * 1 + 100 * 5) / 1e6
    assert math.isclose(totals["cost_usd"], expected, rel_tol=1e-12)
    assert totals["unpriced_requests"] == 0
    assert totals["latency_avg_ms"] == pytest.approx(162.5)
    assert set(body) == {"granularity", "series", "totals", "as_of"}


def test_group_by_and_filters(keys):
    prod, dev, read = keys
    ts = TODAY - timedelta(days=1, hours=-2)
    ingest(prod, [event("p1", ts, service="search"), event("p2", ts, service="checkout", model="claude-haiku-4-5")])
    ingest(dev, [event("d1", ts, service="search")])
    rollup_until_current()
    client = Client()
    rng = {"from": (TODAY - timedelta(days=1)).date().isoformat(), "to": TODAY.date().isoformat()}
    body = get(client, read, group_by="environment,service", **rng).json()
    groups = {(r["group"]["environment"], r["group"]["service"]): r["requests"] for r in body["series"]}
    assert groups == {("prod", "search"): 1, ("prod", "checkout"): 1, ("dev", "search"): 1}
    body = get(client, read, environment="prod", model="claude-haiku-4-5", **rng).json()
    assert body["totals"]["requests"] == 1
    body = client.get(
        "/api/v1/metrics?service=search&service=checkout&environment=dev&" + f"from={rng['from']}&to={rng['to']}",
        HTTP_AUTHORIZATION=f"Bearer {read}",
    ).json()
    assert body["totals"]["requests"] == 1


def test_hourly_granularity_zero_fills_every_hour(keys):
    prod, _, read = keys
    start = TODAY - timedelta(days=1)
    ingest(prod, [event("h1", start + timedelta(hours=2, minutes=10))])
    rollup_until_current()
    body = get(
        Client(),
        read,
        granularity="hour",
        **{"from": start.isoformat(), "to": (start + timedelta(hours=6)).isoformat()},
    ).json()
    assert [r["requests"] for r in body["series"]] == [0, 0, 1, 0, 0, 0]
    assert body["series"][0]["latency_p95_ms"] == 0.0


def test_unpriced_calls_are_counted_not_priced_at_zero(keys):
    prod, _, read = keys
    ingest(
        prod,
        [
            event("u1", TODAY - timedelta(hours=20), model="claude-experimental-x"),
            event("u2", TODAY - timedelta(hours=20)),
        ],
    )
    rollup_until_current()
    body = get(Client(), read, **{"from": (TODAY - timedelta(days=1)).date().isoformat()}).json()
    assert body["totals"]["unpriced_requests"] == 1
    assert body["totals"]["cost_usd"] == pytest.approx(0.0045)


def test_auth_session_or_read_key_only(keys):
    prod, _, read = keys
    client = Client()
    assert get(client, None).status_code == 401
    assert get(client, "tly_wrong").status_code == 401
    ingest_secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    assert get(client, ingest_secret).status_code == 401
    user = get_user_model().objects.create_user("lead", password="pw-lead-123")
    client.force_login(user)
    assert get(client, None).status_code == 200


def test_a_read_key_sees_only_its_project(keys):
    prod, _, read = keys
    other = ingest_key_create(project_slug="globex", environment_name="prod").key
    other_read = ingest_key_create(project_slug="globex", environment_name="prod", scope="read").secret
    ts = TODAY - timedelta(hours=10)
    ingest(prod, [event("x1", ts)])
    ingest(other, [event("x2", ts), event("x3", ts)])
    rollup_until_current()
    rng = {"from": (TODAY - timedelta(days=1)).date().isoformat()}
    assert get(Client(), read, **rng).json()["totals"]["requests"] == 1
    assert get(Client(), other_read, **rng).json()["totals"]["requests"] == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"granularity": "week"}, "granularity"),
        ({"group_by": "model,colour"}, "group_by"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-11-10T00:00:00"}, "from"),
        ({"from": "2026-11-10", "to": "2026-11-01"}, "to"),
        ({"from": "2020-01-01", "to": "2026-01-01"}, "from"),
        ({"granularity": "hour", "from": "2026-01-01", "to": "2026-11-01"}, "granularity"),
        ({"colour": "red"}, "colour"),
        ({"service": "a\x00b"}, "service"),
        ({"group_by": "model", "model": ["claude-haiku-4-5", "x\x00"]}, "model"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(keys, params, field):
    _, _, read = keys
    resp = get(Client(), read, **params)
    assert resp.status_code == 400
    assert resp.json()["field"] == field


# --- property test: the API equals an exact computation from raw events -----------------------

MODELS = ["claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7", "claude-experimental-x"]
SERVICES = ["checkout", "search", "support"]
FEATURES = ["", "cart", "faq"]

event_strategy = st.fixed_dictionaries(
    {
        "model": st.sampled_from(MODELS),
        "service": st.sampled_from(SERVICES),
        "feature": st.sampled_from(FEATURES),
        "env": st.sampled_from(["prod", "dev"]),
        "minute": st.integers(0, 3 * 24 * 60 - 1),
        "latency_ms": st.one_of(st.floats(0.5, 120_000, allow_nan=False), st.integers(1, 5000)),
        "input_tokens": st.integers(0, 300_000),
        "output_tokens": st.integers(0, 4000),
        "cache_read_input_tokens": st.one_of(st.just(0), st.integers(1, 50_000)),
        "cache_creation_input_tokens": st.one_of(st.just(0), st.integers(1, 5000)),
        "error": st.booleans(),
        "batch": st.booleans(),
        "ttft_ms": st.one_of(st.none(), st.floats(0.5, 60_000, allow_nan=False), st.integers(1, 3000)),
        "user": st.sampled_from(["", "u1", "u2"]),
    }
)

query_strategy = st.fixed_dictionaries(
    {
        "granularity": st.sampled_from(["hour", "day"]),
        "start_hour": st.integers(0, 60),
        "hours": st.integers(1, 80),
        "whole_days": st.booleans(),
        "group_by": st.lists(st.sampled_from(["model", "service", "environment", "feature"]), unique=True, max_size=2),
        "filter_env": st.one_of(st.none(), st.sampled_from(["prod", "dev"])),
        "filter_model": st.one_of(st.none(), st.lists(st.sampled_from(MODELS), min_size=1, max_size=2, unique=True)),
        "filter_service": st.one_of(st.none(), st.sampled_from(SERVICES)),
    }
)


def _exact(query: dict, base: datetime, env_names: dict[int, str]) -> tuple[dict, dict]:
    """(per (bucket, group) rows, totals) computed from the stored raw events."""
    if query["whole_days"]:
        start = base + timedelta(days=query["start_hour"] // 24)
        end = start + timedelta(days=max(1, query["hours"] // 24))
    else:
        start = base + timedelta(hours=query["start_hour"])
        end = start + timedelta(hours=query["hours"])
    rows: dict = defaultdict(
        lambda: {
            "latencies": [],
            "batch_latencies": [],
            "ttfts": [],
            "requests": 0,
            "errors": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_hits": 0,
            "batch_requests": 0,
            "cost": Decimal(0),
            "unpriced_requests": 0,
        }
    )
    totals = rows["totals"]
    for e in Event.objects.filter(timestamp__gte=start, timestamp__lt=end):
        dims = {
            "model": e.model,
            "service": e.service,
            "feature": e.feature,
            "environment": env_names[e.environment_id],
        }
        if query["filter_env"] and dims["environment"] != query["filter_env"]:
            continue
        if query["filter_model"] and e.model not in query["filter_model"]:
            continue
        if query["filter_service"] and e.service != query["filter_service"]:
            continue
        ts = e.timestamp.astimezone(UTC)
        bucket = ts.replace(minute=0, second=0, microsecond=0)
        if query["granularity"] == "day":
            bucket = bucket.replace(hour=0)
        group = tuple(sorted((g, dims[g]) for g in query["group_by"]))
        for row in (rows[(bucket, group)], totals):
            # Latency and time to first token are of online calls; batch turnaround is apart.
            if e.batch:
                row["batch_latencies"].append(e.latency_ms)
            else:
                row["latencies"].append(e.latency_ms)
                if e.time_to_first_token_ms is not None:
                    row["ttfts"].append(e.time_to_first_token_ms)
            row["batch_requests"] += e.batch
            row["requests"] += 1
            row["errors"] += e.status == "error"
            row["input_tokens"] += e.input_tokens
            row["output_tokens"] += e.output_tokens
            row["cache_read_input_tokens"] += e.cache_read_input_tokens
            row["cache_creation_input_tokens"] += e.cache_creation_input_tokens
            row["cache_hits"] += e.cache_read_input_tokens > 0
            row["cost"] += e.cost_usd or Decimal(0)
            row["unpriced_requests"] += e.cost_usd is None
    totals = rows.pop("totals")
    return {"start": start, "end": end, "rows": dict(rows)}, totals


def _assert_row_matches(got: dict, want: dict) -> None:
    assert got["requests"] == want["requests"]
    for name in (
        "errors",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "cache_hits",
        "batch_requests",
        "unpriced_requests",
    ):
        assert got[name] == want[name], name
    n = want["requests"]
    if n == 0:
        return
    assert got["error_rate"] == pytest.approx(want["errors"] / n, rel=1e-12)
    assert got["cache_hit_rate"] == pytest.approx(want["cache_hits"] / n, rel=1e-12)
    assert abs(Decimal(repr(got["cost_usd"])) - want["cost"]) <= Decimal("1e-9") * max(1, want["cost"])
    online = want["latencies"]
    assert got["latency_avg_ms"] == pytest.approx(sum(online) / len(online) if online else 0.0, rel=1e-9)
    for q, name in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms"), (0.99, "latency_p99_ms")):
        exact = exact_quantile(online, q) if online else 0.0
        assert abs(got[name] - exact) <= 0.01 * exact * (1 + 1e-9), (name, got[name], exact)
    for q, name in ((0.5, "ttft_p50_ms"), (0.95, "ttft_p95_ms")):
        if not want["ttfts"]:
            assert got[name] is None, name
        else:
            exact = exact_quantile(want["ttfts"], q)
            assert abs(got[name] - exact) <= 0.01 * exact * (1 + 1e-9), (name, got[name], exact)
    batch = want["batch_latencies"]
    if batch:
        assert got["batch_latency_avg_ms"] == pytest.approx(sum(batch) / len(batch), rel=1e-9)
    else:
        assert got["batch_latency_avg_ms"] is None


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    events=st.lists(event_strategy, min_size=1, max_size=40), queries=st.lists(query_strategy, min_size=1, max_size=4)
)
def test_metrics_equal_an_exact_computation_from_raw_events(keys, events, queries):
    prod, dev, read = keys
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE ingest_event, ingest_eventkey, ingest_dirtyhour, rollups_hourlyaggregate, "
            "rollups_dailyaggregate, rollups_dailyslice, rollups_dailyuserspend"
        )
    base = TODAY - timedelta(days=3)
    run = uuid.uuid4().hex[:8]
    by_env: dict[str, list[dict]] = {"prod": [], "dev": []}
    for i, e in enumerate(events):
        by_env[e["env"]].append(
            {
                "request_id": f"{run}-{i}",
                "model": e["model"],
                "service": e["service"],
                "feature": e["feature"],
                "timestamp": (base + timedelta(minutes=e["minute"], seconds=i % 60)).isoformat(),
                "latency_ms": e["latency_ms"],
                "input_tokens": e["input_tokens"],
                "output_tokens": e["output_tokens"],
                "cache_read_input_tokens": e["cache_read_input_tokens"],
                "cache_creation_input_tokens": e["cache_creation_input_tokens"],
                "status": "error" if e["error"] else "ok",
                "batch": e["batch"],
                **({"time_to_first_token_ms": e["ttft_ms"]} if e["ttft_ms"] is not None else {}),
                **({"user_id": e["user"]} if e["user"] else {}),
            }
        )
    for env, key in (("prod", prod), ("dev", dev)):
        if by_env[env]:
            assert ingest(key, by_env[env]).accepted == len(by_env[env])
    rollup_until_current()
    env_names = dict(Environment.objects.values_list("id", "name"))
    client = Client()
    for query in queries:
        exact, totals = _exact(query, base, env_names)
        params: dict = {"granularity": query["granularity"]}
        if query["whole_days"]:
            params["from"] = exact["start"].date().isoformat()
            params["to"] = (exact["end"] - timedelta(days=1)).date().isoformat()
        else:
            params["from"] = exact["start"].isoformat()
            params["to"] = exact["end"].isoformat()
        if query["group_by"]:
            params["group_by"] = ",".join(query["group_by"])
        if query["filter_env"]:
            params["environment"] = query["filter_env"]
        if query["filter_model"]:
            params["model"] = query["filter_model"]
        if query["filter_service"]:
            params["service"] = query["filter_service"]
        resp = get(client, read, **params)
        assert resp.status_code == 200, resp.content
        body = resp.json()
        _assert_row_matches(body["totals"], totals)
        got_rows = {}
        for row in body["series"]:
            bucket = datetime.fromisoformat(row["bucket"].replace("Z", "+00:00"))
            got_rows[(bucket, tuple(sorted(row["group"].items())))] = row
        for key, want in exact["rows"].items():
            _assert_row_matches(got_rows.pop(key), want)
        assert all(row["requests"] == 0 for row in got_rows.values())
        if query["whole_days"] and query["granularity"] == "day":
            _assert_per_user_matches(client, read, params, exact["start"], exact["end"], env_names, query)


def _assert_per_user_matches(
    client: Client, read: str, params: dict, start: datetime, end: datetime, env_names: dict[int, str], query: dict
) -> None:
    """group_by=user_id (per-user spend): requests, errors and spend per day and user, exactly."""
    params = {k: v for k, v in params.items() if k in ("from", "to", "granularity", "environment")}
    body = get(client, read, group_by="user_id", **params).json()
    want: dict = defaultdict(lambda: [0, 0, Decimal(0)])
    for e in Event.objects.filter(timestamp__gte=start, timestamp__lt=end).exclude(user_id=""):
        if query["filter_env"] and env_names[e.environment_id] != query["filter_env"]:
            continue
        day = e.timestamp.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        row = want[(day.strftime("%Y-%m-%dT%H:%M:%SZ"), e.user_id)]
        row[0] += 1
        row[1] += e.status == "error"
        row[2] += e.cost_usd or Decimal(0)
    got = {(r["bucket"], r["group"]["user_id"]): r for r in body["series"]}
    assert set(got) == set(want)
    for key, (requests, errors, cost) in want.items():
        assert (got[key]["requests"], got[key]["errors"]) == (requests, errors)
        assert abs(Decimal(repr(got[key]["cost_usd"])) - cost) <= Decimal("1e-9") * max(1, cost)
        assert got[key]["latency_p95_ms"] is None  # not kept per user
    assert body["totals"]["requests"] == sum(r[0] for r in want.values())


# --- online latency, batch turnaround, time to first token ----------------------------------------


def test_batch_results_count_in_requests_and_cost_but_not_in_latency(keys):
    prod, _, read = keys
    day = TODAY - timedelta(days=1)
    ingest(
        prod,
        [
            event("o1", day + timedelta(hours=1), latency_ms=100, time_to_first_token_ms=40),
            event("o2", day + timedelta(hours=2), latency_ms=300, time_to_first_token_ms=80),
            event("o3", day + timedelta(hours=3), latency_ms=200),  # not streamed: no TTFT
            event("b1", day + timedelta(hours=1), latency_ms=900_000, batch=True),
            event("b2", day + timedelta(hours=4), latency_ms=2_700_000, batch=True),
        ],
    )
    rollup_until_current()
    iso = day.date().isoformat()
    totals = get(Client(), read, **{"from": iso, "to": iso}).json()["totals"]
    assert (totals["requests"], totals["batch_requests"]) == (5, 2)
    assert totals["input_tokens"] == 5000
    # Batch calls are priced at half: 3 x $0.0045 + 2 x $0.00225.
    assert math.isclose(totals["cost_usd"], 3 * 0.0045 + 2 * 0.00225, rel_tol=1e-12)
    assert totals["latency_avg_ms"] == 200.0  # (100 + 300 + 200) / 3 online calls
    assert totals["latency_p50_ms"] == sketch.bucket_value(sketch.bucket_of(200))
    assert totals["latency_p99_ms"] == sketch.bucket_value(sketch.bucket_of(200))  # rank floor(0.99 x 2) = 1
    assert totals["ttft_p50_ms"] == sketch.bucket_value(sketch.bucket_of(40))
    assert totals["ttft_p95_ms"] == sketch.bucket_value(sketch.bucket_of(40))  # rank floor(0.95 x 1) = 0
    assert totals["batch_latency_avg_ms"] == 1_800_000.0
    # Hourly: the hour of the batch result alone has no latency and no TTFT, but its request.
    hours = get(
        Client(),
        read,
        granularity="hour",
        **{"from": (day + timedelta(hours=4)).isoformat(), "to": (day + timedelta(hours=5)).isoformat()},
    ).json()
    (row,) = hours["series"]
    assert (row["requests"], row["batch_requests"], row["latency_avg_ms"], row["latency_p95_ms"]) == (1, 1, 0.0, 0.0)
    assert (row["ttft_p50_ms"], row["ttft_p95_ms"], row["batch_latency_avg_ms"]) == (None, None, 2_700_000.0)


def test_ttft_percentiles_of_many_streamed_calls_are_within_one_percent(keys):
    prod, _, read = keys
    day = TODAY - timedelta(days=1)
    ttfts = [float(v) for v in range(1, 201)]
    ingest(
        prod,
        [event(f"t{i}", day + timedelta(minutes=i), time_to_first_token_ms=v) for i, v in enumerate(ttfts)]
        + [event("tb", day, batch=True, time_to_first_token_ms=0.5)],
    )  # a batch TTFT is not counted
    rollup_until_current()
    totals = get(Client(), read, **{"from": day.date().isoformat(), "to": day.date().isoformat()}).json()["totals"]
    # Ranks floor(0.5 x 199) = 99 and floor(0.95 x 199) = 189 of 1..200 ms: 100 and 190 ms, to 1%.
    assert (exact_quantile(ttfts, 0.5), exact_quantile(ttfts, 0.95)) == (100.0, 190.0)
    assert abs(totals["ttft_p50_ms"] - 100.0) <= 1.0
    assert abs(totals["ttft_p95_ms"] - 190.0) <= 1.9
    assert totals["ttft_p50_ms"] == sketch.bucket_value(sketch.bucket_of(100.0))


# --- rate-limit headroom and 429s --------------------------------------------------------------------


def _limits(
    requests: tuple[int, int] | None = None,
    input_tokens: tuple[int, int] | None = None,
    output_tokens: tuple[int, int] | None = None,
) -> dict[str, int]:
    """The ratelimit_* event fields of (remaining, limit) pairs."""
    out: dict[str, int] = {}
    for kind, pair in (("requests", requests), ("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if pair is not None:
            out[f"ratelimit_{kind}_remaining"], out[f"ratelimit_{kind}_limit"] = pair
    return out


HEADROOM = (
    "ratelimit_requests_headroom_min",
    "ratelimit_input_tokens_headroom_min",
    "ratelimit_output_tokens_headroom_min",
)


def test_headroom_is_the_lowest_ratio_reported_and_429s_are_counted(keys):
    prod, dev, read = keys
    day = TODAY - timedelta(days=1)
    ingest(
        prod,
        [
            event("r1", day + timedelta(hours=1), **_limits((30, 40), (300_000, 400_000), (60_000, 80_000))),
            event("r2", day + timedelta(hours=1, minutes=5), **_limits((10, 40), (350_000, 400_000))),
            event(
                "r3",
                day + timedelta(hours=2),
                model="claude-haiku-4-5",
                status="error",
                http_status=429,
                error_type="rate_limit_error",
                **_limits((0, 40), (100_000, 400_000), (80_000, 80_000)),
            ),
            event("r4", day + timedelta(hours=3), status="error", http_status=529, error_type="overloaded_error"),
            event("r5", day + timedelta(hours=3), **_limits((0, 0), (500, 400))),  # limit 0 says nothing; 500/400 -> 1
        ],
    )
    ingest(
        dev,
        [
            event(
                "r6",
                day + timedelta(hours=1),
                status="error",
                http_status=429,
                error_type="rate_limit_error",
                **_limits(output_tokens=(20_000, 80_000)),
            ),
            event("r7", day - timedelta(hours=1), **_limits((1, 100))),
        ],
    )  # the day before
    rollup_until_current()
    iso = day.date().isoformat()
    client = Client()
    # A whole day: the daily slice (no filter), the daily rows (a feature filter) and the hours agree.
    for params in ({}, {"feature": ""}, {"granularity": "hour"}):
        totals = get(client, read, **params, **{"from": iso, "to": iso}).json()["totals"]
        assert totals["rate_limited_requests"] == 2
        assert [totals[name] for name in HEADROOM] == [0.0, 0.25, 0.25], params
    hours = get(
        client,
        read,
        granularity="hour",
        **{"from": (day + timedelta(hours=1)).isoformat(), "to": (day + timedelta(hours=4)).isoformat()},
    ).json()
    assert [[row[name] for name in ("rate_limited_requests", *HEADROOM)] for row in hours["series"]] == [
        [1, 0.25, 0.75, 0.25],
        [1, 0.0, 0.25, 1.0],
        [0, None, 1.0, None],
    ]
    by_model = get(client, read, group_by="model", environment="prod", **{"from": iso, "to": iso}).json()
    assert {
        row["group"]["model"]: [row[name] for name in ("rate_limited_requests", *HEADROOM)]
        for row in by_model["series"]
    } == {"claude-haiku-4-5": [1, 0.0, 0.25, 1.0], "claude-sonnet-4-6": [0, 0.25, 0.75, 0.75]}
    # A range that is not whole days: the ragged edge from hourly rows merges with the whole day by min().
    ragged = get(
        client, read, **{"from": (day - timedelta(hours=2)).isoformat(), "to": (day + timedelta(days=1)).isoformat()}
    ).json()
    assert [row["ratelimit_requests_headroom_min"] for row in ragged["series"]] == [0.01, 0.0]
    assert [ragged["totals"][name] for name in ("rate_limited_requests", *HEADROOM)] == [2, 0.0, 0.25, 0.25]
    # Per user, headroom is not kept.
    per_user = get(client, read, group_by="user_id", **{"from": iso, "to": iso}).json()["totals"]
    assert [per_user[name] for name in ("rate_limited_requests", *HEADROOM)] == [None, None, None, None]
    assert rollups_verify().differences == []


# --- format=csv ---------------------------------------------------------------------------------


def test_csv_gives_the_series_rows_with_a_header_and_group_columns(keys):
    prod, dev, read = keys
    day = TODAY - timedelta(days=1)
    ingest(
        prod,
        [
            event("c1", day + timedelta(hours=1), latency_ms=100, time_to_first_token_ms=40),
            event("c2", day + timedelta(hours=2), model="claude-haiku-4-5", latency_ms=50, batch=True),
        ],
    )
    ingest(dev, [event("c3", day + timedelta(hours=3), latency_ms=100, status="error", error_type="overloaded_error")])
    rollup_until_current()
    iso = day.date().isoformat()
    resp = get(Client(), read, group_by="environment,model", format="csv", **{"from": iso, "to": iso})
    assert resp.status_code == 200
    assert resp["Content-Type"] == "text/csv; charset=utf-8"
    assert resp["Content-Disposition"] == 'attachment; filename="metrics.csv"'
    p100 = repr(sketch.bucket_value(sketch.bucket_of(100)))
    p40 = repr(sketch.bucket_value(sketch.bucket_of(40)))
    bucket = day.strftime("%Y-%m-%dT00:00:00Z")
    assert resp.content.decode().splitlines() == [
        "bucket,model,environment,requests,errors,error_rate,input_tokens,output_tokens,cache_read_input_tokens,"
        "cache_creation_input_tokens,cache_write_5m_tokens,cache_write_1h_tokens,cache_hits,cache_hit_rate,"
        "batch_requests,cost_usd,cache_savings_usd,unpriced_requests,latency_avg_ms,latency_p50_ms,latency_p95_ms,"
        "latency_p99_ms,ttft_p50_ms,ttft_p95_ms,batch_latency_avg_ms,rate_limited_requests,"
        "ratelimit_requests_headroom_min,ratelimit_input_tokens_headroom_min,ratelimit_output_tokens_headroom_min",
        f"{bucket},claude-haiku-4-5,prod,1,0,0.0,1000,100,0,0,0,0,0,0.0,1,0.00075,0.0,0,0.0,0.0,0.0,0.0,,,50.0,0,,,",
        f"{bucket},claude-sonnet-4-6,dev,1,1,1.0,1000,100,0,0,0,0,0,0.0,0,0.0045,0.0,0,100.0,{p100},{p100},{p100},,,,"
        "0,,,",
        f"{bucket},claude-sonnet-4-6,prod,1,0,0.0,1000,100,0,0,0,0,0,0.0,0,0.0045,0.0,0,100.0,{p100},{p100},{p100},"
        f"{p40},{p40},,0,,,",
    ]


def test_csv_without_groups_has_one_line_per_bucket(keys):
    prod, _, read = keys
    start = TODAY - timedelta(days=1)
    ingest(prod, [event("h1", start + timedelta(hours=1, minutes=10))])
    rollup_until_current()
    resp = get(
        Client(),
        read,
        granularity="hour",
        format="csv",
        **{"from": start.isoformat(), "to": (start + timedelta(hours=3)).isoformat()},
    )
    lines = resp.content.decode().splitlines()
    assert lines[0].startswith("bucket,requests,errors,")
    assert [line.split(",")[:2] for line in lines[1:]] == [
        [(start + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ"), str(int(h == 1))] for h in range(3)
    ]


def test_an_unknown_format_is_a_400_naming_format(keys):
    _, _, read = keys
    resp = get(Client(), read, format="xml")
    assert resp.status_code == 400
    assert resp.json()["field"] == "format"


# --- user_id: per-user spend, per UTC day ---------------------------------------------------------


def test_group_by_and_filter_user_id_from_per_user_spend(keys):
    prod, dev, read = keys
    day1 = TODAY - timedelta(days=2)
    day2 = TODAY - timedelta(days=1)
    ingest(
        prod,
        [
            event("u1", day1 + timedelta(hours=1), user_id="alice"),
            event("u2", day1 + timedelta(hours=2), user_id="bob", status="error", error_type="api_error"),
            event("u3", day2 + timedelta(hours=1), user_id="alice", model="claude-haiku-4-5"),
            event("u4", day2 + timedelta(hours=1)),
        ],
    )  # no user: not in per-user numbers
    ingest(dev, [event("u5", day2 + timedelta(hours=3), user_id="alice")])
    rollup_until_current()
    rng = {"from": day1.date().isoformat(), "to": day2.date().isoformat()}
    client = Client()
    body = get(client, read, group_by="user_id", **rng).json()
    got = [(r["bucket"][:10], r["group"], r["requests"], r["errors"], r["cost_usd"]) for r in body["series"]]
    assert got == [
        (day1.date().isoformat(), {"user_id": "alice"}, 1, 0, 0.0045),
        (day1.date().isoformat(), {"user_id": "bob"}, 1, 1, 0.0045),
        (day2.date().isoformat(), {"user_id": "alice"}, 2, 0, 0.006),
    ]
    assert body["totals"]["requests"] == 4
    assert body["totals"]["input_tokens"] is None  # not kept per user
    assert body["totals"]["latency_p95_ms"] is None
    body = get(client, read, user_id="alice", environment="prod", **rng).json()
    assert [(r["requests"], r["cost_usd"]) for r in body["series"]] == [(1, 0.0045), (1, 0.0015)]
    assert body["totals"]["error_rate"] == 0.0
    body = get(client, read, group_by="environment,user_id", user_id=["alice", "bob"], granularity="day", **rng).json()
    assert sorted(
        (r["bucket"][:10], r["group"]["environment"], r["group"]["user_id"], r["requests"]) for r in body["series"]
    ) == [
        (day1.date().isoformat(), "prod", "alice", 1),
        (day1.date().isoformat(), "prod", "bob", 1),
        (day2.date().isoformat(), "dev", "alice", 1),
        (day2.date().isoformat(), "prod", "alice", 1),
    ]
    csv_lines = get(client, read, group_by="user_id", format="csv", **rng).content.decode().splitlines()
    assert csv_lines[0].startswith("bucket,user_id,requests,errors,error_rate,input_tokens,")
    assert csv_lines[1] == f"{day1.date().isoformat()}T00:00:00Z,alice,1,0,0.0,,,,,,,,,,0.0045,,0,,,,,,,,,,,"


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"user_id": "alice", "granularity": "hour"}, "granularity", "granularity=day"),
        ({"group_by": "user_id,model"}, "group_by", "only with environment"),
        ({"user_id": "alice", "service": "search"}, "user_id", "not kept per service"),
        ({"user_id": "alice", "from": "2026-11-10T05:00:00Z", "to": "2026-11-11"}, "from", "whole days"),
        ({"user_id": "alice", "from": "2026-11-10", "to": "2026-11-11T05:00:00Z"}, "to", "whole days"),
    ],
)
def test_what_per_user_numbers_cannot_answer_is_a_400(keys, params, field, says):
    _, _, read = keys
    resp = get(Client(), read, **params)
    assert resp.status_code == 400
    assert resp.json()["field"] == field
    assert says in resp.json()["error"]


def test_user_id_without_to_covers_today_whole(keys):
    prod, _, read = keys
    ingest(prod, [event("now1", datetime.now(tz=UTC) - timedelta(minutes=1), user_id="carol")])
    rollup_until_current()
    body = get(Client(), read, user_id="carol").json()
    assert body["series"][-1]["bucket"] == TODAY.strftime("%Y-%m-%dT00:00:00Z")
    assert body["totals"]["requests"] == 1


def test_the_selector_refuses_what_per_user_rows_cannot_answer_and_totals_read_touched_days(keys):
    prod, _, _ = keys
    project_ids = [prod.project_id]
    ingest(prod, [event("tu1", TODAY - timedelta(hours=20), user_id="dave")])
    rollup_until_current()
    hourly = MetricsQuery(
        project_ids=project_ids,
        start=TODAY - timedelta(days=1),
        end=TODAY,
        granularity="hour",
        filters={"user_id": ["dave"]},
    )
    with pytest.raises(ValueError, match="granularity=day"):
        metrics_query(hourly)
    by_model = MetricsQuery(
        project_ids=project_ids, start=TODAY - timedelta(days=1), end=TODAY, group_by=["user_id", "model"]
    )
    assert per_user_problem(by_model) == (
        "group_by",
        "user_id can be combined only with environment (per-user numbers are not kept per model)",
    )
    # A breakdown over "the last 24 hours" (TOTAL) reads the two UTC days it touches.
    last_24h = MetricsQuery(
        project_ids=project_ids,
        start=TODAY - timedelta(hours=12),
        end=TODAY + timedelta(hours=12),
        granularity=TOTAL,
        group_by=["user_id"],
    )
    assert per_user_problem(last_24h) is None
    (row,) = metrics_query(last_24h).series
    assert (row.group, row.requests) == ({"user_id": "dave"}, 1)
