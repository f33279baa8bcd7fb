"""Flask-Login sessions bound to the credentials (``flask_confirm.logins``),
and the account takeover they close (issue 11, item 2): an attacker with a
victim's session asks to change the address; the victim resets the password,
as the notice says; the stolen session, the stolen remember-me cookie and the
pending change must all be dead.

The attack runs from outside: the app served over real HTTP, the mails sent
by a real worker process through a real SMTP server, on SQLite, PostgreSQL
and MariaDB.
"""

from __future__ import annotations

import email.message
import json
import re
import subprocess
import typing as t
import urllib.error
import urllib.request
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask_login import login_user
from flask_login import LoginManager
from flask_login import UserMixin
from flask_sqlalchemy import SQLAlchemy

from conftest import serving
from flask_confirm import Confirm
from flask_confirm import ConfirmableMixin
from flask_confirm.logins import make_binding
from flask_confirm.logins import split
from flask_confirm.models import utcnow
from flask_confirm.outbox import queueing

if t.TYPE_CHECKING:
    from conftest import AppFactory
    from conftest import SMTPServer

EXTERNAL = "https://app.example.test"
LINK = re.compile(re.escape(EXTERNAL) + r"(/[^\s\"'<>]+)")
Run = t.Callable[..., subprocess.CompletedProcess[str]]


# -- an HTTP client with a cookie jar of its own ---------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: t.Any, **kwargs: t.Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class Browser:
    """One browser's view of the served app: its cookies (which an attacker
    may copy), JSON answers, redirects not followed."""

    def __init__(self, base: str, cookies: dict[str, str] | None = None) -> None:
        self.base = base
        self.cookies = dict(cookies or {})

    def get(self, path: str) -> tuple[int, t.Any]:
        return self.request("GET", path)

    def post(self, path: str, data: dict[str, str] | None = None) -> tuple[int, t.Any]:
        return self.request("POST", path, data or {})

    def request(
        self, method: str, path: str, data: dict[str, str] | None = None
    ) -> tuple[int, t.Any]:
        headers = {"Accept": "application/json"}
        body = None
        if data is not None:
            body = urlencode(data).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        request = urllib.request.Request(
            self.base + path, data=body, headers=headers, method=method
        )
        try:
            with _OPENER.open(request, timeout=15) as response:
                status, raw, answer_headers = (
                    response.status,
                    response.read(),
                    response.headers,
                )
        except urllib.error.HTTPError as e:
            status, raw, answer_headers = e.code, e.read(), e.headers
        for header in answer_headers.get_all("Set-Cookie") or []:
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                if morsel["max-age"] == "0" or "1970" in morsel["expires"]:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")


# -- helpers ------------------------------------------------------------------------


def models(app: Flask) -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", app.extensions["test_models"])


def add_user(app: Flask, address: str, password: str) -> t.Any:
    m = models(app)
    with app.app_context():
        user = m["User"](email=address, email_confirmed_at=utcnow())
        user.set_password(password)
        m["db"].session.add(user)
        m["db"].session.commit()
        return user.id


