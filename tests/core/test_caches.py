"""core/caches.py: one call empties every process cache an ingest request and a login fill."""

from __future__ import annotations

from django.test import Client

from core.caches import process_caches_clear
from ingest import partitions, ratelimit
from ingest.services import events
from pricing import services as pricing
from projects import login_limit
from projects import services as project_services
from tests.conftest import post_events


def cache_sizes() -> dict[str, int]:
    return {
        "ingest keys": len(project_services._ingest_keys),
        "rate limit leases": len(ratelimit._leases),
        "rate limit client": int(ratelimit._client is not None),
        "login limit client": int(login_limit._client is not None),
        "retention": len(events._retention),
        "known partitions": len(partitions._known),
        "pricers": len(pricing._pricers),
        "model infos": pricing._model_info.cache_info().currsize,
        "rate cards": len(pricing._cards),
    }


def test_one_clear_empties_every_process_cache(ingest_key):
    secret, _ = ingest_key
    resp = post_events(
        Client(),
        secret,
        {"request_id": "cached", "model": "claude-sonnet-4-6", "latency_ms": 10, "input_tokens": 1, "output_tokens": 1},
    )
    assert resp.status_code == 202, resp.content
    login_limit.login_failure_record(username="someone", ip="192.0.2.1")
    assert all(cache_sizes().values()), cache_sizes()

    process_caches_clear()

    assert not any(cache_sizes().values()), cache_sizes()
