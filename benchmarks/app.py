"""The application the benchmarks serve and work for: a minimal app using
Flask-Confirm as its README shows, plus the endpoints it is compared with.

Built by :func:`create_app` in the benchmark process (to make tables, users,
tokens and jobs), in waitress (``--call benchmarks.app:create_app``) and in
``flask --app benchmarks.app:create_app confirm-worker``; subprocesses get
their configuration as JSON in ``FLASK_CONFIRM_BENCH_CONFIG``.

Routes:

``POST /register/confirm``
    Adds the user and calls ``confirm.send_confirmation(user)``, which commits
    and enqueues (the README's registration view).
``POST /register/nomail``
    Adds the user and commits: the baseline, no mail at all.
``POST /register/sync``
    Adds the user, commits, then makes the link, renders the mail and sends it
    through Flask-Mail inside the request, on a new SMTP connection, as
    Flask-Security-Too does.
``POST /bare-confirm/<id>``
    The bare minimum of confirming: one ``UPDATE`` of the row.
``POST /hand-confirm/<token>``
    A confirm view as an app writes it by hand, at its leanest (the
    tutorial's also reads the user first): the token (``[id, email]``
    signed by itsdangerous, tokens from :func:`hand_token`) checked, one
    ``UPDATE`` of the row with that id and address, commit, flash,
    redirect. Nothing single-use, nothing bound but the address, no
    security headers.

With ``BENCH_CONFIRMED_RECEIVER`` true, an ``email_confirmed`` receiver is
connected that reads the user's address, as an app's own would.
"""

from __future__ import annotations

import json
import os
import sys
import typing as t

import sqlalchemy as sa
from flask import abort
from flask import flash
from flask import Flask
from flask import redirect
from flask import render_template_string
from flask import request
from flask_mail import Mail
from flask_mail import Message
from flask_sqlalchemy import SQLAlchemy
from itsdangerous import BadSignature
from itsdangerous import URLSafeTimedSerializer

import flask_confirm
from flask_confirm import Confirm
from flask_confirm import ConfirmableMixin
from flask_confirm import signals

if t.TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

CONFIG_ENV = "FLASK_CONFIRM_BENCH_CONFIG"
#: Config key: connect an ``email_confirmed`` receiver.
RECEIVER_KEY = "BENCH_CONFIRMED_RECEIVER"
#: Set (to anything) in a subprocess's environment, :func:`create_app` says on
#: standard error where ``flask_confirm`` was imported from, so that a
#: benchmark comparing source trees can check its worker runs the right one.
SHOW_IMPORT_ENV = "FLASK_CONFIRM_BENCH_SHOW_IMPORT"
IMPORTED_FROM = "flask_confirm imported from"
TABLE = "bench_user"

BASE_CONFIG: dict[str, t.Any] = {
    "SECRET_KEY": "benchmark-secret-key-that-is-long-enough-0123456789",
    "CONFIRM_EXTERNAL_URL": "https://app.example.test",
    "CONFIRM_SENDER": "smtp",
    "CONFIRM_MAIL_FROM": "Example <no-reply@example.test>",
    "CONFIRM_ASYNC": True,
    "CONFIRM_DASHBOARD_URL": None,
    "MAIL_SERVER": "127.0.0.1",
    "MAIL_PORT": 25,
    "MAIL_SUPPRESS_SEND": False,
    "SQLALCHEMY_DATABASE_URI": "sqlite://",
}

SYNC_TEXT = """Hello,

Please confirm your email address by opening this link:

{{ confirm_url }}

The link is valid for 24 hours.
"""

SYNC_HTML = """<p>Hello,</p>
<p>Please confirm your email address:
<a href="{{ confirm_url }}">confirm</a>.</p>
<p>The link is valid for 24 hours.</p>
"""


