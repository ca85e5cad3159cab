"""docker/compose.yaml parses (`docker compose config` needs no engine)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def _compose() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                 check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines()
             if line and not line.startswith("#"))
    return {k: v for k, v in pairs}


needs_compose = pytest.mark.skipif(
    _compose() is None and os.environ.get("TALLY_REQUIRE_COMPOSE") != "1",
    reason="neither `docker compose` nor `docker-compose` is installed (.ci/run installs it)")


@needs_compose
def test_compose_file_parses_with_the_example_env():
    command = _compose()
    assert command is not None, "docker compose is required in CI"
    env = {**os.environ, **_env_example()}
    result = subprocess.run([*command, "-f", str(DOCKER / "compose.yaml"), "config"], capture_output=True,
                            text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    for service in ("web:", "worker:", "beat:", "postgres:", "redis:"):
        assert service in result.stdout
    assert "healthcheck" in result.stdout


@needs_compose
def test_compose_refuses_to_start_without_secrets():
    command = _compose()
    assert command is not None, "docker compose is required in CI"
    env = {k: v for k, v in os.environ.items() if k not in _env_example()}
    result = subprocess.run([*command, "-f", str(DOCKER / "compose.yaml"), "config"], capture_output=True,
                            text=True, env=env, check=False)
    assert result.returncode != 0
    assert "set " in result.stderr
