"""`make run`: everything Tally needs, in the foreground, until Ctrl-C.

1. embedded PostgreSQL and Redis (unless DATABASE_URL / CELERY_BROKER_URL are set),
2. migrate; on first start a demo admin and a demo viewer of project demo (passwords
   generated once, kept in the data dir), a demo ingest key (secret kept in the data dir
   so it can be printed again),
3. the web server (granian, `web_command`), one Celery worker and Celery beat as child processes,
4. demo data on first start (through the ingest service), then the banner.

Ctrl-C (or SIGTERM) stops the children (SIGTERM, then SIGKILL after a grace period)
and then the embedded servers this run started.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from devserver.embedded import ServiceSet, data_dir, dev_defaults

GRACE_S = 10
# granian's own bound on a graceful stop (in-flight requests finish, then the workers exit);
# below GRACE_S, after which `make run` kills what is left.
WEB_STOP_TIMEOUT_S = 5


def _django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    import django

    django.setup()


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def _prepare(root: Path) -> tuple[str, str, str, bool]:
    """Migrate, demo admin, demo viewer and key. Returns (admin password, viewer password, ingest
    key, first start)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    password = _secret_file(root / "demo-admin-password", lambda: secrets.token_urlsafe(12))
    viewer_password = _secret_file(root / "demo-viewer-password", lambda: secrets.token_urlsafe(12))
    user_model = get_user_model()
    if not user_model.objects.filter(username="admin").exists():
        user_model.objects.create_superuser("admin", "admin@localhost", password)
    key_file = root / "demo-ingest-key"
    first_start = not key_file.exists()
    if first_start:
        from projects.services import ingest_key_create

        created = ingest_key_create(project_slug="demo", environment_name="prod", name="demo key (make run)")
        _secret_file(key_file, lambda: created.secret)
    # A viewer of project demo, to see what a non-admin sees (no Keys/Prices/... links). Also
    # made on a data dir from before viewers existed.
    if not user_model.objects.filter(username="viewer").exists():
        from projects.services import membership_add, project_get_or_create

        viewer = user_model.objects.create_user("viewer", "viewer@localhost", viewer_password)
        membership_add(project=project_get_or_create(slug="demo"), user=viewer, role="viewer")
    return password, viewer_password, key_file.read_text().strip(), first_start


def web_command(*, port: int | str, workers: int | str, threads: int | str, host: str = "127.0.0.1") -> list[str]:
    """The web server as `make run`, the bench and the server tests start it; docker/Dockerfile
    spells the same flags. granian's WSGI interface: one process per core (`workers`), each running
    Django in `threads` blocking threads, which overlap the waits on PostgreSQL and Redis (each
    COMMIT waits for its WAL flush). HTTP/1 only: nothing here speaks h2c, and `auto` sniffs every
    new connection for it. A worker that dies is started again, as gunicorn's arbiter did."""
    return [
        str(Path(sys.executable).parent / "granian"),
        "--interface",
        "wsgi",
        "config.wsgi:application",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--blocking-threads",
        str(threads),
        "--http",
        "1",
        "--no-ws",
        "--respawn-failed-workers",
        "--workers-kill-timeout",
        str(WEB_STOP_TIMEOUT_S),
    ]


def _children(port: str, root: Path) -> dict[str, subprocess.Popen[bytes]]:
    py = sys.executable
    commands = {
        "web": [*web_command(port=port, workers=os.environ.get("WEB_CONCURRENCY", "2"), threads=4), "--access-log"],
        "worker": [py, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO", "--concurrency", "2"],
        "beat": [
            py,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(root / "celerybeat-schedule"),
        ],
    }
    # Own sessions: a terminal's Ctrl-C reaches us, and we stop the children in order.
    return {name: subprocess.Popen(cmd, start_new_session=True) for name, cmd in commands.items()}  # noqa: S603


def _wait_http(port: str, timeout: float) -> bool:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:  # noqa: S310
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def _stop_children(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in children.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for proc in children.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    os.environ.setdefault("SECURE_COOKIES", "0")  # plain http on 127.0.0.1
    port = os.environ.get("TALLY_PORT", "8000")
    os.environ.setdefault("TALLY_BASE_URL", f"http://127.0.0.1:{port}")
    root = data_dir()
    # Web workers (granian's processes) count ingest in files here so /metrics adds them up
    # (cleared each start).
    prom_dir = root / "prometheus"
    shutil.rmtree(prom_dir, ignore_errors=True)
    prom_dir.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom_dir)
    dev_defaults(root)
    (root / "static").mkdir(exist_ok=True)
    services = ServiceSet()
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    # Explicit handlers: a shell that starts us in the background sets SIGINT to "ignore",
    # which Python would inherit; Ctrl-C and SIGTERM must both stop everything.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        print("Starting embedded services (if needed)...", flush=True)
        services.start()
        _django_setup()
        password, viewer_password, ingest_key, first_start = _prepare(root)
        children = _children(port, root)
        if not _wait_http(port, 60):
            print("web server did not come up; see the log above", file=sys.stderr)
            return 1
        if first_start:
            from alerts.services import demo_seed_with_alerts

            print("Seeding demo data (first start only)...", flush=True)
            summary = demo_seed_with_alerts(
                progress=lambda done, total: print(f"  {done:,} / {total:,} events", flush=True)
            )
            print(f"  seeded {summary['accepted']:,} demo events", flush=True)
        print(
            f"\n  Tally is running at http://127.0.0.1:{port}/\n"
            f"  Login: admin / {password}  (superuser: every project, /admin/)\n"
            f"  Login: viewer / {viewer_password}  (viewer of project demo)\n"
            f"  Demo ingest key (project demo, environment prod): {ingest_key}\n"
            f"  Send an event:\n"
            f"    curl -X POST http://127.0.0.1:{port}/api/v1/events -H 'Authorization: Bearer {ingest_key}' \\\n"
            f"      -H 'Content-Type: application/json' \\\n"
            f'      -d \'{{"request_id": "req_1", "model": "claude-sonnet-4-6", "latency_ms": 812, '
            f'"input_tokens": 1200, "output_tokens": 300}}\'\n'
            f"  Ctrl-C stops everything.\n",
            flush=True,
        )
        while True:
            for name, proc in children.items():
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
        return 0
    finally:
        _stop_children(children)
        services.stop()
        if stopping or children:
            print("Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
