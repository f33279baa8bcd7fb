"""The send job under the faults it must survive, with real processes: a
private redis-server that is stopped, SMTP servers that fail, moto SES that
rejects, and worker subprocesses that are killed. What each send does (locks,
batches, the send rate, recording failures) is in test_delivery.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest
import redis
from flask import Flask
from rq.job import Job

from conftest import AppFactory
from conftest import FlakySink
from conftest import RedisProcess
from conftest import SMTPServer
from conftest import SMTPSink
from conftest import wait_for
from flask_confirm.tasks import send_confirmation_job
from testapp import add_user
from testapp import models
from testapp import ok
from testapp import recipients
from testapp import register_users
from testapp import Run
from testapp import time_ago
from testapp import user_state


@pytest.mark.parametrize("state", ["deleted", "confirmed"])
def test_job_for_gone_or_confirmed_user_sends_nothing(app: Flask, state: str) -> None:
    confirm = app.extensions["confirm"]
    db = models(app)["db"]
    with app.app_context():
        user = add_user(app)
        user_id = user.id
        if state == "deleted":
            db.session.delete(user)
        else:
            confirm.confirm_user(user)
        db.session.commit()
        assert send_confirmation_job(user_id) is None
        assert confirm.sender.outbox == []


def test_redis_outage_loses_nothing(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    private_redis: RedisProcess,
    smtp_server: SMTPServer,
    run_flask: Run,
    database_url: str,
) -> None:
    async_config.update(
        smtp_server.config,
        CONFIRM_REDIS_URL=private_redis.url,
        SQLALCHEMY_DATABASE_URI=database_url,
    )
    app = make_app()
    private_redis.stop()
    emails = [f"user{i}@example.org" for i in range(50)]
    client = app.test_client()
    for email in emails:
        response = client.post("/register", data={"email": email})
        assert response.status_code == 201
        assert response.json is not None and response.json["job_id"] is None
    assert "requested      50" in ok(run_flask("confirm", "status"))

    private_redis.start()
    assert "Queued 50 " in ok(run_flask("confirm", "sweep", "--older-than", "0"))
    ok(run_flask("confirm-worker", "--burst"))
    assert recipients(smtp_server) == dict.fromkeys(emails, 1)
    status = ok(run_flask("confirm", "status"))
    assert "requested      0" in status and "sent           50" in status


def test_worker_with_scheduler_sweeps_on_start(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    private_redis: RedisProcess,
    smtp_server: SMTPServer,
    run_flask: Run,
) -> None:
    async_config.update(smtp_server.config, CONFIRM_REDIS_URL=private_redis.url)
    app = make_app()
    private_redis.stop()
    register_users(app, "ada@example.org")
    private_redis.start()
    ok(
        run_flask(
            "confirm-worker", "--burst", "--with-scheduler", CONFIRM_SWEEP_AFTER=0
        )
    )
    assert recipients(smtp_server) == {"ada@example.org": 1}


@pytest.mark.parametrize("reply", ["421 4.3.2 Try later", "451 4.7.1 Greylisted"])
def test_transient_smtp_failure_is_retried(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    make_smtp_server: t.Callable[[SMTPSink], SMTPServer],
    run_worker: Run,
    reply: str,
) -> None:
    server = make_smtp_server(FlakySink(failures=2, reply=reply))
    async_config.update(server.config)
    app = make_app()
    (user_id,) = register_users(app, "ada@example.org")
    ok(run_worker("--burst"))
    assert t.cast(FlakySink, server.sink).attempts == 3
    assert recipients(server) == {"ada@example.org": 1}
    assert user_state(app, user_id) == ("sent", None)


def test_sigterm_lets_the_current_send_finish(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    make_smtp_server: t.Callable[[SMTPSink], SMTPServer],
    start_worker: t.Callable[..., subprocess.Popen[str]],
) -> None:
    sink = FlakySink(delay=1.5)
    server = make_smtp_server(sink)
    async_config.update(server.config)
    register_users(make_app(), "ada@example.org")
    worker = start_worker()
    wait_for(lambda: sink.attempts == 1, 20, "the worker to be mid-send")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert recipients(server) == {"ada@example.org": 1}
    with open(worker.log_path) as f:  # type: ignore[attr-defined]
        assert "Job OK" in f.read()


def test_scheduled_retry_and_periodic_sweep_in_a_long_running_worker(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    make_smtp_server: t.Callable[[SMTPSink], SMTPServer],
    start_worker: t.Callable[..., subprocess.Popen[str]],
) -> None:
    server = make_smtp_server(FlakySink(failures=1))
    async_config.update(
        server.config,
        CONFIRM_RETRY_INTERVALS=[1],
        CONFIRM_SWEEP_INTERVAL=1,
        CONFIRM_SWEEP_AFTER=0,
    )
    app = make_app()
    worker = start_worker("--with-scheduler")
    register_users(app, "retried@example.org")  # fails once, retried a second later
    with app.app_context():
        # A request recorded while nothing was queued, as after a Redis outage.
        db, User = models(app)["db"], models(app)["User"]
        db.session.add(
            User(email="swept@example.org", confirmation_requested_at=time_ago(0))
        )
        db.session.commit()
    try:
        wait_for(lambda: len(server.messages) >= 2, 30, "the retried and swept mails")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)
    assert recipients(server) == {"retried@example.org": 1, "swept@example.org": 1}


def test_email_change_and_reset_through_a_worker(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    private_redis: RedisProcess,
    smtp_server: SMTPServer,
    run_flask: Run,
) -> None:
    """The change link survives Redis being down (the sweeper finds it); the
    notice and the reset link go through a real worker; no token reaches
    Redis."""
    async_config.update(
        smtp_server.config,
        CONFIRM_REDIS_URL=private_redis.url,
        CONFIRM_PASSWORD_RESET=True,
    )
    app = make_app()
    (user_id,) = register_users(app, "ada@example.org")
    ok(run_flask("confirm-worker", "--burst"))
    with app.app_context():
        user = models(app)["db"].session.get(models(app)["User"], user_id)
        user.email_confirmed_at = user.confirmation_sent_at
        models(app)["db"].session.commit()

    private_redis.stop()
    response = app.test_client().post(
        "/change-email", data={"id": user_id, "email": "ada@new.example.org"}
    )
    assert response.json == {"job_id": None}
    assert user_state(app, user_id) == ("requested", None)
    private_redis.start()
    assert "Queued 1 " in ok(run_flask("confirm", "sweep", "--older-than", "0"))
    app.test_client().post("/confirm/reset", data={"email": "ada@example.org"})
    ok(run_flask("confirm-worker", "--burst"))

    assert recipients(smtp_server) == {
        "ada@example.org": 3,  # the confirmation, the notice, the reset link
        "ada@new.example.org": 1,
    }
    assert user_state(app, user_id) == ("sent", None)
    sent = [(str(m["To"]), str(m["Subject"])) for m in smtp_server.messages]
    assert sent[1:] == [
        ("ada@example.org", "Your email address is being changed"),
        ("ada@new.example.org", "Confirm your new email address"),
        ("ada@example.org", "Reset your password"),
    ]
    client = redis.Redis.from_url(private_redis.url)
    for key in client.keys("*"):
        if client.type(key) == b"hash":
            for value in client.hgetall(key).values():
                assert b"/confirm/" not in value


RQ = str(Path(sys.executable).with_name("rq"))


def test_plain_rq_worker_fails_the_job_clearly(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    redis_url: str,
    redis_client: redis.Redis,
    run_flask: t.Callable[..., t.Any],
    run_worker: t.Callable[..., t.Any],
    tmp_path: t.Any,
) -> None:
    """A team's own ``rq worker`` on the confirm queue: it has no app, so the
    job fails with a logged error that says what to run; the confirmation
    stays requested, and the right worker sends it after a sweep."""
    app_config.update(
        smtp_server.config,
        CONFIRM_ASYNC=True,
        CONFIRM_RETRIES=0,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'rq.sqlite'}",
    )
    app = make_app()
    job_id = app.test_client().post("/register", data={"email": "ada@example.org"})
    job_id = job_id.json["job_id"]  # type: ignore[index]

    env = {k: v for k, v in os.environ.items() if k != "FLASK_APP"}
    plain = subprocess.run(
        [RQ, "worker", "--burst", "--url", redis_url, "confirm"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert plain.returncode == 0, plain.stdout + plain.stderr
    output = plain.stdout + plain.stderr
    assert "ran without its Flask application" in output
    assert "flask --app <your app> confirm-worker" in output
    assert "Working outside of application context" not in output
    job = Job.fetch(job_id, connection=redis_client)
    assert job.is_failed
    assert "flask --app <your app> confirm-worker" in (
        job.latest_result().exc_string or ""
    )
    assert smtp_server.messages == []

    assert "requested      1" in run_flask("confirm", "status").stdout
    assert "Queued 1 " in run_flask("confirm", "sweep", "--older-than", "0").stdout
    assert run_worker("--burst").returncode == 0
    assert [str(m["To"]) for m in smtp_server.messages] == ["ada@example.org"]


# -- the job's own Redis traffic ---------------------------------------------------


def _ours(frames: list[t.Any]) -> bool:
    """Whether the code that sent a command is Flask-Confirm's (the first
    frame outside redis-py), not RQ's. The worker class's overrides of RQ's
    methods (``flask_confirm/cli/worker.py``) do RQ's bookkeeping, not the
    job's, so their frames are passed over too."""
    for frame in reversed(frames):
        filename = frame.filename.replace(os.sep, "/")
        if "/redis/" in filename or filename.endswith("/flask_confirm/cli/worker.py"):
            continue
        return "/flask_confirm/" in filename
    return False


