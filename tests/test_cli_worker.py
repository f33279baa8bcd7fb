"""``flask confirm-worker``: the whole flow through a real worker process."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import time
import typing as t
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job

from conftest import AppFactory
from conftest import RedisProcess
from conftest import SESServer
from conftest import SMTPServer
from conftest import wait_for
from testapp import models

LINK = re.compile(r"https://app\.example\.test/confirm/[A-Za-z0-9_.\-]+")


def test_smtp_flow_through_worker(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    database_url: str,
    smtp_server: SMTPServer,
    run_worker: t.Callable[..., t.Any],
    redis_client: redis.Redis,
) -> None:
    app_config.update(
        smtp_server.config, SQLALCHEMY_DATABASE_URI=database_url, CONFIRM_ASYNC=True
    )
    app = make_app()
    client = app.test_client()

    response = client.post("/register", data={"email": "ada@example.org"})
    assert response.status_code == 201
    assert response.json is not None and response.json["job_id"]
    assert smtp_server.messages == []  # nothing is sent by the web request

    result = run_worker("--burst")
    assert result.returncode == 0, result.stderr
    assert "Job OK" in result.stdout, result.stdout + result.stderr
    smtp_server.wait_for_messages(1)
    (message,) = smtp_server.messages
    assert message["To"] == "ada@example.org"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    (link,) = set(LINK.findall(text))
    assert link in html

    User = models(app)["User"]
    with app.app_context():
        user = models(app)["db"].session.get(User, response.json["id"])
        assert user.confirmation_sent_at is not None
        assert not user.email_confirmed

    path = link.removeprefix("https://app.example.test")
    page = client.get(path)
    assert page.status_code == 200
    assert b"ada@example.org" in page.data
    with app.app_context():
        assert (
            not models(app)["db"].session.get(User, response.json["id"]).email_confirmed
        )

    confirmed = client.post(path)
    assert confirmed.status_code == 302
    with app.app_context():
        assert models(app)["db"].session.get(User, response.json["id"]).email_confirmed

    token = path.rsplit("/", 1)[1]
    for key in redis_client.scan_iter():
        dump = redis_client.dump(key) or b""
        assert token.encode() not in dump and b"/confirm/" not in dump
    assert token not in result.stdout + result.stderr


def test_ses_flow_through_worker(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    ses_server: SESServer,
    run_worker: t.Callable[..., t.Any],
    tmp_path: t.Any,
) -> None:
    app_config.update(
        ses_server.config,
        CONFIRM_ASYNC=True,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'ses.sqlite'}",
    )
    app = make_app()
    response = app.test_client().post("/register", data={"email": "grace@example.org"})
    assert response.status_code == 201

    result = run_worker("--burst")
    assert result.returncode == 0, result.stderr
    (sent,) = ses_server.sent_messages()
    assert sent.destinations["ToAddresses"] == ["grace@example.org"]
    assert LINK.search(sent.body)


def test_worker_requires_redis(run_worker: t.Callable[..., t.Any]) -> None:
    result = run_worker("--burst", CONFIRM_REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode != 0
    assert "CONFIRM_REDIS_URL" in result.stderr


@pytest.mark.parametrize("value", [None, ""])
def test_worker_requires_external_url(
    run_worker: t.Callable[..., t.Any], value: t.Any
) -> None:
    result = run_worker("--burst", CONFIRM_EXTERNAL_URL=value)
    assert result.returncode != 0
    assert "CONFIRM_EXTERNAL_URL" in result.stderr


def test_workers_option_runs_several_processes(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    run_worker: t.Callable[..., t.Any],
    tmp_path: t.Any,
) -> None:
    app_config.update(
        smtp_server.config,
        CONFIRM_ASYNC=True,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'pool.sqlite'}",
    )
    app = make_app()
    client = app.test_client()
    emails = [f"user{i}@example.org" for i in range(40)]
    for email in emails:
        assert client.post("/register", data={"email": email}).status_code == 201
    result = run_worker("--burst", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 process(es)" in result.stdout
    assert sorted(str(m["To"]) for m in smtp_server.messages) == sorted(emails)
    # RQ names the worker by its name, or (before 2.4.1) by its Redis key.
    names = set(
        re.findall(
            r"Worker (?:rq:worker:)?([0-9a-f]{32}): done, quitting", result.stdout
        )
    )
    assert len(names) == 2


def test_worker_serves_the_apps_own_queues(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    redis_client: redis.Redis,
    run_worker: t.Callable[..., t.Any],
    tmp_path: t.Any,
) -> None:
    """One ``flask confirm-worker --queue confirm --queue default`` runs the
    confirmations and the app's own jobs, each in an app context."""
    app_config.update(
        smtp_server.config,
        CONFIRM_ASYNC=True,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'own.sqlite'}",
    )
    app = make_app()
    assert app.test_client().post("/register", data={"email": "ada@example.org"})
    own = Queue("default", connection=redis_client).enqueue("testapp.app_task", 7)

    result = run_worker("--burst", "--queue", "confirm", "--queue", "default")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "queues confirm, default" in result.stdout
    own = Job.fetch(own.id, connection=redis_client)
    assert own.is_finished, result.stdout + result.stderr
    assert own.return_value() == {"value": 7, "app_context": True, "queue": "confirm"}
    assert [str(m["To"]) for m in smtp_server.messages] == ["ada@example.org"]


