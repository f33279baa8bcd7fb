"""ConfirmableMixin: columns, state, and time zones on every database."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import typing as t

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.exc import SADeprecationWarning
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import MappedAsDataclass

from conftest import AppFactory
from conftest import SMTPServer
from flask_confirm import Confirm
from flask_confirm import ConfirmableDataclassMixin
from flask_confirm import ConfirmableMixin
from flask_confirm import EmailInUse
from flask_confirm.models import as_utc
from flask_confirm.models import state_filters
from flask_confirm.outbox import queueing
from testapp import BASE_CONFIG
from testapp import USER_KEYS


def models(app: Flask) -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", app.extensions["test_models"])


T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("columns", "state"),
    [
        ({}, "none"),
        ({"confirmation_requested_at": at(0)}, "requested"),
        ({"confirmation_requested_at": at(0), "confirmation_sent_at": at(1)}, "sent"),
        # Asked again after the last send: a new link is owed.
        (
            {"confirmation_requested_at": at(2), "confirmation_sent_at": at(1)},
            "requested",
        ),
        (
            {"confirmation_requested_at": at(0), "confirmation_failed_at": at(1)},
            "failed",
        ),
        # Retried after a permanent failure: owed again.
        (
            {"confirmation_requested_at": at(2), "confirmation_failed_at": at(1)},
            "requested",
        ),
        (
            {"confirmation_requested_at": at(0), "email_confirmed_at": at(1)},
            "confirmed",
        ),
        ({"email_confirmed_at": at(1)}, "confirmed"),
    ],
)
def test_state_in_python_and_sql_agree(
    make_app: AppFactory, database_url: str, columns: dict[str, t.Any], state: str
) -> None:
    app = make_app(SQLALCHEMY_DATABASE_URI=database_url)
    db, User = models(app)["db"], models(app)["User"]
    with app.app_context():
        user = User(email="ada@example.org", **columns)
        db.session.add(user)
        db.session.commit()
        assert user.confirmation_state == state
        assert user.email_confirmed is (state == "confirmed")
        matching = {
            name
            for name, condition in state_filters(User).items()
            if db.session.query(User).filter(condition).count()
        }
    assert matching == {state}


def test_times_read_back_aware_in_utc(make_app: AppFactory, database_url: str) -> None:
    app = make_app(SQLALCHEMY_DATABASE_URI=database_url)
    db, User = models(app)["db"], models(app)["User"]
    tokyo = dt.timezone(dt.timedelta(hours=9))
    with app.app_context():
        db.session.add(
            User(email="ada@example.org", email_confirmed_at=at(0).astimezone(tokyo))
        )
        db.session.commit()
        db.session.expire_all()
        stored = db.session.query(User).one().email_confirmed_at
    assert stored == at(0)
    assert stored.utcoffset() == dt.timedelta(0)


def test_email_confirmed_is_read_only(app: Flask) -> None:
    with app.app_context(), pytest.raises(AttributeError):
        models(app)["User"](email="a@x.test").email_confirmed = True


def test_as_utc() -> None:
    assert as_utc(dt.datetime(2026, 1, 1)) == at(0)
    assert as_utc(at(5)) is not None and as_utc(at(5)) == at(5)


# -- primary keys -------------------------------------------------------------

LINK = re.compile(r"https://app\.example\.test(/confirm/[A-Za-z0-9_.\-/]+)")


def mailed_paths(smtp_server: SMTPServer, start: int = 0) -> dict[str, list[str]]:
    """The link paths mailed to each address, from the ``start``-th mail."""
    paths: dict[str, list[str]] = {}
    for message in smtp_server.messages[start:]:
        body = message.get_body(("plain",))
        assert body is not None
        text = t.cast("str", body.get_content())  # type: ignore[attr-defined]
        paths.setdefault(str(message["To"]), []).extend(LINK.findall(text))
    return paths


def carried_ids(app: Flask) -> list[t.Any]:
    """What the queued jobs carry, flattened: one id per user."""
    with app.app_context():
        state = app.extensions["confirm"]._get_state()
        jobs = state.queue.jobs
        ids: list[t.Any] = []
        for job in jobs:
            if not job.args:  # confirmations join it: their ids are listed apart
                ids.extend(queueing.members(state, job.id))
                continue
            (arg,) = job.args
            ids.extend(arg if isinstance(arg, list) else [arg])
    return ids


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("key", ["int", "str", "uuid"])
def test_every_key_type_goes_through_jobs_tokens_sweeps_and_bulk(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    run_flask: t.Callable[..., subprocess.CompletedProcess[str]],
    database_url: str,
    key: str,
) -> None:
    app_config.update(
        smtp_server.config,
        TEST_USER_KEY=key,
        SQLALCHEMY_DATABASE_URI=database_url,
        CONFIRM_ASYNC=True,
        CONFIRM_RETRY_INTERVALS=[0],
        CONFIRM_PASSWORD_RESET=True,
    )
    app = make_app()
    m = models(app)
    db, User, confirm = m["db"], m["User"], m["confirm"]
    client = app.test_client()
    emails = ["ada@example.org", "bob@example.org", "cy@example.org"]
    ids = []
    for email in emails:
        response = client.post("/register", data={"email": email})
        assert response.status_code == 201, response.data
        assert response.json is not None and response.json["job_id"]
        ids.append(response.json["id"])
    # Jobs carry the id as JSON would: an int, or a str (a UUID's string).
    assert carried_ids(app) == ids
    assert {type(i) for i in ids} == {int if key == "int" else str}

    # Lost jobs: the sweep finds the requests in the database again.
    with app.app_context():
        confirm.queue.empty()
        assert confirm.sweep(older_than=0) == 3
    assert sorted(carried_ids(app), key=str) == sorted(ids, key=str)
    ok(run_flask("confirm-worker", "--burst"))
    paths = mailed_paths(smtp_server)
    assert sorted(paths) == emails
    assert client.post(paths["ada@example.org"][0]).status_code == 302

    # Bulk: a re-send to the unconfirmed, one user by send_many, a retry of a
    # failed one; a password reset and an email change, each through a job.
    start = len(smtp_server.messages)
    with app.app_context():
        assert confirm.resend_all() == 2
        dan = User(email="dan@example.org")
        db.session.add(dan)
        db.session.commit()
        assert confirm.send_many([dan]) == 1
        cy = db.session.get(User, USER_KEYS[key][1](ids[2]))
        cy.confirmation_failed_at = cy.confirmation_requested_at
        db.session.commit()
        assert confirm.retry_failed() == 1
    assert client.post("/confirm/reset", data={"email": emails[0]}).status_code == 200
    response = client.post(
        "/change-email", data={"id": ids[0], "email": "ada@new.example.org"}
    )
    assert response.status_code == 200, response.data
    assert all(type(i) in (int, str) for i in carried_ids(app))
    ok(run_flask("confirm-worker", "--burst"))
    paths = mailed_paths(smtp_server, start)
    assert set(paths) == {*emails, "dan@example.org", "ada@new.example.org"}

    reset_path = next(p for p in paths[emails[0]] if "/reset/" in p)
    cancel_path = next(p for p in paths[emails[0]] if "/cancel/" in p)
    assert client.get(cancel_path).status_code == 200  # the notice's link
    form = {"password": "a new password", "password_confirm": "a new password"}
    assert client.post(reset_path, data=form).status_code == 302
    # The reset cancelled the pending change: its link and the notice's are dead.
    assert client.post(paths["ada@new.example.org"][0]).status_code == 400
    assert client.get(cancel_path).status_code == 400
    with app.app_context():
        ada = db.session.get(User, USER_KEYS[key][1](ids[0]))
        assert ada.email == emails[0] and ada.email_confirmed
        assert ada.pending_email is None
        assert ada.check_password("a new password")
        assert confirm.status()["confirmed"] == 1
        assert confirm.status()["sent"] == 3


# -- the address attribute ----------------------------------------------------


def outbox(app: Flask) -> list[t.Any]:
    with app.app_context():
        return list(app.extensions["confirm"].sender.outbox)


def path_in(message: t.Any) -> str:
    (path,) = set(LINK.findall(message.text))
    return t.cast(str, path)


def test_address_attribute_named_by_the_app(
    make_app: AppFactory, database_url: str
) -> None:
    app = make_app(
        SQLALCHEMY_DATABASE_URI=database_url,
        CONFIRM_EMAIL_ATTRIBUTE="address",
        CONFIRM_PASSWORD_RESET=True,
        CONFIRM_RESEND_ADDRESS_LIMIT=None,
    )
    m = models(app)
    db, User, confirm = m["db"], m["User"], m["confirm"]
    assert not hasattr(User, "email")
    client = app.test_client()

    # Confirmation: mailed to the address, shown on the page, confirmed.
    response = client.post("/register", data={"email": "Ada@Example.org"})
    ada_id = response.json["id"]  # type: ignore[index]
    (mail,) = outbox(app)
    assert mail.to == "Ada@Example.org"
    assert b"Ada@Example.org" in client.get(path_in(mail)).data
    assert client.post(path_in(mail)).status_code == 302

    # Resend finds users by it, without regard to case.
    client.post("/register", data={"email": "bob@example.org"})
    client.post("/confirm/resend", data={"email": "BOB@example.org"})
    assert [mail.to for mail in outbox(app)[1:]] == ["bob@example.org"] * 2

    # Email change: the address in use is found, the change made by it.
    with app.app_context():
        ada = db.session.get(User, ada_id)
        with pytest.raises(EmailInUse):
            confirm.request_email_change(ada, "Bob@Example.org")
        confirm.request_email_change(ada, "ada@new.example.org")
    notice, link = outbox(app)[-2:]
    assert (notice.to, link.to) == ("Ada@Example.org", "ada@new.example.org")
    assert client.post(path_in(link)).status_code == 302
    with app.app_context():
        ada = db.session.get(User, ada_id)
        assert (ada.address, ada.pending_email) == ("ada@new.example.org", None)
        assert ada.email_confirmed

    # Password reset: requested, shown and bound by it.
    client.post("/confirm/reset", data={"email": "ADA@new.example.org"})
    reset = outbox(app)[-1]
    assert reset.to == "ada@new.example.org"
    assert b"ada@new.example.org" in client.get(path_in(reset)).data
    form = {"password": "a new password", "password_confirm": "a new password"}
    assert client.post(path_in(reset), data=form).status_code == 302
    assert client.post(path_in(reset), data=form).status_code == 400  # used

    # The commands print it.
    runner = app.test_cli_runner()
    result = runner.invoke(args=["confirm", "send", "bob@example.org"])
    assert "Queued a confirmation for bob@example.org" in result.output
    with app.app_context():
        bob = confirm.find_user("bob@example.org")
        bob.confirmation_failed_at = bob.confirmation_requested_at
        bob.confirmation_error = "550 no such user"
        db.session.commit()
    result = runner.invoke(args=["confirm", "failed"])
    assert result.output.startswith("bob@example.org\t")


# -- dataclass models ---------------------------------------------------------


def dataclass_app() -> tuple[Flask, SQLAlchemy]:
    """An app whose models are dataclasses each (``MappedAsDataclass`` on the
    model, which works with Flask-SQLAlchemy on SQLAlchemy 2.0 and 2.1 alike;
    a ``MappedAsDataclass`` base class for ``model_class`` does not work with
    Flask-SQLAlchemy 3.1 on SQLAlchemy 2.1)."""

    class Base(DeclarativeBase):
        pass

    app = Flask(__name__)
    app.config.update(BASE_CONFIG)
    return app, SQLAlchemy(app, model_class=Base)


def test_dataclass_models_use_the_dataclass_mixin() -> None:
    # Under filterwarnings=error: SQLAlchemy 2.0's deprecation warning about
    # non-dataclass mixins would fail this test, as 2.1's error would.
    app, db = dataclass_app()

    class Member(ConfirmableDataclassMixin, db.Model):  # type: ignore[name-defined,misc]
        id: Mapped[int] = mapped_column(primary_key=True, init=False)
        email: Mapped[str] = mapped_column(String(320), unique=True)
        name: Mapped[str] = mapped_column(String(80))  # no default, after ours

    confirm = Confirm(app, db=db, user_model=Member)
    with app.app_context():
        db.create_all()
        ada = Member(email="ada@example.org", name="Ada")
        assert (ada.confirmation_state, ada.email_confirmed_at) == ("none", None)
        backfilled = Member(email="bob@example.org", name="Bob", email_confirmed_at=T0)
        db.session.add_all([ada, backfilled])
        db.session.commit()
        assert backfilled.confirmation_state == "confirmed"
        confirm.send_confirmation(ada)
        (mail,) = confirm.sender.outbox
        assert confirm.confirm_user(confirm.load_user(path_in(mail).split("/")[-1]))
        db.session.expire_all()
        assert db.session.get(Member, ada.id).confirmation_state == "confirmed"
        assert "pending_email=None" in repr(ada)


def test_the_plain_mixin_is_refused_by_dataclass_models() -> None:
    """Why the dataclass mixin exists."""
    _app, db = dataclass_app()
    with pytest.raises((InvalidRequestError, SADeprecationWarning), match="dataclass"):

        class Member(MappedAsDataclass, ConfirmableMixin, db.Model):  # type: ignore[name-defined,misc]
            id: Mapped[int] = mapped_column(primary_key=True, init=False)
            email: Mapped[str] = mapped_column(String(320), unique=True)
