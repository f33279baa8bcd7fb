"""The user reads and conditional UPDATEs (:mod:`flask_confirm.store`):
``find_user``, confirming once, password resets, and one address per
account."""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from conftest import AppFactory
from flask_confirm import Confirm
from flask_confirm import ConfirmableMixin
from flask_confirm import signals
from flask_confirm import store
from flask_confirm.models import utcnow
from testapp import add_user
from testapp import captured
from testapp import models


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


# -- confirm_if: the confirm POST's one UPDATE -------------------------------------


@pytest.mark.parametrize("user_id", ["user-1", 10**30, -(2**70)])
def test_confirm_if_takes_an_id_the_key_cannot_hold_for_no_user(
    make_app: AppFactory, database_url: str, user_id: t.Any
) -> None:
    """A token of another app sharing the key, say: nothing is confirmed,
    nothing raised, and the session still works (PostgreSQL aborts the
    transaction of a failed statement: it is rolled back)."""
    app = make_app(SQLALCHEMY_DATABASE_URI=database_url)
    db, User = models(app)["db"], models(app)["User"]
    with app.app_context():
        user = add_user(app)
        state = app.extensions["confirm"]._get_state(app)
        assert store.confirm_if(state, user_id, lambda row: row.email) is None
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1
        assert store.confirm_if(state, user.id, lambda row: None) is None
        assert db.session.get(User, user.id).email_confirmed_at is None
        assert store.confirm_if(state, user.id, lambda row: row.email) == user.email
        assert db.session.get(User, user.id).email_confirmed_at is not None


def _inheriting_app(redis_url: str) -> tuple[Flask, t.Any, t.Any, t.Any]:
    """An app whose user model is a subclass in single-table inheritance:
    its rows are those of the table with its discriminator."""
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY="a secret key for this test only",
        CONFIRM_EXTERNAL_URL="https://app.example.test",
        CONFIRM_SENDER="memory",
        CONFIRM_REDIS_URL=redis_url,
        SQLALCHEMY_DATABASE_URI="sqlite://",
    )
    db = SQLAlchemy(app)

    class Account(ConfirmableMixin, db.Model):  # type: ignore[name-defined,misc]
        id = db.Column(db.Integer, primary_key=True)
        email = db.Column(db.String(320), unique=True, nullable=False)
        kind = db.Column(db.String(20), nullable=False)
        __mapper_args__ = {"polymorphic_on": kind, "polymorphic_identity": "account"}

    class Member(Account):
        __mapper_args__ = {"polymorphic_identity": "member"}

    confirm = Confirm(app, db=db, user_model=Member)
    with app.app_context():
        db.create_all()
    return app, db, Account, confirm


def test_confirm_if_updates_an_inheriting_model_through_the_orm(
    redis_url: str,
) -> None:
    """The one-statement UPDATE of the table is for a model of its own
    table; a subclass's goes through the ORM, which adds the discriminator:
    a link naming a row of another class of the table confirms nothing."""
    app, db, Account, confirm = _inheriting_app(redis_url)
    Member = confirm._get_state(app).user_model
    with app.app_context():
        member = Member(email="ada@example.org")
        other = Account(email="grace@example.org")
        db.session.add_all([member, other])
        db.session.commit()
        member_path = f"/confirm/{confirm.make_token(member)}"
        serializer = confirm._get_state(app).serializer
        other_path = f"/confirm/{serializer.dumps(other.id, other.email)}"
        member_id, other_id = member.id, other.id
    client = app.test_client()
    assert client.post(other_path).status_code == 400
    assert client.post(member_path).status_code == 302
    with app.app_context():
        rows = db.session.execute(
            sa.select(Account.id, Account.email_confirmed_at).order_by(Account.id)
        ).all()
    assert [(i, at is not None) for i, at in rows] == [
        (member_id, True),
        (other_id, False),
    ]
