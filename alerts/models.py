"""Alert rules, incidents, budgets and the email outbox.

Uniqueness does the concurrency work (STYLE 14): at most one open incident per rule and
dimension value (partial unique index; the value is '' for a rule without `per`), and one
outbox row per notification (`dedupe_key`), so two evaluators racing on the same breach cannot
notify twice.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from alerts import channels


class Metric(models.TextChoices):
    COST_USD = "cost_usd", "spend (USD)"
    REQUESTS = "requests", "requests"
    ERROR_RATE = "error_rate", "error rate"
    LATENCY_P95_MS = "latency_p95_ms", "P95 latency"
    LATENCY_AVG_MS = "latency_avg_ms", "average latency"
    CACHE_HIT_RATE = "cache_hit_rate", "cache hit rate"
    TTFT_P95_MS = "ttft_p95_ms", "P95 time to first token"
    RATELIMIT_REQUESTS_HEADROOM_MIN = "ratelimit_requests_headroom_min", "rate-limit headroom: requests"
    RATELIMIT_INPUT_TOKENS_HEADROOM_MIN = "ratelimit_input_tokens_headroom_min", "rate-limit headroom: input tokens"
    RATELIMIT_OUTPUT_TOKENS_HEADROOM_MIN = "ratelimit_output_tokens_headroom_min", "rate-limit headroom: output tokens"
    RATE_LIMITED_REQUESTS = "rate_limited_requests", "rate-limited calls (HTTP 429)"
    # From the provider's own report (providers app), per UTC day: Tally's cost / the provider's,
    # and the provider's spend Tally never saw.
    COVERAGE = "coverage", "provider coverage (Tally / provider cost)"
    UNMETERED_COST_USD = "unmetered_cost_usd", "unmetered spend (provider cost Tally did not see)"


class Window(models.TextChoices):
    HOUR = "hour", "hour"
    DAY = "day", "day"


class Condition(models.TextChoices):
    ABOVE = "above", "above threshold"
    BELOW = "below", "below threshold"
    ANOMALY = "anomaly", "anomaly vs baseline"


class Per(models.TextChoices):
    """The dimension a rule is judged per: each value of it in the window gets its own verdict."""

    USER_ID = "user_id", "user"
    SERVICE = "service", "service"
    FEATURE = "feature", "feature"
    MODEL = "model", "model"


class AlertRule(models.Model):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=200)
    metric = models.CharField(max_length=40, choices=Metric.choices)  # the longest rate-limit name is 36
    window = models.CharField(max_length=8, choices=Window.choices)
    condition = models.CharField(max_length=16, choices=Condition.choices)
    threshold = models.FloatField(null=True, blank=True)
    # Anomaly: how many robust standard deviations (1.4826 x MAD) from the median fire.
    sensitivity = models.FloatField(null=True, blank=True)
    # Scope: NULL means "any" (the API's null); an empty string is never stored.
    environment = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    service = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    model = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    # NULL: the rule judges its whole scope as one; else each value of this dimension on its own.
    per = models.CharField(max_length=16, choices=Per.choices, null=True, blank=True)  # noqa: DJ001
    # Volume guard: windows with fewer requests are never judged (3 calls with 1 error page no one).
    min_requests = models.PositiveIntegerField(default=20)
    recipients = ArrayField(models.EmailField(), default=list, blank=True)
    # Apprise URLs as Fernet tokens (alerts.channels): secrets, never stored or shown in clear.
    channels_encrypted = ArrayField(models.TextField(), default=list, blank=True)
    cooldown_minutes = models.PositiveIntegerField(default=60)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    evaluations = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["project", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def channels_masked(self) -> list[str]:
        """The channels as pages show them (never in clear)."""
        return channels.channels_masked(self.channels_encrypted)

    @property
    def scope_label(self) -> str:
        parts = [p for p in (self.model, self.service) if p]
        return ", ".join(parts)


class Incident(models.Model):
    class State(models.TextChoices):
        OPEN = "open", "open"
        RESOLVED = "resolved", "resolved"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="incidents")
    # The value of the rule's `per` dimension this incident is about ("u_4812", "checkout"); ''
    # for a rule without `per` (not NULL, so the unique index below treats it as one value).
    dimension_value = models.CharField(max_length=256, blank=True, default="")
    window_start = models.DateTimeField(help_text="Start of the first window that breached.")
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    value = models.FloatField(help_text="Metric value of the breaching window (latest while open).")
    threshold = models.FloatField(null=True, blank=True)
    baseline = models.FloatField(null=True, blank=True, help_text="Median of the trailing windows (anomaly).")
    detail = models.JSONField(default=dict, help_text="Contributors and the numbers behind the decision.")
    notified = models.BooleanField(default=True, help_text="False when the cooldown suppressed the email.")

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "dimension_value"],
                condition=Q(resolved_at__isnull=True),
                name="incident_one_open_per_rule_value",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rule} @ {self.window_start:%Y-%m-%d %H:%M}"

    @property
    def state(self) -> str:
        return self.State.OPEN if self.resolved_at is None else self.State.RESOLVED


class Budget(models.Model):
    class Period(models.TextChoices):
        DAY = "day", "daily"
        MONTH = "month", "monthly"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="budgets")
    name = models.CharField(max_length=200)
    period = models.CharField(max_length=8, choices=Period.choices)
    limit_usd = models.DecimalField(max_digits=14, decimal_places=2)
    environment = models.CharField(max_length=64, blank=True, default="")
    service = models.CharField(max_length=128, blank=True, default="")
    user_id = models.CharField(max_length=256, blank=True, default="")
    recipients = ArrayField(models.EmailField(), default=list, blank=True)
    channels_encrypted = ArrayField(models.TextField(), default=list, blank=True)  # as AlertRule's
    enabled = models.BooleanField(default=True)
    # Opt-in: one email per period when the forecast (median daily pace of the last 7 days) says
    # the limit will be reached before the period ends.
    warn_on_forecast = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def channels_masked(self) -> list[str]:
        """The channels as pages show them (never in clear)."""
        return channels.channels_masked(self.channels_encrypted)


class DigestSubscription(models.Model):
    """Opt-in nightly summary of yesterday's KPIs for a project."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="digests")
    recipients = ArrayField(models.EmailField(), default=list, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"digest for {self.project}"


class ProjectChannels(models.Model):
    """The project's own channels (Apprise URLs, Fernet tokens as AlertRule's): they get the daily
    digest and the test message of the digest page."""

    project = models.OneToOneField("projects.Project", on_delete=models.CASCADE, related_name="alert_channels")
    channels_encrypted = ArrayField(models.TextField(), default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"channels of {self.project}"


class ModelNotice(models.Model):
    """A model the project has called (kind new_model), or called without a known price (kind
    unpriced_model): one row per (project, model, kind), inserted with ON CONFLICT DO NOTHING, and
    only the inserter queues the notice, so racing passes notify once. `baseline` rows were
    recorded by migration 0010 from the aggregates already there: no notice for them."""

    class Kind(models.TextChoices):
        NEW_MODEL = "new_model", "new model"
        UNPRICED = "unpriced_model", "unpriced model"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="model_notices")
    model = models.CharField(max_length=128)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    first_hour = models.DateTimeField(null=True, blank=True, help_text="UTC hour of the first such call.")
    environment = models.CharField(max_length=64, blank=True, default="")
    service = models.CharField(max_length=128, blank=True, default="")
    baseline = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "model", "kind"], name="model_notice_once")]

    def __str__(self) -> str:
        return f"{self.project_id} {self.kind} {self.model}"


