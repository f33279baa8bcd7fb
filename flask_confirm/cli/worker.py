"""The ``flask confirm-worker`` command: RQ workers that serve the app's queue,
restart after a Redis outage, stop cleanly on a signal, and sweep what is
owed when run ``--with-scheduler``. Internal."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import inspect
import logging
import os
import signal
import threading
import time
import typing as t

import click
from flask import current_app
from flask.cli import with_appcontext
from redis.client import PubSubWorkerThread
from redis.exceptions import RedisError
from rq import Queue
from rq import SimpleWorker
from rq import Worker
from rq.command import send_command

try:
    from rq.exceptions import StopRequested
except ImportError:  # older RQ 2 releases (2.3 among them) define it in rq.worker
    from rq.worker import StopRequested  # type: ignore[attr-defined,no-redef]

from ..connection import connect
from ..connection import describe
from ..connection import eviction_warning
from ..connection import fix_interrupted_reads
from ..connection import redact
from ..outbox import bulk
from ..state import get_state

if t.TYPE_CHECKING:
    from flask import Flask
    from redis import Redis
    from rq.job import Job

logger = logging.getLogger("flask_confirm")


@click.command("confirm-worker")
@click.option("--burst", is_flag=True, help="Stop once the queues are empty.")
@click.option(
    "--queue",
    "-q",
    "queues",
    multiple=True,
    metavar="NAME",
    help="Queue to work on (repeatable). Default: CONFIRM_QUEUE.",
)
@click.option(
    "--with-scheduler",
    is_flag=True,
    help="Also run RQ's scheduler, for jobs queued to run later.",
)
@click.option(
    "--fork/--no-fork",
    default=False,
    show_default=True,
    help="Run each job in a forked child (RQ's Worker) instead of in the worker"
    " process itself (RQ's SimpleWorker). Forking isolates jobs from each"
    " other at the price of a fork, new connections and a fresh import per job.",
)
@click.option("--max-jobs", type=click.IntRange(min=1), help="Stop after N jobs.")
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run N worker processes, forked from this one after the app is loaded.",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@with_appcontext
def worker_command(
    burst: bool,
    queues: tuple[str, ...],
    with_scheduler: bool,
    fork: bool,
    max_jobs: int | None,
    workers: int,
    log_level: str,
) -> None:
    """Run an RQ worker that sends confirmation mails."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = get_state(app)
    settings = state.settings
    if state.redis_given:
        # The app's own client (a shared pool, a Sentinel client): RQ raises
        # its socket timeout above the time it blocks waiting for jobs.
        connection = state.redis
        where = f"{describe(connection)} (the client given to Confirm(redis=...))"
        fix = "Start Redis, or fix the client passed as redis=."
    else:
        # The worker's own connection, without the web side's socket
        # timeout: RQ blocks on it while it waits for jobs.
        connection = connect(settings.redis_url, socket_connect_timeout=5)
        where = f"CONFIRM_REDIS_URL ({redact(settings.redis_url)})"
        fix = "Start Redis or point CONFIRM_REDIS_URL at it."
    try:
        connection.ping()
    except RedisError as e:
        raise click.ClickException(f"Cannot reach Redis at {where}: {e}. {fix}") from e

    _log_to_console(log_level.upper())
    click.echo(
        f"Flask-Confirm worker: queues {', '.join(queues or (settings.queue,))};"
        f" sender {settings.sender}; Redis {where};"
        f" {workers} process(es), {'forking' if fork else 'in-process'} jobs."
    )
    warning = eviction_warning(connection)
    if warning is not None:
        logger.warning("Warning: %s", warning)
    run = functools.partial(
        _work,
        app,
        connection,
        queues=queues or (settings.queue,),
        burst=burst,
        with_scheduler=with_scheduler,
        fork=fork,
        max_jobs=max_jobs,
        log_level=log_level.upper(),
    )
    if workers == 1:
        run()
    else:
        _supervise(run, workers, state.db)


