"""A test client for `config.wsgi.application` (the lean ingest app in front of Django), with the
subset of django.test.Client's interface the ingest tests use, so each contract test can run
through both the Django view and the lean WSGI path."""

from __future__ import annotations

import io
import json
from typing import Any


class WsgiResponse:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status_code = int(status.split(" ", 1)[0])
        self.reason = status
        self.headers = {k.lower(): v for k, v in headers}
        self.content = body

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]

    def has_header(self, name: str) -> bool:
        return name.lower() in self.headers

    def json(self) -> Any:
        return json.loads(self.content)


class WsgiClient:
    """Calls the WSGI app in this thread, as gunicorn would, on the test's database connection.

    Like Django's test Client, it keeps request_finished from closing that connection.
    """

    def __init__(self, app: Any = None) -> None:
        if app is None:
            from config.wsgi import application as app
        self.app = app

    def request(self, method: str, path: str, data: bytes | str = b"", content_type: str | None = None,
                **extra: str) -> WsgiResponse:
        from django.core.signals import request_finished, request_started
        from django.db import close_old_connections

        if isinstance(data, str):
            data = data.encode()
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
            "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1", "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(data), "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(data)),
        }
        if content_type is not None:
            environ["CONTENT_TYPE"] = content_type
        environ.update(extra)
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            started[:] = [status, headers]

        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            result = self.app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
        return WsgiResponse(started[0], started[1], body)

    def post(self, path: str, data: bytes | str = b"", content_type: str = "application/json", **extra: str
             ) -> WsgiResponse:
        return self.request("POST", path, data, content_type, **extra)

    def get(self, path: str, **extra: str) -> WsgiResponse:
        return self.request("GET", path, **extra)
