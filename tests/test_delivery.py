"""Delivery (:mod:`flask_confirm.delivery`) under the faults it must survive,
with real processes: per-user locks, batches, the shared send rate, failures
recorded for good or for now, and the change notice."""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import logging
import signal
import subprocess
import time
import typing as t

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from rq.registry import FailedJobRegistry
from rq.registry import FinishedJobRegistry

from conftest import AppFactory
from conftest import FlakySink
from conftest import SESServer
from conftest import SMTPServer
from conftest import SMTPSink
from conftest import wait_for
from flask_confirm import AddressSuppressed
from flask_confirm import signals
from flask_confirm.state import get_state
from flask_confirm.suppression import suppressed
from testapp import change_email
from testapp import confirmed_user
from testapp import models
from testapp import ok
from testapp import outbox
from testapp import recipients
from testapp import register_users
from testapp import Run
from testapp import time_ago
from testapp import user_state


@contextlib.contextmanager
def captured(signal_: t.Any, app: Flask) -> cabc.Iterator[list[dict[str, t.Any]]]:
    calls: list[dict[str, t.Any]] = []

    def receiver(sender: Flask, **kwargs: t.Any) -> None:
        calls.append({"user_id": kwargs["user"].id, **kwargs})

    with signal_.connected_to(receiver, sender=app):
        yield calls


def test_retries_exhausted_leave_it_pending_for_the_sweeper(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    make_smtp_server: t.Callable[[SMTPSink], SMTPServer],
    run_flask: Run,
) -> None:
    sink = FlakySink(failures=3)
    server = make_smtp_server(sink)
    async_config.update(server.config, CONFIRM_RETRIES=2)
    app = make_app()
    (user_id,) = register_users(app, "ada@example.org")
    ok(run_flask("confirm-worker", "--burst"))
    assert sink.attempts == 3 and server.messages == []
    state, error = user_state(app, user_id)
    assert state == "requested" and "421" in error

    ok(run_flask("confirm", "sweep", "--older-than", "0"))
    ok(run_flask("confirm-worker", "--burst"))
    assert recipients(server) == {"ada@example.org": 1}


def test_permanent_rejection_is_not_retried(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    make_smtp_server: t.Callable[[SMTPSink], SMTPServer],
    run_flask: Run,
    redis_client: redis.Redis,
) -> None:
    sink = FlakySink(failures=10**6, reply="550 5.1.1 No such user here")
    server = make_smtp_server(sink)
    async_config.update(server.config)
    app = make_app()
    (user_id,) = register_users(app, "gone@example.org")
    ok(run_flask("confirm-worker", "--burst"))
    assert sink.attempts == 1
    state, error = user_state(app, user_id)
    assert state == "failed"
    assert "550 5.1.1 No such user here" in error

    (job_id,) = FailedJobRegistry("confirm", connection=redis_client).get_job_ids()
    with app.app_context():
        job = app.extensions["confirm"].queue.fetch_job(job_id)
    assert job.retries_left == 0
    result = job.latest_result()
    assert result is not None and "No such user here" in result.exc_string
    assert "/confirm/" not in result.exc_string

    assert "Queued 0 " in ok(run_flask("confirm", "sweep", "--older-than", "0"))
    listing = ok(run_flask("confirm", "failed"))
    assert "gone@example.org" in listing and "550" in listing
    assert "failed         1" in ok(run_flask("confirm", "status"))

    # The refusal put the address on the suppression list, with the reply.
    assert "gone@example.org\tsmtp_rejected\tsmtp\t" in ok(
        run_flask("confirm", "suppressed")
    )
    with app.app_context():
        (row,) = suppressed(get_state())
    assert row.diagnostic == "550 5.1.1 No such user here"

    # Retried, it is not mailed again: it fails as suppressed, before any
    # provider call, however the server would answer now.
    sink.failures = 0
    assert "Queued 1 " in ok(run_flask("confirm", "retry-failed"))
    ok(run_flask("confirm-worker", "--burst"))
    assert sink.attempts == 1 and server.messages == []
    assert user_state(app, user_id) == ("failed", "suppressed: smtp_rejected")

    # Taken off the list by hand, it is mailed on the next request.
    ok(run_flask("confirm", "unsuppress", "Gone@example.org"))
    assert "Queued 1 " in ok(run_flask("confirm", "retry-failed"))
    ok(run_flask("confirm-worker", "--burst"))
    assert recipients(server) == {"gone@example.org": 1}
    assert user_state(app, user_id)[0] == "sent"


