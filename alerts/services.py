"""Alert evaluation, incidents, budgets, digests: the writes of the alerts app.

Invariants:
- A rule has at most one open incident (partial unique index; a rule with `per` one per
  dimension value, alerts/per_rules.py). Opening inserts with ON
  CONFLICT DO NOTHING and only the inserter queues the "opened" email; resolving is a
  conditional UPDATE (resolved_at IS NULL) and only the updater queues "resolved". Both
  happen in the transaction that queues the email, so racing evaluators notify once.
- Every email is an outbox row with a unique `dedupe_key` (incident:<id>:opened,
  budget:<id>:<period>:<level>, budget:<id>:<period>:forecast, digest:<project>:<day>), and every
  channel of the rule, budget or project one more (`<key>:channel:<hash>`), queued in the same
  transaction; sending happens after COMMIT (`transaction.on_commit`) and retries with backoff
  until it succeeds.
- Evaluation reads aggregates only and judges closed windows, plus the current window for
  thresholds that a partial window can already prove (spend or requests above).
- A project notifies its admins once per (model, kind) of the first call of a model it never
  called before and of a model's first unpriced call: a ModelNotice row is inserted with ON
  CONFLICT DO NOTHING ... RETURNING and only its inserter queues the email (dedupe key
  model:<project>:<kind>:<model>), in one transaction. Found from the per-model daily slices
  after each rollup pass, never on the ingest path.
- A project's digest, as the alerts page manages it, is its earliest subscription; saving it
  holds a per-project advisory lock so two admins saving at once cannot create two.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from cryptography.fernet import InvalidToken
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from alerts import formatting, outbox
from alerts.channels import ChannelResult, channel_decrypt, channel_encrypt, channel_send
from alerts.models import (
    AlertRule,
    Budget,
    Condition,
    DigestSubscription,
    Incident,
    Metric,
    ModelNotice,
    Notification,
    ProjectChannels,
)
from alerts.per_rules import per_rule_evaluate
from alerts.selectors import (
    ADDITIVE,
    BASELINE_WINDOWS,
    GUARDED,
    LOWER_IS_WORSE,
    PROVIDER,
    WindowValue,
    baseline_for,
    budget_status,
    contributors,
    notification_queued,
    project_channels,
    provider_day,
    rule_windows,
    window_length,
    window_start,
)
from ingest.services import demo_seed
from projects.selectors import project_admin_emails, project_slug_of
from providers.selectors import connection_of, reconciliation
from rollups.selectors import MetricsQuery, metrics_query, model_first_call, models_seen

logger = logging.getLogger(__name__)

BUDGET_LEVELS = (80, 100)


@dataclass
class Judgement:
    breaching: bool
    window: WindowValue | None
    threshold: float | None = None
    baseline: float | None = None
    detail: dict[str, Any] | None = None
    judged: bool = True  # False: nothing to judge (no provider reading): leave any incident as it is


def _judge_threshold(rule: AlertRule, w: WindowValue) -> bool:
    if rule.metric in GUARDED and w.requests < rule.min_requests:
        return False
    assert rule.threshold is not None
    return w.value > rule.threshold if rule.condition == Condition.ABOVE else w.value < rule.threshold


def rule_judge(rule: AlertRule, *, now: datetime) -> Judgement:
    """Is the rule breached now? Looks at the last closed window (and the current one where a
    partial window is already conclusive)."""
    if rule.metric in PROVIDER:
        return provider_judge(rule, now=now)
    count = BASELINE_WINDOWS * (24 if rule.window == "hour" else 1) + 2 if rule.condition == Condition.ANOMALY else 2
    return windows_judge(rule, rule_windows(rule, now=now, count=count))


def provider_judge(rule: AlertRule, *, now: datetime) -> Judgement:
    """Coverage / unmetered spend of the latest closed UTC day the provider's report was read
    for. No reading (or, for coverage, no provider cost that day): no judgement, never an alarm."""
    found = provider_day(rule, now=now)
    window = found.window() if found is not None else None
    if found is None or window is None:
        return Judgement(False, None, judged=False)
    return Judgement(_judge_threshold(rule, window), window, threshold=rule.threshold, detail=found.detail())


def windows_judge(rule: AlertRule, windows: list[WindowValue]) -> Judgement:
    """Pure decision over a window series ending with the current (partial) window."""
    closed, current = windows[-2], windows[-1]
    if rule.condition != Condition.ANOMALY:
        candidates = [closed]
        partial_conclusive = (rule.metric in ADDITIVE and rule.condition == Condition.ABOVE) or (
            rule.metric in GUARDED and current.requests >= rule.min_requests
        )
        if partial_conclusive:
            candidates.append(current)
        for w in reversed(candidates):
            if _judge_threshold(rule, w):
                return Judgement(True, w, threshold=rule.threshold)
        return Judgement(False, closed, threshold=rule.threshold)
    if rule.metric in GUARDED and closed.requests < rule.min_requests:
        return Judgement(False, closed)
    baseline = baseline_for(rule, windows, closed)
    if baseline is None:  # too little history (a new service): never page on it
        return Judgement(False, closed, detail={"reason": "not enough history"})
    sensitivity = rule.sensitivity or 3.0
    deviation = (closed.value - baseline.median) / baseline.scale
    # Cache hit rate is bad when it drops; every other metric when it rises.
    breaching = deviation < -sensitivity if rule.metric in LOWER_IS_WORSE else deviation > sensitivity
    return Judgement(
        breaching,
        closed,
        baseline=baseline.median,
        detail={
            "deviation": round(deviation, 2),
            "mad": baseline.mad,
            "points": baseline.points,
            "baseline_values": baseline.values,
        },
    )


def _contributors_for(rule: AlertRule, w: WindowValue) -> dict[str, Any]:
    length = window_length(rule.window)
    # Compare with the like window one day earlier (hourly rules: the same hour yesterday).
    before = w.start - timedelta(days=1)
    return contributors(
        rule, start=w.start, end=w.start + length, before_start=before, before_end=before + length
    ).as_detail()


def rule_evaluate(*, rule: AlertRule, now: datetime | None = None) -> str:
    """Evaluate one rule; returns "opened", "resolved", "open", or "ok"."""
    now = now or timezone.now()
    if rule.per:  # judged per user / service / feature / model: one incident per breaching value
        return per_rule_evaluate(rule=rule, now=now)
    judgement = rule_judge(rule, now=now)
    AlertRule.objects.filter(pk=rule.pk).update(last_evaluated_at=now, evaluations=F("evaluations") + 1)
    if not judgement.judged:
        return "ok"
    # Incidents of values left open from when the rule had `per` are about no value it judges now.
    Incident.objects.filter(rule=rule, resolved_at__isnull=True).exclude(dimension_value="").update(resolved_at=now)
    open_incident = Incident.objects.filter(rule=rule, resolved_at__isnull=True).first()
    if judgement.breaching and judgement.window is not None:
        if open_incident is not None:
            Incident.objects.filter(pk=open_incident.pk).update(value=judgement.window.value)
            return "open"
        return "opened" if incident_open(rule=rule, judgement=judgement, now=now) else "open"
    if open_incident is not None:
        return (
            "resolved"
            if incident_resolve(
                incident=open_incident, now=now, value=judgement.window.value if judgement.window else None
            )
            else "ok"
        )
    return "ok"


def incident_open(*, rule: AlertRule, judgement: Judgement, now: datetime) -> Incident | None:
    assert judgement.window is not None
    detail = dict(judgement.detail or {})
    if rule.metric not in PROVIDER:  # provider metrics carry the day's reconciliation instead
        detail.update(_contributors_for(rule, judgement.window))
    detail["window_requests"] = judgement.window.requests
    last = Incident.objects.filter(rule=rule).order_by("-opened_at").first()
    in_cooldown = last is not None and last.notified and now - last.opened_at < timedelta(minutes=rule.cooldown_minutes)
    try:
        with transaction.atomic():
            incident = Incident.objects.create(
                rule=rule,
                window_start=judgement.window.start,
                opened_at=now,
                value=judgement.window.value,
                threshold=judgement.threshold,
                baseline=judgement.baseline,
                detail=detail,
                notified=not in_cooldown,
            )
            if not in_cooldown:
                outbox.notification_queue(
                    project_id=rule.project_id,
                    kind=Notification.Kind.INCIDENT_OPENED,
                    dedupe_key=f"incident:{incident.pk}:opened",
                    recipients=rule.recipients,
                    incident=incident,
                    template="incident_opened",
                    context=formatting.incident_context(incident),
                    channels=rule.channels_encrypted,
                )
    except IntegrityError:
        # Another evaluator opened it first (one open incident per rule): it notifies, not us.
        return None
    return incident


def incident_resolve(*, incident: Incident, now: datetime, value: float | None) -> bool:
    with transaction.atomic():
        updated = Incident.objects.filter(pk=incident.pk, resolved_at__isnull=True).update(resolved_at=now)
        if updated != 1:
            return False
        incident.refresh_from_db()
        if incident.notified:
            context = formatting.incident_context(incident)
            context["resolved_value"] = value
            outbox.notification_queue(
                project_id=incident.rule.project_id,
                kind=Notification.Kind.INCIDENT_RESOLVED,
                dedupe_key=f"incident:{incident.pk}:resolved",
                recipients=incident.rule.recipients,
                incident=incident,
                template="incident_resolved",
                context=context,
                channels=incident.rule.channels_encrypted,
            )
    return True


def rules_evaluate(*, project_ids: list[int] | None = None, now: datetime | None = None) -> dict[str, int]:
    """Idempotent per rule. With `project_ids` (after a rollup pass): rules of those projects,
    plus every rule whose window closed since its last evaluation. Without: every rule.
    Budgets of the same projects are checked too."""
    now = now or timezone.now()
    outcome: dict[str, int] = {}
    rules = AlertRule.objects.filter(enabled=True).select_related("project")
    for rule in rules:
        due = rule.last_evaluated_at is None or rule.last_evaluated_at < window_start(rule.window, now)
        if rule.metric in PROVIDER and not due:
            # The provider's report arrives by its own sync, not by a rollup: a day read since the
            # last evaluation is new data for the rule.
            synced = connection_of(project_id=rule.project_id)
            # Not due means last_evaluated_at is set, which mypy can't follow through `due`.
            due = (
                synced is not None
                and synced.last_synced_at is not None
                and synced.last_synced_at > rule.last_evaluated_at  # type: ignore[operator]
            )
        if project_ids is not None and not due and rule.project_id not in project_ids:
            continue  # no new data for it and no window closed since its last evaluation
        try:
            result = rule_evaluate(rule=rule, now=now)
        except Exception:  # one broken rule must not stop the others
            logger.exception("evaluating rule %s failed", rule.pk)
            result = "error"
        outcome[result] = outcome.get(result, 0) + 1
    budget_projects = project_ids if project_ids is not None else None
    budgets_check(project_ids=budget_projects, now=now)
    model_notices_check(project_ids=budget_projects, now=now)
    return outcome


def budgets_check(*, project_ids: list[int] | None = None, now: datetime | None = None) -> int:
    """Queue the 80% and 100% emails of each budget, once each per period, and (for budgets with
    `warn_on_forecast`) the forecast warning, once per period, while the limit is not reached yet
    but the forecast says it will be before the period ends."""
    now = now or timezone.now()
    budgets = Budget.objects.filter(enabled=True)
    if project_ids is not None:
        budgets = budgets.filter(project_id__in=project_ids)
    queued = 0
    for budget in budgets:
        status = budget_status(budget, now=now)
        period = f"budget:{budget.pk}:{status.period_start:%Y-%m-%d}"
        for level in BUDGET_LEVELS:
            if status.spent_usd * 100 >= budget.limit_usd * level:
                queued += _budget_notify(
                    budget,
                    f"{period}:{level}",
                    Notification.Kind.BUDGET,
                    "budget",
                    functools.partial(formatting.budget_context, status, level),
                )
        if budget.warn_on_forecast and status.forecast_warns:
            # One per period even if the date moves: a second email a day later says nothing new.
            queued += _budget_notify(
                budget,
                f"{period}:forecast",
                Notification.Kind.BUDGET_FORECAST,
                "budget_forecast",
                functools.partial(formatting.budget_forecast_context, status),
            )
    return queued


def _budget_notify(budget: Budget, key: str, kind: str, template: str, context: Callable[[], dict[str, Any]]) -> bool:
    """Queue one budget notification (email and the budget's channels) unless its key was queued
    before; the context is built only when it will be used."""
    if notification_queued(dedupe_key=key):
        return False
    with transaction.atomic():
        return (
            outbox.notification_queue(
                project_id=budget.project_id,
                kind=kind,
                dedupe_key=key,
                recipients=budget.recipients,
                template=template,
                context=context(),
                channels=budget.channels_encrypted,
            )
            is not None
        )


# Events are accepted up to 30 days in the past, so a model never called before can first appear
# in any of the last 31 UTC days' aggregates (and in none older: those were baselined or seen).
MODEL_NOTICE_LOOKBACK = timedelta(days=31)


def model_notices_check(*, project_ids: list[int] | None = None, now: datetime | None = None) -> int:
    """Queue the new-model and unpriced-model notices of the projects' models not noticed before.

    Idempotent: one ModelNotice row per (project, model, kind), claimed by INSERT ... ON CONFLICT
    DO NOTHING RETURNING; a racing pass that loses the insert queues nothing. Reads the per-model
    daily slices of the lookback (a row per day and model), then only new models' first hour."""
    if project_ids == []:  # a rollup pass that changed nothing: no new calls to look at
        return 0
    now = now or timezone.now()
    since = (now - MODEL_NOTICE_LOOKBACK).astimezone(UTC).date()
    seen = models_seen(project_ids=project_ids, since=since)
    if not seen:
        return 0
    noticed = set(
        ModelNotice.objects.filter(project_id__in={m.project_id for m in seen}).values_list(
            "project_id", "model", "kind"
        )
    )
    queued = 0
    for found in seen:
        kinds = [ModelNotice.Kind.NEW_MODEL, *([ModelNotice.Kind.UNPRICED] if found.unpriced else [])]
        for kind in kinds:
            if (found.project_id, found.model, kind) not in noticed:
                queued += model_notice_send(project_id=found.project_id, model=found.model, kind=kind, since=since)
    return queued


def model_notice_send(*, project_id: int, model: str, kind: str, since: date) -> bool:
    """Record the model as noticed and, if this call recorded it, queue the notice to the
    project's admins. True when a notice was queued."""
    first = model_first_call(
        project_id=project_id, model=model, since=since, unpriced=kind == ModelNotice.Kind.UNPRICED
    )
    if first is None:  # gone since models_seen read it (a user's events forgotten): nothing to tell
        return False
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                """INSERT INTO alerts_modelnotice (project_id, model, kind, first_hour, environment, service,
                                                   baseline, created_at)
                   VALUES (%s, %s, %s, %s, %s, %s, false, now())
                   ON CONFLICT (project_id, model, kind) DO NOTHING RETURNING id""",
                [project_id, model, kind, first.hour_start, first.environment, first.service],
            )
            if cursor.fetchone() is None:
                return False  # another pass recorded it first: it sends the notice, not us
        recipients = project_admin_emails(project_id=project_id)
        if not recipients:
            logger.info("project %s has no admin with an email: %s notice for %s not sent", project_id, kind, model)
            return False
        project_slug = project_slug_of(project_id=project_id)
        notification_kind = (
            Notification.Kind.NEW_MODEL if kind == ModelNotice.Kind.NEW_MODEL else Notification.Kind.UNPRICED
        )
        return (
            outbox.notification_queue(
                project_id=project_id,
                kind=notification_kind,
                dedupe_key=f"model:{project_id}:{kind}:{model}",
                recipients=recipients,
                template="model_notice",
                context=formatting.model_notice_context(
                    project_slug=project_slug, model=model, first=first, unpriced=kind == ModelNotice.Kind.UNPRICED
                ),
            )
            is not None
        )


