"""``Confirm``: send_confirmation, links, rendering, signals."""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import datetime as dt
import logging
import typing as t

import pytest
import redis
import sqlalchemy as sa
from flask import Flask

from conftest import AppFactory
from flask_confirm import EmailInUse
from flask_confirm import InvalidEmail
from flask_confirm import signals
from flask_confirm.models import utcnow
from flask_confirm.tasks import send_confirmation_job


def models(app: Flask) -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", app.extensions["test_models"])


def add_user(app: Flask, email: str = "ada@example.org") -> t.Any:
    db, User = models(app)["db"], models(app)["User"]
    user = User(email=email)
    db.session.add(user)
    db.session.commit()
    return user


@contextlib.contextmanager
def captured(signal: t.Any, app: Flask) -> cabc.Iterator[list[dict[str, t.Any]]]:
    calls: list[dict[str, t.Any]] = []

    def receiver(sender: Flask, **kwargs: t.Any) -> None:
        # The user belongs to the job's session, which ends with the job: read
        # what the test needs while the receiver runs, as a real receiver would.
        calls.append({"sender": sender, "user_id": kwargs["user"].id, **kwargs})

    with signal.connected_to(receiver, sender=app):
        yield calls


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
    assert job.id == job_id
    assert job.args == (user.id,)
    assert job.kwargs == {}
    assert job.func_name == "flask_confirm.tasks.send_confirmation_job"
    assert job.description == f"confirmation for user {user.id!r}"


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


def test_link_is_built_on_external_url_with_path(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_EXTERNAL_URL="https://example.test/accounts/")
    with app.app_context():
        url = app.extensions["confirm"].confirm_url(add_user(app))
    assert url.startswith("https://example.test/accounts/confirm/")


def test_message_has_link_in_both_parts_and_expiry(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_TOKEN_MAX_AGE=7200, CONFIRM_SUBJECT="Welcome!")
    confirm = app.extensions["confirm"]
    with app.app_context():
        user = add_user(app)
        message = confirm.render_message(user)
        token = message.text.split("/confirm/")[1].split()[0]
        assert confirm.load_user(token).id == user.id
    assert message.subject == "Welcome!"
    assert f"/confirm/{token}" in message.html
    assert "2 hours" in message.text and "2 hours" in message.html


def test_templates_are_overridable(make_app: AppFactory, tmp_path: t.Any) -> None:
    (tmp_path / "flask_confirm" / "mail").mkdir(parents=True)
    (tmp_path / "flask_confirm" / "mail" / "confirm.txt").write_text(
        "Custom: {{ confirm_url }}"
    )
    app = make_app()
    app.jinja_loader.searchpath.insert(0, str(tmp_path))  # type: ignore[union-attr]
    with app.app_context():
        message = app.extensions["confirm"].render_message(add_user(app))
    assert message.text.startswith("Custom: https://app.example.test/confirm/")


def test_find_user_ignores_case_and_space(app: Flask) -> None:
    with app.app_context():
        user = add_user(app, "Ada@Example.org")
        confirm = app.extensions["confirm"]
        assert confirm.find_user("  ada@EXAMPLE.org ").id == user.id
        assert confirm.find_user("bob@example.org") is None


def test_racing_confirmations_confirm_once(
    make_app: AppFactory, database_url: str
) -> None:
    app = make_app(SQLALCHEMY_DATABASE_URI=database_url)
    confirm, db, User = (
        app.extensions["confirm"],
        models(app)["db"],
        models(app)["User"],
    )
    with app.app_context():
        user_id = add_user(app).id
    with captured(signals.email_confirmed, app) as confirmed, app.app_context():
        first = db.session.get(User, user_id)
        assert not first.email_confirmed  # loaded before the other request
        with app.app_context():  # another request, with its own session
            assert confirm.confirm_user(db.session.get(User, user_id)) is True
        assert confirm.confirm_user(first) is False
    assert len(confirmed) == 1


def test_address_changed_meanwhile_is_not_confirmed(
    make_app: AppFactory, database_url: str
) -> None:
    app = make_app(SQLALCHEMY_DATABASE_URI=database_url)
    confirm, db, User = (
        app.extensions["confirm"],
        models(app)["db"],
        models(app)["User"],
    )
    with app.app_context():
        user_id = add_user(app).id
    with app.app_context():
        stale = db.session.get(User, user_id)
        assert stale.email == "ada@example.org"
        with app.app_context():
            db.session.get(User, user_id).email = "new@example.org"
            db.session.commit()
        assert confirm.confirm_user(stale) is False
        assert db.session.get(User, user_id).email_confirmed_at is None


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


def test_password_setter_callable_and_signals(make_app: AppFactory) -> None:
    calls: list[tuple[t.Any, str]] = []
    app = make_app(CONFIRM_PASSWORD_RESET=True)
    state = app.extensions["confirm"]._get_state(app)

    def setter(user: t.Any, password: str) -> None:
        calls.append((user.id, password))
        user.password_hash = f"hashed:{password}"

    state.password_setter = setter
    confirm = app.extensions["confirm"]
    with app.app_context():
        user = add_user(app)
        assert confirm.request_password_reset(user) is None  # not confirmed
        user.email_confirmed_at = utcnow()
        with captured(signals.password_reset_requested, app) as requested:
            confirm.request_password_reset(user)
        assert len(requested) == 1
        with captured(signals.password_reset, app) as reset:
            assert confirm.reset_password(user, "a new password")
        assert calls == [(user.id, "a new password")]
        assert len(reset) == 1
        # The setter's hash was stored, not the model's own setter's.
        assert user.password_hash == "hashed:a new password"


