"""Adding the mixin to an existing table with Flask-Migrate: the migration
that ``flask db migrate`` writes runs as written, on a table that has rows,
and creates the suppression list's table beside it.

Each step is the real ``flask db ...`` command, run in a subprocess on a small
app module written to the test's own folder: first the app as it was (a user
table without Flask-Confirm, which gets rows), then the same app with the
mixin and the extension.
"""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa

#: The adopting app, as a module of its own. ``LEGACY_WITH_CONFIRM=1`` is the
#: same app after adding Flask-Confirm to its user model.
APP_MODULE = """
import os

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()
migrate = Migrate()

if os.environ.get("LEGACY_WITH_CONFIRM") == "1":
    from flask_confirm import Confirm
    from flask_confirm import ConfirmableMixin

    bases = (ConfirmableMixin, db.Model)
else:
    Confirm = None
    bases = (db.Model,)


class User(*bases):
    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(320), unique=True, nullable=False)
    password_hash = db.Column(db.String(256))
    created_at = db.Column(db.DateTime, nullable=False)


def create_app():
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY="a-secret-key-long-enough-for-the-tests",
        SQLALCHEMY_DATABASE_URI=os.environ["LEGACY_DATABASE_URL"],
        CONFIRM_EXTERNAL_URL="https://legacy.example.test",
        CONFIRM_SENDER="memory",
        CONFIRM_DASHBOARD_URL=None,
    )
    db.init_app(app)
    migrate.init_app(app, db)
    if Confirm is not None:
        Confirm(app, db=db, user_model=User)
    return app
"""

#: Run with the mixin, after the upgrade: what the existing rows look like
#: to Flask-Confirm, and that one of them can be sent a link and confirmed.
CHECK_ROWS = """
import json
from legacy_app import create_app, db, User

app = create_app()
with app.app_context():
    confirm = app.extensions["confirm"]
    users = db.session.scalars(db.select(User).order_by(User.id)).all()
    states = [u.confirmation_state for u in users]
    first = confirm.find_user(users[0].email.upper())
    confirm.send_confirmation(first)
    (mail,) = confirm.sender.outbox
    user = confirm.load_user(mail.text.split("/confirm/")[1].split()[0])
    confirm.confirm_user(user)
    db.session.expire_all()
    user = db.session.get(User, first.id)
    # The migrated suppression table: every spelling one row, and a
    # suppressed address fails unmailed.
    confirm.suppress("Grace@Example.org", "manual")
    confirm.suppress("grace@example.org", "hard_bounce", source="ses")
    grace = confirm.find_user("grace@example.org")
    confirm.send_confirmation(grace)
    db.session.expire_all()
    grace = db.session.get(User, grace.id)
    print(json.dumps({
        "states": states,
        "to": mail.to,
        "after": user.confirmation_state,
        "offset": user.email_confirmed_at.utcoffset().total_seconds(),
        "suppressed": confirm.is_suppressed("GRACE@example.org"),
        "grace": [grace.confirmation_state, grace.confirmation_error],
        "mails": len(confirm.sender.outbox),
        "rows": db.session.execute(
            db.text("SELECT address, reason FROM confirm_suppressions")
        ).all().__repr__(),
    }))
"""

ROWS = [
    {
        "email": "ada@example.org",
        "password_hash": "x",
        "created_at": dt.datetime(2020, 1, 1),
    },
    {
        "email": "grace@example.org",
        "password_hash": "y",
        "created_at": dt.datetime(2021, 6, 1),
    },
    {
        "email": "linus@example.org",
        "password_hash": None,
        "created_at": dt.datetime(2022, 3, 4),
    },
]

#: The suppression list's table, created by the same migration.
SUPPRESSIONS = "confirm_suppressions"

MIXIN_COLUMNS = {
    "email_confirmed_at",
    "confirmation_requested_at",
    "confirmation_sent_at",
    "confirmation_failed_at",
    "confirmation_error",
    "pending_email",
}


