"""The suppression list (:mod:`flask_confirm.suppression`) through the
facade, on SQLite, PostgreSQL and MariaDB: one row per address whatever its
spelling, the upsert, the table in the app's metadata, and what clients see
(nothing)."""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from freezegun import freeze_time

from conftest import AppFactory
from flask_confirm import ConfigError
from flask_confirm import Confirm
from flask_confirm import ConfirmableMixin
from flask_confirm.models import REASONS
from flask_confirm.state import get_state
from flask_confirm.suppression import reasons
from flask_confirm.suppression import suppress
from flask_confirm.suppression import suppressed
from testapp import BASE_CONFIG
from testapp import outbox
from testapp import register
from testapp import resend
from testapp import user_state

UTC = dt.timezone.utc


def rows(app: Flask) -> list[t.Any]:
    with app.app_context():
        return suppressed(get_state())


def test_suppress_then_unsuppress(db_app: Flask) -> None:
    confirm = db_app.extensions["confirm"]
    with db_app.app_context():
        assert not confirm.is_suppressed("ada@example.org")
        with freeze_time("2030-01-01 12:00:00"):
            confirm.suppress(
                " Ada@Example.ORG ",
                "hard_bounce",
                source="ses",
                diagnostic="550 5.1.1 <ada@example.org>: no such user (ada),"
                " forwarded from bob@example.com; see https://help.example.com/x",
            )
        for spelling in ("ada@example.org", "ADA@EXAMPLE.ORG", "  ada@example.org"):
            assert confirm.is_suppressed(spelling), spelling
        assert not confirm.is_suppressed("ada2@example.org")
        assert not confirm.is_suppressed("da@example.org")

    (row,) = rows(db_app)
    assert (row.address, row.reason, row.source) == (
        "ada@example.org",
        "hard_bounce",
        "ses",
    )
    # The provider's text, naming nobody: not the address, not another, no link.
    assert row.diagnostic is not None and "550 5.1.1" in row.diagnostic
    for secret in ("ada", "bob", "example.com", "https://"):
        assert secret not in row.diagnostic, row.diagnostic
    first = dt.datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert row.first_seen == row.last_seen == first
    assert row.first_seen.utcoffset() == dt.timedelta(0)

    # Again, later: one row, its first sighting kept, the latest reason.
    with db_app.app_context(), freeze_time("2030-01-02 08:30:00.250000"):
        confirm.suppress("ada@example.org", "complaint", source="api")
    (row,) = rows(db_app)
    assert (row.reason, row.source, row.diagnostic) == ("complaint", "api", None)
    assert row.first_seen == first
    assert row.last_seen == dt.datetime(2030, 1, 2, 8, 30, 0, 250000, tzinfo=UTC)

    with db_app.app_context():
        assert confirm.unsuppress("ADA@example.org") is True
        assert confirm.unsuppress("ada@example.org") is False
        assert not confirm.is_suppressed("ada@example.org")
    assert rows(db_app) == []


def test_every_spelling_is_one_row(db_app: Flask) -> None:
    """The punycode and the Unicode domain, any case: one address, one row.
    Another address that a database collation might fold onto it (an accent
    dropped) is another row, MariaDB included."""
    confirm = db_app.extensions["confirm"]
    with db_app.app_context():
        confirm.suppress("carol@XN--BCHER-KVA.example.org", "manual")
        confirm.suppress("Carol@Bücher.example.org", "smtp_rejected", source="smtp")
        assert confirm.is_suppressed("carol@xn--bcher-kva.example.org")
        assert confirm.is_suppressed("CAROL@BÜCHER.EXAMPLE.ORG")
        assert not confirm.is_suppressed("carol@bucher.example.org")
        confirm.suppress("carol@bucher.example.org", "manual")
    assert sorted((r.address, r.reason) for r in rows(db_app)) == [
        ("carol@bucher.example.org", "manual"),
        ("carol@bücher.example.org", "smtp_rejected"),
    ]


def test_what_the_worker_looks_up_holds_until_it_expires(db_app: Flask) -> None:
    """The worker's one lookup per job (its statement built once, the time
    a parameter) finds every spelling of a suppressed address, and a soft
    bounce's rest no longer once it is over."""
    with db_app.app_context():
        state = get_state()
        suppress(state, "Ada@Example.org", "complaint", source="test")
        suppress(
            state,
            "bob@example.org",
            "soft_bounce",
            source="test",
            expires_in=dt.timedelta(days=7),
        )
        asked = [" ADA@example.ORG", "bob@example.org", "cy@example.org"]
        assert reasons(state, asked) == {
            "ada@example.org": "complaint",
            "bob@example.org": "soft_bounce",
        }
        later = dt.datetime.now(UTC) + dt.timedelta(days=7, minutes=1)
        with freeze_time(later):
            assert reasons(state, asked) == {"ada@example.org": "complaint"}
        assert reasons(state, []) == {}


def test_reason_and_source_are_checked(app: Flask) -> None:
    confirm = app.extensions["confirm"]
    with app.app_context():
        with pytest.raises(ValueError) as info:
            confirm.suppress("ada@example.org", "bounced")
        for reason in REASONS:
            assert repr(reason) in str(info.value)
        with pytest.raises(ValueError, match="source"):
            confirm.suppress("ada@example.org", "manual", source="")
        with pytest.raises(ValueError, match="source"):
            confirm.suppress("ada@example.org", "manual", source="x" * 33)
        with pytest.raises(ValueError, match="empty"):
            confirm.suppress("  ", "manual")
        assert not confirm.is_suppressed("ada@example.org")
    assert rows(app) == []