def digest_send(*, day: datetime | None = None) -> int:
    """Queue yesterday's KPI summary for each opted-in project (idempotent per project and day)."""
    today = window_start("day", day or timezone.now())
    yesterday = today - timedelta(days=1)
    queued = 0
    for sub in DigestSubscription.objects.filter(enabled=True).select_related("project"):
        key = f"digest:{sub.pk}:{yesterday:%Y-%m-%d}"
        if notification_queued(dedupe_key=key):
            continue
        context = digest_context(project_id=sub.project_id, project_slug=sub.project.slug, day=yesterday)
        with transaction.atomic():
            queued += (
                outbox.notification_queue(
                    project_id=sub.project_id,
                    kind=Notification.Kind.DIGEST,
                    dedupe_key=key,
                    recipients=sub.recipients,
                    template="digest",
                    context=context,
                    channels=project_channels(project_id=sub.project_id),
                )
                is not None
            )
    return queued


KPIS = [
    ("requests", "Requests"),
    ("cost_usd", "Spend"),
    ("latency_avg_ms", "Average latency"),
    ("latency_p95_ms", "P95 latency"),
    ("error_rate", "Error rate"),
    ("cache_hit_rate", "Cache hit rate"),
]


def digest_context(*, project_id: int, project_slug: str, day: datetime) -> dict[str, Any]:
    """Yesterday's six KPIs against the trailing 7-day average, and the top movers."""
    day_end = day + timedelta(days=1)
    result = metrics_query(
        MetricsQuery(project_ids=[project_id], start=day - timedelta(days=7), end=day_end, granularity="day")
    )
    rows = [r.as_dict() for r in result.series]
    target, trailing = rows[-1], [r for r in rows[:-1] if r["requests"]]
    kpis = []
    for name, label in KPIS:
        avg = sum(r[name] for r in trailing) / len(trailing) if trailing else None
        change = (target[name] - avg) / avg if avg else None
        kpis.append(
            {
                "name": name,
                "label": label,
                "value": target[name],
                "average": avg,
                "change": change,
                "display": formatting.format_metric(name, target[name]),
                "average_display": formatting.format_metric(name, avg) if avg is not None else "n/a",
            }
        )
    grouped = metrics_query(
        MetricsQuery(
            project_ids=[project_id],
            start=day - timedelta(days=1),
            end=day_end,
            granularity="day",
            group_by=["model", "service"],
        )
    )
    spend: dict[tuple[str, str], list[Decimal]] = {}
    for row in grouped.series:
        key = (row.group["model"], row.group["service"])
        pair = spend.setdefault(key, [Decimal(0), Decimal(0)])
        pair[0 if row.bucket and row.bucket < day else 1] += row.cost_usd
    ranked = sorted(spend.items(), key=lambda item: abs(float(item[1][1] - item[1][0])), reverse=True)[:5]
    movers = [
        {
            "model": m,
            "service": s,
            "before": float(b),
            "now": float(n),
            "change": float(n - b),
            "before_display": formatting.usd(b),
            "now_display": formatting.usd(n),
        }
        for (m, s), (b, n) in ranked
    ]
    return {
        "project": project_slug,
        "day": day.strftime("%Y-%m-%d"),
        "kpis": kpis,
        "movers": movers,
        "link": formatting.digest_link(project_slug=project_slug, day=day),
        "provider": _digest_provider(project_id=project_id, project_slug=project_slug, day=day),
    }


