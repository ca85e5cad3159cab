"""The embedded servers: own ports, reuse of a live server, stale pid files never block."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from devserver.embedded import PG_BASE_PORT, REDIS_BASE_PORT, EmbeddedPostgres, EmbeddedRedis


def test_default_ports_stay_clear_of_system_services():
    assert PG_BASE_PORT != 5432
    assert REDIS_BASE_PORT != 6379


def test_stale_redis_pid_file_is_removed_not_trusted(tmp_path: Path):
    redis = EmbeddedRedis(tmp_path)
    redis.dir.mkdir()
    (redis.dir / "redis.pid").write_text("999999")  # no such process
    (redis.dir / "redis.port").write_text("63799")
    assert redis.running_port() is None
    assert not (redis.dir / "redis.pid").exists()


def test_redis_pid_of_an_unrelated_process_is_not_trusted(tmp_path: Path):
    redis = EmbeddedRedis(tmp_path)
    redis.dir.mkdir()
    (redis.dir / "redis.pid").write_text(str(os.getpid()))  # alive, but it is pytest
    (redis.dir / "redis.port").write_text("63799")
    assert redis.running_port() is None


def test_stale_postmaster_pid_is_removed(tmp_path: Path):
    pg = EmbeddedPostgres(tmp_path)
    pg.pgdata.mkdir()
    (pg.pgdata / "postmaster.pid").write_text("999999\n/x\n1\n54330\n")
    assert pg.running_port() is None
    assert not (pg.pgdata / "postmaster.pid").exists()


def test_a_fixed_port_in_use_is_refused(tmp_path: Path, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("TALLY_REDIS_PORT", str(busy.getsockname()[1]))
        with pytest.raises(RuntimeError, match="TALLY_REDIS_PORT=.* is in use"):
            EmbeddedRedis(tmp_path).start()
    assert not (tmp_path / "redis" / "redis.port").exists()


def test_embedded_redis_starts_on_its_own_port_and_stops(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("TALLY_REDIS_PORT", raising=False)  # the suite's own Redis may hold that one
    redis = EmbeddedRedis(tmp_path)
    url = redis.start()
    try:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert port != 6379
        assert redis.running_port() == port
        # A second handle on the same data dir reuses the live server.
        again = EmbeddedRedis(tmp_path)
        assert again.start() == url
        assert not again.started_here
    finally:
        redis.stop()
    assert redis.running_port() is None