def account(app: Flask, user_id: t.Any) -> tuple[str, str | None]:
    m = models(app)
    with app.app_context():
        user = m["db"].session.get(m["User"], user_id)
        return user.email, user.pending_email


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def mailed_path(smtp: SMTPServer, to: str, subject: str) -> str:
    """The path of the one link in the last mail to ``to`` with ``subject``."""
    (message, *_) = [
        m
        for m in reversed(smtp.messages)
        if str(m["To"]) == to and str(m["Subject"]) == subject
    ]
    assert isinstance(message, email.message.EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    (path,) = set(LINK.findall(body.get_content()))
    return path


@pytest.fixture()
def login_config(
    app_config: dict[str, t.Any], smtp_server: SMTPServer, database_url: str
) -> dict[str, t.Any]:
    """The web app and its worker processes: Flask-Login, password reset, a
    real queue and SMTP server, each database."""
    app_config.update(
        smtp_server.config,
        TEST_LOGIN=True,
        CONFIRM_PASSWORD_RESET=True,
        CONFIRM_ASYNC=True,
        CONFIRM_RETRY_INTERVALS=[0],
        SQLALCHEMY_DATABASE_URI=database_url,
    )
    return app_config


# -- the attack -------------------------------------------------------------------


def test_a_reset_ends_the_stolen_session_and_the_pending_change(
    make_app: AppFactory,
    login_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    run_worker: Run,
) -> None:
    app = make_app()
    victim_id = add_user(app, "victim@example.org", "old password")
    with serving(app) as base:
        victim = Browser(base)
        status, _ = victim.post(
            "/login",
            {
                "email": "victim@example.org",
                "password": "old password",
                "remember": "1",
            },
        )
        assert status == 200
        assert {"session", "remember_token"} <= set(victim.cookies)
        stolen = dict(victim.cookies)

        # The attacker, with the victim's cookies, asks for the address.
        attacker = Browser(base, stolen)
        assert (
            attacker.post("/account/email", {"email": "attacker@example.com"})[0] == 200
        )
        ok(run_worker("--burst"))
        change_path = mailed_path(
            smtp_server, "attacker@example.com", "Confirm your new email address"
        )
        assert ("victim@example.org", "Your email address is being changed") in [
            (str(m["To"]), str(m["Subject"])) for m in smtp_server.messages
        ]

        # The victim does what the notice says: resets the password.
        assert victim.post("/confirm/reset", {"email": "victim@example.org"})[0] == 200
        ok(run_worker("--burst"))
        reset_path = mailed_path(
            smtp_server, "victim@example.org", "Reset your password"
        )
        status, answer = Browser(base).post(
            reset_path, {"password": "new password", "password_confirm": "new password"}
        )
        assert (status, answer["status"]) == (200, "password_reset")

        # The stolen session is dead, and so is the stolen remember-me
        # cookie on its own (a fresh session, as after the browser closed).
        assert attacker.get("/me")[0] == 401
        assert (
            Browser(base, {"remember_token": stolen["remember_token"]}).get("/me")[0]
            == 401
        )
        # The change the attacker asked for was cancelled by the reset.
        status, answer = attacker.post(change_path)
        assert (status, answer["error"]) == (400, "token_invalid")
        assert account(app, victim_id) == ("victim@example.org", None)

        # The victim's own browser was signed in before the reset too; the
        # new password signs in again, and that session lasts.
        assert victim.get("/me")[0] == 401
        assert (
            victim.post(
                "/login", {"email": "victim@example.org", "password": "new password"}
            )[0]
            == 200
        )
        assert victim.get("/me") == (
            200,
            {"id": str(victim_id), "email": "victim@example.org"},
        )


def test_an_email_change_ends_the_sessions_opened_before_it(
    make_app: AppFactory,
    login_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    run_worker: Run,
) -> None:
    """Whoever held a session before the change (a thief, or a shared
    computer) is signed out once the new address is confirmed."""
    app = make_app()
    user_id = add_user(app, "ada@example.org", "a password")
    with serving(app) as base:
        laptop, phone = Browser(base), Browser(base)
        for browser, remember in ((laptop, "1"), (phone, "")):
            status, _ = browser.post(
                "/login",
                {
                    "email": "ada@example.org",
                    "password": "a password",
                    "remember": remember,
                },
            )
            assert status == 200
        remember_cookie = laptop.cookies["remember_token"]
        assert laptop.post("/account/email", {"email": "ada@new.example.org"})[0] == 200
        ok(run_worker("--burst"))
        # Still signed in everywhere while the change is pending.
        assert laptop.get("/me")[0] == phone.get("/me")[0] == 200
        change_path = mailed_path(
            smtp_server, "ada@new.example.org", "Confirm your new email address"
        )
        status, answer = Browser(base).post(change_path)
        assert (status, answer["status"]) == (200, "confirmed")
        assert account(app, user_id) == ("ada@new.example.org", None)

        assert laptop.get("/me")[0] == phone.get("/me")[0] == 401
        assert Browser(base, {"remember_token": remember_cookie}).get("/me")[0] == 401
        status, _ = phone.post(
            "/login", {"email": "ada@new.example.org", "password": "a password"}
        )
        assert status == 200
        assert phone.get("/me")[0] == 200


def test_this_wasnt_me_link_of_a_mailed_notice(
    make_app: AppFactory,
    login_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    run_worker: Run,
) -> None:
    """The other way out of the attack: the notice the worker mails carries
    a link whose GET (a mail scanner's) changes nothing and whose POST
    cancels the change, and the attacker's link with it."""
    app = make_app()
    victim_id = add_user(app, "victim@example.org", "a password")
    with serving(app) as base:
        attacker = Browser(base)
        status, _ = attacker.post(
            "/login", {"email": "victim@example.org", "password": "a password"}
        )
        assert status == 200
        assert (
            attacker.post("/account/email", {"email": "attacker@example.com"})[0] == 200
        )
        ok(run_worker("--burst"))
        change_path = mailed_path(
            smtp_server, "attacker@example.com", "Confirm your new email address"
        )
        cancel_path = mailed_path(
            smtp_server, "victim@example.org", "Your email address is being changed"
        )
        scanner = Browser(base)
        assert scanner.get(cancel_path) == (
            200,
            {
                "status": "pending",
                "email": "victim@example.org",
                "new_email": "attacker@example.com",
            },
        )
        assert account(app, victim_id) == ("victim@example.org", "attacker@example.com")
        status, answer = Browser(base).post(cancel_path)
        assert (status, answer["status"]) == (200, "cancelled")
        assert account(app, victim_id) == ("victim@example.org", None)
        status, answer = attacker.post(change_path)
        assert (status, answer["error"]) == (400, "token_invalid")
        assert account(app, victim_id) == ("victim@example.org", None)


# -- the binding ---------------------------------------------------------------------


@pytest.fixture()
def login_app(make_app: AppFactory) -> Flask:
    return make_app(TEST_LOGIN=True, CONFIRM_PASSWORD_RESET=True)


def sign_in(app: Flask, address: str, password: str, **form: str) -> t.Any:
    client = app.test_client()
    response = client.post(
        "/login", data={"email": address, "password": password, **form}
    )
    assert response.status_code == 200, response.data
    return client


def test_sessions_and_remember_cookies_carry_a_stamp(login_app: Flask) -> None:
    user_id = add_user(login_app, "ada@example.org", "a password")
    client = sign_in(login_app, "ada@example.org", "a password", remember="1")
    with client.session_transaction() as session:
        stored = session["_user_id"]
    parts = split(stored)
    assert parts is not None and parts[0] == str(user_id)  # the app's own id first
    remember = client.get_cookie("remember_token")
    assert remember is not None and remember.value.startswith(stored + "|")
    assert client.get("/me").status_code == 200
    with login_app.test_request_context():
        m = models(login_app)
        user = m["db"].session.get(m["User"], user_id)
        assert m["confirm"].login_id(user) == stored
    # The remember-me cookie alone signs in again, while nothing changed.
    fresh = login_app.test_client()
    fresh.set_cookie("remember_token", remember.value)
    assert fresh.get("/me").status_code == 200


def test_the_apps_own_password_change_ends_sessions_too(login_app: Flask) -> None:
    """Any change of the hash: the app's own "change password" form as well
    as a reset."""
    user_id = add_user(login_app, "ada@example.org", "a password")
    client = sign_in(login_app, "ada@example.org", "a password")
    m = models(login_app)
    with login_app.app_context():
        m["db"].session.get(m["User"], user_id).set_password("another password")
        m["db"].session.commit()
    assert client.get("/me").status_code == 401


def test_an_id_without_a_stamp_is_refused(login_app: Flask) -> None:
    """A session from before (or a test client storing ``get_id()``) loads
    nobody; ``confirm.login_id(user)`` is what to store instead."""
    user_id = add_user(login_app, "ada@example.org", "a password")
    client = login_app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = str(user_id)
    assert client.get("/me").status_code == 401
    m = models(login_app)
    with login_app.test_request_context():
        login_id = m["confirm"].login_id(m["db"].session.get(m["User"], user_id))
    with client.session_transaction() as session:
        session["_user_id"] = login_id
    assert client.get("/me").status_code == 200
    with client.session_transaction() as session:
        session["_user_id"] = login_id[:-1] + ("A" if login_id[-1] != "A" else "B")
    assert client.get("/me").status_code == 401


def test_binding_can_be_turned_off(make_app: AppFactory) -> None:
    app = make_app(TEST_LOGIN=True, CONFIRM_BIND_SESSIONS=False)
    user_id = add_user(app, "ada@example.org", "a password")
    client = sign_in(app, "ada@example.org", "a password")
    with client.session_transaction() as session:
        assert session["_user_id"] == str(user_id)  # Flask-Login's own id
    m = models(app)
    with app.app_context():
        m["db"].session.get(m["User"], user_id).set_password("another password")
        m["db"].session.commit()
        with pytest.raises(RuntimeError, match="CONFIRM_BIND_SESSIONS"):
            m["confirm"].login_id(m["db"].session.get(m["User"], user_id))
    assert client.get("/me").status_code == 200


def test_stamps_survive_a_key_rotation() -> None:
    """Made with the newest key, accepted with any: a rotation done as
    docs/security.rst says signs nobody out."""

    class User:
        id = 7
        email = "ada@example.org"
        password_hash = "hash"

    import flask_confirm.logins as logins

    old = make_binding(["old key"], User, "email", "password_hash")
    new = make_binding(["old key", "new key"], User, "email", "password_hash")
    other = make_binding(["new key"], User, "email", "password_hash")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logins, "primary_key", lambda user: user.id)
        stamp = old.stamp(User())
        assert new.matches(User(), stamp)
        assert not other.matches(User(), stamp)
        assert new.stamp(User()) != stamp  # new ones use the new key