def create_app(config: t.Mapping[str, t.Any] | None = None) -> Flask:
    if os.environ.get(SHOW_IMPORT_ENV):
        where = os.path.realpath(flask_confirm.__file__)
        print(f"{IMPORTED_FROM} {where}", file=sys.stderr, flush=True)
    app = Flask(__name__)
    app.config.update(BASE_CONFIG)
    app.config.update(json.loads(os.environ.get(CONFIG_ENV, "{}")))
    if config:
        app.config.update(config)

    db = SQLAlchemy(app)
    mail = Mail(app)

    class User(ConfirmableMixin, db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = TABLE
        id = db.Column(db.Integer, primary_key=True)
        email = db.Column(db.String(320), unique=True, nullable=False)

    confirm = Confirm(app, db=db, user_model=User)
    serializer = URLSafeTimedSerializer(
        t.cast("str", app.secret_key), salt="confirm-email"
    )
    app.extensions["bench"] = {
        "db": db,
        "User": User,
        "confirm": confirm,
        "serializer": serializer,
    }
    if app.config.get(RECEIVER_KEY):

        @signals.email_confirmed.connect_via(app)
        def confirmed(sender: Flask, user: t.Any, **extra: t.Any) -> None:
            app.extensions["bench"]["last_confirmed"] = user.email

    def new_user() -> t.Any:
        email = request.form.get("email") or abort(400)
        user = User(email=email)
        db.session.add(user)
        return user

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.post("/register/confirm")
    def register_confirm() -> ResponseReturnValue:
        user = new_user()
        confirm.send_confirmation(user)  # commits, then enqueues
        return "Check your inbox.", 201

    @app.post("/register/nomail")
    def register_nomail() -> ResponseReturnValue:
        new_user()
        db.session.commit()
        return "Check your inbox.", 201

    @app.post("/register/sync")
    def register_sync() -> ResponseReturnValue:
        user = new_user()
        db.session.commit()
        token = serializer.dumps([user.id, user.email])
        confirm_url = f"{app.config['CONFIRM_EXTERNAL_URL']}/confirm/{token}"
        mail.send(
            Message(
                subject="Confirm your email address",
                recipients=[user.email],
                body=render_template_string(SYNC_TEXT, confirm_url=confirm_url),
                html=render_template_string(SYNC_HTML, confirm_url=confirm_url),
                sender=app.config["CONFIRM_MAIL_FROM"],
            )
        )
        return "Check your inbox.", 201

    @app.post("/hand-confirm/<token>")
    def hand_confirm(token: str) -> ResponseReturnValue:
        try:
            user_id, email = serializer.loads(token, max_age=86400)
        except BadSignature:
            abort(400)
        db.session.execute(
            sa.text(
                f"UPDATE {TABLE} SET email_confirmed_at = now()"
                " WHERE id = :id AND email = :email"
            ),
            {"id": user_id, "email": email},
        )
        db.session.commit()
        flash("Your email address is confirmed. Thank you!", "success")
        return redirect("/")

    @app.post("/bare-confirm/<int:user_id>")
    def bare_confirm(user_id: int) -> ResponseReturnValue:
        db.session.execute(
            sa.text(f"UPDATE {TABLE} SET email_confirmed_at = now() WHERE id = :id"),
            {"id": user_id},
        )
        db.session.commit()
        return redirect("/")

    return app


def parts(app: Flask) -> tuple[SQLAlchemy, t.Any, Confirm]:
    """The ``db``, ``User`` and ``confirm`` of an app made by :func:`create_app`."""
    bench = app.extensions["bench"]
    return bench["db"], bench["User"], bench["confirm"]


def hand_token(app: Flask, user: t.Any) -> str:
    """A token for ``POST /hand-confirm/<token>``: ``[id, email]``, signed."""
    return str(app.extensions["bench"]["serializer"].dumps([user.id, user.email]))


def reset_tables(app: Flask) -> None:
    """Create the table if needed and empty it."""
    db, _, _ = parts(app)
    with app.app_context():
        db.create_all()
        db.session.execute(sa.text(f"TRUNCATE {TABLE} RESTART IDENTITY"))
        db.session.commit()


def insert_users(app: Flask, count: int, prefix: str, *, requested: bool) -> None:
    """Insert ``count`` users in one statement, with a confirmation requested
    an hour ago if ``requested``, else never requested."""
    db, _, _ = parts(app)
    requested_at = "now() - interval '1 hour'" if requested else "NULL"
    with app.app_context():
        db.session.execute(
            sa.text(
                f"INSERT INTO {TABLE} (email, confirmation_requested_at)"
                f" SELECT :prefix || g || '@example.test', {requested_at}"
                " FROM generate_series(1, :count) AS g"
            ),
            {"prefix": prefix, "count": count},
        )
        db.session.commit()


def count_sent(app: Flask) -> int:
    db, _, _ = parts(app)
    with app.app_context():
        sent = db.session.scalar(
            sa.text(
                f"SELECT count(*) FROM {TABLE} WHERE confirmation_sent_at IS NOT NULL"
            )
        )
        db.session.rollback()
        return int(sent or 0)


def close(app: Flask) -> None:
    """Dispose of the app's database engine and Redis connections."""
    db, _, confirm = parts(app)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
        state = confirm._get_state(app)
        state.redis.close()