def _digest_provider(*, project_id: int, project_slug: str, day: datetime) -> dict[str, str] | None:
    """Yesterday against the provider's report, when the project has a provider connection:
    None without one; "not read yet" when the sync has not covered the day (no guess of zero)."""
    result = reconciliation(project_id=project_id, start=day.date(), end=day.date())
    conn = result.connection
    if conn is None:
        return None
    link = formatting.page_url(
        "/reconciliation", {"project": project_slug, "from": day.strftime("%Y-%m-%d"), "to": day.strftime("%Y-%m-%d")}
    )
    if conn.covered_from is None or conn.covered_to is None or not conn.covered_from <= day.date() <= conn.covered_to:
        return {"line": "the provider's report for this day has not been read yet", "link": link}
    coverage = formatting.format_metric(Metric.COVERAGE, result.coverage)
    unmetered = formatting.format_metric(Metric.UNMETERED_COST_USD, float(result.unmetered_cost_usd))
    return {
        "line": f"coverage {coverage} (Tally {formatting.format_metric(Metric.COST_USD, float(result.tally_cost_usd))}"
        f" of {formatting.format_metric(Metric.COST_USD, float(result.provider_cost_usd))} billed), "
        f"unmetered spend {unmetered}",
        "link": link,
    }


def notifications_send(*, now: datetime | None = None) -> tuple[int, int]:
    """One pass of the outbox (alerts.outbox.notifications_send_due): the tasks' entry point,
    so tasks import services only. Returns (sent, failed attempts)."""
    return outbox.notifications_send_due(now=now)


