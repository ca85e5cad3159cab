"""Hourly and daily aggregates of raw events, the only thing pages and the query API read.

Bucket columns name their start: `hour_start` (UTC hour), `day` (UTC date). Each row
covers one (project, environment, service, model, feature) in one bucket and holds sums
that add across rows, plus a mergeable latency histogram: `latency_hist_idx[i]` is a
DDSketch-style log bucket index ceil(log_gamma(latency_ms)) with gamma = 1.01/0.99 (1%
relative accuracy) and `latency_hist_cnt[i]` its count, so P50/P95/P99 for any filter
and range come from summing counts per index (rollups/sketch.py).

Latency covers online calls only: Message Batches results (`batch`) count in `requests`,
`batch_requests`, tokens and cost, but their turnaround (minutes to hours) would drown
interactive latency, so it goes to `batch_latency_sum_ms` instead of `latency_sum_ms` and
the histogram. `ttft_hist_*` is the same kind of histogram over the online calls that
reported a time to first token (streamed calls).
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models


class AggregateValues(models.Model):
    """What every aggregate row holds: sums that add across rows and the mergeable histogram."""

    requests = models.BigIntegerField()
    errors = models.BigIntegerField()
    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cache_read_input_tokens = models.BigIntegerField()
    cache_creation_input_tokens = models.BigIntegerField()
    cache_write_5m_tokens = models.BigIntegerField()
    cache_write_1h_tokens = models.BigIntegerField()
    cache_hits = models.BigIntegerField()
    batch_requests = models.BigIntegerField()
    cost_usd = models.DecimalField(max_digits=24, decimal_places=10)
    cache_savings_usd = models.DecimalField(max_digits=24, decimal_places=10)
    unpriced_requests = models.BigIntegerField()
    latency_sum_ms = models.FloatField()  # online calls only
    latency_hist_idx = ArrayField(models.IntegerField())
    latency_hist_cnt = ArrayField(models.BigIntegerField())
    batch_latency_sum_ms = models.FloatField(default=0.0)
    ttft_hist_idx = ArrayField(models.IntegerField(), default=list)
    ttft_hist_cnt = ArrayField(models.BigIntegerField(), default=list)
    errors_by_type = models.JSONField(default=dict)
    http_status_counts = models.JSONField(default=dict)
    # Calls answered HTTP 429, and the lowest remaining/limit (0..1) of the `anthropic-ratelimit-*`
    # headers the row's calls reported (null when none did): a minimum, so rows merge by min().
    rate_limited_requests = models.BigIntegerField(default=0)
    ratelimit_requests_headroom_min = models.FloatField(null=True)
    ratelimit_input_tokens_headroom_min = models.FloatField(null=True)
    ratelimit_output_tokens_headroom_min = models.FloatField(null=True)

    class Meta:
        abstract = True


class AggregateFields(AggregateValues):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey("projects.Environment", on_delete=models.CASCADE, related_name="+")
    service = models.CharField(max_length=128)
    model = models.CharField(max_length=128)
    feature = models.CharField(max_length=128)

    class Meta:
        abstract = True


class HourlyAggregate(AggregateFields):
    hour_start = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "hour_start", "environment", "service", "model", "feature"],
                name="hourly_aggregate_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.project_id}@{self.hour_start:%Y-%m-%dT%H} {self.model}/{self.service}"


class DailyAggregate(AggregateFields):
    day = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "day", "environment", "service", "model", "feature"],
                name="daily_aggregate_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.project_id}@{self.day} {self.model}/{self.service}"


class DailySlice(AggregateValues):
    """A day rolled up over a subset of (environment, service, model): `dims` holds the kept ones
    (bits rollups.services.SLICE_ENV | SLICE_SERVICE | SLICE_MODEL); a dimension not kept is 0 / ''.

    Pages with no feature filter read the slice with exactly the dimensions they filter or group
    by (rollups/selectors.py), so 30 days of unfiltered totals are 30 rows, whatever the number
    of services, models and features. Written with the day's DailyAggregate rows, from the same
    events.
    """

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    dims = models.PositiveSmallIntegerField()
    environment_id = models.BigIntegerField()  # 0 when not kept (not a foreign key for that reason)
    service = models.CharField(max_length=128)
    model = models.CharField(max_length=128)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "dims", "day", "environment_id", "service", "model"], name="daily_slice_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.project_id}@{self.day} dims={self.dims}"


class UserSpendFields(models.Model):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey("projects.Environment", on_delete=models.CASCADE, related_name="+")
    user_id = models.CharField(max_length=256)
    requests = models.BigIntegerField()
    errors = models.BigIntegerField()
    cost_usd = models.DecimalField(max_digits=24, decimal_places=10)
    unpriced_requests = models.BigIntegerField()

    class Meta:
        abstract = True


class DailyUserSpend(UserSpendFields):
    """Per end user and day, recomputed from the day's raw events when the day is dirty."""

    day = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "day", "environment", "user_id"], name="daily_user_spend_key")
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.day}"


class RollupState(models.Model):
    """One row: when the last rollup pass finished (for 'data as of' and /metrics lag)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_pass_finished_at = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"rollup state @ {self.last_pass_finished_at}"