def test_long_running_worker_outlives_a_redis_outage(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    private_redis: RedisProcess,
    smtp_server: SMTPServer,
    start_worker: t.Callable[..., subprocess.Popen[str]],
    tmp_path: t.Any,
) -> None:
    """Redis goes away while a job runs, for longer than redis-py retries:
    RQ's loop gives up when it records the job, and the worker starts it
    again (once Redis is back) instead of exiting."""
    app_config.update(
        smtp_server.config,
        CONFIRM_ASYNC=True,
        CONFIRM_REDIS_URL=private_redis.url,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'outage.sqlite'}",
    )
    app = make_app()
    connection = redis.Redis.from_url(private_redis.url)
    slow = Queue("default", connection=connection).enqueue(
        "testapp.app_task", 1, sleep=3
    )
    worker = start_worker("--queue", "confirm", "--queue", "default")
    wait_for(
        lambda: Job.fetch(slow.id, connection=connection).get_status() == "started",
        30,
        "the slow job to start",
    )
    connection.close()
    private_redis.stop()
    time.sleep(12)  # beyond redis-py's retries, and the job's end
    private_redis.start()  # empty: the slow job's record is gone with it

    registered = app.test_client().post("/register", data={"email": "ada@example.org"})
    assert registered.json["job_id"] is not None  # type: ignore[index]
    smtp_server.wait_for_messages(1, timeout=60)
    assert worker.poll() is None, Path(worker.log_path).read_text()  # type: ignore[attr-defined]
    log = Path(worker.log_path).read_text()  # type: ignore[attr-defined]
    assert "The RQ worker stopped on" in log and "starting it again" in log
    worker.terminate()
    assert worker.wait(30) == 0, log


# -- the worker's own Redis traffic ------------------------------------------------


def test_rq_offers_the_methods_the_lean_worker_overrides() -> None:
    """The worker trims RQ's traffic by overriding ``heartbeat``,
    ``set_state``, ``check_for_suspension`` and ``handle_execution_ended``;
    pin their signatures on every RQ we support, so a release that changes
    them fails here rather than in production."""
    import inspect

    from rq import SimpleWorker
    from rq import Worker

    for cls in (SimpleWorker, Worker):
        assert list(inspect.signature(cls.heartbeat).parameters) == [
            "self",
            "timeout",
            "pipeline",
        ]
        assert list(inspect.signature(cls.set_state).parameters) == [
            "self",
            "state",
            "pipeline",
        ]
        assert list(inspect.signature(cls.check_for_suspension).parameters) == [
            "self",
            "burst",
        ]
        assert list(inspect.signature(cls.handle_execution_ended).parameters) == [
            "self",
            "job",
            "queue",
            "heartbeat_ttl",
        ]


def test_rq_tears_down_through_the_unsubscribe_the_worker_overrides() -> None:
    """RQ's workers leave their pubsub thread through ``unsubscribe()``,
    after ``subscribe()`` set ``pubsub`` and ``pubsub_thread``; the worker's
    own ``unsubscribe`` relies on both, and on ``send_command`` reaching the
    worker's channel, on every RQ we support."""
    import inspect

    from rq import SimpleWorker
    from rq import Worker
    from rq.command import send_command

    for cls in (SimpleWorker, Worker):
        assert list(inspect.signature(cls.unsubscribe).parameters) == ["self"]
        assert list(inspect.signature(cls.subscribe).parameters) == ["self"]
        source = inspect.getsource(cls.subscribe)
        assert "self.pubsub =" in source and "self.pubsub_thread =" in source
        assert "self.unsubscribe()" in inspect.getsource(cls.teardown)
    assert list(inspect.signature(send_command).parameters)[:3] == [
        "connection",
        "worker_name",
        "command",
    ]


def test_worker_teardown_leaves_no_pubsub_thread_behind(
    redis_client: redis.Redis,
) -> None:
    """On redis-py 8.2 RQ's own teardown waited 60 s (RQ 3) or for ever
    (RQ 2.3) in about one exit in twenty, when the pubsub thread read
    UNSUBSCRIBE's reply before its stop flag was down; on earlier redis-py
    it gave up after a second and left that thread waiting. A hundred
    teardowns here: each returns within 3 s (it takes milliseconds; the
    rest is room for a busy machine), its thread ended and its connection
    closed, and the wake-up taken for no command of RQ's (the subscription
    is gone; a shutdown would have marked a stop asked)."""
    import threading

    from flask_confirm.cli import worker as worker_module

    queue = Queue("teardown", connection=redis_client)
    for attempt in range(100):
        worker = worker_module._StopAwareSimpleWorker([queue], connection=redis_client)
        worker.subscribe()
        teardown = threading.Thread(target=worker.unsubscribe, daemon=True)
        teardown.start()
        teardown.join(3)
        assert not teardown.is_alive(), f"unsubscribe hung, attempt {attempt}"
        assert not worker.pubsub_thread.is_alive(), f"thread left, attempt {attempt}"
        assert worker.pubsub.connection is None, f"left open, attempt {attempt}"
    assert not worker.stop_asked
    assert redis_client.pubsub_numsub(worker.pubsub_channel_name) == [
        (worker.pubsub_channel_name.encode(), 0)
    ]


