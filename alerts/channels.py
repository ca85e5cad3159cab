"""Notification channels: Apprise URLs (json://, slack://, msteams://, pagerduty://, ...) that get
an alert besides its email recipients. Apprise does the per-service work; this module only
validates, masks, encrypts and sends through it.

Invariants:
- A channel URL is a secret (it carries tokens): it is stored only as a Fernet token (core.secrets,
  its own HKDF purpose), and shown or returned only masked: `channel_mask` keeps the scheme and a
  host name and hides every credential, path and query.
- An edit that sends back a masked value unchanged keeps the stored URL it masks
  (`channels_resolve`), so the API's PATCH (which merges the rule's masked output) and the UI's
  pre-filled form never need the clear URL again.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import apprise
from cryptography.fernet import InvalidToken

from core.secrets import SecretPurpose, secret_decrypt, secret_encrypt

MAX_CHANNELS = 20
MASK = "…"
CHANNEL_SECRET = SecretPurpose(salt=b"tally/alerts", info=b"alert channel url encryption v1")


_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s'\"]+", re.IGNORECASE)


class _MaskUrls(logging.Filter):
    """Apprise logs a URL it cannot parse in full ("Unparseable URL slack://..."): the token would
    reach the logs. Every URL in its records is masked before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message:
            record.msg, record.args = _URL.sub(lambda m: channel_mask(m.group(0)), message), None
        return True


logging.getLogger("apprise").addFilter(_MaskUrls())


def channel_encrypt(url: str) -> str:
    return secret_encrypt(url, purpose=CHANNEL_SECRET)


def channel_decrypt(token: str) -> str:
    """Raises cryptography.fernet.InvalidToken when the encryption secret changed since."""
    return secret_decrypt(token, purpose=CHANNEL_SECRET)


UNREADABLE = "(a channel that can no longer be decrypted: enter it again)"


def channels_stored(tokens: list[str]) -> list[str]:
    """The clear URLs of stored tokens; one that no longer decrypts (the secret changed) is left out."""
    urls = []
    for token in tokens:
        try:
            urls.append(channel_decrypt(token))
        except InvalidToken:
            continue
    return urls


def channels_masked(tokens: list[str]) -> list[str]:
    """What pages and the API show of stored channels."""
    masked = []
    for token in tokens:
        try:
            masked.append(channel_mask(channel_decrypt(token)))
        except InvalidToken:
            masked.append(UNREADABLE)
    return masked


def _is_host_name(host: str) -> bool:
    """A real host (DNS name, IP, localhost) rather than a token in the host's place, as in
    slack://TokenA/TokenB/TokenC or discord://webhook_id/token."""
    if host == "localhost" or "." in host:
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def channel_mask(url: str) -> str:
    """`json://127.0.0.1:8123/…`, `slack://T0…/…`, `mailto://gmail.com/…`: the scheme, the host
    (only its first two characters when the host position holds a token) and the port; the
    rest (user, password, path, query) is one ellipsis."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return f"{url.split(':', 1)[0][:20]}://{MASK}" if "://" in url else MASK
    # From the netloc rather than .hostname, which lowercases (a token's case is part of it).
    host = parts.netloc.rsplit("@", 1)[-1]
    host = host.rsplit(":", 1)[0] if port is not None else host
    shown = host if _is_host_name(host.lower()) else (host[:2] + MASK if host else "")
    if port is not None:
        shown += f":{port}"
    hidden = bool(parts.username or parts.password or parts.path.strip("/") or parts.query or parts.fragment)
    return f"{parts.scheme}://{shown}" + ("/" + MASK if hidden else "")


def channel_key(url: str) -> str:
    """A stable, non-secret name for one destination (the outbox's dedupe-key suffix)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def channel_valid(url: str) -> bool:
    """Apprise knows the scheme and the URL has what that service needs. Parses only; no network."""
    return bool(apprise.Apprise().add(url))


class ChannelError(ValueError):
    pass


def channels_resolve(entries: Iterable[str], *, stored: list[str]) -> list[str]:
    """The clear URLs an edit means. An entry equal to the mask of a stored URL keeps that URL
    (each stored one used once, in order); any other entry must be a valid Apprise URL.
    Raises ChannelError naming the bad entry by position and mask, never in clear."""
    unused = list(stored)
    resolved: list[str] = []
    for index, entry in enumerate(entries):
        entry = entry.strip()
        match = next((url for url in unused if channel_mask(url) == entry), None)
        if match is not None:
            unused.remove(match)
            resolved.append(match)
            continue
        if not channel_valid(entry):
            raise ChannelError(
                f"channels[{index}] ({channel_mask(entry)}) is not a notification URL Apprise "
                f"can send to (e.g. json://host/path, slack://TokenA/TokenB/TokenC)"
            )
        resolved.append(entry)
    if len(resolved) > MAX_CHANNELS:
        raise ChannelError(f"at most {MAX_CHANNELS} channels")
    if len(set(resolved)) != len(resolved):
        raise ChannelError("the same channel is listed twice")
    return resolved


@dataclass
class ChannelResult:
    destination: str  # masked
    ok: bool
    error: str = ""


def channel_send(url: str, *, title: str, body: str) -> ChannelResult:
    """One message to one URL. Apprise reports failure by its return value and its log, never by
    raising: the log lines of this call become the error text (they name the service, not the URL)."""
    sender = apprise.Apprise()
    if not sender.add(url):
        return ChannelResult(channel_mask(url), False, "not a valid Apprise URL")
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = bool(sender.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT))
        log = captured.getvalue() if hasattr(captured, "getvalue") else ""
    lines = [line.split(" - ", 2)[-1] for line in str(log).splitlines() if line.strip()]
    return ChannelResult(channel_mask(url), ok, "" if ok else ("; ".join(lines) or "the service did not accept it"))