def test_permanent_smtp_failure_fires_signal(
    make_app: AppFactory, make_smtp_server: t.Callable[[SMTPSink], SMTPServer]
) -> None:
    server = make_smtp_server(FlakySink(failures=1, reply="550 5.1.1 No such user"))
    app = make_app(**server.config)
    with captured(signals.confirmation_failed, app) as failed:
        (user_id,) = register_users(app, "gone@example.org")
    (call,) = failed
    assert call["user_id"] == user_id and call["permanent"] is True
    assert "550" in str(call["error"])
    assert user_state(app, user_id)[0] == "failed"


def test_ses_message_rejected_is_permanent(
    make_app: AppFactory, ses_server: SESServer
) -> None:
    app = make_app(**ses_server.config, CONFIRM_MAIL_FROM="x@unverified.test")
    with captured(signals.confirmation_failed, app) as failed:
        (user_id,) = register_users(app, "ada@example.org")
    assert failed[0]["permanent"] is True
    state, error = user_state(app, user_id)
    assert (
        state == "failed"
        and error == "MessageRejected: Email address not verified x@unverified.test"
    )


@pytest.mark.parametrize("change", ["deleted", "confirmed"])
def test_user_gone_or_confirmed_before_job_runs(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    run_worker: Run,
    redis_client: redis.Redis,
    change: str,
) -> None:
    async_config.update(smtp_server.config)
    app = make_app()
    (user_id,) = register_users(app, "ada@example.org")
    with app.app_context():
        db = models(app)["db"]
        user = db.session.get(models(app)["User"], user_id)
        if change == "deleted":
            db.session.delete(user)
            db.session.commit()
        else:
            app.extensions["confirm"].confirm_user(user)
    ok(run_worker("--burst"))
    assert smtp_server.messages == []
    assert FinishedJobRegistry("confirm", connection=redis_client).count == 1
    assert FailedJobRegistry("confirm", connection=redis_client).count == 0


def test_sigkill_mid_send_then_sweep_delivers(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    make_smtp_server: t.Callable[[SMTPSink], SMTPServer],
    start_worker: t.Callable[..., subprocess.Popen[str]],
    run_flask: Run,
    redis_client: redis.Redis,
) -> None:
    sink = FlakySink(delay=60)  # stalls the first RCPT: no mail accepted yet
    server = make_smtp_server(sink)
    async_config.update(server.config, CONFIRM_JOB_TIMEOUT=1)
    register_users(make_app(), "ada@example.org")
    worker = start_worker()
    wait_for(lambda: sink.attempts == 1, 20, "the worker to be mid-send")
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    sink.delay = 0
    assert server.messages == []

    # The dead worker's lock runs out job_timeout + 5 seconds after it was taken.
    wait_for(
        lambda: not list(redis_client.scan_iter("flask-confirm:lock:*")),
        15,
        "the dead worker's lock to expire",
    )
    assert "Queued 1 " in ok(run_flask("confirm", "sweep", "--older-than", "0"))
    ok(run_flask("confirm-worker", "--burst"))
    assert recipients(server) == {"ada@example.org": 1}


def test_three_workers_and_a_racing_sweep_send_each_mail_once(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    start_worker: t.Callable[..., subprocess.Popen[str]],
    run_flask: Run,
    postgres_url: str,
) -> None:
    async_config.update(smtp_server.config, SQLALCHEMY_DATABASE_URI=postgres_url)
    app = make_app()
    emails = [f"user{i}@example.org" for i in range(500)]
    with app.app_context():
        db, User = models(app)["db"], models(app)["User"]
        confirm = app.extensions["confirm"]
        for email in emails:
            db.session.add(User(email=email))
            confirm.send_confirmation(User.query.filter_by(email=email).one())
    # A sweep that races the first jobs queues every confirmation a second time.
    assert "Queued 500 " in ok(run_flask("confirm", "sweep", "--older-than", "0"))

    workers = [start_worker("--burst") for _ in range(3)]
    for worker in workers:
        assert worker.wait(120) == 0
    assert recipients(smtp_server) == dict.fromkeys(emails, 1)
    with app.app_context():
        assert confirm.status()["sent"] == 500


