"""The application the tests run against, in the test process and in worker
subprocesses alike.

A worker is a separate process, so it cannot be handed the test's app object:
it builds its own from the same factory, with the configuration the test
passed through the ``FLASK_CONFIRM_TEST_CONFIG`` environment variable (JSON).
"""

from __future__ import annotations

import json
import os
import secrets
import time
import typing as t
import uuid

import redis
import redis.sentinel
import sqlalchemy as sa
from flask import abort
from flask import current_app
from flask import Flask
from flask import has_app_context
from flask import request
from flask_login import current_user
from flask_login import login_required
from flask_login import login_user
from flask_login import LoginManager
from flask_login import UserMixin
from flask_sqlalchemy import SQLAlchemy
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from flask_confirm import Confirm
from flask_confirm import ConfirmableMixin
from flask_confirm import EmailInUse
from flask_confirm import InvalidEmail

CONFIG_ENV = "FLASK_CONFIRM_TEST_CONFIG"
#: A config key of the tests' own: ``{"url": ...}`` or ``{"sentinels":
#: [[host, port], ...], "service": ..., "password": ...}`` makes the app hand
#: Flask-Confirm a Redis client of its own (``Confirm(redis=...)``), as an
#: app with a shared pool or a Sentinel client does.
CLIENT_KEY = "FC_TEST_REDIS_CLIENT"

#: ``TEST_USER_KEY`` picks the user model's primary key: what it is, and how
#: an id read from a form becomes one.
USER_KEYS: dict[str, tuple[t.Callable[[], t.Any], t.Callable[[str], t.Any]]] = {
    "int": (lambda: sa.Column(sa.Integer, primary_key=True), int),
    "str": (
        lambda: sa.Column(
            sa.String(40),
            primary_key=True,
            default=lambda: f"user-{secrets.token_hex(8)}",
        ),
        str,
    ),
    "uuid": (
        lambda: sa.Column(sa.Uuid, primary_key=True, default=uuid.uuid4),
        uuid.UUID,
    ),
}

BASE_CONFIG: dict[str, t.Any] = {
    "TESTING": True,
    "SECRET_KEY": "test-secret-key-that-is-long-enough",
    "CONFIRM_EXTERNAL_URL": "https://app.example.test",
    "CONFIRM_SENDER": "memory",
    "CONFIRM_MAIL_FROM": "no-reply@example.test",
    "SQLALCHEMY_DATABASE_URI": "sqlite://",
}