class LegacyApp:
    """The adopting app's folder, database and ``flask`` command."""

    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder, self.database_url = folder, database_url
        (folder / "legacy_app.py").write_text(textwrap.dedent(APP_MODULE))

    def run(
        self, *args: str, with_confirm: bool, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PYTHONPATH": str(self.folder),
            "LEGACY_DATABASE_URL": self.database_url,
            "LEGACY_WITH_CONFIRM": "1" if with_confirm else "0",
        }
        env.pop("FLASK_APP", None)
        result = subprocess.run(
            args,
            env=env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert result.returncode == 0, (
                f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def flask(
        self, *args: str, with_confirm: bool, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            sys.executable,
            "-m",
            "flask",
            "--app",
            "legacy_app",
            *args,
            with_confirm=with_confirm,
            check=check,
        )

    def script(self, message: str) -> str:
        (path,) = (self.folder / "migrations" / "versions").glob(f"*_{message}.py")
        return path.read_text("utf-8")


@pytest.fixture()
def legacy_database(database_url: str) -> cabc.Iterator[sa.Engine]:
    """The test's database, left as it was found: the run's PostgreSQL and
    MariaDB databases are shared by every test of the run."""
    engine = sa.create_engine(database_url)
    yield engine
    with engine.begin() as conn:
        for table in ("alembic_version", "user", SUPPRESSIONS):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {quoted(engine, table)}"))
    engine.dispose()


def quoted(engine: sa.Engine, name: str) -> str:
    return engine.dialect.identifier_preparer.quote_identifier(name)


def columns(engine: sa.Engine, table: str = "user") -> dict[str, t.Any]:
    return {c["name"]: c for c in sa.inspect(engine).get_columns(table)}


def unique_keys(engine: sa.Engine) -> list[t.Any]:
    """The suppression table's unique keys, as constraints or, where the
    database reports them so (MariaDB), unique indexes."""
    inspector = sa.inspect(engine)
    found = inspector.get_unique_constraints(SUPPRESSIONS)
    if not found:
        found = [i for i in inspector.get_indexes(SUPPRESSIONS) if i["unique"]]
    return found


def test_autogenerated_migration_runs_unmodified(
    tmp_path: Path, legacy_database: sa.Engine
) -> None:
    engine = legacy_database
    app = LegacyApp(tmp_path, engine.url.render_as_string(hide_password=False))

    # The app as it was: its users table, with rows.
    app.flask("db", "init", with_confirm=False)
    app.flask("db", "migrate", "-m", "users", with_confirm=False)
    app.flask("db", "upgrade", with_confirm=False)
    user = sa.table("user", *(sa.column(name) for name in ROWS[0]))
    with engine.begin() as conn:
        conn.execute(sa.insert(user), ROWS)
    assert not MIXIN_COLUMNS & set(columns(engine))

    # Flask-Confirm added: the migration is generated, and run as generated.
    app.flask("db", "migrate", "-m", "confirm", with_confirm=True)
    script = app.script("confirm")
    assert "flask_confirm" not in script, script
    assert script.count("op.add_column(") == len(MIXIN_COLUMNS), script
    assert script.count("op.create_table(") == 1, script
    assert f"op.create_table('{SUPPRESSIONS}'" in script, script
    assert "sa.UniqueConstraint('address')" in script, script
    assert f"op.drop_table('{SUPPRESSIONS}')" in script, script
    # Sub-second times on MySQL and MariaDB, through the dialect's own type,
    # which Alembic imports.
    assert "from sqlalchemy.dialects import mysql" in script, script
    app.flask("db", "upgrade", with_confirm=True)
    added = columns(engine)
    assert set(added) >= MIXIN_COLUMNS
    assert all(added[name]["nullable"] for name in MIXIN_COLUMNS)
    if engine.dialect.name in ("mysql", "mariadb"):
        assert added["confirmation_requested_at"]["type"].fsp == 6
    suppressions = columns(engine, SUPPRESSIONS)
    assert set(suppressions) == {
        "id",
        "address",
        "reason",
        "source",
        "diagnostic",
        "first_seen",
        "last_seen",
        "expires_at",
    }
    assert suppressions["expires_at"]["nullable"]
    assert suppressions["address"]["type"].length == 320
    assert [c["column_names"] for c in unique_keys(engine)] == [["address"]]
    if engine.dialect.name in ("mysql", "mariadb"):
        # Compared byte for byte: no two addresses folded onto one row.
        assert suppressions["address"]["type"].collation == "utf8mb4_bin"
        assert suppressions["last_seen"]["type"].fsp == 6
    check = app.flask("db", "check", with_confirm=True)
    assert "No new upgrade operations detected" in check.stdout + check.stderr

    # The rows that were there are users like any other.
    result = app.run(sys.executable, "-c", CHECK_ROWS, with_confirm=True)
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "states": ["none", "none", "none"],
        "to": "ada@example.org",
        "after": "confirmed",
        "offset": 0,
        "suppressed": True,
        "grace": ["failed", "suppressed: hard_bounce"],
        "mails": 1,
        "rows": "[('grace@example.org', 'hard_bounce')]",
    }

    # And back: the columns and the table go, the rows stay.
    app.flask("db", "downgrade", with_confirm=True)
    assert not MIXIN_COLUMNS & set(columns(engine))
    assert SUPPRESSIONS not in sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        emails = conn.scalars(sa.select(user.c.email).order_by(user.c.email)).all()
    assert emails == [row["email"] for row in ROWS]
    app.flask("db", "upgrade", with_confirm=True)
    assert set(columns(engine)) >= MIXIN_COLUMNS
    assert SUPPRESSIONS in sa.inspect(engine).get_table_names()
