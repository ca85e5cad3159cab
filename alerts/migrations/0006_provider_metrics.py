# Provider reconciliation metrics (issue 14 item 4).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('alerts', '0005_ratelimit_metrics'),
    ]

    operations = [
        migrations.AlterField(
            model_name='alertrule',
            name='metric',
            field=models.CharField(choices=[('cost_usd', 'spend (USD)'), ('requests', 'requests'), ('error_rate', 'error rate'), ('latency_p95_ms', 'P95 latency'), ('latency_avg_ms', 'average latency'), ('cache_hit_rate', 'cache hit rate'), ('ttft_p95_ms', 'P95 time to first token'), ('ratelimit_requests_headroom_min', 'rate-limit headroom: requests'), ('ratelimit_input_tokens_headroom_min', 'rate-limit headroom: input tokens'), ('ratelimit_output_tokens_headroom_min', 'rate-limit headroom: output tokens'), ('rate_limited_requests', 'rate-limited calls (HTTP 429)'), ('coverage', 'provider coverage (Tally / provider cost)'), ('unmetered_cost_usd', 'unmetered spend (provider cost Tally did not see)')], max_length=40),
        ),
    ]
