"""Demo data: a month of realistic Claude API traffic, written through `events_ingest`.

Invariants:
- Every event goes through `events_ingest` (validation, pricing, dedup, dirty-hour
  markers), in batches of at most 1000, exactly as if posted to `POST /api/v1/events`.
- Request ids are `demo-<seed>-<index>`: the same seed gives the same ids, so a second
  run stores nothing and reports every event as a duplicate.
- For a given seed and `now` the events are identical (one `random.Random(seed)`,
  a fixed number of draws per event). They are "now-relative": the newest event is
  one minute before `now`, the oldest inside the 30-day ingest window.

What the month contains (so every dashboard page has something to show): a diurnal,
weekday-heavy traffic pattern with slow growth; 4 services with 2-3 features each on 3
current Claude models; prod/staging/dev with prod taking most traffic; streaming calls
with time to first token; prompt-cache reads and 5m/1h writes; nightly batch jobs;
an overload (529) afternoon, short rate-limit (429) storms and a few timeouts; a
model without a known price; and a skewed population of end users.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from django.conf import settings
from django.utils import timezone

from ingest.schemas import MAX_PAST
from ingest.services.events import events_ingest
from projects.services import environment_get_or_create, project_get_or_create

BATCH_SIZE = 1000
# Ingest rejects events older than 30 days *at validation time*, which is a few seconds
# (or, for a big seed, minutes) after we pick `now`: keep a wide margin.
PAST_MARGIN = timedelta(hours=2)
UNPRICED_MODEL = "claude-experimental-x"

SONNET = "claude-sonnet-4-6"
HAIKU = "claude-haiku-4-5"
OPUS = "claude-opus-4-7"

ENVIRONMENTS = (("prod", 0.80), ("staging", 0.12), ("dev", 0.08))

# Output speed (ms per output token) and median time to first token per model: latency
# is TTFT (growing with uncached prompt) + output tokens x speed, with lognormal noise.
_MS_PER_TOKEN = {HAIKU: 6.5, SONNET: 15.0, OPUS: 24.0, UNPRICED_MODEL: 20.0}
_TTFT_MS = {HAIKU: 380.0, SONNET: 700.0, OPUS: 1300.0, UNPRICED_MODEL: 900.0}


@dataclass(frozen=True)
class Feature:
    service: str
    feature: str
    weight: float
    models: tuple[tuple[str, float], ...]
    input_median: int  # uncached prompt tokens
    output_median: int
    max_tokens: int
    stream: bool = False
    cache_hit: float = 0.0  # share of calls that read a cached prefix
    cache_prefix: int = 0  # median size of that prefix
    cache_1h: float = 0.0  # share of cache writes that use the 1-hour TTL
    tool_use: float = 0.0  # share of ok calls that stop on tool_use
    has_user: bool = True


FEATURES = (
    Feature("search", "query-rewrite", 0.16, ((HAIKU, 1.0),), 250, 40, 256, cache_hit=0.9, cache_prefix=2200),
    Feature("search", "rerank", 0.12, ((HAIKU, 0.85), (SONNET, 0.15)), 3500, 60, 256, cache_hit=0.8, cache_prefix=1800),
    Feature(
        "search",
        "answer",
        0.14,
        ((SONNET, 0.9), (HAIKU, 0.1)),
        4500,
        420,
        1024,
        stream=True,
        cache_hit=0.85,
        cache_prefix=6000,
    ),
    Feature(
        "support-bot",
        "chat",
        0.22,
        ((SONNET, 0.95), (OPUS, 0.05)),
        600,
        350,
        2048,
        stream=True,
        cache_hit=0.92,
        cache_prefix=14000,
        cache_1h=0.2,
        tool_use=0.3,
    ),
    Feature(
        "support-bot",
        "ticket-triage",
        0.08,
        ((HAIKU, 1.0),),
        900,
        80,
        512,
        cache_hit=0.85,
        cache_prefix=4000,
        cache_1h=0.7,
        tool_use=0.5,
    ),
    Feature(
        "support-bot",
        "escalation-summary",
        0.03,
        ((OPUS, 0.8), (SONNET, 0.2)),
        9000,
        700,
        2048,
        cache_hit=0.3,
        cache_prefix=3000,
    ),
    Feature("checkout", "fraud-check", 0.09, ((HAIKU, 0.9), (SONNET, 0.1)), 1200, 120, 512, tool_use=0.15),
    Feature("checkout", "address-normalize", 0.06, ((HAIKU, 1.0),), 300, 60, 256),
    Feature("checkout", "receipt-email", 0.04, ((SONNET, 1.0),), 800, 300, 1024),
    Feature(
        "summarizer",
        "doc-summary",
        0.06,
        ((SONNET, 0.7), (OPUS, 0.3)),
        18000,
        900,
        1500,
        stream=True,
        cache_hit=0.2,
        cache_prefix=2000,
    ),
)
NIGHTLY = Feature(
    "summarizer",
    "nightly-digest",
    0.0,
    ((HAIKU, 0.6), (SONNET, 0.4)),
    12000,
    800,
    1200,
    cache_hit=0.6,
    cache_prefix=5000,
    cache_1h=1.0,
    has_user=False,
)
EXPERIMENT = Feature(
    "summarizer", "doc-summary-eval", 0.0, ((UNPRICED_MODEL, 1.0),), 15000, 700, 1500, stream=True, has_user=False
)

_FEATURE_CUM = list(accumulate(f.weight for f in FEATURES))


@dataclass(frozen=True)
class Burst:
    start: datetime
    end: datetime
    error_type: str
    http_status: int
    error_rate: float
    services: tuple[str, ...]
    models: tuple[str, ...] = ()  # empty: every model

    def hits(self, ts: datetime, service: str, model: str) -> bool:
        return self.start <= ts < self.end and service in self.services and (not self.models or model in self.models)


@dataclass
class _Plan:
    """Where the month's incidents happen, relative to its start and end."""

    start: datetime
    end: datetime
    bursts: list[Burst]