# -- wiring: any order, any loader, the real key elsewhere ----------------------------


def _bare_app(**config: t.Any) -> tuple[Flask, SQLAlchemy, type[t.Any]]:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY="a secret key for this test only",
        CONFIRM_EXTERNAL_URL="https://app.example.test",
        CONFIRM_SENDER="memory",
        CONFIRM_DASHBOARD_URL=None,
        SQLALCHEMY_DATABASE_URI="sqlite://",
        **config,
    )
    db = SQLAlchemy(app)

    class Member(UserMixin, ConfirmableMixin, db.Model):  # type: ignore[name-defined,misc]
        id = db.Column(db.Integer, primary_key=True)
        email = db.Column(db.String(320), unique=True, nullable=False)
        password_hash = db.Column(db.String(200))
        #: The app's own alternative token, as Flask-Login's docs suggest.
        token = db.Column(db.String(40), nullable=False)

        def get_id(self) -> str:
            return f"token-{self.token}"

    return app, db, Member


def test_login_manager_set_up_after_init_app(redis_url: str) -> None:
    """Confirm first, then Flask-Login, then the loader: the app's own
    alternative ids still reach its own loader, with the stamp checked; jobs
    and tokens carry the primary key all the same."""
    app, db, Member = _bare_app(CONFIRM_ASYNC=True, CONFIRM_REDIS_URL=redis_url)
    confirm: Confirm[t.Any] = Confirm(app, db=db, user_model=Member)
    manager = LoginManager(app)
    loaded: list[str] = []

    @manager.user_loader
    def load(user_id: str) -> t.Any:
        loaded.append(user_id)
        return db.session.scalar(
            db.select(Member).filter_by(token=user_id.removeprefix("token-"))
        )

    @app.post("/login/<int:member_id>")
    def sign_in_member(member_id: int) -> str:
        login_user(db.session.get(Member, member_id), remember=True)
        return "ok"

    @app.get("/who")
    def who() -> str:
        from flask_login import current_user

        return str(current_user.get_id()) if current_user.is_authenticated else "-"

    with app.app_context():
        db.create_all()
        member = Member(email="ada@example.org", token="abc", password_hash="h1")
        db.session.add(member)
        db.session.commit()
        member_id = member.id
        # Jobs and tokens carry the primary key, never the login id.
        job_id = confirm.send_confirmation(member)
        assert job_id is not None
        assert queueing.members(confirm._get_state(), job_id) == [member_id]
        token = confirm.make_token(member)
        assert confirm.load_user(token).id == member_id
        assert confirm._get_state().serializer.loads(token)[0] == member_id

    client = app.test_client()
    assert client.post(f"/login/{member_id}").data == b"ok"
    assert client.get("/who").data == b"token-abc"
    assert loaded == ["token-abc"]
    with app.app_context():
        db.session.get(Member, member_id).password_hash = "h2"
        db.session.commit()
    assert client.get("/who").data == b"-"


