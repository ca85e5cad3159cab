"""gunicorn's threaded worker, with new connections spread evenly over the workers and kept
connections served without a round trip through the main loop.

**Balance.** gunicorn's workers share one listening socket, and the first worker to wake takes
each new connection. Clients that connect at about the same time (a deploy, a fleet of services
restarting, a load test) tend to land on the same worker: measured on 2 workers x 4 threads
with 4 keep-alive clients, all four went to one worker in two rounds of three. That worker is
then bound by its one interpreter lock while the other idles, for as long as the connections
live (keep-alive), and a third of the machine's CPU went unused.

`BalancedThreadWorker` adds a least-connections rule, the one nginx and HAProxy use: a worker
lets a new connection go when another live worker, accepting, holds fewer connections than it
does, and that worker takes it. Each worker publishes its count in a small table of shared
memory made before the workers fork (one slot per worker: pid, connections, heartbeat,
accepting); a worker whose heartbeat is older than `STALE_AFTER_S` (still loading the app, hung,
or dead) does not count. A worker never waits on the others: after it lets a connection go for
`YIELD_S`, it takes the one still waiting, if any, so the worst case is plain gthread's choice,
`YIELD_S` (20 ms) late.

**Eager keep-alive.** In gthread, each request on a kept connection travels: the pool thread
answers, hands the connection back to the main thread (a pipe write and a wake-up), which
registers it with its poller, wakes when the next request arrives, unregisters it and queues it
for a pool thread again: about ten system calls and three thread switches per request, a fifth
of a single-event post's CPU. Here the pool thread that answered waits on the connection for
up to `EAGER_WAIT_S` (2 ms) and serves its next request itself when it comes in that time, as
it does for a client posting events back to back. It waits only while no other request is
queued for a thread, and all but one thread at most, so a request on another connection never
waits for one; past that, the connection goes back to the main loop as in gthread.

Use it with `--worker-class core.gunicorn.BalancedThreadWorker` (core/run.py and docker do).
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import select
import threading
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

MAX_WORKERS = 128
_FIELDS = 4  # pid, connections, heartbeat (whole seconds of the monotonic clock), accepting
_PID, _CONNS, _BEAT, _ACCEPTING = range(_FIELDS)
STALE_AFTER_S = 3
YIELD_S = 0.02
EAGER_WAIT_S = 0.002

# Made when gunicorn imports the worker class, in the arbiter, before any worker forks:
# anonymous shared memory (MAP_SHARED) that every worker inherits, and the lock for claiming
# a slot in it (workers start at the same time).
_table = mmap.mmap(-1, MAX_WORKERS * _FIELDS * 4)
_cells = memoryview(_table).cast("i")
_claim = multiprocessing.Lock()


def _beat() -> int:
    return int(time.monotonic())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim_slot(pid: int) -> int | None:
    """A free slot for this worker: never used, released, or left by a worker that died without
    releasing it (killed); None if the table is full. A silent worker that is still alive (loading
    the app, or hung until gunicorn's timeout kills it) keeps its slot."""
    with _claim:
        now = _beat()
        for slot in range(MAX_WORKERS):
            base = slot * _FIELDS
            holder = _cells[base + _PID]
            if holder == 0 or (now - _cells[base + _BEAT] > STALE_AFTER_S and not _pid_alive(holder)):
                _cells[base + _PID] = pid
                _cells[base + _CONNS] = 0
                _cells[base + _BEAT] = now
                _cells[base + _ACCEPTING] = 0
                return slot
    return None


def connection_counts() -> dict[int, int]:
    """pid -> connections of the live workers (for tests and debugging)."""
    now = _beat()
    counts = {}
    for slot in range(MAX_WORKERS):
        base = slot * _FIELDS
        pid = _cells[base + _PID]
        if pid and now - _cells[base + _BEAT] <= STALE_AFTER_S:
            counts[pid] = _cells[base + _CONNS]
    return counts


def _readable(sock: Any, timeout: float) -> bool:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(timeout * 1000))


