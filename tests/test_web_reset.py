"""The password reset form and page (:mod:`flask_confirm.web.reset`) through
the test client, with the memory sender and ``CONFIRM_ASYNC`` false."""

from __future__ import annotations

import json
import typing as t
import urllib.error
import urllib.request

import pytest

from conftest import serving
from flask_confirm import signals
from flask_confirm.web.reset import PASSWORD_RESET_MESSAGE
from flask_confirm.web.reset import RESET_REQUEST_MESSAGE
from testapp import change_email
from testapp import confirmed_user
from testapp import get_user
from testapp import JSON
from testapp import link_in
from testapp import models
from testapp import outbox
from testapp import path_of
from testapp import register
from testapp import register_for_link
from testapp import set_email

if t.TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

    from conftest import AppFactory


# -- password reset -----------------------------------------------------------


@pytest.fixture()
def db_reset_app(make_app: AppFactory, database_url: str) -> Flask:
    return make_app(CONFIRM_PASSWORD_RESET=True, SQLALCHEMY_DATABASE_URI=database_url)


def check_password(app: Flask, user_id: int, password: str) -> bool:
    m = models(app)
    with app.app_context():
        return bool(m["db"].session.get(m["User"], user_id).check_password(password))


def test_reset_routes_exist_only_when_enabled(app: Flask, client: FlaskClient) -> None:
    # "reset" is then read as a (bad) confirmation token.
    before = len(outbox(app))
    for response in (
        client.get("/confirm/reset"),
        client.post("/confirm/reset", data={"email": "a@example.org"}),
    ):
        assert response.status_code == 400
        assert b"This link is not valid" in response.data
    assert len(outbox(app)) == before


