"""Recording and queueing requests (:mod:`flask_confirm.outbox`):
``send_confirmation``, ``request_email_change`` and
``request_password_reset``, inline and with a queue."""

from __future__ import annotations

import logging

import pytest
import redis
import sqlalchemy as sa
from flask import Flask

from conftest import AppFactory
from conftest import DNSServer
from flask_confirm import EmailInUse
from flask_confirm import InvalidEmail
from flask_confirm import signals
from flask_confirm.outbox import queueing
from testapp import add_user
from testapp import captured
from testapp import models


def test_inline_send_records_sends_and_signals(
    make_app: AppFactory, database_url: str
) -> None:
    app = make_app(SQLALCHEMY_DATABASE_URI=database_url)
    confirm = app.extensions["confirm"]
    with app.app_context():
        user = add_user(app)
        with (
            captured(signals.confirmation_requested, app) as requested,
            captured(signals.confirmation_sent, app) as sent,
        ):
            job_id = confirm.send_confirmation(user)
        assert job_id is not None and job_id.startswith("inline-")
        (mail,) = confirm.sender.outbox
        assert mail.to == "ada@example.org"
        assert mail.sender == "no-reply@example.test"
        assert mail.subject == "Confirm your email address"
        assert user.confirmation_requested_at is not None
        assert user.confirmation_sent_at is not None
        assert not user.email_confirmed
    assert requested[0]["sender"] is app and requested[0]["user_id"] == user.id
    assert requested[0]["job_id"] == job_id
    assert sent[0]["sender"] is app and sent[0]["message_id"] == "memory-1"


def test_async_send_only_enqueues_the_user_id(
    make_app: AppFactory, redis_client: redis.Redis
) -> None:
    app = make_app(CONFIRM_ASYNC=True)
    confirm = app.extensions["confirm"]
    with app.app_context():
        user = add_user(app)
        job_id = confirm.send_confirmation(user)
        assert confirm.sender.outbox == []
        assert user.confirmation_sent_at is None
        assert user.confirmation_requested_at is not None
        (job,) = confirm.queue.get_jobs()
        members = queueing.members(confirm._get_state(), job.id)
    assert job.id == job_id
    # The id waits in the job's own list, where later confirmations join it.
    assert job.args == () and job.kwargs == {}
    assert members == [user.id]
    assert job.func_name == "flask_confirm.tasks.send_group_job"
    assert job.description == ("confirmations for the users who joined while it waited")


def test_redis_down_keeps_request_and_warns(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(CONFIRM_ASYNC=True, CONFIRM_REDIS_URL="redis://127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING, logger="flask_confirm"):
        response = app.test_client().post(
            "/register", data={"email": "ada@example.org"}
        )
    assert response.status_code == 201
    assert response.json == {"id": 1, "job_id": None}
    assert "Could not queue the confirmation for user 1" in caplog.text
    with app.app_context():
        user = models(app)["db"].session.get(models(app)["User"], 1)
        assert user.confirmation_requested_at is not None
        assert user.confirmation_sent_at is None


def test_inline_failure_is_signalled_not_raised(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # A real SMTP client against a port where nothing listens.
    app = make_app(
        CONFIRM_SENDER="smtp",
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=1,
        MAIL_SUPPRESS_SEND=False,
    )
    with app.app_context():
        user = add_user(app)
        with captured(signals.confirmation_failed, app) as failed:
            app.extensions["confirm"].send_confirmation(user)
        assert user.confirmation_sent_at is None
    (call,) = failed
    assert call["user_id"] == user.id
    assert isinstance(call["error"], ConnectionRefusedError)
    assert "Inline confirmation for user 1 failed" in caplog.text


def test_new_user_and_request_commit_together(app: Flask) -> None:
    db, User = models(app)["db"], models(app)["User"]
    with app.app_context():
        user = User(email="ada@example.org")
        db.session.add(user)
        app.extensions["confirm"].send_confirmation(user)  # commits both
        db.session.rollback()  # nothing left uncommitted to lose
        stored = db.session.get(User, user.id)
        assert stored.confirmation_requested_at is not None
        assert stored.confirmation_state == "sent"


def test_failed_commit_enqueues_nothing(
    make_app: AppFactory, redis_client: redis.Redis
) -> None:
    app = make_app(CONFIRM_ASYNC=True)
    db, User = models(app)["db"], models(app)["User"]
    confirm = app.extensions["confirm"]
    with app.app_context():
        add_user(app)
        duplicate = User(email="ada@example.org")
        db.session.add(duplicate)
        with pytest.raises(sa.exc.IntegrityError):
            confirm.send_confirmation(duplicate)
        db.session.rollback()
        assert len(confirm.queue) == 0


def test_request_email_change_refuses_bad_addresses(make_app: AppFactory) -> None:
    app = make_app()
    confirm = app.extensions["confirm"]
    with app.app_context():
        user = add_user(app, "ada@example.org")
        add_user(app, "bob@example.org")
        with pytest.raises(InvalidEmail):
            confirm.request_email_change(user, "not an address")
        with pytest.raises(ValueError, match="current address"):
            confirm.request_email_change(user, " ADA@example.org ")
        with pytest.raises(EmailInUse):
            confirm.request_email_change(user, "Bob@Example.org")
        assert user.pending_email is None
        assert confirm.sender.outbox == []
        with captured(signals.email_change_requested, app) as requested:
            job_id = confirm.request_email_change(user, "ada@new.example.org")
        assert [(c["new_email"], c["job_id"]) for c in requested] == [
            ("ada@new.example.org", job_id)
        ]
        assert [m.to for m in confirm.sender.outbox] == [
            "ada@example.org",
            "ada@new.example.org",
        ]


def test_request_password_reset_needs_the_key(make_app: AppFactory) -> None:
    app = make_app()
    with app.app_context():
        user = add_user(app)
        with pytest.raises(RuntimeError, match="CONFIRM_PASSWORD_RESET = True"):
            app.extensions["confirm"].request_password_reset(user)


def test_an_undeliverable_address_fails_at_once_when_checked(
    make_app: AppFactory, dns_server: DNSServer
) -> None:
    """With CONFIRM_CHECK_DELIVERABILITY a domain that accepts no mail is
    not queued: the confirmation fails for good, as the bounce would have
    made it, without the bounce."""
    app = make_app(CONFIRM_CHECK_DELIVERABILITY=True)
    confirm = app.extensions["confirm"]
    confirm._get_state(app).resolver = dns_server.resolver()
    with app.app_context():
        good = add_user(app, "ada@example.org")
        bad = add_user(app, "bob@nomail.example.com")
        with captured(signals.confirmation_failed, app) as failed:
            assert confirm.send_confirmation(good) is not None
            assert confirm.send_confirmation(bad) is None
        assert [m.to for m in confirm.sender.outbox] == ["ada@example.org"]
        assert bad.confirmation_state == "failed"
        assert bad.confirmation_error == (
            "undeliverable: The domain of that address does not accept mail."
        )
        assert [(f["user_id"], f["permanent"]) for f in failed] == [(bad.id, True)]
        # A change to such an address is refused before anything is recorded.
        with pytest.raises(InvalidEmail, match="does not accept mail"):
            confirm.request_email_change(good, "ada@gone.example.com")
        assert good.pending_email is None
