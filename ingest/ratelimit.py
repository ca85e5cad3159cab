"""Per-key token bucket in Redis, shared by every web process.

A process takes its tokens from the shared bucket a few at a time (one Lua call takes up to
`lease_size`: 20 ms worth of the key's rate) and spends them locally, so a busy key costs a
Redis round trip every few requests rather than on each one. Every request still spends one
token of the shared bucket, so the limit is never looser than the bucket's; tokens a process
took but did not spend within LEASE_S are dropped (slightly stricter, by at most a lease per
process). A request is refused (429) only when the process has no token left and the shared
bucket has none to give.

Fails open: when Redis is unreachable, ingest keeps accepting (a broker outage must
never cost events) and Redis is not asked again for a few seconds, so an outage does
not add a connect timeout to every request.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import redis
from django.conf import settings
from redis.commands.core import Script

from core.caches import process_cache

logger = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV: rate per second, burst, tokens wanted. Returns {granted, retry_after_ms}:
# up to `wanted` whole tokens, or none and the wait for one. Redis TIME is the clock, so every
# web process agrees on it.
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate)
local allowed = 0
local wait_ms = 0
if tokens >= 1 then
  allowed = math.min(wanted, math.floor(tokens))
  tokens = tokens - allowed
else
  wait_ms = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, wait_ms}
"""

_client: redis.Redis | None = None
_script: Script | None = None
_down_until = 0.0
DOWN_BACKOFF_S = 5.0
LEASE_S = 1.0
LEASE_SHARE_S = 0.02
# key id -> [tokens this process holds, monotonic time they lapse]
_leases: dict[int, list[float]] = {}
_leases_lock = threading.Lock()


def lease_size(rate: float, burst: int) -> int:
    """Tokens taken per Redis call: 20 ms of the rate, at least 1, at most 1/10 of the burst."""
    return max(1, min(int(rate * LEASE_SHARE_S), burst // 10, 1000))


def _get_script() -> Script:
    global _client, _script
    if _script is None:
        _client = redis.Redis.from_url(settings.TALLY_REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
        _script = _client.register_script(_LUA)
    return _script


def rate_limit_check(*, key_id: int) -> int:
    """0 if the request may proceed, else the seconds to wait (for Retry-After)."""
    global _down_until
    now = time.monotonic()
    with _leases_lock:
        lease = _leases.get(key_id)
        if lease is not None and lease[0] >= 1 and lease[1] > now:
            lease[0] -= 1
            return 0
    if now < _down_until:
        return 0
    rate, burst = settings.TALLY_INGEST_RATE_PER_SEC, settings.TALLY_INGEST_BURST
    try:
        granted, wait_ms = _get_script()(
            keys=[f"tally:ratelimit:{key_id}"],
            args=[rate, burst, lease_size(rate, burst)],
        )
    except redis.RedisError as exc:
        _down_until = time.monotonic() + DOWN_BACKOFF_S
        logger.warning("rate limiter unavailable, allowing requests: %s", exc)
        return 0
    granted = int(granted)
    if not granted:
        return max(1, math.ceil(int(wait_ms) / 1000))
    if granted > 1:
        with _leases_lock:
            lease = _leases.get(key_id)
            held = lease[0] if lease is not None and lease[1] > now else 0
            if len(_leases) >= 10_000:
                _leases.clear()
            _leases[key_id] = [held + granted - 1, now + LEASE_S]
    return 0


@process_cache
def rate_limit_reset() -> None:
    """Forget the client and any outage backoff (tests, and after a settings change)."""
    global _client, _script, _down_until
    _client, _script, _down_until = None, None, 0.0
    with _leases_lock:
        _leases.clear()