def _plan(start: datetime, end: datetime) -> _Plan:
    span = end - start

    def afternoon(fraction: float, hour: int) -> datetime:
        # An afternoon (UTC) near `fraction` of the span, pulled inside it for short spans.
        day = (start + span * fraction).replace(hour=hour, minute=0, second=0, microsecond=0)
        if not start <= day <= end - timedelta(hours=1):
            day = start + span * fraction
        return day

    overload = afternoon(0.6, 14)
    bursts = [
        # Anthropic overloaded for the big models one afternoon: 529s for ~50 minutes.
        Burst(
            overload,
            overload + timedelta(minutes=50),
            "overloaded_error",
            529,
            0.55,
            ("search", "support-bot", "summarizer", "checkout"),
            (SONNET, OPUS),
        ),
    ]
    # Traffic spikes in search run into the org's rate limit: three short 429 storms.
    for fraction in (0.22, 0.47, 0.86):
        at = start + span * fraction
        bursts.append(Burst(at, at + timedelta(minutes=15), "rate_limit_error", 429, 0.45, ("search",)))
    return _Plan(start, end, bursts)


def _diurnal(hour_start: datetime, start: datetime, span: timedelta) -> float:
    """Relative traffic in one hour: daytime peak around 15:00 UTC (EU + US), quieter
    weekends, and ~40% growth over the period."""
    hour = hour_start.hour + 0.5
    day_curve = 0.25 + 0.75 * max(0.0, math.sin(math.pi * (hour - 6) / 18)) ** 1.5 if 6 <= hour <= 24 else 0.25
    weekend = 0.55 if hour_start.weekday() >= 5 else 1.0
    growth = 1.0 + 0.4 * ((hour_start - start) / span)
    return day_curve * weekend * growth


