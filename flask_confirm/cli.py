"""The ``flask confirm-worker`` command."""

from __future__ import annotations

import typing as t

import click
from flask import current_app
from flask.cli import with_appcontext
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq import SimpleWorker
from rq import Worker

if t.TYPE_CHECKING:
    from .extension import Confirm


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
    log_level: str,
) -> None:
    """Run an RQ worker that sends confirmation mails."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    confirm: Confirm = app.extensions["confirm"]
    state = confirm._get_state(app)
    settings = state.settings
    # The worker's own connection, without the web side's socket timeout:
    # RQ blocks on it for minutes while it waits for jobs.
    connection = Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    try:
        connection.ping()
    except RedisError as e:
        url = _safe_url(settings.redis_url)
        raise click.ClickException(
            f"Cannot reach Redis at CONFIRM_REDIS_URL ({url}): {e}. Start Redis or"
            " point CONFIRM_REDIS_URL at it."
        ) from e

    worker_class = Worker if fork else SimpleWorker
    worker = worker_class(
        [
            Queue(name, connection=connection, job_class=state.job_class)
            for name in (queues or (settings.queue,))
        ],
        connection=connection,
        job_class=state.job_class,
    )
    click.echo(
        f"Flask-Confirm worker: queues {', '.join(q.name for q in worker.queues)};"
        f" sender {settings.sender}; Redis {_safe_url(settings.redis_url)};"
        f" {'forking' if fork else 'in-process'} jobs."
    )
    try:
        worker.work(
            burst=burst,
            with_scheduler=with_scheduler,
            max_jobs=max_jobs,
            logging_level=log_level.upper(),
        )
    finally:
        state.sender.close()


def _safe_url(url: str) -> str:
    """``url`` without its password, fit to print."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
