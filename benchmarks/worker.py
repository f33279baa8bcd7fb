"""``worker``: how fast one worker drains N queued confirmations, and its
peak memory.

Flask-Confirm's ``flask confirm-worker --burst`` (one process, jobs run in it,
one SMTP connection or SES client kept across jobs) against the tutorial's
pattern (a forking RQ ``Worker``, a new SMTP connection or boto3 client per
job), each into an SMTP sink that answers at once and into moto's SES, all
with PostgreSQL. emails/s is timed from the first to the last message the
receiver got, so process start-up is left out on both sides; peak RSS is the
worker process's peak resident set (``VmHWM``); CPU ms/mail is the worker's
CPU time, its forked job processes' included, start-up included, per mail.

Flask-Confirm's queue is filled three ways: one job per user
(``CONFIRM_BATCH_SIZE`` 1; before adaptive batching, what
``send_confirmation`` queued), jobs of ``CONFIRM_BATCH_SIZE`` (as
``send_many`` and sweeps do), and as ``send_confirmation`` queues a backlog
(each confirmation joins the job waiting for the queue, up to
``CONFIRM_BATCH_SIZE``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import tempfile
import typing as t
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from rq import Queue

from benchmarks import app as bench_app
from benchmarks import tutorial
from benchmarks.common import bench_env
from benchmarks.common import Child
from benchmarks.common import Exited
from benchmarks.common import FLASK_APP
from benchmarks.common import log
from benchmarks.common import moto_ses
from benchmarks.common import MotoSES
from benchmarks.common import postgres_database
from benchmarks.common import redis_server
from benchmarks.common import RedisServer
from benchmarks.common import Results
from benchmarks.common import Row
from benchmarks.common import SES_REGION
from benchmarks.common import SinkStats
from benchmarks.common import smtp_sink
from benchmarks.common import SMTPSink

NAME = "worker"

TUTORIAL_WORKER = [sys.executable, "-m", "benchmarks.tutorial_worker"]

FC_SMTP = "flask-confirm smtp"
FC_SES = "flask-confirm ses"
TUT_SMTP = "tutorial smtp (fork)"
TUT_SES = "tutorial ses (fork)"


def confirm_config(
    db_url: str, redis: RedisServer, sink: SMTPSink | None = None, **extra: t.Any
) -> dict[str, t.Any]:
    """Configuration of a Flask-Confirm app and worker: SMTP to ``sink``, or
    SES (``CONFIRM_SENDER="ses"``) when there is no sink."""
    config: dict[str, t.Any] = {
        "SQLALCHEMY_DATABASE_URI": db_url,
        "CONFIRM_REDIS_URL": redis.url,
    }
    if sink is not None:
        config.update(sink.config(), CONFIRM_SENDER="smtp")
    else:
        config.update(CONFIRM_SENDER="ses", CONFIRM_SES_REGION=SES_REGION)
    config.update(extra)
    return config


def queue_confirmations(
    app: Flask, redis: RedisServer, count: int, tag: str, batch_size: int | None = 1
) -> None:
    """Empty the table and Redis, insert ``count`` users, and request their
    confirmations with ``confirm.send_many`` (one commit, pipelined enqueues):
    one job per user as ``send_confirmation`` queues them (``batch_size`` 1),
    or jobs of ``batch_size`` users (None: ``CONFIRM_BATCH_SIZE``)."""
    redis.flush()
    bench_app.reset_tables(app)
    bench_app.insert_users(app, count, f"{tag}-", requested=False)
    db, user_model, confirm = bench_app.parts(app)
    with app.app_context():
        users = db.session.scalars(sa.select(user_model)).all()
        requested = confirm.send_many(users, batch_size=batch_size)
        db.session.remove()
    if requested != count:
        raise RuntimeError(f"Requested {requested} confirmations, not {count}.")


def queue_joined(app: Flask, redis: RedisServer, count: int, tag: str) -> None:
    """As :func:`queue_confirmations`, but each confirmation is queued the way
    ``send_confirmation`` queues it while no worker runs (a backlog): its id
    joins the job waiting for the queue (``queueing.join``), which takes up
    to ``CONFIRM_BATCH_SIZE``."""
    from flask_confirm.outbox import queueing

    redis.flush()
    bench_app.reset_tables(app)
    bench_app.insert_users(app, count, f"{tag}-", requested=True)
    db, user_model, confirm = bench_app.parts(app)
    with app.app_context():
        state = confirm._get_state()
        ids = db.session.scalars(sa.select(user_model.id)).all()
        db.session.remove()
        for user_id in ids:
            queueing.join(state, user_id)


def batch_size(app: Flask) -> int:
    """The app's ``CONFIRM_BATCH_SIZE``."""
    return int(app.config["CONFIRM_BATCH_SIZE"])