TEST_TITLE = "Tally test notification"


def channels_test_send(*, channels: list[str], project_slug: str, what: str) -> list[ChannelResult]:
    """Send one test message to each channel (Fernet tokens), now and directly rather than through
    the outbox: the person who pressed the button waits for the answer, and a wrong URL must say
    so on that page at once, not as a row retrying with backoff. Nothing is stored."""
    body = (
        f"This is a test from Tally for {what} in project {project_slug}. Alerts sent here name what fired, "
        f"its value and threshold, what drove it, and a link to the dashboard: "
        f"{formatting.page_url('/alerts/', {'project': project_slug})}"
    )
    results = []
    for token in channels:
        try:
            url = channel_decrypt(token)
        except InvalidToken:
            results.append(
                ChannelResult(
                    "a stored channel",
                    False,
                    "cannot decrypt it: SECRET_KEY or TALLY_ENCRYPTION_KEY changed since it was saved; enter it again",
                )
            )
            continue
        results.append(channel_send(url, title=TEST_TITLE, body=body))
    return results


DIGEST_LOCK_NAMESPACE = 0x7A11D  # pg_advisory_xact_lock(namespace, project_id): "tally digest"


def rule_enabled_set(*, rule: AlertRule, enabled: bool) -> None:
    """Switch a rule on or off. A single-column UPDATE, so it cannot undo a concurrent edit of
    the rule's other fields (a save() of a stale instance would)."""
    AlertRule.objects.filter(pk=rule.pk).update(enabled=enabled, updated_at=timezone.now())


