"""The tutorial's application rebuilt on Flask-Confirm.

A home page with a registration form and a table of the registered users,
showing when each was mailed a confirmation link and when they confirmed it.
Registering commits the user and calls ``confirm.send_confirmation(user)``;
an RQ worker (``flask --app example.app:create_app confirm-worker``) renders
and sends the mail. The RQ dashboard is mounted at ``/rq`` behind HTTP basic
auth.

Everything is configured from the environment, with defaults that work on a
developer's machine:

``SECRET_KEY``
    Signs sessions and confirmation links. The web app and the worker must
    share it. Default: a fixed development key.
``DATABASE_URL``
    SQLAlchemy URL. Default: ``example.sqlite`` in the instance folder.
``REDIS_URL``
    Default ``redis://localhost:6379/0``. If no Redis answers there when the
    app starts, mails are sent inline by the web process instead.
``CONFIRM_EXTERNAL_URL``
    The base of the links in the mails. Default ``http://127.0.0.1:5000``.
``CONFIRM_SENDER``
    ``console`` (print the mail) by default, ``smtp`` when ``MAIL_SERVER`` is
    set (with ``MAIL_PORT``, ``MAIL_USE_TLS``, ``MAIL_USE_SSL``,
    ``MAIL_USERNAME``, ``MAIL_PASSWORD``), or ``ses`` (AWS credentials and
    region from boto3's usual chain, or ``CONFIRM_SES_REGION``).
``CONFIRM_MAIL_FROM``
    Default ``Example <no-reply@example.com>``.
``DASHBOARD_USER`` / ``DASHBOARD_PASSWORD``
    The dashboard's credentials. Default ``admin`` / ``admin``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import sys
import typing as t
from urllib.parse import urlsplit

import click
import redis
from flask import abort
from flask import current_app
from flask import flash
from flask import Flask
from flask import redirect
from flask import render_template
from flask import request
from flask import Response
from flask import url_for
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.exc import IntegrityError

from flask_confirm import Confirm
from flask_confirm import ConfirmableMixin

if t.TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

DEV_SECRET_KEY = "dev-only-example-secret-key-do-not-use-in-production"
DEFAULT_DASHBOARD_USER = "admin"
DEFAULT_DASHBOARD_PASSWORD = "admin"
MAX_EMAIL_LENGTH = 254

db = SQLAlchemy()
confirm = Confirm()


class User(ConfirmableMixin, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "users"

    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(320), unique=True, nullable=False)


def create_app(config: t.Mapping[str, t.Any] | None = None) -> Flask:
    """Build the application.

    :param config: overrides applied after the environment, for tests.
    """
    app = Flask(__name__)
    app.config.update(config_from_env(os.environ))
    if config is not None:
        app.config.update(config)

    redis_url = app.config["CONFIRM_REDIS_URL"]
    if not redis_answers(redis_url):
        # Without Redis nothing could be queued: send from the web process so
        # that the example still works, and leave out the dashboard, which
        # would only show connection errors.
        print(
            f" * No Redis answers at {_safe_url(redis_url)}: confirmation mails"
            " are sent inline by the web process and the RQ dashboard is off."
            " Start Redis (or set REDIS_URL) to use the worker.",
            file=sys.stderr,
            flush=True,
        )
        app.config["CONFIRM_ASYNC"] = False
        app.config["CONFIRM_DASHBOARD_URL"] = None

    db.init_app(app)
    confirm.init_app(app, db=db, user_model=User)

    app.add_url_rule("/", "home", home, methods=["GET", "POST"])
    app.add_template_filter(format_time, "time")

    @app.cli.command("init-db")
    def init_db_command() -> None:
        """Create the tables that do not exist yet."""
        db.create_all()
        url = db.engine.url.render_as_string(hide_password=True)
        click.echo(f"Tables ready in {url}.")

    return app


def config_from_env(env: t.Mapping[str, str]) -> dict[str, t.Any]:
    """The application's configuration, read from ``env``."""
    config: dict[str, t.Any] = {
        "SECRET_KEY": env.get("SECRET_KEY") or DEV_SECRET_KEY,
        "SQLALCHEMY_DATABASE_URI": _database_url(env.get("DATABASE_URL")),
        "CONFIRM_REDIS_URL": env.get("REDIS_URL") or "redis://localhost:6379/0",
        "CONFIRM_EXTERNAL_URL": env.get("CONFIRM_EXTERNAL_URL")
        or "http://127.0.0.1:5000",
        "CONFIRM_MAIL_FROM": env.get("CONFIRM_MAIL_FROM")
        or "Example <no-reply@example.com>",
        "CONFIRM_SENDER": env.get("CONFIRM_SENDER")
        or ("smtp" if env.get("MAIL_SERVER") else "console"),
        "DASHBOARD_USER": env.get("DASHBOARD_USER") or DEFAULT_DASHBOARD_USER,
        "DASHBOARD_PASSWORD": env.get("DASHBOARD_PASSWORD")
        or DEFAULT_DASHBOARD_PASSWORD,
    }
    if env.get("CONFIRM_SES_REGION"):
        config["CONFIRM_SES_REGION"] = env["CONFIRM_SES_REGION"]
    for key in ("MAIL_SERVER", "MAIL_USERNAME", "MAIL_PASSWORD"):
        if env.get(key):
            config[key] = env[key]
    if env.get("MAIL_PORT"):
        config["MAIL_PORT"] = int(env["MAIL_PORT"])
    for key in ("MAIL_USE_TLS", "MAIL_USE_SSL"):
        if env.get(key):
            config[key] = env[key].strip().lower() in ("1", "true", "yes", "on")
    return config