def start_confirm_worker(
    config: t.Mapping[str, t.Any],
    workdir: Path,
    name: str,
    *args: str,
    env: t.Mapping[str, str] | None = None,
) -> Child:
    """``flask confirm-worker ARGS`` for :mod:`benchmarks.app`."""
    return Child(
        [*FLASK_APP, "confirm-worker", *args],
        {**bench_env(config), **(env or {})},
        workdir / f"{name}.log",
    )


def drain_timeout(count: int) -> float:
    """Seconds a drain of ``count`` jobs may take before it counts as stuck."""
    return 60 + count / 5


def check_delivered(stats: SinkStats, sent_rows: int, count: int, what: str) -> None:
    if stats.count < count or sent_rows != count:
        raise RuntimeError(
            f"{what}: {stats.count} mails received and {sent_rows} rows marked"
            f" sent, for {count} queued."
        )


def _tutorial_queue(
    app: Flask, redis: RedisServer, count: int, tag: str, queue_name: str
) -> None:
    redis.flush()
    with app.app_context():
        tutorial.db.create_all()
        tutorial.db.session.execute(sa.text(f"TRUNCATE {tutorial.TABLE}"))
        tutorial.db.session.execute(
            sa.text(
                f"INSERT INTO {tutorial.TABLE} (email, confirmed)"
                " SELECT :prefix || g || '@example.test', false"
                " FROM generate_series(1, :count) AS g"
            ),
            {"prefix": f"{tag}-", "count": count},
        )
        tutorial.db.session.commit()
    queue = Queue(queue_name, connection=redis.client)
    with redis.client.pipeline() as pipe:
        for i in range(1, count + 1):
            queue.enqueue_call(
                "benchmarks.tutorial.send_confirmation_email",
                args=(f"{tag}-{i}@example.test",),
                pipeline=pipe,
            )
        pipe.execute()


def _tutorial_sent(app: Flask) -> int:
    with app.app_context():
        sent = tutorial.db.session.scalar(
            sa.text(
                f"SELECT count(*) FROM {tutorial.TABLE}"
                " WHERE confirmation_sent_at IS NOT NULL"
            )
        )
        tutorial.db.session.rollback()
        return int(sent or 0)


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    tutorial: bool
    ses: bool
    #: Users per Flask-Confirm job; None for ``CONFIRM_BATCH_SIZE``.
    batch: int | None = 1
    #: Queued as ``send_confirmation`` queues a backlog (jobs that ids join).
    joined: bool = False


