"""The application the tests run against, in the test process and in worker
subprocesses alike.

A worker is a separate process, so it cannot be handed the test's app object:
it builds its own from the same factory, with the configuration the test
passed through the ``FLASK_CONFIRM_TEST_CONFIG`` environment variable (JSON).

Below the app, the plain helpers that several test modules share: driving
the app through its test client, reading its users and its outbox.
"""

from __future__ import annotations

import collections
import collections.abc as cabc
import contextlib
import json
import os
import re
import secrets
import subprocess
import time
import typing as t
import uuid

import redis
import redis.sentinel
import sqlalchemy as sa
from flask import abort
from flask import current_app
from flask import Flask
from flask import get_flashed_messages
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
from flask_confirm.web.resend import RESEND_MESSAGE

if t.TYPE_CHECKING:
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse

    from conftest import SMTPServer
    from flask_confirm import EmailMessage

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


# -- helpers the test modules share ------------------------------------------


EXTERNAL = "https://app.example.test"


LINK = re.compile(r"https?://[^\s\"'<>]+")


def models(app: Flask) -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", app.extensions["test_models"])


def outbox(app: Flask) -> list[EmailMessage]:
    with app.app_context():
        return list(app.extensions["confirm"].sender.outbox)


def link_in(message: EmailMessage) -> str:
    (link,) = set(LINK.findall(message.text))
    assert link in message.html
    return link


def path_of(link: str, base: str = EXTERNAL) -> str:
    assert link.startswith(base + "/"), link
    return link.removeprefix(base)


def register(client: FlaskClient, email: str, **kwargs: t.Any) -> int:
    response = client.post("/register", data={"email": email}, **kwargs)
    assert response.status_code == 201, response.data
    assert response.json is not None
    return t.cast("int", response.json["id"])


def register_for_link(app: Flask, client: FlaskClient, email: str) -> tuple[int, str]:
    """Register ``email``; return the user id and the path of the mailed link."""
    before = len(outbox(app))
    user_id = register(client, email)
    mails = outbox(app)
    assert len(mails) == before + 1
    assert mails[-1].to == email
    return user_id, path_of(link_in(mails[-1]))


def get_user(app: Flask, user_id: int) -> t.Any:
    m = models(app)
    with app.app_context():
        user = m["db"].session.get(m["User"], user_id)
        if user is not None:
            m["db"].session.expunge(user)
        return user


def set_email(app: Flask, user_id: int, email: str) -> None:
    m = models(app)
    with app.app_context():
        m["db"].session.get(m["User"], user_id).email = email
        m["db"].session.commit()


def flashes(client: FlaskClient) -> list[tuple[str, str]]:
    """The messages flashed and not yet shown."""
    with client.session_transaction() as session:
        return [tuple(f) for f in session.get("_flashes", [])]  # type: ignore[misc]


def take_flashes(client: FlaskClient) -> list[tuple[str, str]]:
    """Like :func:`flashes`, and removes them, as a page showing them would."""
    with client.session_transaction() as session:
        return [tuple(f) for f in session.pop("_flashes", [])]  # type: ignore[misc]


def add_flash_page(app: Flask, rule: str) -> None:
    """A page at ``rule`` that shows the flashed messages, as JSON."""

    def show_flashes() -> dict[str, t.Any]:
        return {"page": rule, "flashes": get_flashed_messages(with_categories=True)}

    app.add_url_rule(rule, f"flashes{rule}", show_flashes)


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


class Recorder:
    """Receives ``email_confirmed`` for one app."""

    def __init__(self) -> None:
        self.calls: list[tuple[t.Any, int, dict[str, t.Any]]] = []

    def __call__(self, sender: t.Any, user: t.Any, **extra: t.Any) -> None:
        assert user.email_confirmed_at is not None
        self.calls.append((sender, user.id, extra))


def resend(client: FlaskClient, email: str, **kwargs: t.Any) -> TestResponse:
    return client.post("/confirm/resend", data={"email": email}, **kwargs)


def assert_resend_page(response: TestResponse) -> None:
    """The one answer resend gives to a well-formed address."""
    assert response.status_code == 200, text(response)
    assert response.location is None
    assert response.mimetype == "text/html"
    body = text(response)
    assert f'<p role="status">{RESEND_MESSAGE}</p>' in body
    assert 'role="alert"' not in body
    assert "<form" in body  # another address can be entered at once
    assert "Set-Cookie" not in response.headers


JSON = {"Accept": "application/json"}


def change_email(app: Flask, client: FlaskClient, user_id: int, email: str) -> None:
    response = client.post("/change-email", data={"id": user_id, "email": email})
    assert response.status_code == 200, response.data


def confirmed_user(app: Flask, client: FlaskClient, email: str, password: str) -> int:
    user_id, path = register_for_link(app, client, email)
    client.post(path)
    m = models(app)
    with app.app_context():
        user = m["db"].session.get(m["User"], user_id)
        user.set_password(password)
        m["db"].session.commit()
    return user_id


def notice_cancel_path(app: Flask) -> str:
    """The cancel link of the last change notice mailed."""
    (notice,) = [
        m for m in outbox(app) if m.subject == "Your email address is being changed"
    ][-1:]
    path = path_of(link_in(notice))
    assert path.startswith("/confirm/cancel/")
    return path


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


Run = t.Callable[..., subprocess.CompletedProcess[str]]


def register_users(app: Flask, *emails: str) -> list[t.Any]:
    client = app.test_client()
    ids = []
    for email in emails:
        response = client.post("/register", data={"email": email})
        assert response.status_code == 201, response.data
        assert response.json is not None
        ids.append(response.json["id"])
    return ids


def user_state(app: Flask, user_id: t.Any) -> t.Any:
    with app.app_context():
        user = models(app)["db"].session.get(models(app)["User"], user_id)
        return user.confirmation_state, user.confirmation_error


def recipients(server: SMTPServer) -> collections.Counter[str]:
    return collections.Counter(str(m["To"]) for m in server.messages)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def time_ago(seconds: float) -> t.Any:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds)