def test_the_table_is_in_the_apps_metadata(make_app: AppFactory) -> None:
    """``db.create_all()`` creates it (the fixture's app has just done so),
    under the configured name."""
    app = make_app(CONFIRM_SUPPRESSION_TABLE="app_suppressions")
    db = app.extensions["test_models"]["db"]
    with app.app_context():
        assert "app_suppressions" in db.metadata.tables
        assert "confirm_suppressions" not in db.metadata.tables
        assert "app_suppressions" in sa.inspect(db.engine).get_table_names()
        app.extensions["confirm"].suppress("ada@example.org", "manual")
    assert [r.address for r in rows(app)] == ["ada@example.org"]


def shared_db_apps(**config: t.Any) -> tuple[SQLAlchemy, list[Flask]]:
    db = SQLAlchemy()

    class Member(ConfirmableMixin, db.Model):
        id = sa.Column(sa.Integer, primary_key=True)
        email = sa.Column(sa.String(320), nullable=False)

    apps = []
    for _ in range(2):
        app = Flask(__name__)
        app.config.update(BASE_CONFIG, CONFIRM_DASHBOARD_URL=None, **config)
        db.init_app(app)
        Confirm(app, db=db, user_model=Member)
        apps.append(app)
    return db, apps


def test_apps_sharing_one_db_share_one_table() -> None:
    db, (first, second) = shared_db_apps()
    assert get_state(first).suppressions is get_state(second).suppressions
    assert get_state(first).suppressions is db.metadata.tables["confirm_suppressions"]


def test_the_table_is_on_the_user_models_bind(tmp_path: t.Any) -> None:
    """A user model on a bind of its own: the list is in that bind's
    metadata and database, and every statement goes there."""
    db = SQLAlchemy()

    class Member(ConfirmableMixin, db.Model):
        __bind_key__ = "accounts"
        id = sa.Column(sa.Integer, primary_key=True)
        email = sa.Column(sa.String(320), nullable=False)

    app = Flask(__name__)
    accounts = f"sqlite:///{tmp_path / 'accounts.sqlite'}"
    app.config.update(
        BASE_CONFIG,
        CONFIRM_DASHBOARD_URL=None,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'main.sqlite'}",
        SQLALCHEMY_BINDS={"accounts": accounts},
    )
    db.init_app(app)
    confirm = Confirm(app, db=db, user_model=Member)
    with app.app_context():
        assert "confirm_suppressions" in db.metadatas["accounts"].tables
        assert "confirm_suppressions" not in db.metadata.tables
        db.create_all()
        confirm.suppress("ada@example.org", "manual")
        confirm.suppress("ada@example.org", "complaint")
        assert confirm.is_suppressed("ada@example.org")
        assert [r.reason for r in suppressed(get_state())] == ["complaint"]
        assert confirm.unsuppress("ada@example.org")
        confirm.suppress("bob@example.org", "manual")
        db.session.remove()
        engine = db.engines["accounts"]
        assert "confirm_suppressions" not in sa.inspect(db.engine).get_table_names()
    with sa.create_engine(accounts).connect() as conn:
        found = conn.execute(sa.text("SELECT address FROM confirm_suppressions"))
        assert found.scalars().all() == ["bob@example.org"]
    engine.dispose()


def test_a_table_of_the_apps_own_by_that_name_is_refused() -> None:
    db = SQLAlchemy()
    sa.Table("confirm_suppressions", db.metadata, sa.Column("id", sa.Integer))

    class Member(ConfirmableMixin, db.Model):
        id = sa.Column(sa.Integer, primary_key=True)
        email = sa.Column(sa.String(320), nullable=False)

    app = Flask(__name__)
    app.config.update(BASE_CONFIG, CONFIRM_DASHBOARD_URL=None)
    db.init_app(app)
    with pytest.raises(ConfigError, match="CONFIRM_SUPPRESSION_TABLE"):
        Confirm(app, db=db, user_model=Member)


@pytest.mark.parametrize("value", ["", None, 3])
def test_the_table_name_must_be_a_name(make_app: AppFactory, value: t.Any) -> None:
    with pytest.raises(ConfigError, match="CONFIRM_SUPPRESSION_TABLE"):
        make_app(CONFIRM_SUPPRESSION_TABLE=value)


def answer(response: t.Any) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, response.headers.to_wsgi_list(), response.get_data()


def test_resend_answers_a_suppressed_address_byte_for_byte_alike(
    db_app: Flask, db_client: FlaskClient
) -> None:
    """The visitor cannot tell a suppressed address from any other: the
    answer is the same bytes, and nothing is mailed to it."""
    ada = register(db_client, "ada@example.org")
    grace = register(db_client, "grace@example.org")
    assert len(outbox(db_app)) == 2
    with db_app.app_context():
        db_app.extensions["confirm"].suppress("grace@example.org", "hard_bounce")

    visitor = db_app.test_client()
    unknown = resend(visitor, "nobody@example.org")
    owed = resend(visitor, "ada@example.org")
    assert [m.to for m in outbox(db_app)] == [
        "ada@example.org",
        "grace@example.org",
        "ada@example.org",
    ]
    blocked = resend(visitor, "grace@example.org")
    assert len(outbox(db_app)) == 3
    assert answer(blocked) == answer(owed) == answer(unknown)
    assert user_state(db_app, grace) == ("failed", "suppressed: hard_bounce")
    assert user_state(db_app, ada)[0] == "sent"