class Notification(models.Model):
    """The outbox: one row per message to send (the email to all recipients, or one channel),
    claimed by a conditional UPDATE before sending."""

    class Kind(models.TextChoices):
        INCIDENT_OPENED = "incident_opened", "incident opened"
        INCIDENT_RESOLVED = "incident_resolved", "incident resolved"
        BUDGET = "budget", "budget"
        BUDGET_FORECAST = "budget_forecast", "budget forecast"
        NEW_MODEL = "new_model", "new model"
        UNPRICED = "unpriced_model", "unpriced model"
        DIGEST = "digest", "daily digest"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    dedupe_key = models.CharField(max_length=200, unique=True)
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, null=True, blank=True)
    recipients = ArrayField(models.EmailField(), default=list)
    # A channel row: the Apprise URL as a Fernet token, and its mask for the outbox page. Empty: email.
    channel_encrypted = models.TextField(blank=True, default="")
    channel_masked = models.CharField(max_length=300, blank=True, default="")
    subject = models.CharField(max_length=300)
    body_text = models.TextField()
    body_html = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField()
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True, help_text="Gave up after the last retry.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="notification_due_idx",
                condition=Q(sent_at__isnull=True, failed_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return self.subject

    @property
    def destination(self) -> str:
        return self.channel_masked or ", ".join(self.recipients)

    @property
    def status(self) -> str:
        """sent | failed (gave up) | retrying (an attempt failed, more to come) | pending."""
        if self.sent_at is not None:
            return "sent"
        if self.failed_at is not None:
            return "failed"
        return "retrying" if self.last_error else "pending"