def run(quick: bool, runs: int) -> list[Row]:
    count = 20 if quick else 2000
    # The forking baseline is much slower; fewer jobs give the same rate.
    fork_smtp_count = 8 if quick else 200
    fork_ses_count = 8 if quick else 120
    results = Results(NAME)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis = stack.enter_context(redis_server(workdir))
        db_url = stack.enter_context(postgres_database())
        sink = stack.enter_context(smtp_sink(workdir))
        ses = stack.enter_context(moto_ses())

        smtp_config = confirm_config(db_url, redis, sink)
        ses_config = confirm_config(db_url, redis)
        app = bench_app.create_app(smtp_config)
        stack.callback(bench_app.close, app)
        tut_config = {
            "SQLALCHEMY_DATABASE_URI": db_url,
            "REDIS_URL": redis.url,
            **sink.config(),
            "TUTORIAL_TRANSPORT": "smtp",
        }
        tut_app = tutorial.create_app(tut_config)
        stack.callback(_dispose_tutorial, tut_app)

        fc_batch = f"{FC_SMTP}, jobs of {batch_size(app)} (send_many/sweep)"
        fc_joined = f"{FC_SMTP}, a send_confirmation backlog (ids join jobs)"
        variants = [
            Variant(FC_SMTP, tutorial=False, ses=False),
            Variant(fc_batch, tutorial=False, ses=False, batch=None),
            Variant(fc_joined, tutorial=False, ses=False, joined=True),
            Variant(TUT_SMTP, tutorial=True, ses=False),
            Variant(FC_SES, tutorial=False, ses=True),
            Variant(TUT_SES, tutorial=True, ses=True),
        ]
        for run_index in range(runs):
            for variant in variants:
                log(f"{NAME}: run {run_index + 1}/{runs}, {variant.name}")
                tag = f"r{run_index}"
                if variant.tutorial:
                    n = fork_ses_count if variant.ses else fork_smtp_count
                    _tutorial_queue(tut_app, redis, n, tag, tutorial.QUEUE)
                    config = {
                        **tut_config,
                        "TUTORIAL_TRANSPORT": "ses" if variant.ses else "smtp",
                    }
                    args = [*TUTORIAL_WORKER, "--burst"]
                else:
                    n = count
                    if variant.joined:
                        queue_joined(app, redis, n, tag)
                    else:
                        queue_confirmations(app, redis, n, tag, variant.batch)
                    config = ses_config if variant.ses else smtp_config
                    args = [*FLASK_APP, "confirm-worker", "--burst"]
                if variant.ses:
                    stats, exited = _drain_ses(ses, args, config, workdir, n)
                else:
                    stats, exited = drain_smtp(sink, args, config, workdir, n)
                sent = _tutorial_sent(tut_app) if variant.tutorial else None
                if sent is None:
                    sent = bench_app.count_sent(app)
                check_delivered(stats, sent, n, variant.name)
                results.add(variant.name, "emails/s", stats.rate())
                results.add(variant.name, "peak RSS MiB", exited.peak_rss_kib / 1024)
                results.add(variant.name, "worker CPU ms/mail", exited.cpu * 1000 / n)
    return results.rows(
        {
            FC_SMTP: TUT_SMTP,
            fc_batch: TUT_SMTP,
            fc_joined: TUT_SMTP,
            FC_SES: TUT_SES,
        }
    )


def drain_smtp(
    sink: SMTPSink,
    args: list[str],
    config: t.Mapping[str, t.Any],
    workdir: Path,
    count: int,
) -> tuple[SinkStats, Exited]:
    sink.reset()
    child = Child(args, bench_env(config), workdir / "worker.log")
    try:
        exited = child.wait(drain_timeout(count))
    finally:
        child.stop()
    return sink.stats(), exited


def _drain_ses(
    ses: MotoSES,
    args: list[str],
    config: t.Mapping[str, t.Any],
    workdir: Path,
    count: int,
) -> tuple[SinkStats, Exited]:
    ses.reset()
    with ses.watch() as stats:
        child = Child(args, {**bench_env(config), **ses.env}, workdir / "worker.log")
        try:
            exited = child.wait(drain_timeout(count))
        finally:
            child.stop()
    return stats(), exited


def _dispose_tutorial(app: Flask) -> None:
    with app.app_context():
        tutorial.db.session.remove()
        tutorial.db.engine.dispose()