def _database_url(url: str | None) -> str:
    if not url:
        # Flask-SQLAlchemy puts a relative SQLite path in the instance folder.
        return "sqlite:///example.sqlite"
    # Use psycopg 3 (what the Docker image installs) for plain PostgreSQL URLs,
    # including the "postgres://" spelling many hosts hand out.
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers a PING at ``url`` within a second."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _safe_url(url: str) -> str:
    """``url`` without its password, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


# -- Views ----------------------------------------------------------------------


def home() -> ResponseReturnValue:
    """The registration form (POST ``email``) and the table of users."""
    if request.method == "GET":
        return render_home()

    email = request.form.get("email", "").strip().lower()
    problem = email_problem(email)
    if problem is not None:
        flash(problem, "error")
        return render_home(email), 400

    user = User(email=email)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        flash(f"{email} is already registered.", "error")
        return render_home(email), 409

    job_id = confirm.send_confirmation(user)
    if job_id is None:
        flash(
            f"Thanks for registering, {email}! The confirmation mail could not be"
            " queued just now; ask for a new link in a moment.",
            "error",
        )
    else:
        flash(
            f"Thanks for registering! A confirmation link is on its way to {email}.",
            "success",
        )
    return redirect(url_for("home"))


def render_home(email: str = "") -> str:
    users = db.session.scalars(db.select(User).order_by(User.id)).all()
    config = current_app.config
    return render_template(
        "home.html",
        users=users,
        email=email,
        is_async=config["CONFIRM_ASYNC"],
        sender=config["CONFIRM_SENDER"],
        dashboard_url=(
            url_for("rq_dashboard.queues_overview")
            if "rq_dashboard" in current_app.blueprints
            else None
        ),
        default_credentials=(
            config["DASHBOARD_USER"] == DEFAULT_DASHBOARD_USER
            and config["DASHBOARD_PASSWORD"] == DEFAULT_DASHBOARD_PASSWORD
        ),
    )


def email_problem(email: str) -> str | None:
    """Why ``email`` cannot be registered, or ``None``."""
    if not email:
        return "Please enter your email address."
    if len(email) > MAX_EMAIL_LENGTH:
        return "That email address is too long."
    local, at, domain = email.rpartition("@")
    if (
        not at
        or not local
        or "@" in local
        or "." not in domain.strip(".")
        or any(c.isspace() or c in "<>,;\0" for c in email)
    ):
        return f"{email!r} does not look like an email address."
    return None


def format_time(value: dt.datetime | None) -> str:
    """``value`` as UTC, to the second. Naive values (SQLite) are UTC."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


@confirm.dashboard_auth
def dashboard_login() -> bool:
    """Let through requests with the dashboard's basic-auth credentials; ask
    the browser for them otherwise."""
    auth = request.authorization
    config = current_app.config
    if (
        auth is not None
        and auth.type == "basic"
        # Compare both, always, in constant time.
        and _same(auth.username, config["DASHBOARD_USER"])
        & _same(auth.password, config["DASHBOARD_PASSWORD"])
    ):
        return True
    abort(
        Response(
            "The RQ dashboard needs the DASHBOARD_USER / DASHBOARD_PASSWORD"
            " credentials.\n",
            401,
            {"WWW-Authenticate": 'Basic realm="rq-dashboard"'},
            mimetype="text/plain",
        )
    )


def _same(given: str | None, expected: str) -> bool:
    return hmac.compare_digest((given or "").encode(), expected.encode())