def _work(
    app: Flask,
    connection: Redis,
    *,
    queues: t.Sequence[str],
    burst: bool,
    with_scheduler: bool,
    fork: bool,
    max_jobs: int | None,
    log_level: str,
) -> None:
    """Run one RQ worker until it stops. Internal."""
    state = get_state(app)
    settings = state.settings
    sweeper = None
    if with_scheduler:
        # Pending confirmations left by a Redis outage or a dead worker are
        # queued again by every such worker: once now, then periodically, the
        # sweep's lock letting one worker do it per period.
        bulk.sweep(state, None, settings.sweep_interval)
        sweeper = _PeriodicSweep(app, settings.sweep_interval)
        sweeper.start()

    worker_class = _StopAwareWorker if fork else _StopAwareSimpleWorker
    # RQ raises the pool's socket timeout above its blocking wait when it
    # gets the connection, and a Sentinel pool is made to drop a reply a
    # signal interrupts: a connection opened before (the start-up ping)
    # would do neither.
    fix_interrupted_reads(connection)
    pause = 1.0
    try:
        worker: _StopAware | None = None
        while True:
            started = time.monotonic()
            try:
                worker = worker_class(  # it names itself to Redis already
                    [
                        Queue(name, connection=connection, job_class=state.job_class)
                        for name in queues
                    ],
                    connection=connection,
                    job_class=state.job_class,
                )
                connection.connection_pool.disconnect()
                worker.work(
                    burst=burst,
                    with_scheduler=with_scheduler,
                    max_jobs=max_jobs,
                    logging_level=log_level,
                )
            except StopRequested:  # a signal before RQ's loop took over
                break
            except RedisError as e:  # on start, outside RQ's loop
                if burst or max_jobs is not None or _stop_asked(worker):
                    raise
                error = f"{type(e).__name__}: {e}"
            else:
                if burst or max_jobs is not None or _stop_asked(worker):
                    break
                error = "an error (logged above)"
            # RQ leaves its loop on an error it does not retry, such as a
            # Redis outage or failover at the wrong moment; a long-running
            # worker goes on, as a supervisor would restart it.
            if time.monotonic() - started > 60:
                pause = 1.0
            logger.warning(
                "The RQ worker stopped on %s; starting it again in %g s.", error, pause
            )
            try:
                time.sleep(pause)
            except StopRequested:  # SIGTERM or SIGINT meanwhile
                break
            if _stop_asked(worker):
                break
            pause = min(pause * 2, 30.0)
    finally:
        if sweeper is not None:
            sweeper.stop()
        state.sender.close()


#: Seconds between the worker's own heartbeats outside a job's bookkeeping.
#: RQ sends one (three commands, three round trips) before and after each
#: dequeue; its key lives ``worker_ttl + 60`` seconds (8 minutes by
#: default), so one every few seconds keeps it as alive as one per job.
HEARTBEAT_EVERY = 5.0

#: Seconds between two checks for ``rq suspend``. RQ checks before every
#: dequeue (a round trip a job); a suspension still stops the worker
#: within this long.
SUSPENSION_EVERY = 1.0


class _Lean:
    """Trims RQ's per-job Redis traffic through methods RQ's worker classes
    offer subclasses: ``heartbeat`` (skipped when the last was under
    :data:`HEARTBEAT_EVERY` seconds ago, unless it carries an explicit
    timeout or is part of a pipeline, as the job's own bookkeeping is),
    ``set_state`` (skipped when the state is the one written last: RQ
    writes "idle" after each job and again before each dequeue),
    ``check_for_suspension`` (at most every :data:`SUSPENSION_EVERY`
    seconds) and ``handle_execution_ended`` (the job's end time and
    heartbeat kept on the job, which RQ saves with its outcome in the same
    round trip, rather than written on their own first). Together they save
    several round trips a job. ``tests/test_cli_worker`` pins the
    signatures this relies on, and what a finished or failed job's hash
    then holds. Internal."""

    _beat_at = float("-inf")
    _suspension_checked_at = float("-inf")
    _state: str

    def heartbeat(self, timeout: int | None = None, pipeline: t.Any = None) -> None:
        if (
            timeout is None
            and pipeline is None
            and time.monotonic() - self._beat_at < HEARTBEAT_EVERY
        ):
            return
        super().heartbeat(timeout, pipeline)  # type: ignore[misc]
        self._beat_at = time.monotonic()

    def set_state(self, state: str, pipeline: t.Any = None) -> None:
        if pipeline is None and state == getattr(self, "_state", None):
            return
        super().set_state(state, pipeline)  # type: ignore[misc]

    def check_for_suspension(self, burst: bool) -> None:
        if time.monotonic() - self._suspension_checked_at < SUSPENSION_EVERY:
            return
        super().check_for_suspension(burst)  # type: ignore[misc]
        self._suspension_checked_at = time.monotonic()

    def handle_execution_ended(
        self, job: Job, queue: Queue, heartbeat_ttl: int
    ) -> None:
        job.ended_at = job.last_heartbeat = dt.datetime.now(dt.timezone.utc)