def test_password_reset_flow(db_reset_app: Flask) -> None:
    app, client = db_reset_app, db_reset_app.test_client()
    user_id = confirmed_user(app, client, "ada@example.org", "old password")
    page = client.get("/confirm/reset")
    assert page.status_code == 200
    assert b'name="email"' in page.data
    before = len(outbox(app))
    response = client.post("/confirm/reset", data={"email": "ADA@example.org"})
    assert response.status_code == 200
    assert RESET_REQUEST_MESSAGE.encode() in response.data
    (mail,) = outbox(app)[before:]
    assert (mail.to, mail.subject) == ("ada@example.org", "Reset your password")
    reset_path = path_of(link_in(mail))
    assert reset_path.startswith("/confirm/reset/")

    form = client.get(reset_path)
    assert form.status_code == 200
    assert b'name="password"' in form.data and b"ada@example.org" in form.data
    assert check_password(app, user_id, "old password")  # GET changes nothing

    response = client.post(
        reset_path, data={"password": "new password", "password_confirm": "other one"}
    )
    assert response.status_code == 400
    assert b"not the same" in response.data
    response = client.post(
        reset_path, data={"password": "short", "password_confirm": "short"}
    )
    assert response.status_code == 400
    assert b"at least 8 characters" in response.data
    assert check_password(app, user_id, "old password")

    response = client.post(
        reset_path,
        data={"password": "new password", "password_confirm": "new password"},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert check_password(app, user_id, "new password")
    # Single use: the link was bound to the hash it replaced.
    response = client.post(
        reset_path,
        data={"password": "third password", "password_confirm": "third password"},
    )
    assert response.status_code == 400
    assert b"not valid" in response.data
    assert check_password(app, user_id, "new password")


def test_password_reset_answers_alike(reset_app: Flask) -> None:
    """Unknown, unconfirmed and confirmed addresses get the same bytes; only
    the confirmed one gets a mail."""
    app, client = reset_app, reset_app.test_client()
    confirmed_user(app, client, "ada@example.org", "a password")
    register(client, "bob@example.org")  # unconfirmed
    before = len(outbox(app))
    answers = {
        app.test_client().post("/confirm/reset", data={"email": email}).data
        for email in ("ada@example.org", "bob@example.org", "nobody@example.org")
    }
    assert len(answers) == 1
    assert [m.to for m in outbox(app)[before:]] == ["ada@example.org"]


def test_unconfirmed_user_cannot_reset(reset_app: Flask) -> None:
    app, client = reset_app, reset_app.test_client()
    user_id = confirmed_user(app, client, "ada@example.org", "a password")
    m = models(app)
    with app.app_context():
        user = m["db"].session.get(m["User"], user_id)
        link = m["confirm"].reset_url(user)
        user.email_confirmed_at = None
        m["db"].session.commit()
        assert m["confirm"].request_password_reset(user) is None
    response = client.post(
        path_of(link),
        data={"password": "new password", "password_confirm": "new password"},
    )
    assert response.status_code == 400
    assert check_password(app, user_id, "a password")


def test_reset_link_dies_when_address_changes(reset_app: Flask) -> None:
    app, client = reset_app, reset_app.test_client()
    user_id = confirmed_user(app, client, "ada@example.org", "a password")
    client.post("/confirm/reset", data={"email": "ada@example.org"})
    reset_path = path_of(link_in(outbox(app)[-1]))
    set_email(app, user_id, "ada@elsewhere.example.org")
    assert client.get(reset_path).status_code == 400


def test_reset_token_is_not_a_confirmation_token(reset_app: Flask) -> None:
    app, client = reset_app, reset_app.test_client()
    confirmed_user(app, client, "ada@example.org", "a password")
    client.post("/confirm/reset", data={"email": "ada@example.org"})
    token = path_of(link_in(outbox(app)[-1])).rsplit("/", 1)[1]
    assert client.get(f"/confirm/{token}").status_code == 400
    _, confirm_path = register_for_link(app, client, "bob@example.org")
    confirm_token = confirm_path.rsplit("/", 1)[1]
    assert client.get(f"/confirm/reset/{confirm_token}").status_code == 400


def test_password_reset_json(reset_app: Flask) -> None:
    app, client = reset_app, reset_app.test_client()
    user_id = confirmed_user(app, client, "ada@example.org", "a password")
    response = client.post("/confirm/reset", json={"email": "ada@example.org"})
    assert response.json == {"status": "accepted", "message": RESET_REQUEST_MESSAGE}
    reset_path = path_of(link_in(outbox(app)[-1]))
    assert client.get(reset_path, headers=JSON).json == {
        "status": "pending",
        "email": "ada@example.org",
    }
    for body, code in [
        ({"password": "short"}, "password_too_short"),
        ({"password": "x" * 2000}, "password_too_long"),
        ({"password": "long enough", "password_confirm": "other"}, "password_mismatch"),
        ({"password": 12345678}, "invalid_json"),
    ]:
        response = client.post(reset_path, json=body)
        assert response.status_code == 400, body
        assert response.json is not None
        assert response.json["error"] == code, body
    response = client.post(reset_path, json={"password": "long enough"})
    assert response.json == {
        "status": "password_reset",
        "message": PASSWORD_RESET_MESSAGE,
    }
    assert check_password(app, user_id, "long enough")
    response = client.post(reset_path, json={"password": "long enough"})
    assert response.json is not None
    assert response.json["error"] == "token_invalid"


def test_password_reset_is_rate_limited(make_app: AppFactory, redis_url: str) -> None:
    app = make_app(
        CONFIRM_PASSWORD_RESET=True,
        CONFIRM_ASYNC=True,
        CONFIRM_REDIS_URL=redis_url,
        CONFIRM_RESEND_IP_LIMIT="3 per hour",
    )
    client = app.test_client()
    codes = [
        client.post("/confirm/reset", data={"email": "a@example.org"}).status_code
        for _ in range(5)
    ]
    assert codes == [200, 200, 200, 429, 429]
    # Its own counter: resend is not spent by reset requests.
    assert (
        client.post("/confirm/resend", data={"email": "a@example.org"}).status_code
        == 200
    )


def test_a_password_reset_cancels_a_pending_change(db_reset_app: Flask) -> None:
    app, client = db_reset_app, db_reset_app.test_client()
    user_id = confirmed_user(app, client, "ada@example.org", "a password")
    change_email(app, client, user_id, "eve@example.com")
    change_path = path_of(link_in(outbox(app)[-1]))
    client.post("/confirm/reset", data={"email": "ada@example.org"})
    reset_path = path_of(link_in(outbox(app)[-1]))
    response = client.post(reset_path, json={"password": "a new password"})
    assert response.json is not None and response.json["status"] == "password_reset"
    user = get_user(app, user_id)
    assert (user.email, user.pending_email) == ("ada@example.org", None)
    assert user.confirmation_state == "confirmed"
    assert client.post(change_path, headers=JSON).json["error"] == "token_invalid"  # type: ignore[index]
    assert get_user(app, user_id).email == "ada@example.org"


# -- a reset link used by many requests at once -------------------------------------


def test_concurrent_posts_of_one_reset_link_set_one_password(
    db_reset_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight POSTs of one link at once, over real HTTP to a threaded server:
    exactly one sets its password, the others answer token_invalid (three
    of eight answered 200 before the UPDATE was conditional on the old
    hash)."""
    import threading
    import time

    app = db_reset_app
    client = app.test_client()
    user_id = confirmed_user(app, client, "ada@example.org", "old password")
    client.post("/confirm/reset", data={"email": "ada@example.org"})
    reset_path = path_of(link_in(outbox(app)[-1]))
    user_model = models(app)["User"]
    hash_password = user_model.set_password

    def slow_hash(self: t.Any, password: str) -> None:
        time.sleep(0.3)  # what a real password hash costs, about
        hash_password(self, password)

    monkeypatch.setattr(user_model, "set_password", slow_hash)
    resets: list[int] = []
    signals.password_reset.connect(
        lambda sender, user, **kw: resets.append(user.id), app, weak=False
    )
    attempts = 8
    barrier = threading.Barrier(attempts)
    answers: dict[int, tuple[int, dict[str, t.Any]]] = {}

    with serving(app) as base:

        def post(i: int) -> None:
            request = urllib.request.Request(
                base + reset_path,
                data=json.dumps({"password": f"password number {i}"}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            barrier.wait(10)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answers[i] = (response.status, json.loads(response.read()))
            except urllib.error.HTTPError as e:
                answers[i] = (e.code, json.loads(e.read()))

        threads = [threading.Thread(target=post, args=(i,)) for i in range(attempts)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    assert len(answers) == attempts
    won = [i for i, (status, _) in answers.items() if status == 200]
    assert len(won) == 1, answers
    (winner,) = won
    assert answers[winner][1]["status"] == "password_reset"
    for i, (status, body) in answers.items():
        if i != winner:
            assert (status, body["error"]) == (400, "token_invalid"), answers
    assert check_password(app, user_id, f"password number {winner}")
    assert resets == [user_id]