class TimedSink(SMTPSink):
    """Records when each mail arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    async def handle_DATA(self, server: t.Any, session: t.Any, envelope: t.Any) -> str:
        self.times.append(time.monotonic())
        return await super().handle_DATA(server, session, envelope)


def test_send_rate_is_shared_by_all_workers(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    make_smtp_server: t.Callable[[SMTPSink], SMTPServer],
    start_worker: t.Callable[..., subprocess.Popen[str]],
    postgres_url: str,
) -> None:
    sink = TimedSink()
    server = make_smtp_server(sink)
    async_config.update(
        server.config, CONFIRM_MAX_SEND_RATE=20, SQLALCHEMY_DATABASE_URI=postgres_url
    )
    app = make_app()
    count = 100
    with app.app_context():
        db, User = models(app)["db"], models(app)["User"]
        db.session.add_all(User(email=f"user{i}@example.org") for i in range(count))
        db.session.commit()
        users = User.query.all()
        app.extensions["confirm"].send_many(users, batch_size=1)
    workers = [start_worker("--burst") for _ in range(3)]
    for worker in workers:
        assert worker.wait(60) == 0
    assert len(sink.times) == count
    times = sorted(sink.times)
    busiest = max(
        sum(1 for t2 in times[i:] if t2 - t1 < 1.0) for i, t1 in enumerate(times)
    )
    assert busiest <= 20
    rate = (count - 1) / (times[-1] - times[0])
    assert rate >= 0.9 * 20, rate


class ThrottledSender:
    """A sender whose provider says "Throttling" to the first three messages,
    as SES does over its quota. moto does not throttle, so the refusal is
    staged here, with botocore's own exception."""

    calls: t.ClassVar[list[float]] = []

    def __init__(self, app: Flask) -> None:
        pass

    def send(self, message: t.Any) -> str:
        from botocore.exceptions import ClientError

        ThrottledSender.calls.append(time.monotonic())
        if len(ThrottledSender.calls) <= 3:
            raise ClientError(
                {
                    "Error": {
                        "Code": "Throttling",
                        "Message": "Maximum sending rate exceeded.",
                    }
                },
                "SendEmail",
            )
        return "sent"

    def close(self) -> None:
        pass


def test_throttling_slows_down_instead_of_failing(
    make_app: AppFactory, redis_client: redis.Redis
) -> None:
    ThrottledSender.calls.clear()
    app = make_app(
        CONFIRM_ASYNC=True,
        CONFIRM_SENDER="test_delivery.ThrottledSender",
        CONFIRM_MAX_SEND_RATE=10,
    )
    with app.app_context():
        user = models(app)["User"](email="ada@example.org")
        models(app)["db"].session.add(user)
        models(app)["db"].session.commit()
        # Run the job here, in this process, as a worker would.
        from flask_confirm.tasks import send_confirmation_job

        user.confirmation_requested_at = time_ago(0)
        models(app)["db"].session.commit()
        assert send_confirmation_job(user.id) == "sent"
    assert len(ThrottledSender.calls) == 4
    # Each "Throttling" paused sending for a whole window (~1 s).
    assert ThrottledSender.calls[-1] - ThrottledSender.calls[0] >= 2.9


