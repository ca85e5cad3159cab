"""Failed-login counters in Redis: per username and per client IP, in a fixed window.

After TALLY_LOGIN_MAX_FAILURES failures for a username (from any IP) or from an IP (for any
username) within TALLY_LOGIN_WINDOW_S, every further attempt for it is refused, right
password or not, until the window that began with the first failure ends. A success
clears its username's counter, not the IP's: one valid account must not buy an attacker
fresh guesses against others from the same address.

Fails open like ingest/ratelimit.py: when Redis is unreachable, logins go on unlimited
(locking everyone out because the broker is down would be worse) and Redis is not asked
again for a few seconds.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import Any

import redis
from django.conf import settings

from core.caches import process_cache

logger = logging.getLogger(__name__)

# KEYS: counters; ARGV[1]: window seconds. INCR each, starting its window on the first failure.
_RECORD_LUA = """
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, ARGV[1]) end
end
return 1
"""

_client: redis.Redis | None = None
_record: Any = None
_down_until = 0.0
DOWN_BACKOFF_S = 5.0


def _redis() -> tuple[redis.Redis, Any]:
    """The client and the registered record script (made on first use, per process)."""
    global _client, _record
    if _client is None:
        _client = redis.Redis.from_url(settings.TALLY_REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
        _record = _client.register_script(_RECORD_LUA)
    return _client, _record


def _keys(*, username: str, ip: str) -> list[str]:
    # Usernames are hashed: the key space stays bounded and no one reads them off Redis.
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    prefix = settings.TALLY_LOGIN_KEY_PREFIX
    return [f"{prefix}user:{name}", f"{prefix}ip:{ip or 'unknown'}"]


def _down(exc: Exception) -> None:
    global _down_until
    _down_until = time.monotonic() + DOWN_BACKOFF_S
    logger.warning("login rate limiter unavailable, not limiting logins: %s", exc)


def login_wait_seconds(*, username: str, ip: str) -> int:
    """0 if a login attempt may proceed, else the seconds until the lockout ends."""
    if time.monotonic() < _down_until:
        return 0
    keys = _keys(username=username, ip=ip)
    try:
        client, _ = _redis()
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.ttl(key)
            replies = pipe.execute()
    except redis.RedisError as exc:
        _down(exc)
        return 0
    wait = 0
    for count, ttl in zip(replies[::2], replies[1::2], strict=True):
        if count is not None and int(count) >= settings.TALLY_LOGIN_MAX_FAILURES:
            wait = max(wait, int(ttl) if int(ttl) > 0 else settings.TALLY_LOGIN_WINDOW_S)
    return wait


def login_failure_record(*, username: str, ip: str) -> None:
    if time.monotonic() < _down_until:
        return
    try:
        _, record = _redis()
        record(keys=_keys(username=username, ip=ip), args=[settings.TALLY_LOGIN_WINDOW_S])
    except redis.RedisError as exc:
        _down(exc)


def login_success_record(*, username: str, ip: str) -> None:
    if time.monotonic() < _down_until:
        return
    try:
        _redis()[0].delete(_keys(username=username, ip=ip)[0])
    except redis.RedisError as exc:
        _down(exc)


def wait_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return (
        f"Too many failed login attempts. Logins for this account or from this address are refused "
        f"for {minutes} more minute{'s' if minutes != 1 else ''}."
    )


@process_cache
def login_limit_reset() -> None:
    """Forget the client and any outage backoff (tests, and after a settings change)."""
    global _client, _record, _down_until
    _client, _record, _down_until = None, None, 0.0