def test_a_one_user_job_costs_three_round_trips_of_our_own(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """What a job adds to RQ's own bookkeeping in Redis: claiming its users,
    taking their locks, and one closing pipeline (locks released, counts,
    its list dropped). Counted in the process, on the worker's real
    connection: a round trip is one write of commands to Redis."""
    import traceback

    from redis.connection import AbstractConnection

    from flask_confirm import pauses
    from flask_confirm.cli.worker import _StopAwareSimpleWorker
    from flask_confirm.state import get_state

    app_config.update(
        smtp_server.config,
        CONFIRM_ASYNC=True,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'trips.sqlite'}",
    )
    # A pause check within the last CHECK_EVERY seconds is remembered.
    monkeypatch.setattr(pauses, "CHECK_EVERY", 3600.0)
    app = make_app()
    client = app.test_client()
    sent = AbstractConnection.send_packed_command
    ours: list[int] = []
    counting_on = False

    def counting(self: t.Any, command: t.Any, check_health: bool = True) -> None:
        if counting_on:
            ours[-1] += _ours(traceback.extract_stack()[:-1])
        sent(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    with app.app_context():
        state = get_state()
        try:
            for n, email in enumerate(["ada@example.org", "bob@example.org"]):
                response = client.post("/register", data={"email": email})
                assert response.status_code == 201
                ours.append(0)
                worker = _StopAwareSimpleWorker(
                    [state.queue], connection=state.redis, job_class=state.job_class
                )
                counting_on = True
                assert worker.work(burst=True)
                counting_on = False
                smtp_server.wait_for_messages(n + 1)
        finally:
            state.sender.close()  # the worker's SMTP connection
    # The first job also loads the scripts and reads the pause key.
    assert ours[1] == 3, ours