def create_app(**config: t.Any) -> Flask:
    """Build a small app using Flask-Confirm: ``POST /register`` with ``email``
    creates a user and asks for a confirmation, as an adopting app would.

    The user model's primary key is an Integer, a String or a Uuid as
    ``TEST_USER_KEY`` says (``"int"`` by default), and its address attribute
    is named by ``CONFIRM_EMAIL_ATTRIBUTE`` (``email`` by default).

    With ``TEST_LOGIN`` true it signs users in with Flask-Login, as most
    apps do: ``POST /login`` (``email``, ``password``, ``remember``), ``GET
    /me`` (login required) and ``POST /account/email`` (``email``, for the
    signed-in user).
    """
    # Pages on a subdomain (CONFIRM_SUBDOMAIN) need subdomain matching on.
    app = Flask(__name__, subdomain_matching="CONFIRM_SUBDOMAIN" in config)
    app.config.update(BASE_CONFIG)
    app.config.update(json.loads(os.environ.get(CONFIG_ENV, "{}")))
    app.config.update(config)

    db = SQLAlchemy(app)
    key_column, read_key = USER_KEYS[app.config.get("TEST_USER_KEY", "int")]
    email_attribute = app.config.get("CONFIRM_EMAIL_ATTRIBUTE", "email")

    class UserBase(ConfirmableMixin):
        password_hash = sa.Column(sa.String(200), nullable=True)

        def set_password(self, password: str) -> None:
            # Few iterations: the tests check the flow, not the hashing.
            self.password_hash = generate_password_hash(
                password, method="pbkdf2:sha256:1000"
            )

        def check_password(self, password: str) -> bool:
            return bool(self.password_hash) and check_password_hash(
                self.password_hash, password
            )

    login = bool(app.config.get("TEST_LOGIN"))
    # Built with type() so that the address attribute can have any name.
    User: t.Any = type(
        "User",
        (UserMixin, UserBase, db.Model) if login else (UserBase, db.Model),
        {
            "__tablename__": "fc_test_user",
            "id": key_column(),
            email_attribute: sa.Column(sa.String(320), unique=True, nullable=False),
        },
    )

    confirm = Confirm(app, db=db, user_model=User, redis=_client(app))
    app.extensions["test_models"] = {"db": db, "User": User, "confirm": confirm}

    @app.post("/register")
    def register() -> tuple[dict[str, t.Any], int]:
        email = request.form.get("email") or abort(400)
        user = User(**{email_attribute: email})
        db.session.add(user)
        db.session.commit()
        job_id = confirm.send_confirmation(user)
        return {"id": user.id, "job_id": job_id}, 201

    @app.post("/change-email")
    def change_email() -> t.Any:
        """What an account page would do: ``id`` and ``email`` in the form."""
        user = db.session.get(User, read_key(request.form["id"])) or abort(404)
        try:
            job_id = confirm.request_email_change(user, request.form["email"])
        except (EmailInUse, InvalidEmail):
            raise
        except ValueError as e:  # the user's current address
            return {"error": "same_address", "message": str(e)}, 400
        return {"job_id": job_id}

    @app.errorhandler(EmailInUse)
    def email_in_use(error: EmailInUse) -> tuple[dict[str, t.Any], int]:
        # What an account page would answer when request_email_change
        # refuses: the signed-in user may learn the address is registered.
        return {"error": "email_in_use", "message": str(error)}, 409

    @app.errorhandler(InvalidEmail)
    def invalid_email(error: InvalidEmail) -> tuple[dict[str, t.Any], int]:
        return {"error": "invalid_email", "message": str(error)}, 400

    @app.get("/")
    def index() -> str:
        return "home"

    if login:
        manager = LoginManager(app)

        @manager.user_loader
        def load_user(user_id: str) -> t.Any:
            return db.session.get(User, read_key(user_id))

        @app.post("/login")
        def sign_in() -> tuple[dict[str, t.Any], int]:
            email = request.form.get("email", "")
            user = db.session.scalar(
                sa.select(User).where(getattr(User, email_attribute) == email)
            )
            if user is None or not user.check_password(request.form["password"]):
                return {"error": "wrong password"}, 401
            login_user(user, remember=bool(request.form.get("remember")))
            return {"id": str(user.id)}, 200

        @app.get("/me")
        @login_required
        def me() -> dict[str, t.Any]:
            return {
                "id": str(current_user.id),
                "email": getattr(current_user, email_attribute),
            }

        @app.post("/account/email")
        @login_required
        def account_email() -> dict[str, t.Any]:
            user = current_user._get_current_object()
            return {"job_id": confirm.request_email_change(user, request.form["email"])}

    return app


def _client(app: Flask) -> redis.Redis | None:
    spec = app.config.get(CLIENT_KEY)
    if spec is None:
        return None
    if "url" in spec:
        return redis.Redis.from_url(spec["url"])
    sentinel = redis.sentinel.Sentinel(
        [tuple(address) for address in spec["sentinels"]],
        sentinel_kwargs={"password": spec.get("sentinel_password")},
    )
    return sentinel.master_for(spec["service"], password=spec.get("password"))


def app_task(value: int, sleep: float = 0) -> dict[str, t.Any]:
    """A job of the app's own, on a queue of its own, as an app that already
    runs RQ has: what it sees of the app (after ``sleep`` seconds)."""
    time.sleep(sleep)
    return {
        "value": value,
        "app_context": has_app_context(),
        "queue": current_app.config["CONFIRM_QUEUE"] if has_app_context() else None,
    }