def digest_subscription_set(
    *, project_id: int, enabled: bool, recipients: list[str], channels: list[str] | None = None
) -> DigestSubscription:
    """`channels` (clear URLs, validated by the form; None leaves them as they are) are the project's
    own channels, stored encrypted in the same transaction."""
    with transaction.atomic():
        if channels is not None:
            ProjectChannels.objects.update_or_create(
                project_id=project_id, defaults={"channels_encrypted": [channel_encrypt(url) for url in channels]}
            )
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [DIGEST_LOCK_NAMESPACE, project_id])
        subscription = DigestSubscription.objects.filter(project_id=project_id).order_by("pk").first()
        if subscription is None:
            return DigestSubscription.objects.create(project_id=project_id, enabled=enabled, recipients=recipients)
        subscription.enabled, subscription.recipients = enabled, recipients
        subscription.save(update_fields=["enabled", "recipients"])
        return subscription


# --- demo rules (the first `make run`) -----------------------------------------------------

DEMO_LOCK_NAMESPACE = 0x7A11E  # pg_advisory_xact_lock(namespace, project_id): "tally demo alerts"
DEMO_REPLAY = timedelta(days=14)  # long enough to reach the demo month's overload afternoon (day 18 of 30)
DEMO_THRESHOLD_SPAN = timedelta(days=7)  # thresholds are picked so the last week has breaches to show
DEMO_SPEND_RULE = "Prod spend per hour"


