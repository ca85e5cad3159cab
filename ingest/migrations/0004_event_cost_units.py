"""Event costs are written as integer units of 1e-10 USD; `cost_usd` is computed from them.

Ingest prices every event exactly in integers (pricing.services.Pricer.price_units) and used to
turn each amount into a Decimal only for the driver to turn it into PostgreSQL's numeric wire
format: two of those per event were two thirds of the client time of a batch COPY. Now ingest
writes `cost_units` and `cache_savings_units` (bigint, the same exact amounts: numeric(20, 10)
holds 1e-10 USD steps) and `cost_usd` / `cache_savings_usd` are stored generated columns,
`units * 1e-10`, so every reader (rollups, pages, the API, re-pricing's comparison) is unchanged.
An amount past bigint (9.2e8 USD for one call) is refused as numeric(20, 10) refused 1e10.

Existing rows are converted in place; the new generated columns are computed for every stored
event (a rewrite of each partition: on a large existing install, run this in a quiet period).
"""

from django.db import migrations

FORWARD = """
ALTER TABLE ingest_event ADD COLUMN cost_units bigint, ADD COLUMN cache_savings_units bigint;
UPDATE ingest_event SET cost_units = (cost_usd * 10000000000)::bigint,
                        cache_savings_units = (cache_savings_usd * 10000000000)::bigint
 WHERE cost_usd IS NOT NULL OR cache_savings_usd IS NOT NULL;
ALTER TABLE ingest_event DROP COLUMN cost_usd, DROP COLUMN cache_savings_usd;
ALTER TABLE ingest_event
    ADD COLUMN cost_usd numeric(20, 10) GENERATED ALWAYS AS (cost_units * 0.0000000001) STORED,
    ADD COLUMN cache_savings_usd numeric(20, 10) GENERATED ALWAYS AS (cache_savings_units * 0.0000000001) STORED;
"""

REVERSE = """
ALTER TABLE ingest_event ADD COLUMN cost_usd_plain numeric(20, 10), ADD COLUMN cache_savings_usd_plain numeric(20, 10);
UPDATE ingest_event SET cost_usd_plain = cost_usd, cache_savings_usd_plain = cache_savings_usd
 WHERE cost_units IS NOT NULL OR cache_savings_units IS NOT NULL;
ALTER TABLE ingest_event DROP COLUMN cost_usd, DROP COLUMN cache_savings_usd;
ALTER TABLE ingest_event DROP COLUMN cost_units, DROP COLUMN cache_savings_units;
ALTER TABLE ingest_event RENAME COLUMN cost_usd_plain TO cost_usd;
ALTER TABLE ingest_event RENAME COLUMN cache_savings_usd_plain TO cache_savings_usd;
"""


class Migration(migrations.Migration):
    dependencies = [("ingest", "0003_eventkey_lean_indexes")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