class PickySink(FlakySink):
    """Refuses one recipient for good (550) and another for now, once (451)."""

    def __init__(self) -> None:
        super().__init__()
        self.deferred_once = False

    async def handle_RCPT(
        self,
        server: t.Any,
        session: t.Any,
        envelope: t.Any,
        address: str,
        options: t.Any,
    ) -> str:
        self.attempts += 1
        if address.startswith("gone"):
            return "550 5.1.1 No such user"
        if address.startswith("busy") and not self.deferred_once:
            self.deferred_once = True
            return "451 4.2.0 Mailbox busy"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_batch_job_keeps_per_user_rules(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    make_smtp_server: t.Callable[[SMTPSink], SMTPServer],
    run_worker: Run,
    redis_client: redis.Redis,
) -> None:
    server = make_smtp_server(PickySink())
    async_config.update(server.config)
    app = make_app()
    emails = ["a@example.org", "gone@example.org", "busy@example.org", "b@example.org"]
    with app.app_context():
        User = models(app)["User"]
        users = [User(email=e) for e in emails]
        assert app.extensions["confirm"].send_many(users, batch_size=10) == 4
        (job,) = app.extensions["confirm"].queue.get_jobs()
        assert job.description == "confirmations for 4 users"
        assert job.args == ([u.id for u in users],)
    ok(run_worker("--burst"))
    # The batch failed once (busy@ deferred) and was retried: those already
    # sent were skipped, gone@ stayed failed and was not tried again.
    assert recipients(server) == {
        "a@example.org": 1,
        "busy@example.org": 1,
        "b@example.org": 1,
    }
    assert t.cast(PickySink, server.sink).attempts == 5
    states = {e: user_state(app, i + 1)[0] for i, e in enumerate(emails)}
    assert states == {
        "a@example.org": "sent",
        "gone@example.org": "failed",
        "busy@example.org": "sent",
        "b@example.org": "sent",
    }
    assert FailedJobRegistry("confirm", connection=redis_client).count == 0


def test_batch_job_reads_once_and_records_in_groups(
    make_app: AppFactory, async_config: dict[str, t.Any], redis_url: str
) -> None:
    """A batch of 50 reads its rows in one SELECT (and the suppression list
    in one more), and commits its sends ten at a time: the round trips that
    bulk speed depends on."""
    import sqlalchemy as sa

    from flask_confirm.delivery import RECORD_EVERY
    from flask_confirm.tasks import send_batch_job

    async_config.update(CONFIRM_REDIS_URL=redis_url, CONFIRM_SENDER="memory")
    app = make_app()
    db, User = models(app)["db"], models(app)["User"]
    with app.app_context():
        users = [User(email=f"user{i}@example.org") for i in range(50)]
        db.session.add_all(users)
        db.session.commit()
        ids = [u.id for u in users]
        db.session.execute(
            sa.update(User).values(confirmation_requested_at=sa.func.now())
        )
        db.session.commit()
        statements: list[str] = []
        commits: list[int] = []
        sa.event.listen(
            db.engine,
            "before_cursor_execute",
            lambda *args: statements.append(args[2].split()[0]),
        )
        sa.event.listen(db.engine, "commit", lambda conn: commits.append(1))
    with app.app_context():
        assert send_batch_job(ids) == {"sent": 50, "skipped": 0, "failed": 0}
        assert len(app.extensions["confirm"].sender.outbox) == 50
    assert statements.count("SELECT") == 2
    assert RECORD_EVERY == 10
    assert len(commits) == 5
    with app.app_context():
        sent = db.session.scalar(
            sa.select(sa.func.count()).where(User.confirmation_sent_at.is_not(None))
        )
        assert sent == 50
    # The locks are all released.
    assert not redis.Redis.from_url(redis_url).keys("flask-confirm:lock:*")


# -- addresses the sender cannot use, and the change notice -------------------


@pytest.mark.parametrize("sender", ["smtp", "ses"])
def test_unparseable_stored_address_fails_for_good(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    ses_server: SESServer,
    run_flask: Run,
    redis_client: redis.Redis,
    sender: str,
) -> None:
    """A row the app stored itself (or an older version let through) with an
    address no mail can carry, ``a,b@example.org`` (two addresses to a mail
    library): the worker fails it for good, nothing is sent to anyone, and
    the sweeper leaves it alone instead of queueing it forever."""
    async_config.update(smtp_server.config if sender == "smtp" else ses_server.config)
    app = make_app()
    (user_id,) = register_users(
        app, "a,b@example.org"
    )  # the test app stores it as typed
    ok(run_flask("confirm-worker", "--burst"))
    state, error = user_state(app, user_id)
    assert state == "failed", error
    assert "not one email address" in error
    assert smtp_server.messages == [] and ses_server.sent_messages() == []
    (job_id,) = FailedJobRegistry("confirm", connection=redis_client).get_job_ids()
    with app.app_context():
        job = app.extensions["confirm"].queue.fetch_job(job_id)
    assert job.retries_left == 0
    assert "Queued 0 " in ok(run_flask("confirm", "sweep", "--older-than", "0"))


