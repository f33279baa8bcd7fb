"""``confirmed_required`` with a user loader and with Flask-Login."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from flask import request
from flask import session
from flask_login import login_user
from flask_login import LoginManager
from flask_login import UserMixin

from conftest import AppFactory
from flask_confirm import confirmed_required


def models(app: Flask) -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", app.extensions["test_models"])


def add_users(app: Flask) -> None:
    db, User = models(app)["db"], models(app)["User"]
    with app.app_context():
        db.session.add(User(email="new@example.org"))
        db.session.add(User(email="done@example.org"))
        db.session.commit()
        app.extensions["confirm"].confirm_user(db.session.get(User, 2))


def add_protected_view(app: Flask) -> None:
    @app.get("/secret")
    @confirmed_required
    def secret() -> str:
        return "the secret"


@pytest.fixture()
def loader_app(make_app: AppFactory) -> Flask:
    app = make_app()
    add_users(app)
    confirm = app.extensions["confirm"]

    @confirm.user_loader
    def load() -> t.Any:
        user_id = session.get("uid")
        return (
            models(app)["db"].session.get(models(app)["User"], user_id)
            if user_id
            else None
        )

    @app.post("/login/<int:user_id>")
    def login(user_id: int) -> str:
        session["uid"] = user_id
        return "ok"

    add_protected_view(app)
    return app


def test_anonymous_gets_401(loader_app: Flask) -> None:
    assert loader_app.test_client().get("/secret").status_code == 401


def test_unconfirmed_is_sent_to_resend_page(loader_app: Flask) -> None:
    client = loader_app.test_client()
    client.post("/login/1")
    response = client.get("/secret")
    assert response.status_code == 302
    assert response.location == "/confirm/resend"
    page = client.get(response.location)
    assert b"Please confirm your email address to continue." in page.data
    assert b'name="email"' in page.data


def test_confirmed_gets_through(loader_app: Flask) -> None:
    client = loader_app.test_client()
    client.post("/login/2")
    assert client.get("/secret").data == b"the secret"


def test_flask_login_current_user_is_used(make_app: AppFactory) -> None:
    app = make_app()
    add_users(app)
    manager = LoginManager(app)
    db, User = models(app)["db"], models(app)["User"]

    class LoginUser(UserMixin):
        def __init__(self, user: t.Any) -> None:
            self.user = user
            self.id = user.id

        @property
        def email_confirmed(self) -> bool:
            return bool(self.user.email_confirmed)

    @manager.user_loader
    def load(user_id: str) -> LoginUser | None:
        user = db.session.get(User, int(user_id))
        return LoginUser(user) if user else None

    @app.post("/login/<int:user_id>")
    def login(user_id: int) -> str:
        login_user(LoginUser(db.session.get(User, user_id)))
        return "ok"

    add_protected_view(app)
    client = app.test_client()
    assert client.get("/secret").status_code == 401
    client.post("/login/1")
    assert client.get("/secret").status_code == 302
    client.post("/login/2")
    assert client.get("/secret").data == b"the secret"


def test_without_any_way_to_know_the_user_it_says_so(make_app: AppFactory) -> None:
    app = make_app()
    add_protected_view(app)
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(RuntimeError, match=r"Flask-Login.*user_loader"):
        app.test_client().get("/secret")


def test_view_that_shows_and_posts(loader_app: Flask) -> None:
    """A form view on GET and POST, as apps write them: a confirmed user's
    POST reaches the view with its form; an unconfirmed user's is sent to
    the resend page with a 302, which the browser follows with a GET, so the
    form is never re-posted to the resend page (a 307 would post it there)."""

    @loader_app.route("/posts/new", methods=["GET", "POST"])
    @confirmed_required
    def new_post() -> tuple[str, int]:
        if request.method == "POST":
            return f"posted {request.form['title']}", 201
        return '<form method="post"><input name="title"></form>', 200

    client = loader_app.test_client()
    client.post("/login/2")  # confirmed
    assert client.get("/posts/new").status_code == 200
    posted = client.post("/posts/new", data={"title": "Hello", "email": "x@y.z"})
    assert (posted.status_code, posted.data) == (201, b"posted Hello")

    client = loader_app.test_client()
    client.post("/login/1")  # not confirmed
    refused = client.post("/posts/new", data={"title": "Hello", "email": "x@y.z"})
    assert refused.status_code == 302 and refused.location == "/confirm/resend"
    followed = client.post(
        "/posts/new", data={"title": "Hello", "email": "x@y.z"}, follow_redirects=True
    )
    assert followed.request.method == "GET"
    assert followed.request.path == "/confirm/resend"
    assert b"Please confirm your email address to continue." in followed.data
    with loader_app.app_context():
        assert loader_app.extensions["confirm"].sender.outbox == []  # no resend
