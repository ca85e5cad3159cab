"""One kept-alive HTTP(S) connection to Tally, shared by the sender and the budget refresher.

Used from a single thread at a time (each owner has its own). Standard library only.
"""

from __future__ import annotations

import contextlib
import http.client
import ssl


class KeepAliveConnection:
    """A lazily opened, reused connection to one host.

    `request` raises OSError or http.client.HTTPException when Tally could not be reached; a
    kept-alive connection the server closed while idle fails on first use, which says nothing
    about Tally being down, so such a failure is retried once on a fresh connection.
    """

    def __init__(self, host: str, port: int, *, https: bool, timeout: float) -> None:
        self._host = host
        self._port = port
        self._https = https
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-cased names, body) of one request."""
        for fresh in (False, True):
            reused = self._conn is not None and not fresh
            conn = self._conn if reused and self._conn is not None else self._connect()
            try:
                conn.request(method, path, body=body, headers=headers or {})
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if reused:  # a kept-alive connection the server closed while idle: once more, fresh
                    continue
                raise
            if response.will_close:
                self.close()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        raise http.client.HTTPException("unreachable")  # pragma: no cover - the loop returns or raises

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def forget(self) -> None:
        """Drop the connection without closing it: in a forked child the socket is the parent's."""
        self._conn = None

    def _connect(self) -> http.client.HTTPConnection:
        self.close()
        if self._https:
            self._conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=ssl.create_default_context()
            )
        else:
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        return self._conn