@pytest.mark.parametrize("address", ["a,b@example.org", "Ada <ada@example.org>, b"])
def test_unparseable_address_signals_a_permanent_failure(
    make_app: AppFactory, smtp_server: SMTPServer, address: str
) -> None:
    app = make_app(**smtp_server.config)
    with captured(signals.confirmation_failed, app) as failed:
        (user_id,) = register_users(app, address)
    (call,) = failed
    assert call["user_id"] == user_id and call["permanent"] is True
    assert user_state(app, user_id)[0] == "failed"
    assert smtp_server.messages == []


class RefusesNewSink(FlakySink):
    """Answers "try later" to the first ``failures`` deliveries to the new
    address of an email change; accepts everything else."""

    async def handle_RCPT(
        self,
        server: t.Any,
        session: t.Any,
        envelope: t.Any,
        address: str,
        options: t.Any,
    ) -> str:
        if address.endswith("@new.example.org"):
            self.attempts += 1
            if self.attempts <= self.failures:
                return "451 4.3.0 Try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_change_notice_goes_once_per_request(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    make_smtp_server: t.Callable[[SMTPSink], SMTPServer],
    run_flask: Run,
) -> None:
    """The link to the new address fails for now three times in a real
    worker (two RQ retries, then the sweeper's re-queue): the old address
    gets the notice once, not once per attempt. A newer request is a new
    change, and gets a notice of its own."""
    sink = RefusesNewSink(failures=3)
    server = make_smtp_server(sink)
    async_config.update(server.config, CONFIRM_RETRIES=2)
    app = make_app()
    (user_id,) = register_users(app, "ada@example.org")
    ok(run_flask("confirm-worker", "--burst"))
    with app.app_context():
        user = models(app)["db"].session.get(models(app)["User"], user_id)
        user.email_confirmed_at = user.confirmation_sent_at
        models(app)["db"].session.commit()
    client = app.test_client()
    data = {"id": user_id, "email": "ada@new.example.org"}
    assert client.post("/change-email", data=data).status_code == 200
    ok(run_flask("confirm-worker", "--burst"))
    assert sink.attempts == 3 and user_state(app, user_id)[0] == "requested"
    assert "Queued 1 " in ok(run_flask("confirm", "sweep", "--older-than", "0"))
    ok(run_flask("confirm-worker", "--burst"))
    assert sink.attempts == 4
    assert recipients(server) == {"ada@example.org": 2, "ada@new.example.org": 1}
    notices = [m for m in server.messages if "being changed" in str(m["Subject"])]
    assert len(notices) == 1

    assert client.post("/change-email", data=data).status_code == 200
    ok(run_flask("confirm-worker", "--burst"))
    assert recipients(server) == {"ada@example.org": 3, "ada@new.example.org": 2}


# -- the suppression list -------------------------------------------------------


def suppress(app: Flask, address: str, reason: str = "hard_bounce") -> None:
    with app.app_context():
        app.extensions["confirm"].suppress(address, reason, source="ses")


def test_suppressed_address_is_never_mailed(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    run_flask: Run,
    redis_client: redis.Redis,
) -> None:
    """A permanent failure before any provider call, its job not retried;
    the sweeper, resend-all and retry-failed queue it, and it fails again,
    unmailed."""
    async_config.update(smtp_server.config)
    app = make_app()
    suppress(app, "Ada@Example.org")
    (user_id,) = register_users(app, "ada@example.org")
    ok(run_flask("confirm-worker", "--burst"))
    assert smtp_server.messages == [] and smtp_server.sink.connections == 0
    assert user_state(app, user_id) == ("failed", "suppressed: hard_bounce")
    (job_id,) = FailedJobRegistry("confirm", connection=redis_client).get_job_ids()
    with app.app_context():
        job = app.extensions["confirm"].queue.fetch_job(job_id)
    assert job.retries_left == 0
    result = job.latest_result()
    assert result is not None and "suppressed: hard_bounce" in result.exc_string

    assert "Queued 0 " in ok(run_flask("confirm", "sweep", "--older-than", "0"))
    assert "Queued 1 " in ok(run_flask("confirm", "resend-all", "--unconfirmed"))
    ok(run_flask("confirm-worker", "--burst"))
    assert "Queued 1 " in ok(run_flask("confirm", "retry-failed"))
    ok(run_flask("confirm-worker", "--burst"))
    assert smtp_server.messages == []
    assert user_state(app, user_id) == ("failed", "suppressed: hard_bounce")


