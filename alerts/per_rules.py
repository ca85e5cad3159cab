"""Per-dimension rules (CONTRACT §5 `per`): the writes of judging a rule for each user, service,
feature or model on its own. Kept apart from services.py, which calls `per_rule_evaluate` for a
rule with `per`, so the whole-scope path is untouched.

Invariants:
- At most one open incident per (rule, dimension value) (the partial unique index
  `incident_one_open_per_rule_value`). A pass opens all its new values with one
  INSERT ... ON CONFLICT DO NOTHING RETURNING: a value is announced only by the evaluator whose
  insert returned it (the once-per-incident claim of whole-scope rules, per value), in the
  transaction that queues the message, so racing evaluators announce each value once.
- One message per rule and pass, not one per value: 5,000 users crossing $5 at midnight are one
  email naming the worst 20 and "and 4,980 more ($X)", not 5,000 emails. It is one outbox row
  (so retries, the send claim and the outbox page work unchanged) whose `incident` is the worst
  new incident and whose key is that incident's `incident:<id>:opened`, unique because only this
  pass inserted it. Every incident the message covers (listed or counted in "and N more") is
  `notified` and records that key in `detail["notification_key"]`, so its history row links to
  the message. Resolutions work the same way: one conditional UPDATE ... WHERE resolved_at IS
  NULL RETURNING claims the recovered values, one message (`incident:<id>:resolved`) for those
  that were notified.
- Cooldown per value: a value whose last notified incident opened less than `cooldown_minutes`
  ago opens silently (`notified` false), as a whole-scope rule does.
- Each value resolves on its own, when neither its last closed window nor (where a partial
  window is conclusive) the current one breaches.
- Switching `per` on or off closes the incidents of the other kind at the next evaluation,
  without a message: they are about values (or a whole) the rule no longer judges.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F

from alerts import formatting, outbox
from alerts.models import AlertRule, Incident, Notification
from alerts.selectors import PerValue, per_breaching

_INSERT_SQL = """
INSERT INTO alerts_incident (rule_id, dimension_value, window_start, opened_at, value, threshold, baseline,
                             detail, notified)
SELECT %s, v.dim, v.window_start, %s, v.value, %s, NULL,
       jsonb_build_object('per', %s::text, 'window_requests', v.requests), v.notified
FROM unnest(%s::text[], %s::timestamptz[], %s::float8[], %s::bigint[], %s::bool[])
     AS v(dim, window_start, value, requests, notified)
ORDER BY v.dim
ON CONFLICT (rule_id, dimension_value) WHERE resolved_at IS NULL DO NOTHING
RETURNING id
"""


def per_rule_evaluate(*, rule: AlertRule, now: datetime) -> str:
    """Judge every value of `rule.per`; returns "opened" (some value opened), "resolved" (some
    closed, none opened), "open" (only still-open ones) or "ok". Idempotent per (rule, value):
    the partial unique index and the conditional resolve make a rerun change nothing."""
    breaching = per_breaching(rule, now=now)
    AlertRule.objects.filter(pk=rule.pk).update(last_evaluated_at=now, evaluations=F("evaluations") + 1)
    with transaction.atomic():
        resolved = _resolve_recovered(rule=rule, breaching=breaching, now=now)
        still_open = _refresh_open(rule=rule, breaching=breaching)
        opened = _open_new(rule=rule, breaching=breaching, now=now)
    if opened:
        return "opened"
    if resolved:
        return "resolved"
    return "open" if still_open else "ok"


def _resolve_recovered(*, rule: AlertRule, breaching: list[PerValue], now: datetime) -> int:
    """Close the open incidents of values that no longer breach; one message for the notified ones."""
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE alerts_incident SET resolved_at = %s
                          WHERE rule_id = %s AND resolved_at IS NULL AND NOT (dimension_value = ANY(%s::text[]))
                          RETURNING id""",
            [now, rule.pk, [b.dimension_value for b in breaching]],
        )
        ids = [row[0] for row in cursor.fetchall()]
    # A '' incident is the rule's own from before it had `per`: closed quietly, it names no value.
    notified = list(
        Incident.objects.filter(pk__in=ids, notified=True)
        .exclude(dimension_value="")
        .select_related("rule__project")
        .order_by("-value" if rule.condition == "above" else "value", "dimension_value")
    )
    if notified:
        _queue(rule=rule, incidents=notified, now=now, kind=Notification.Kind.INCIDENT_RESOLVED)
    return len(ids)


def _refresh_open(*, rule: AlertRule, breaching: list[PerValue]) -> int:
    """Still breaching: the open incident keeps the latest value (as a whole-scope rule's does)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE alerts_incident i SET value = v.value
                          FROM unnest(%s::text[], %s::float8[]) AS v(dim, value)
                          WHERE i.rule_id = %s AND i.resolved_at IS NULL AND i.dimension_value = v.dim""",
            [[b.dimension_value for b in breaching], [b.value for b in breaching], rule.pk],
        )
        return cursor.rowcount


def _open_new(*, rule: AlertRule, breaching: list[PerValue], now: datetime) -> int:
    """Insert an incident for each breaching value without an open one (the insert is the claim),
    and queue one message for those not in their cooldown."""
    if not breaching:
        return 0
    values = [b.dimension_value for b in breaching]
    cooling = set(
        Incident.objects.filter(
            rule=rule,
            notified=True,
            dimension_value__in=values,
            opened_at__gt=now - timedelta(minutes=rule.cooldown_minutes),
        ).values_list("dimension_value", flat=True)
    )
    with connection.cursor() as cursor:
        # Sorted by value (ORDER BY v.dim): two evaluators take the index's locks in the same order.
        cursor.execute(
            _INSERT_SQL,
            [
                rule.pk,
                now,
                rule.threshold,
                rule.per,
                values,
                [b.window_start for b in breaching],
                [b.value for b in breaching],
                [b.requests for b in breaching],
                [b.dimension_value not in cooling for b in breaching],
            ],
        )
        ids = [row[0] for row in cursor.fetchall()]
    announced = list(
        Incident.objects.filter(pk__in=ids, notified=True)
        .select_related("rule__project")
        .order_by("-value" if rule.condition == "above" else "value", "dimension_value")
    )
    if announced:
        _queue(rule=rule, incidents=announced, now=now, kind=Notification.Kind.INCIDENT_OPENED)
    return len(ids)


def _queue(*, rule: AlertRule, incidents: list[Incident], now: datetime, kind: str) -> None:
    """One outbox row for the pass's incidents, keyed by the worst one (see the module docstring)."""
    top = incidents[0]
    event = "opened" if kind == Notification.Kind.INCIDENT_OPENED else "resolved"
    key = f"incident:{top.pk}:{event}"
    outbox.notification_queue(
        project_id=rule.project_id,
        kind=kind,
        dedupe_key=key,
        recipients=rule.recipients,
        incident=top,
        template=f"per_{event}",
        channels=rule.channels_encrypted,
        context=formatting.per_context(rule, incidents, now=now),
    )
    if event == "opened":
        with connection.cursor() as cursor:
            cursor.execute(
                """UPDATE alerts_incident
                              SET detail = detail || jsonb_build_object('notification_key', %s::text)
                              WHERE id = ANY(%s)""",
                [key, [i.pk for i in incidents]],
            )