class _StopAware:
    """Remembers that a stop was asked for (``SIGTERM``, ``SIGINT``, RQ's
    shutdown command), to tell it apart from RQ leaving its loop on an
    error. Internal."""

    stop_asked = False

    def request_stop(self, signum: int, frame: t.Any) -> None:
        self.stop_asked = True
        super().request_stop(signum, frame)  # type: ignore[misc]


#: Whether redis-py's ``PubSubWorkerThread.stop()`` waits for the thread
#: itself: redis-py 8.2 made it join, without a bound unless given a
#: ``timeout`` (which earlier releases do not take).
_STOP_JOINS = "timeout" in inspect.signature(PubSubWorkerThread.stop).parameters


#: The command :class:`_QuickTeardown` sends a worker's pubsub thread to
#: wake it; RQ's command handler ignores commands it does not know.
WAKE_COMMAND = "flask-confirm-wake"


class _QuickTeardown:
    """Leaves RQ's pubsub thread at once, on every redis-py.

    RQ's ``unsubscribe`` sends UNSUBSCRIBE, stops its pubsub thread and waits
    for it at most a second: when the thread has read UNSUBSCRIBE's reply
    before its stop flag went down, it waits for a subscription that never
    comes (60 s on RQ 3, for ever on RQ 2.3), and RQ leaves it behind. On
    redis-py 8.2, whose ``stop()`` joins the thread without a bound, that
    became a worker exit of 60 s or never (one in twenty here). So the flag
    goes down first, then a message on the worker's own channel (a command
    RQ does not know, which it ignores) wakes the thread from its read to
    see it; the thread closes its connection as it ends, which also ends the
    subscription. ``unsubscribe`` is the method RQ's workers call at
    teardown, and ``send_command`` RQ's own way to reach a worker;
    ``tests/test_cli_worker`` pins both and times a hundred teardowns.
    Internal."""

    connection: Redis
    name: str
    pubsub: t.Any
    pubsub_thread: t.Any
    pubsub_channel_name: str
    log: logging.Logger

    def unsubscribe(self) -> None:
        thread = self.pubsub_thread
        if not thread:
            return
        self.log.info(
            "Worker %s: unsubscribing from channel %s",
            self.name,
            self.pubsub_channel_name,
        )
        if _STOP_JOINS:
            thread.stop(timeout=0)
        else:
            thread.stop()
        with contextlib.suppress(RedisError):  # then the second below bounds it
            send_command(self.connection, self.name, WAKE_COMMAND)
        thread.join(timeout=1)
        self.pubsub.close()


def _stop_asked(worker: _StopAware | None) -> bool:
    return worker is not None and worker.stop_asked


class _StopAwareSimpleWorker(_StopAware, _QuickTeardown, _Lean, SimpleWorker):
    pass


class _StopAwareWorker(_StopAware, _QuickTeardown, _Lean, Worker):
    pass


def _supervise(run: t.Callable[[], None], count: int, db: t.Any) -> None:
    """Fork ``count`` children that each ``run()``, and wait for them all.

    SIGTERM is passed on to the children (each finishes its job in hand);
    SIGINT from a terminal reaches them directly, as they share its process
    group, so it is not passed on twice. Exits with the worst child status.
    """
    children: list[int] = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # the child: fresh database connections, then work
            status = 0
            try:
                for engine in db.engines.values():
                    engine.dispose(close=False)
                run()
            except BaseException:
                logger.exception("Worker process failed.")
                status = 1
            finally:
                os._exit(status)
        children.append(pid)

    def forward(signum: int, frame: t.Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worst = 0
    for child in children:
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
        code = os.waitstatus_to_exitcode(status)
        worst = max(worst, 1 if code < 0 else code)  # < 0: killed by a signal
    if worst:
        raise SystemExit(worst)


def _log_to_console(level: str) -> None:
    """Show Flask-Confirm's own log next to RQ's, unless the app has set up
    logging for it already."""
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level)


class _PeriodicSweep(threading.Thread):
    """Runs :meth:`.Confirm.sweep` every ``interval`` seconds. Internal."""

    def __init__(self, app: Flask, interval: int) -> None:
        super().__init__(name="flask-confirm-sweep", daemon=True)
        self._app, self._interval = app, interval
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                with self._app.app_context():
                    bulk.sweep(get_state(self._app), None, self._interval)
            except Exception:
                logger.exception("Periodic sweep failed; trying again next period.")

    def stop(self) -> None:
        self._stopped.set()