def test_suppressed_address_signals_a_permanent_failure(
    make_app: AppFactory, smtp_server: SMTPServer
) -> None:
    app = make_app(**smtp_server.config)
    suppress(app, "ada@example.org", "complaint")
    with captured(signals.confirmation_failed, app) as failed:
        (user_id,) = register_users(app, "ada@example.org")
    (call,) = failed
    assert call["user_id"] == user_id and call["permanent"] is True
    assert isinstance(call["error"], AddressSuppressed)
    assert call["error"].reason == "complaint"
    assert str(call["error"]) == "suppressed: complaint"
    assert smtp_server.messages == []


def test_one_suppression_query_per_job(
    make_app: AppFactory, async_config: dict[str, t.Any]
) -> None:
    """A batch of six, one of them suppressed: the others are sent, and the
    list is read once for the batch (two SELECTs in all: the users, the
    list), not once per user; a single job reads it once too."""
    from flask_confirm.tasks import send_batch_job
    from flask_confirm.tasks import send_confirmation_job

    async_config.update(CONFIRM_SENDER="memory")
    app = make_app()
    db, User = models(app)["db"], models(app)["User"]
    with app.app_context():
        users = [User(email=f"user{i}@example.org") for i in range(6)]
        db.session.add_all(users)
        db.session.commit()
        ids = [u.id for u in users]
        for user in users:
            user.confirmation_requested_at = time_ago(1)
        db.session.commit()
        app.extensions["confirm"].suppress("USER3@example.org", "complaint")
        selects: list[str] = []

        def record(*args: t.Any) -> None:
            if args[2].lstrip().upper().startswith("SELECT"):
                selects.append(args[2])

        sa.event.listen(db.engine, "before_cursor_execute", record)
    with app.app_context():
        assert send_batch_job(ids) == {"sent": 5, "skipped": 0, "failed": 1}
        sent = [m.to for m in app.extensions["confirm"].sender.outbox]
    assert sent == [f"user{i}@example.org" for i in (0, 1, 2, 4, 5)]
    assert len(selects) == 2
    assert sum("confirm_suppressions" in q for q in selects) == 1
    assert user_state(app, ids[3]) == ("failed", "suppressed: complaint")
    assert user_state(app, ids[4])[0] == "sent"

    with app.app_context():
        db.session.get(User, ids[0]).confirmation_requested_at = time_ago(-1)
        db.session.commit()
    selects.clear()
    with app.app_context():
        assert send_confirmation_job(ids[0]) == "memory-6"
    assert len(selects) == 2
    assert sum("confirm_suppressions" in q for q in selects) == 1


def test_change_notice_skips_a_suppressed_address(make_app: AppFactory) -> None:
    """The old address suppressed: the link goes to the new one, no notice
    to the old. The new address suppressed: nothing goes to either, and the
    link fails for good."""
    app = make_app()
    client = app.test_client()
    (user_id,) = register_users(app, "ada@example.org")
    with app.app_context():
        user = models(app)["db"].session.get(models(app)["User"], user_id)
        user.email_confirmed_at = user.confirmation_sent_at
        models(app)["db"].session.commit()
    suppress(app, "ada@example.org")
    change_email(app, client, user_id, "ada@new.example.org")
    assert [(m.to, m.subject) for m in outbox(app)][1:] == [
        ("ada@new.example.org", "Confirm your new email address")
    ]
    assert user_state(app, user_id)[0] == "sent"

    with app.app_context():
        app.extensions["confirm"].unsuppress("ada@example.org")
    suppress(app, "ada@newer.example.org", "smtp_rejected")
    change_email(app, client, user_id, "ada@newer.example.org")
    assert len(outbox(app)) == 2
    assert user_state(app, user_id) == ("failed", "suppressed: smtp_rejected")