def _hour_slots(start: datetime, end: datetime) -> tuple[list[datetime], list[float]]:
    first = start.replace(minute=0, second=0, microsecond=0)
    slots = []
    hour = first
    while hour < end:
        slots.append(hour)
        hour += timedelta(hours=1)
    span = end - start
    return slots, list(accumulate(_diurnal(h, start, span) for h in slots))


def _clamp(ts: datetime, start: datetime, end: datetime) -> datetime:
    return min(max(ts, start), end)


def _pick(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    names = [name for name, _ in choices]
    return rng.choices(names, weights=[w for _, w in choices])[0]


class _Users:
    """A Zipf-like population: a few heavy users account for much of the spend."""

    def __init__(self, count: int) -> None:
        self.ids = [f"u_{i:04d}" for i in range(1, count + 1)]
        self.cum = list(accumulate(1.0 / (rank + 2) for rank in range(1, count + 1)))  # top user ~5% of calls

    def pick(self, rng: random.Random) -> str:
        return rng.choices(self.ids, cum_weights=self.cum)[0]


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event(
    rng: random.Random,
    *,
    request_id: str,
    ts: datetime,
    feature: Feature,
    environment: str,
    plan: _Plan,
    users: _Users,
    batch: bool = False,
    model: str | None = None,
) -> dict[str, Any]:
    model = model or _pick(rng, feature.models)
    # Every event makes the same draws whatever its branch, so one event's outcome never
    # shifts the next event's numbers (runs stay comparable when the incident plan moves).
    u_status, u_cache, u_ttl, u_stop, u_stream, u_meta = (rng.random() for _ in range(6))
    noise_in, noise_out, noise_prefix, noise_ttft, noise_speed, noise_extra = (rng.gauss(0.0, 1.0) for _ in range(6))
    picked_user = users.pick(rng)
    user_id = picked_user if feature.has_user else None

    event: dict[str, Any] = {
        "request_id": request_id,
        "timestamp": _iso(ts),
        "model": model,
        "service": feature.service,
        "feature": feature.feature,
    }
    if user_id:
        event["user_id"] = user_id
    if batch:
        event["batch"] = True
        event["service_tier"] = "batch"
    else:
        event["service_tier"] = "priority" if feature.service == "checkout" and environment == "prod" else "standard"
    if u_meta < 0.3:
        event["metadata"] = {
            "region": "eu-west-1" if u_meta < 0.12 else "us-east-1",
            "app_version": "2026.11." + str(1 + int(u_meta * 30)),
        }

    # Errors: bursts first, then a low background of 500s, timeouts and dropped connections.
    burst = next((b for b in plan.bursts if b.hits(ts, feature.service, model)), None)
    error: tuple[str, int | None] | None = None
    if burst and u_status < burst.error_rate:
        error = (burst.error_type, burst.http_status)
    elif u_status > 0.997:
        error = ("api_error", 500)
    elif u_status > 0.995:
        error = ("timeout", None)
    elif u_status > 0.9943:
        error = ("connection_error", None)
    elif environment != "prod" and u_status > 0.985:
        error = ("invalid_request_error", 400)  # developers sending bad requests
    if error:
        error_type, http_status = error
        event.update(status="error", error_type=error_type)
        if http_status is not None:
            event["http_status"] = http_status
        # Errors arrive fast, except timeouts, which hit the client's limit.
        if error_type == "timeout":
            event["latency_ms"] = 600_000.0 if batch else round(60_000.0 + abs(noise_extra) * 50, 1)
        elif error_type == "overloaded_error":
            event["latency_ms"] = round(1800 * math.exp(0.5 * noise_extra), 1)
        else:
            event["latency_ms"] = round(180 * math.exp(0.4 * noise_extra), 1)
        return event

    input_tokens = max(10, int(feature.input_median * math.exp(0.6 * noise_in)))
    output_tokens = max(1, int(feature.output_median * math.exp(0.7 * noise_out)))
    stop_reason = "end_turn"
    if output_tokens >= feature.max_tokens:
        output_tokens, stop_reason = feature.max_tokens, "max_tokens"
    elif u_stop < feature.tool_use:
        stop_reason = "tool_use"
    elif feature.feature == "query-rewrite" and u_stop > 0.9:
        stop_reason = "stop_sequence"
    event.update(input_tokens=input_tokens, output_tokens=output_tokens, stop_reason=stop_reason)

    if feature.cache_prefix:
        prefix = max(1024, int(feature.cache_prefix * math.exp(0.5 * noise_prefix)))
        if u_cache < feature.cache_hit:
            event["cache_read_input_tokens"] = prefix
            # A growing conversation also caches its newest turn.
            if feature.feature == "chat":
                event["cache_creation_input_tokens"] = input_tokens
                event["cache_creation"] = {"ephemeral_5m_input_tokens": input_tokens, "ephemeral_1h_input_tokens": 0}
        else:
            one_hour = u_ttl < feature.cache_1h
            event["cache_creation_input_tokens"] = prefix
            event["cache_creation"] = {
                "ephemeral_5m_input_tokens": 0 if one_hour else prefix,
                "ephemeral_1h_input_tokens": prefix if one_hour else 0,
            }

    # Time to first token grows with the uncached prompt (cache reads are nearly free).
    uncached = input_tokens + event.get("cache_creation_input_tokens", 0)
    ttft = _TTFT_MS[model] * math.exp(0.35 * noise_ttft) * (1 + uncached / 40_000)
    if burst:  # an overloaded or throttled API is slow for the calls that do get through
        ttft *= 2.5
    generation = output_tokens * _MS_PER_TOKEN[model] * math.exp(0.2 * noise_speed)
    latency = ttft + generation
    if batch:
        # Batch results come back minutes to hours after submission.
        latency = min(3_500_000.0, latency + 900_000 * math.exp(0.8 * noise_extra))
    event["latency_ms"] = round(latency, 1)
    if feature.stream and u_stream < 0.95:
        event["time_to_first_token_ms"] = round(ttft, 1)
    return event


def _generate(
    *, n: int, start: datetime, end: datetime, seed: int, environments: tuple[tuple[str, float], ...]
) -> list[tuple[str, dict[str, Any]]]:
    """(environment name, event) pairs, oldest first."""
    rng = random.Random(seed)
    plan = _plan(start, end)
    slots, cum = _hour_slots(start, end)
    users = _Users(max(50, min(2000, n // 10)))
    env_names = [name for name, _ in environments]
    env_cum = list(accumulate(w for _, w in environments))

    # Fixed quotas, so small runs still have every kind of event the dashboard shows.
    n_nightly = max(5, n // 20)
    n_unpriced = max(3, n // 150)
    n_storm = max(8, n // 40)  # extra calls (retries, spikes) inside the incident windows
    n_regular = max(0, n - n_nightly - n_unpriced - n_storm)

    # (timestamp, environment, feature, batch, model override)
    planned: list[tuple[datetime, str, Feature, bool, str | None]] = []
    for slot in rng.choices(slots, cum_weights=cum, k=n_regular):
        ts = _clamp(slot + timedelta(seconds=rng.random() * 3600), start, end)
        env = rng.choices(env_names, cum_weights=env_cum)[0]
        feature = rng.choices(FEATURES, cum_weights=_FEATURE_CUM)[0]
        planned.append((ts, env, feature, False, None))

    # The nightly digest: submitted as Message Batches between 01:00 and 03:00 UTC in prod.
    nights = sorted({(start + timedelta(days=d)).date() for d in range((end - start).days + 1)})
    for _ in range(n_nightly):
        night = rng.choice(nights)
        ts = datetime(night.year, night.month, night.day, 1, tzinfo=UTC) + timedelta(seconds=rng.random() * 7200)
        if not start <= ts <= end:
            ts = start + (end - start) * rng.random()
        planned.append((ts, "prod", NIGHTLY, True, None))

    # A model pricing does not know yet, evaluated in dev and staging: never silently $0.
    for _ in range(n_unpriced):
        ts = start + (end - start) * rng.random()
        planned.append((ts, "dev" if rng.random() < 0.7 else "staging", EXPERIMENT, False, None))

    # Incident windows get extra prod traffic: client retries and the spikes that caused them.
    for i in range(n_storm):
        burst = plan.bursts[i % len(plan.bursts)]
        ts = _clamp(burst.start + (burst.end - burst.start) * rng.random(), start, end)
        candidates = [
            f
            for f in FEATURES
            if f.service in burst.services and (not burst.models or any(m in burst.models for m, _ in f.models))
        ]
        feature = rng.choice(candidates)
        model = next((m for m, _ in feature.models if m in burst.models), None)
        planned.append((ts, "prod", feature, False, model))

    planned.sort(key=lambda p: p[0])
    # The newest event is "just now", whatever the sample did.
    planned[-1] = (end, *planned[-1][1:])

    return [
        (
            env,
            _event(
                rng,
                request_id=f"demo-{seed}-{index:07d}",
                ts=ts,
                feature=feature,
                environment=env,
                plan=plan,
                users=users,
                batch=batch,
                model=model,
            ),
        )
        for index, (ts, env, feature, batch, model) in enumerate(planned)
    ]


def demo_seed(
    *,
    days: int = 30,
    events: int = 20000,
    project_slug: str = "demo",
    seed: int = 42,
    progress: Callable[[int, int], None] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Write `events` demo events over the last `days` days into project `project_slug`.

    Returns a summary: accepted / duplicates / rejected counts overall and per environment,
    and the time range covered. `progress(done, total)` is called after each batch.
    Events only: alerts.services.demo_seed_with_alerts (what `seed_demo` and the first `make run`
    call) adds the demo rules, budget and incidents on top, since alerts sit above ingest.
    """
    if days < 1 or events < 1:
        raise ValueError("days and events must be at least 1")
    now = now or timezone.now()
    end = now - timedelta(minutes=1)
    start = max(now - timedelta(days=days), now - MAX_PAST + PAST_MARGIN)

    project = project_get_or_create(slug=project_slug, name="Demo" if project_slug == "demo" else None)
    environment_ids = {name: environment_get_or_create(project=project, name=name).pk for name, _ in ENVIRONMENTS}
    generated = _generate(n=events, start=start, end=end, seed=seed, environments=ENVIRONMENTS)

    by_env: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in ENVIRONMENTS}
    for env, event in generated:
        by_env[env].append(event)

    summary: dict[str, Any] = {
        "project": project_slug,
        "project_id": project.pk,
        "events": len(generated),
        "accepted": 0,
        "duplicates": 0,
        "rejected": 0,
        "from": _iso(start),
        "to": _iso(end),
        "environments": {},
        "first_rejection": None,
    }
    max_batch = min(BATCH_SIZE, settings.TALLY_INGEST_MAX_BATCH)
    done = 0
    for env, env_events in by_env.items():
        counts = {"accepted": 0, "duplicates": 0, "rejected": 0}
        for offset in range(0, len(env_events), max_batch):
            chunk = env_events[offset : offset + max_batch]
            result = events_ingest(
                project_id=project.pk, environment_id=environment_ids[env], body={"events": chunk}, max_batch=max_batch
            )
            counts["accepted"] += result.accepted
            counts["duplicates"] += result.duplicates
            counts["rejected"] += len(result.rejected)
            if result.rejected and summary["first_rejection"] is None:
                summary["first_rejection"] = result.rejected[0]
            done += len(chunk)
            if progress:
                progress(done, len(generated))
        summary["environments"][env] = {"events": len(env_events), **counts}
        for name in ("accepted", "duplicates", "rejected"):
            summary[name] += counts[name]
    return summary