def test_a_setter_that_changes_no_hash_is_an_error(make_app: AppFactory) -> None:
    """Reset links are bound to the hash attribute: a setter writing
    elsewhere would leave every link reusable, and the conditional UPDATE
    could not tell the winner of a race."""
    app = make_app(CONFIRM_PASSWORD_RESET=True)
    confirm = app.extensions["confirm"]
    confirm._get_state(app).password_setter = lambda user, password: None
    with app.app_context():
        user = add_user(app)
        user.email_confirmed_at = utcnow()
        with pytest.raises(RuntimeError, match="CONFIRM_PASSWORD_HASH_ATTRIBUTE"):
            confirm.reset_password(user, "a new password")


def test_request_password_reset_needs_the_key(make_app: AppFactory) -> None:
    app = make_app()
    with app.app_context():
        user = add_user(app)
        with pytest.raises(RuntimeError, match="CONFIRM_PASSWORD_RESET = True"):
            app.extensions["confirm"].request_password_reset(user)


# -- one address, one account ---------------------------------------------------


def post_form(app: Flask, path: str, **form: t.Any) -> t.Any:
    return app.test_client().post(path, data=form)


def register_as(app: Flask, email: str) -> t.Any:
    response = post_form(app, "/register", email=email)
    assert response.status_code == 201, response.data
    return response.json["id"]


@pytest.mark.parametrize(
    "typed",
    [
        "carol@xn--bcher-kva.example",
        "carol@XN--BCHER-KVA.EXAMPLE",
        "CAROL@BÜCHER.example",
        "Carol@bücher.EXAMPLE",
    ],
)
@pytest.mark.parametrize(
    "stored", ["carol@bücher.example", "carol@XN--BCHER-KVA.example"]
)
def test_change_to_another_spelling_of_a_used_address_is_refused(
    make_app: AppFactory, database_url: str, stored: str, typed: str
) -> None:
    """The punycode form of a user's Unicode domain, its Unicode form, and
    case variants are that user's address: a change to any of them is
    refused with 409 as the exact address is, also against a row stored
    before addresses were normalised."""
    app = make_app(SQLALCHEMY_DATABASE_URI=database_url)
    register_as(app, stored)
    ada = register_as(app, "ada@example.org")
    response = post_form(app, "/change-email", id=ada, email=typed)
    assert response.status_code == 409, response.data
    assert response.json["error"] == "email_in_use"
    with app.app_context():
        user = models(app)["db"].session.get(models(app)["User"], ada)
        assert user.pending_email is None


def test_confirming_a_change_refuses_a_case_twin(
    make_app: AppFactory, database_url: str
) -> None:
    """The victim asks to move to shared@example.org; an attacker then
    registers SHARED@example.org; the victim's link must not make a second
    account with that address: 409, and the change stays pending."""
    app = make_app(SQLALCHEMY_DATABASE_URI=database_url)
    confirm = app.extensions["confirm"]
    victim = register_as(app, "victim@example.org")
    response = post_form(app, "/change-email", id=victim, email="shared@example.org")
    assert response.status_code == 200
    with app.app_context():
        link = confirm.sender.outbox[-1]
        assert link.to == "shared@example.org"
        path = "/confirm/" + link.text.split("/confirm/")[1].split()[0]
    attacker = register_as(app, "SHARED@example.org")
    client = app.test_client()
    response = client.post(path, headers={"Accept": "application/json"})
    assert response.status_code == 409, response.data
    assert response.json["error"] == "email_in_use"
    with app.app_context():
        User = models(app)["User"]
        rows = (
            models(app)["db"]
            .session.execute(
                sa.select(User.id, User.email, User.pending_email).order_by(User.id)
            )
            .all()
        )
    assert [tuple(r) for r in rows] == [
        (victim, "victim@example.org", "shared@example.org"),
        (attacker, "SHARED@example.org", None),
    ]


def test_find_user_prefers_the_confirmed_then_the_oldest_twin(
    make_app: AppFactory, database_url: str
) -> None:
    """Twins made before the rules (or by the app): the reset form, over
    HTTP, mails the confirmed twin confirmed first; among unconfirmed ones
    resend mails the first row. On MariaDB the default case-insensitive
    collation makes the unique constraint refuse twins altogether."""
    app = make_app(SQLALCHEMY_DATABASE_URI=database_url, CONFIRM_PASSWORD_RESET=True)
    confirm = app.extensions["confirm"]
    db, User = models(app)["db"], models(app)["User"]
    now = utcnow()
    with app.app_context():
        db.session.add(User(email="twin@example.org"))
        db.session.commit()
        later = User(email="TWIN@example.org", email_confirmed_at=now)
        db.session.add(later)
        if database_url.startswith("mysql"):
            with pytest.raises(sa.exc.IntegrityError):
                db.session.commit()
            return
        db.session.commit()
        earlier = User(email="Twin@example.org")
        earlier.email_confirmed_at = now - dt.timedelta(days=1)
        db.session.add(earlier)
        db.session.add(User(email="tWin@example.org"))
        db.session.commit()
        assert confirm.find_user("twin@EXAMPLE.org").email == "Twin@example.org"
        confirm.sender.outbox.clear()
    response = post_form(app, "/confirm/reset", email="twin@example.org")
    assert response.status_code == 200
    with app.app_context():
        assert [m.to for m in confirm.sender.outbox] == ["Twin@example.org"]
        db.session.execute(sa.update(User).values(email_confirmed_at=None))
        db.session.commit()
        assert confirm.find_user("TWIN@example.org").email == "twin@example.org"
