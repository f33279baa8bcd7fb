"""ConfirmableMixin: columns, state, and time zones on every database."""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
from flask import Flask

from conftest import AppFactory
from flask_confirm.models import as_utc
from flask_confirm.models import state_filters


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