class BalancedThreadWorker(ThreadWorker):
    """gthread with least-connections accepting across workers and eager keep-alive (see the
    module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._paused_until = 0.0  # listening again from then
        self._slot: int | None = None
        super().__init__(*args, **kwargs)
        # Threads that may wait on their connection for its next request: all but one, so a
        # request on another connection always finds a thread.
        self._eager = threading.BoundedSemaphore(max(1, self.cfg.threads - 1))
        if self.cfg.threads < 2:
            self._eager.acquire()  # one thread: it never waits

    # gthread's loop stops accepting while `nr_conns >= worker_connections`, checked on each
    # pass; reading it as 0 during a yield is how a worker lets a connection go for a moment.
    @property  # type: ignore[override]
    def worker_connections(self) -> int:
        if time.monotonic() < self._paused_until:
            return 0
        return self._worker_connections

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._worker_connections = value

    def init_process(self) -> None:
        self._slot = _claim_slot(os.getpid())
        try:
            super().init_process()
        finally:
            self._release_slot()

    def _release_slot(self) -> None:
        if self._slot is not None:
            base = self._slot * _FIELDS
            _cells[base + _ACCEPTING] = 0
            _cells[base + _PID] = 0
            self._slot = None

    def notify(self) -> None:
        super().notify()
        self._publish()

    def _publish(self) -> None:
        if self._slot is not None:
            base = self._slot * _FIELDS
            _cells[base + _CONNS] = self.nr_conns
            _cells[base + _BEAT] = _beat()
            _cells[base + _ACCEPTING] = 1 if self.alive and self.nr_conns < self._worker_connections else 0

    def _fewer_elsewhere(self) -> bool:
        """Another live, accepting worker holds fewer connections than this one."""
        mine = self.nr_conns
        if mine == 0 or self._slot is None:
            return False
        now = _beat()
        for slot in range(MAX_WORKERS):
            if slot == self._slot:
                continue
            base = slot * _FIELDS
            if (_cells[base + _PID] and _cells[base + _ACCEPTING] and _cells[base + _CONNS] < mine
                    and now - _cells[base + _BEAT] <= STALE_AFTER_S):
                return True
        return False

    def accept(self, listener: Any) -> None:
        if self._paused_until and time.monotonic() - self._paused_until < YIELD_S:
            # Right after a yield, a connection still waiting is taken, whatever the counts
            # (one: the rule applies again to the next).
            self._paused_until = 0.0
        elif self._fewer_elsewhere():
            # Let it go: stop listening for YIELD_S (the loop sees worker_connections 0 until
            # then, and its wait ends by then, below).
            self._paused_until = time.monotonic() + YIELD_S
            self.set_accept_enabled(False)
            return
        else:
            self._paused_until = 0.0
        super().accept(listener)
        self._publish()

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # During a yield, wake when it ends even if nothing else happens meanwhile (the loop then
        # listens again and takes the connection if the other worker has not).
        remaining = self._paused_until - time.monotonic()
        if remaining > 0:
            timeout = min(timeout, remaining)
        super().wait_for_and_dispatch_events(timeout)

    # --- eager keep-alive ----------------------------------------------------------------------

    def handle(self, conn: Any) -> Any:
        """gthread's handle, then, while the connection is kept alive, its next requests too when
        they come within EAGER_WAIT_S (see the module's docstring)."""
        result = super().handle(conn)
        while result is True and self.alive and not getattr(conn, "is_http2", False):
            if not self._work_queue_empty() or not self._eager.acquire(blocking=False):
                break
            try:
                # Bytes already read ahead (a pipelined request) need no wait.
                ready = bool(conn.parser.unreader.buf.getvalue()) or _readable(conn.sock, EAGER_WAIT_S)
            finally:
                self._eager.release()
            if not ready:
                break
            result = super().handle(conn)
        return result

    def _work_queue_empty(self) -> bool:
        queue = getattr(self.tpool, "_work_queue", None)
        return queue is not None and queue.empty()  # unknown: assume busy, never wait
