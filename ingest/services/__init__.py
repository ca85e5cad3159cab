"""Writes of raw events: ingest (events.py), re-pricing (reprice.py), retention and an end
user's deletion (retention.py), the demo data (demo.py). Other apps import from here."""

from ingest.services.demo import demo_seed
from ingest.services.events import IngestResult, KeyNotLive, events_ingest, events_store
from ingest.services.reprice import RepriceResult, events_reprice
from ingest.services.retention import ForgetResult, RetentionResult, events_apply_retention, user_forget

__all__ = [
    "ForgetResult",
    "IngestResult",
    "KeyNotLive",
    "RepriceResult",
    "RetentionResult",
    "demo_seed",
    "events_apply_retention",
    "events_ingest",
    "events_reprice",
    "events_store",
    "user_forget",
]