def test_lean_worker_skips_repeated_heartbeats_and_states(
    redis_client: redis.Redis,
) -> None:
    from flask_confirm.cli import worker as worker_module

    worker = worker_module._StopAwareSimpleWorker(
        [Queue("lean", connection=redis_client)], connection=redis_client
    )
    worker.register_birth()
    try:
        worker.heartbeat()
        assert redis_client.hget(worker.key, "last_heartbeat")
        redis_client.hdel(worker.key, "last_heartbeat")
        worker.heartbeat()  # under HEARTBEAT_EVERY after the last: skipped
        assert redis_client.hget(worker.key, "last_heartbeat") is None
        worker.heartbeat(30)  # an explicit timeout always goes out
        assert redis_client.hget(worker.key, "last_heartbeat")
        assert 0 < redis_client.ttl(worker.key) <= 30

        worker.set_state("idle")
        assert redis_client.hget(worker.key, "state") == b"idle"
        redis_client.hdel(worker.key, "state")
        worker.set_state("idle")  # unchanged: not written again
        assert redis_client.hget(worker.key, "state") is None
        worker.set_state("busy")
        assert redis_client.hget(worker.key, "state") == b"busy"
    finally:
        worker.register_death()


def test_lean_worker_checks_for_suspension_at_most_every_second(
    redis_client: redis.Redis,
) -> None:
    from rq.suspension import resume
    from rq.suspension import suspend

    from flask_confirm.cli import worker as worker_module

    worker = worker_module._StopAwareSimpleWorker(
        [Queue("lean", connection=redis_client)], connection=redis_client
    )
    worker.check_for_suspension(burst=True)  # not suspended
    suspend(redis_client)
    try:
        worker.check_for_suspension(burst=True)  # checked under a second ago
        worker._suspension_checked_at -= worker_module.SUSPENSION_EVERY
        with pytest.raises(worker_module.StopRequested):
            worker.check_for_suspension(burst=True)
    finally:
        resume(redis_client)


def test_lean_worker_saves_a_jobs_end_with_its_outcome(
    redis_client: redis.Redis,
) -> None:
    """The end of a job is no longer written on its own: what RQ saves with
    the outcome holds it, for a job that succeeded and for one that failed."""
    from flask_confirm.cli import worker as worker_module

    queue = Queue("lean", connection=redis_client)
    done = queue.enqueue("builtins.abs", -2)
    failed = queue.enqueue("builtins.abs", "not a number")
    worker = worker_module._StopAwareSimpleWorker([queue], connection=redis_client)
    before = dt.datetime.now(dt.timezone.utc)
    assert worker.work(burst=True)
    for job_id, status in ((done.id, "finished"), (failed.id, "failed")):
        job = Job.fetch(job_id, connection=redis_client)
        assert job.get_status() == status
        assert job.ended_at is not None
        assert job.ended_at.replace(tzinfo=dt.timezone.utc) >= before
        assert job.last_heartbeat is not None
        assert job.last_heartbeat.replace(tzinfo=dt.timezone.utc) >= before
        assert job.ended_at >= job.started_at
    assert Job.fetch(done.id, connection=redis_client).return_value() == 2


def test_busy_worker_still_heartbeats(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    start_worker: t.Callable[..., subprocess.Popen[str]],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    """A worker kept busy for longer than HEARTBEAT_EVERY still refreshes its
    heartbeat and its key's lifetime, so RQ and the dashboard see it alive."""
    from rq import Worker

    from flask_confirm.cli.worker import HEARTBEAT_EVERY

    app_config.update(
        smtp_server.config,
        CONFIRM_ASYNC=True,
        CONFIRM_BATCH_SIZE=1,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'beat.sqlite'}",
    )
    app = make_app()
    start_worker()
    client = app.test_client()
    wait_for(lambda: bool(Worker.all(connection=redis_client)), 20, "the worker")
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < HEARTBEAT_EVERY * 2.5:
        response = client.post("/register", data={"email": f"u{n}@example.org"})
        assert response.status_code == 201
        n += 1
        time.sleep(0.1)
    wait_for(lambda: len(smtp_server.messages) == n, 30, f"{n} mails")
    (worker,) = Worker.all(connection=redis_client)
    assert worker.last_heartbeat is not None
    beat = worker.last_heartbeat.replace(tzinfo=dt.timezone.utc)
    age = time.time() - beat.timestamp()
    assert age < HEARTBEAT_EVERY + 2, age
    assert redis_client.ttl(worker.key) > 60
