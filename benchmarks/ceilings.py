"""``ceilings``: what this machine allows, to read the other figures against.

Each is the rate of the simplest thing that does part of a worker's job, on
the same Redis, PostgreSQL and SMTP sink as the other benchmarks:

``rq SimpleWorker, no-op jobs``
    Stock ``rq worker --burst --worker-class rq.SimpleWorker`` (RQ's own
    command, INFO logging to a file as ``flask confirm-worker`` logs) draining
    N queued jobs that do nothing: RQ's own cost per job, the most any worker
    running one RQ job per mail can send. jobs/s from the first job's end to
    the last's (RQ's timestamps), so start-up is left out.
``flask-confirm's worker class, no-op jobs``
    The same, with ``--worker-class`` the class ``flask confirm-worker``
    runs (RQ's ``SimpleWorker`` with the heartbeat, state, suspension and
    job-end trims of :mod:`flask_confirm.cli.worker`), compared with stock.
``plain loop: SMTP + UPDATE``
    No RQ and no queue: one process (this one) loops over N user ids and for
    each sends one mail of a confirmation's size (about 4.7 kB, text and HTML)
    to the sink over one kept SMTP connection, then runs ``UPDATE ... SET
    confirmation_sent_at = now() WHERE id = %s`` and ``COMMIT`` with psycopg:
    the mail and the bookkeeping alone.
``plain loop + Redis LPOP: SMTP + UPDATE``
    The same with the smallest queue there is: each id taken from a Redis
    list with one ``LPOP``, compared with the loop without it.
``raw SMTP, one connection``
    The same message sent N times over one connection (``smtplib``): what
    the sink and the SMTP exchange allow.

Next to them, as run in the same rounds, ``flask confirm-worker --burst``
draining N confirmations queued one job per user and in batch jobs
(``send_many``), compared with the plain loop with LPOP. emails/s and msgs/s
are timed at the sink, from the first message to the last.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.policy
import smtplib
import sys
import tempfile
import typing as t
from email.message import EmailMessage
from pathlib import Path

import psycopg
import sqlalchemy as sa
from rq import Queue
from rq.job import Job

from benchmarks import app as bench_app
from benchmarks.common import bench_env
from benchmarks.common import Child
from benchmarks.common import FLASK_APP
from benchmarks.common import log
from benchmarks.common import MAIL_FROM
from benchmarks.common import postgres_database
from benchmarks.common import redis_server
from benchmarks.common import RedisServer
from benchmarks.common import Results
from benchmarks.common import Row
from benchmarks.common import smtp_sink
from benchmarks.common import SMTPSink
from benchmarks.worker import check_delivered
from benchmarks.worker import confirm_config
from benchmarks.worker import drain_smtp
from benchmarks.worker import drain_timeout
from benchmarks.worker import queue_confirmations

NAME = "ceilings"
RQ_NOOP = "rq SimpleWorker, no-op jobs"
LEAN_NOOP = "flask-confirm's worker class, no-op jobs"
LEAN_CLASS = "flask_confirm.cli.worker._StopAwareSimpleWorker"
PLAIN = "plain loop: SMTP + UPDATE"
PLAIN_LPOP = "plain loop + Redis LPOP: SMTP + UPDATE"
RAW_SMTP = "raw SMTP, one connection"
OURS_ONE = "flask confirm-worker, one job per mail"
OURS_BATCH = "flask confirm-worker, batch jobs (send_many)"
QUEUE = "ceiling-noop"
IDS_KEY = "ceiling:ids"


def noop() -> None:
    """The job of the RQ ceiling: nothing."""


def message() -> bytes:
    """A mail about the size and shape of a confirmation (text and HTML)."""
    text = "Hello,\n\nPlease confirm your email address by opening this link:\n\n"
    link = "https://app.example.org/confirm/" + "x" * 120 + "\n\n"
    mail = EmailMessage()
    mail["Subject"] = "Confirm your email address"
    mail["From"] = MAIL_FROM
    mail["To"] = "someone@example.org"
    mail.set_content(text + link + "The link is valid for 24 hours.\n" * 30)
    mail.add_alternative(
        "<!doctype html>\n<html><body>\n"
        + "<p>Please confirm your email address.</p>\n" * 60
        + f"<a href='{link.strip()}'>Confirm</a>\n</body></html>\n",
        subtype="html",
    )
    return mail.as_bytes(policy=email.policy.SMTP)


def rq_noop(
    redis: RedisServer,
    workdir: Path,
    count: int,
    worker_class: str = "rq.SimpleWorker",
) -> float:
    """jobs/s of ``rq worker`` with ``worker_class`` on ``count`` no-op jobs;
    see the module."""
    redis.flush()
    queue = Queue(QUEUE, connection=redis.client)
    ids = []
    with redis.client.pipeline() as pipe:
        for _ in range(count):
            job = queue.enqueue_call(
                "benchmarks.ceilings.noop", result_ttl=3600, pipeline=pipe
            )
            ids.append(job.id)
        pipe.execute()
    child = Child(
        [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--burst",
            "--worker-class",
            worker_class,
            "--url",
            redis.url,
            QUEUE,
        ],
        bench_env({}),
        workdir / "rq-noop.log",
    )
    try:
        child.wait(drain_timeout(count))
    finally:
        child.stop()
    ended: list[dt.datetime] = []
    for first in range(0, len(ids), 1000):
        jobs = Job.fetch_many(ids[first : first + 1000], connection=redis.client)
        ended.extend(j.ended_at for j in jobs if j is not None and j.ended_at)
    if len(ended) != count:
        raise RuntimeError(f"rq worker finished {len(ended)} of {count} no-op jobs.")
    span = (max(ended) - min(ended)).total_seconds()
    return (count - 1) / max(span, 1e-9)


def plain_loop(
    redis: RedisServer, db_url: str, sink: SMTPSink, count: int, *, lpop: bool
) -> float:
    """emails/s of the plain worker loop, ids from a Redis list with one
    ``LPOP`` each if ``lpop``; see the module."""
    table = bench_app.TABLE
    dsn = sa.make_url(db_url).set(drivername="postgresql")
    with psycopg.connect(dsn.render_as_string(hide_password=False)) as conn:
        conn.execute(f"TRUNCATE {table} RESTART IDENTITY")
        conn.execute(
            f"INSERT INTO {table} (email) SELECT 'plain-' || g || '@example.org'"
            " FROM generate_series(1, %s) AS g",
            (count,),
        )
        conn.commit()
        redis.flush()
        ids = list(range(1, count + 1))
        if lpop:
            redis.client.rpush(IDS_KEY, *ids)
        body = message()
        sink.reset()
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as smtp:
            smtp.ehlo()
            cursor = conn.cursor()
            pending = iter(ids)
            while True:
                if lpop:
                    raw = t.cast("bytes | None", redis.client.lpop(IDS_KEY))
                    user_id = int(raw) if raw is not None else None
                else:
                    user_id = next(pending, None)
                if user_id is None:
                    break
                smtp.sendmail(MAIL_FROM, [f"plain-{user_id}@example.org"], body)
                cursor.execute(
                    f"UPDATE {table} SET confirmation_sent_at = now() WHERE id = %s",
                    (user_id,),
                )
                conn.commit()
        sent = conn.execute(
            f"SELECT count(*) FROM {table} WHERE confirmation_sent_at IS NOT NULL"
        ).fetchone()
    stats = sink.stats()
    if stats.count != count or sent is None or sent[0] != count:
        raise RuntimeError(
            f"The plain loop delivered {stats.count} and marked {sent} of {count}."
        )
    return stats.rate()


def raw_smtp(sink: SMTPSink, count: int) -> float:
    """msgs/s of ``count`` sends over one SMTP connection."""
    body = message()
    sink.reset()
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as smtp:
        smtp.ehlo()
        for i in range(count):
            smtp.sendmail(MAIL_FROM, [f"raw-{i}@example.org"], body)
    stats = sink.stats()
    if stats.count != count:
        raise RuntimeError(f"The sink got {stats.count} of {count} raw messages.")
    return stats.rate()


def run(quick: bool, runs: int) -> list[Row]:
    noop_count = 200 if quick else 5000
    loop_count = 100 if quick else 2000
    smtp_count = 200 if quick else 5000
    ours_count = 50 if quick else 2000
    results = Results(NAME)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis = stack.enter_context(redis_server(workdir))
        db_url = stack.enter_context(postgres_database())
        sink = stack.enter_context(smtp_sink(workdir))
        config = confirm_config(db_url, redis, sink)
        app = bench_app.create_app(config)
        stack.callback(bench_app.close, app)
        bench_app.reset_tables(app)
        args = [*FLASK_APP, "confirm-worker", "--burst"]

        for run_index in range(runs):
            log(f"{NAME}: run {run_index + 1}/{runs}")
            results.add(RQ_NOOP, "jobs/s", rq_noop(redis, workdir, noop_count))
            results.add(
                LEAN_NOOP, "jobs/s", rq_noop(redis, workdir, noop_count, LEAN_CLASS)
            )
            results.add(
                PLAIN,
                "emails/s",
                plain_loop(redis, db_url, sink, loop_count, lpop=False),
            )
            results.add(
                PLAIN_LPOP,
                "emails/s",
                plain_loop(redis, db_url, sink, loop_count, lpop=True),
            )
            results.add(RAW_SMTP, "msgs/s", raw_smtp(sink, smtp_count))
            for name, batch in ((OURS_ONE, 1), (OURS_BATCH, None)):
                tag = f"r{run_index}-{batch or 'b'}"
                queue_confirmations(app, redis, ours_count, tag, batch)
                stats, _ = drain_smtp(sink, args, config, workdir, ours_count)
                check_delivered(stats, bench_app.count_sent(app), ours_count, name)
                results.add(name, "emails/s", stats.rate())
            log(
                f"{NAME}: "
                + ", ".join(
                    f"{v} {results.values(v, m)[-1]:.0f} {m}"
                    for v, m in (
                        (RQ_NOOP, "jobs/s"),
                        (LEAN_NOOP, "jobs/s"),
                        (PLAIN, "emails/s"),
                        (PLAIN_LPOP, "emails/s"),
                        (RAW_SMTP, "msgs/s"),
                        (OURS_ONE, "emails/s"),
                        (OURS_BATCH, "emails/s"),
                    )
                )
            )
    return results.rows(
        {
            LEAN_NOOP: RQ_NOOP,
            PLAIN_LPOP: PLAIN,
            OURS_ONE: PLAIN_LPOP,
            OURS_BATCH: PLAIN_LPOP,
        }
    )
