"""Operations on many users: counting every state, and marking the users an
app already had as confirmed."""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
import redis
from flask import Flask

from conftest import AppFactory
from flask_confirm import signals
from flask_confirm.models import utcnow
from flask_confirm.outbox.bulk import mark_confirmed
from testapp import time_ago


def models(app: Flask) -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", app.extensions["test_models"])


def states(app: Flask) -> dict[str, str]:
    User = models(app)["User"]
    return {u.email: u.confirmation_state for u in User.query.order_by(User.id)}


def add_users_in_every_state(app: Flask) -> None:
    """Three accounts from before Flask-Confirm (state ``none``), and one user
    in each other state."""
    db, User = models(app)["db"], models(app)["User"]
    confirm = app.extensions["confirm"]
    db.session.add_all(User(email=f"old{i}@example.org") for i in range(3))
    for name in ("sent", "confirmed", "requested", "failed", "changing"):
        db.session.add(User(email=f"{name}@example.org"))
    db.session.commit()
    confirm.send_confirmation(User.query.filter_by(email="sent@example.org").one())
    confirmed = User.query.filter_by(email="confirmed@example.org").one()
    confirm.send_confirmation(confirmed)
    confirm.confirm_user(confirmed)
    requested = User.query.filter_by(email="requested@example.org").one()
    requested.confirmation_requested_at = utcnow() - dt.timedelta(minutes=1)
    failed = User.query.filter_by(email="failed@example.org").one()
    failed.confirmation_requested_at = utcnow() - dt.timedelta(minutes=1)
    failed.confirmation_failed_at = utcnow()
    db.session.commit()
    # Asked for an email change, which mails a link to the new address.
    changing = User.query.filter_by(email="changing@example.org").one()
    confirm.request_email_change(changing, "changed@example.org")


def test_status_counts_users_never_asked(make_app: AppFactory) -> None:
    app = make_app()
    with app.app_context():
        add_users_in_every_state(app)
        status = app.extensions["confirm"].status()
    counts = {k: v for k, v in status.items() if k != "oldest_pending"}
    assert counts == {
        "none": 3,
        "requested": 1,
        "sent": 2,  # the confirmation and the email change link
        "failed": 1,
        "confirmed": 1,
    }
    assert sum(counts.values()) == 8  # every user, once


def test_mark_confirmed_existing_touches_only_state_none(
    make_app: AppFactory, database_url: str
) -> None:
    app = make_app(SQLALCHEMY_DATABASE_URI=database_url)
    confirm = app.extensions["confirm"]
    with app.app_context():
        add_users_in_every_state(app)
        before = states(app)
        models(app)["db"].session.rollback()
        with signals.email_confirmed.connected_to(
            lambda sender, **kw: pytest.fail("no signal for a backfill"), sender=app
        ):
            assert confirm.mark_confirmed(existing=True) == 3
        after = states(app)
        assert confirm.mark_confirmed(existing=True) == 0  # nothing left
    assert {k for k, v in after.items() if v != before[k]} == {
        "old0@example.org",
        "old1@example.org",
        "old2@example.org",
    }
    assert {after[f"old{i}@example.org"] for i in range(3)} == {"confirmed"}


@pytest.mark.parametrize("key", ["int", "str", "uuid"])
def test_mark_confirmed_named_users(make_app: AppFactory, key: str) -> None:
    app = make_app(TEST_USER_KEY=key)
    confirm = app.extensions["confirm"]
    with app.app_context():
        add_users_in_every_state(app)
        User = models(app)["User"]
        named = User.query.filter(
            User.email.in_(
                ["sent@example.org", "confirmed@example.org", "old0@example.org"]
            )
        ).all()
        assert confirm.mark_confirmed(named) == 2  # one was confirmed already
        result = states(app)
        assert confirm.mark_confirmed([]) == 0
    assert result["sent@example.org"] == "confirmed"
    assert result["old0@example.org"] == "confirmed"
    assert result["old1@example.org"] == "none"


@pytest.mark.parametrize(
    "kwargs", [{}, {"users": [], "existing": True}], ids=["neither", "both"]
)
def test_mark_confirmed_needs_users_or_existing(
    app: Flask, kwargs: dict[str, t.Any]
) -> None:
    with app.app_context(), pytest.raises(ValueError, match="existing=True"):
        app.extensions["confirm"].mark_confirmed(**kwargs)


@pytest.mark.parametrize("named", [False, True], ids=["existing", "named"])
def test_mark_confirmed_works_in_chunks(
    make_app: AppFactory, database_url: str, named: bool
) -> None:
    app = make_app(SQLALCHEMY_DATABASE_URI=database_url)
    db, User = models(app)["db"], models(app)["User"]
    with app.app_context():
        db.session.add_all(User(email=f"u{i}@example.org") for i in range(7))
        db.session.commit()
        ids = [u.id for u in User.query] if named else None
        state = app.extensions["confirm"]._get_state()
        statements: list[str] = []
        engine = db.engine

        def record(conn: t.Any, cursor: t.Any, statement: str, *args: t.Any) -> None:
            if statement.lstrip().upper().startswith("UPDATE"):
                statements.append(statement)

        from sqlalchemy import event

        event.listen(engine, "before_cursor_execute", record)
        try:
            assert mark_confirmed(state, ids, chunk_size=3) == 7
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert len(statements) == 3  # 3 + 3 + 1
        assert {u.confirmation_state for u in User.query} == {"confirmed"}


def test_status_counts_each_state(app: Flask) -> None:
    confirm = app.extensions["confirm"]
    with app.app_context():
        db, User = models(app)["db"], models(app)["User"]
        db.session.add_all(User(email=f"u{i}@example.org") for i in range(4))
        db.session.commit()
        users = User.query.order_by(User.id).all()
        confirm.send_confirmation(users[0])  # sent (memory sender, inline)
        confirm.send_confirmation(users[1])
        confirm.confirm_user(users[1])  # confirmed
        users[2].confirmation_requested_at = time_ago(60)  # requested, unsent
        db.session.commit()
        status = confirm.status()
    assert {k: status[k] for k in ("requested", "sent", "failed", "confirmed")} == {
        "requested": 1,
        "sent": 1,
        "failed": 0,
        "confirmed": 1,
    }
    assert 59 <= status["oldest_pending"].total_seconds() < 120


def test_sweep_is_exclusive(app: Flask, redis_client: redis.Redis) -> None:
    confirm = app.extensions["confirm"]
    with app.app_context():
        assert confirm.sweep(0, hold_lock=30) == 0
        assert redis_client.ttl("flask-confirm:sweep:confirm") > 20
        assert confirm.sweep(0) == 0  # another sweep holds the lock
        redis_client.delete("flask-confirm:sweep:confirm")
