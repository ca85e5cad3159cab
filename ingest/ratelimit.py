"""Per-key token bucket in Redis (one Lua call per request).

Fails open: when Redis is unreachable, ingest keeps accepting (a broker outage must
never cost events) and Redis is not asked again for a few seconds, so an outage does
not add a connect timeout to every request.
"""

from __future__ import annotations

import logging
import math
import time

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV: rate per second, burst. Returns {allowed, retry_after_ms}.
# Redis TIME is the clock, so every web process agrees on it.
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate)
local allowed = 0
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait_ms = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, wait_ms}
"""

_client: redis.Redis | None = None
_script = None
_down_until = 0.0
DOWN_BACKOFF_S = 5.0


def _get_script():  # type: ignore[no-untyped-def]
    global _client, _script
    if _script is None:
        _client = redis.Redis.from_url(settings.TALLY_REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
        _script = _client.register_script(_LUA)
    return _script


def rate_limit_check(*, key_id: int) -> int:
    """0 if the request may proceed, else the seconds to wait (for Retry-After)."""
    global _down_until
    if time.monotonic() < _down_until:
        return 0
    try:
        allowed, wait_ms = _get_script()(
            keys=[f"tally:ratelimit:{key_id}"],
            args=[settings.TALLY_INGEST_RATE_PER_SEC, settings.TALLY_INGEST_BURST],
        )
    except redis.RedisError as exc:
        _down_until = time.monotonic() + DOWN_BACKOFF_S
        logger.warning("rate limiter unavailable, allowing requests: %s", exc)
        return 0
    return 0 if allowed else max(1, math.ceil(int(wait_ms) / 1000))


def rate_limit_reset() -> None:
    """Forget the client and any outage backoff (tests, and after a settings change)."""
    global _client, _script, _down_until
    _client, _script, _down_until = None, None, 0.0