@dataclass
class DemoAlerts:
    created: bool
    rules: int = 0
    incidents: int = 0
    notifications: int = 0


def _floor_significant(value: float, digits: int) -> float:
    exponent = math.floor(math.log10(value)) - digits + 1
    return round(math.floor(value / 10**exponent) * 10**exponent, 12)


def nice_between(high: float, low: float) -> float:
    """The roundest number t with low < t < high ($45 rather than $45.3712): a budget that
    `high` reaches and `low` does not, and that still reads like one a person chose."""
    if high <= 0:
        return high
    for digits in range(1, 8):
        t = _floor_significant(high * (1 - 1e-9), digits)
        if low < t < high:
            return t
    return (high + low) / 2


def _demo_threshold(rule: AlertRule, *, now: datetime, breaches: int, default: float) -> float:
    """A round threshold (two significant digits, as a person would set it) that at least the
    rule's `breaches` highest closed windows of the last week exceed, read from the windows
    the evaluator itself judges."""
    count = int(DEMO_THRESHOLD_SPAN / window_length(rule.window)) + 1
    closed = rule_windows(rule, now=now, count=count)[:-1]
    floor = rule.min_requests if rule.metric in GUARDED else 1
    values = sorted((w.value for w in closed if w.requests >= floor), reverse=True)
    if not values or values[0] <= 0:
        return default
    high = values[min(breaches, len(values)) - 1]
    return _floor_significant(high * (1 - 1e-9), 2)