def test_other_kinds_of_user_pass_through() -> None:
    """A login manager that also signs in objects of another class (an
    administrators' table, say): those are not Flask-Confirm's to bind."""
    app, db, Member = _bare_app()
    Confirm(app, db=db, user_model=Member)
    manager = LoginManager(app)

    class Admin(UserMixin):
        def __init__(self, name: str) -> None:
            self.id = name

    @manager.user_loader
    def load(user_id: str) -> t.Any:
        return Admin(user_id) if user_id.startswith("admin-") else None

    @app.post("/admin-login")
    def admin_login() -> str:
        login_user(Admin("admin-root"))
        return "ok"

    @app.get("/who")
    def who() -> str:
        from flask_login import current_user

        return str(current_user.get_id()) if current_user.is_authenticated else "-"

    with app.app_context():
        db.create_all()
    client = app.test_client()
    client.post("/admin-login")
    with client.session_transaction() as session:
        assert session["_user_id"] == "admin-root"
    assert client.get("/who").data == b"admin-root"


def test_remember_cookie_of_a_session_from_before_a_reset_expires_with_it(
    login_app: Flask,
) -> None:
    """Through the reset route: the conditional UPDATE changes the hash the
    stamp is made of."""
    user_id = add_user(login_app, "ada@example.org", "a password")
    client = sign_in(login_app, "ada@example.org", "a password", remember="1")
    remember = client.get_cookie("remember_token")
    assert remember is not None
    m = models(login_app)
    with login_app.test_request_context():
        user = m["db"].session.get(m["User"], user_id)
        reset_path = m["confirm"].reset_url(user).removeprefix(EXTERNAL)
    response = login_app.test_client().post(
        reset_path,
        data={"password": "new password", "password_confirm": "new password"},
    )
    assert response.status_code == 302
    fresh = login_app.test_client()
    fresh.set_cookie("remember_token", remember.value)
    assert fresh.get("/me").status_code == 401
    assert client.get("/me").status_code == 401