def test_password_reset_skips_a_suppressed_address(
    reset_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing is sent, it is logged, and the form answers as for anyone."""
    client = reset_app.test_client()
    confirmed_user(reset_app, client, "ada@example.org", "a password 123")
    suppress(reset_app, "ada@example.org")
    before = len(outbox(reset_app))
    visitor = reset_app.test_client()
    with caplog.at_level(logging.INFO, logger="flask_confirm"):
        blocked = visitor.post("/confirm/reset", data={"email": "ada@example.org"})
    unknown = visitor.post("/confirm/reset", data={"email": "nobody@example.org"})
    assert len(outbox(reset_app)) == before
    assert "is suppressed; no password reset sent" in caplog.text
    assert (blocked.status_code, blocked.get_data()) == (
        unknown.status_code,
        unknown.get_data(),
    )


def test_a_batch_starts_no_send_its_locks_may_not_cover(
    make_app: AppFactory,
    async_config: dict[str, t.Any],
    make_smtp_server: t.Callable[[SMTPSink], SMTPServer],
    run_flask: Run,
) -> None:
    """The locks of a job's users expire CONFIRM_JOB_TIMEOUT per user after
    they are taken, whatever timeout RQ gave the job (a job that users join
    is queued with a full batch's). So a batch starts no send with less than
    one user's time left; the rest go to the job's retry, and every mail
    goes out once. Here 1 s per user, 1.2 s per RCPT, three users: two fit."""
    sink = FlakySink(delay=1.2)
    server = make_smtp_server(sink)
    async_config.update(server.config, CONFIRM_JOB_TIMEOUT=1)
    app = make_app()
    emails = ["ada@example.org", "bob@example.org", "cy@example.org"]
    register_users(app, *emails)  # no worker yet: all three join one job
    result = run_flask("confirm-worker", "--burst")
    assert result.returncode == 0, result.stderr
    log = result.stdout + result.stderr
    assert log.count("Out of time for user") == 1, log
    assert recipients(server) == dict.fromkeys(emails, 1)


@pytest.mark.parametrize("batch", [False, True])
def test_recording_sends_is_one_update_and_no_orm_flush(
    make_app: AppFactory, redis_client: redis.Redis, database_url: str, batch: bool
) -> None:
    """The worker's hot path records a send with one Core ``UPDATE`` (an
    executemany for a batch), not through the ORM's unit of work."""
    from flask_confirm.tasks import send_batch_job
    from flask_confirm.tasks import send_confirmation_job

    app = make_app(CONFIRM_ASYNC=True, SQLALCHEMY_DATABASE_URI=database_url)
    flushes: list[int] = []
    statements: list[str] = []

    def on_flush(session: t.Any, context: t.Any, instances: t.Any) -> None:
        flushes.append(len(session.dirty))

    with app.app_context():
        db, User = models(app)["db"], models(app)["User"]
        users = [User(email=f"u{i}@example.org") for i in range(3)]
        db.session.add_all(users)
        db.session.commit()
        for user in users:
            user.confirmation_requested_at = time_ago(0)
        db.session.commit()
        ids = [user.id for user in users]
        db.session.remove()

        def on_execute(conn: t.Any, cursor: t.Any, sql: str, *args: t.Any) -> None:
            statements.append(sql.split()[0].upper())

        engine = db.engine
        sa.event.listen(sa.orm.Session, "before_flush", on_flush)
        sa.event.listen(engine, "before_cursor_execute", on_execute)
        try:
            if batch:
                assert send_batch_job(ids)["sent"] == 3
            else:
                assert send_confirmation_job(ids[0]) is not None
        finally:
            sa.event.remove(sa.orm.Session, "before_flush", on_flush)
            sa.event.remove(engine, "before_cursor_execute", on_execute)
    assert flushes == []
    assert statements.count("UPDATE") == 1
    with app.app_context():
        sent = db.session.scalars(sa.select(User).where(User.id.in_(ids))).all()
        states = sorted(user.confirmation_state for user in sent)
    assert states == (["sent"] * 3 if batch else ["requested", "requested", "sent"])