def _replay(rule: AlertRule, *, since: datetime, now: datetime) -> None:
    """Evaluate the rule as the worker would have, two minutes past each hour since `since`,
    then at `now`. One query reads every window; the pure decision (windows_judge) over the
    slice the evaluator would have read skips hours where nothing can happen, and every other
    hour goes through rule_evaluate itself, so incidents and emails are the service's own."""
    length = window_length(rule.window)
    needed = BASELINE_WINDOWS * (24 if rule.window == "hour" else 1) + 2 if rule.condition == Condition.ANOMALY else 2
    first = window_start(rule.window, since)
    steps = int((window_start(rule.window, now) - first) / length)
    windows = rule_windows(rule, now=now, count=steps + needed)
    index = {w.start: i for i, w in enumerate(windows)}
    is_open = False
    for step in range(steps):
        at = first + length * step + timedelta(minutes=2)
        end = index[window_start(rule.window, at)] + 1
        if is_open or windows_judge(rule, windows[max(0, end - needed) : end]).breaching:
            is_open = rule_evaluate(rule=rule, now=at) in ("opened", "open")
    rule_evaluate(rule=rule, now=now)


def demo_alerts_seed(*, project_id: int, now: datetime | None = None) -> DemoAlerts:
    """Rules, a budget and the incidents they open on the demo data, for a first look.

    Idempotent: keyed by the demo spend rule's name in the project (under a per-project
    advisory lock), so a second run adds nothing. Rolls the events up first, then evaluates
    with the real services: the incidents and their emails are genuine, not hand-made rows.
    """
    from rollups.services import rollup_until_current

    if AlertRule.objects.filter(project_id=project_id, name=DEMO_SPEND_RULE).exists():
        return DemoAlerts(created=False)
    rollup_until_current()
    now = now or timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [DEMO_LOCK_NAMESPACE, project_id])
        if AlertRule.objects.filter(project_id=project_id, name=DEMO_SPEND_RULE).exists():
            return DemoAlerts(created=False)
        # Every demo rule judges prod hour by hour and emails on-call; each says only what else it is.
        demo_rule = functools.partial(
            AlertRule, project_id=project_id, window="hour", environment="prod", recipients=["oncall@example.com"]
        )
        rules = [
            demo_rule(name=DEMO_SPEND_RULE, metric=Metric.COST_USD, condition=Condition.ABOVE),
            # Search has no batch jobs, so its P95 means the same before and after batches left latency.
            demo_rule(
                name="Search P95 latency",
                metric=Metric.LATENCY_P95_MS,
                condition=Condition.ABOVE,
                service="search",
                min_requests=10,
            ),
        ]
        rules[0].threshold = _demo_threshold(rules[0], now=now, breaches=2, default=25.0)
        rules[1].threshold = _demo_threshold(rules[1], now=now, breaches=1, default=30_000.0)
        rules.append(
            demo_rule(
                name="Prod error rate anomaly",
                metric=Metric.ERROR_RATE,
                condition=Condition.ANOMALY,
                # 6 robust sigmas: an outage, not two unlucky calls in a quiet hour.
                sensitivity=6.0,
            )
        )
        for rule in rules:
            rule.save()
            _replay(rule, since=now - DEMO_REPLAY, now=now)
        budget = Budget(
            project_id=project_id,
            name="Monthly LLM budget",
            period=Budget.Period.MONTH,
            limit_usd=Decimal(100),
            recipients=["finance@example.com"],
        )
        spent = float(budget_status(budget, now=now).spent_usd)
        if spent > 0:  # about 80% used: between 80% and 85%, so the 80% email goes out
            limit = Decimal(str(nice_between(spent / 0.80, spent / 0.85))).quantize(Decimal("0.01"), ROUND_DOWN)
            budget.limit_usd = max(limit, Decimal("0.01"))
        budget.save()
        budgets_check(project_ids=[project_id], now=now)
    return DemoAlerts(
        created=True,
        rules=len(rules),
        incidents=Incident.objects.filter(rule__project_id=project_id).count(),
        notifications=Notification.objects.filter(project_id=project_id).count(),
    )


def demo_seed_with_alerts(*, alerts: bool = True, now: datetime | None = None, **options: Any) -> dict[str, Any]:
    """`seed_demo` and the first `make run`: demo events (ingest.services.demo_seed, with `options`), then,
    with `alerts`, the demo rules, budget and incidents over them (demo_alerts_seed). It lives here,
    above ingest, because it composes the whole pipeline. Idempotent: both halves add nothing twice."""
    summary = demo_seed(now=now, **options)
    if alerts:
        seeded = demo_alerts_seed(project_id=summary["project_id"], now=now)
        summary["alerts"] = {
            "created": seeded.created,
            "rules": seeded.rules,
            "incidents": seeded.incidents,
            "notifications": seeded.notifications,
        }
    return summary
