"""An email change through the web (:mod:`flask_confirm.web.email_change` and
the confirmation page): the change link, and the "this wasn't me" link of the
notice to the old address."""

from __future__ import annotations

import datetime as dt
import typing as t

from freezegun import freeze_time

from flask_confirm import signals
from flask_confirm.web.confirm import EMAIL_CHANGED_MESSAGE
from testapp import change_email
from testapp import confirmed_user
from testapp import flashes
from testapp import get_user
from testapp import JSON
from testapp import link_in
from testapp import models
from testapp import notice_cancel_path
from testapp import outbox
from testapp import path_of
from testapp import register
from testapp import register_for_link
from testapp import text

if t.TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

    from conftest import AppFactory


# -- email change -------------------------------------------------------------


def test_email_change_flow(db_app: Flask, db_client: FlaskClient) -> None:
    app, client = db_app, db_client
    user_id, path = register_for_link(app, client, "ada@example.org")
    client.post(path)
    changed: list[dict[str, t.Any]] = []
    signals.email_changed.connect(
        lambda sender, **kw: changed.append(kw), app, weak=False
    )
    change_email(app, client, user_id, "Ada@New.Example.org")
    user = get_user(app, user_id)
    assert (user.email, user.pending_email) == (
        "ada@example.org",
        "Ada@new.example.org",
    )
    assert user.email_confirmed  # the old address stays confirmed meanwhile
    assert user.confirmation_state == "sent"  # inline under app.testing

    notice, link_mail = outbox(app)[-2:]
    assert notice.to == "ada@example.org"
    assert notice.subject == "Your email address is being changed"
    assert "Ada@new.example.org" in notice.text
    # The notice's one link is the "this wasn't me" link that cancels.
    assert path_of(link_in(notice)).startswith("/confirm/cancel/")
    assert link_mail.to == "Ada@new.example.org"
    assert link_mail.subject == "Confirm your new email address"
    new_path = path_of(link_in(link_mail))

    page = client.get(new_path)
    assert b"Confirm your new email address" in page.data
    assert b"Ada@new.example.org" in page.data
    assert get_user(app, user_id).email == "ada@example.org"  # GET changes nothing
    response = client.post(new_path)
    assert response.status_code == 302
    user = get_user(app, user_id)
    assert (user.email, user.pending_email) == ("Ada@new.example.org", None)
    assert user.confirmation_state == "confirmed"
    assert [c["old_email"] for c in changed] == ["ada@example.org"]
    assert ("success", EMAIL_CHANGED_MESSAGE) in flashes(client)
    # Every link for the old address, and the change link itself, is now dead.
    assert client.get(path).status_code == 400
    assert client.post(new_path).status_code == 302  # already done: same answer
    assert len(changed) == 1


def test_newer_email_change_kills_older_link(app: Flask, client: FlaskClient) -> None:
    user_id = register(client, "ada@example.org")
    change_email(app, client, user_id, "first@example.org")
    first = path_of(link_in(outbox(app)[-1]))
    change_email(app, client, user_id, "second@example.org")
    second = path_of(link_in(outbox(app)[-1]))
    assert client.post(first, headers=JSON).json["error"] == "token_invalid"  # type: ignore[index]
    assert get_user(app, user_id).email == "ada@example.org"
    assert client.post(second, headers=JSON).json == {  # type: ignore[index]
        "status": "confirmed",
        "email": "second@example.org",
        "message": EMAIL_CHANGED_MESSAGE,
    }
    assert get_user(app, user_id).email == "second@example.org"


def test_a_newer_request_to_the_same_address_kills_the_older_link(
    db_app: Flask, db_client: FlaskClient
) -> None:
    """A change link is bound to its request (the new address and when it
    was asked for), like the notice's cancel link: asking again for the same
    address does not revive an earlier link, which may have gone astray."""
    app, client = db_app, db_client
    user_id = register(client, "ada@example.org")
    change_email(app, client, user_id, "new@example.org")
    first = path_of(link_in(outbox(app)[-1]))
    change_email(app, client, user_id, "new@example.org")
    second = path_of(link_in(outbox(app)[-1]))
    assert first != second
    for method in ("GET", "POST"):
        response = client.open(first, method=method, headers=JSON)
        assert (response.status_code, response.json["error"]) == (400, "token_invalid")  # type: ignore[index]
    assert get_user(app, user_id).email == "ada@example.org"
    response = client.post(second, headers=JSON)
    assert response.status_code == 200
    assert response.json is not None and response.json["status"] == "confirmed"
    assert get_user(app, user_id).email == "new@example.org"


def test_cancelled_email_change_link_dies(app: Flask, client: FlaskClient) -> None:
    user_id = register(client, "ada@example.org")
    change_email(app, client, user_id, "new@example.org")
    new_path = path_of(link_in(outbox(app)[-1]))
    m = models(app)
    with app.app_context():
        user = m["db"].session.get(m["User"], user_id)
        assert m["confirm"].cancel_email_change(user)
        assert not m["confirm"].cancel_email_change(user)
    assert client.post(new_path).status_code == 400
    assert get_user(app, user_id).email == "ada@example.org"


def test_email_change_to_an_address_taken_meanwhile(
    app: Flask, client: FlaskClient
) -> None:
    user_id = register(client, "ada@example.org")
    change_email(app, client, user_id, "new@example.org")
    new_path = path_of(link_in(outbox(app)[-1]))
    register(client, "new@example.org")  # someone else takes it first
    response = client.post(new_path, headers=JSON)
    assert response.status_code == 409
    assert response.json is not None
    assert response.json["error"] == "email_in_use"
    response = client.post(new_path)
    assert response.status_code == 409
    assert b"now used by another account" in response.data
    user = get_user(app, user_id)
    assert (user.email, user.pending_email) == ("ada@example.org", "new@example.org")


# -- the "this wasn't me" link of an email change notice ----------------------------


def test_cancel_link_shows_a_button_then_cancels(
    db_app: Flask, db_client: FlaskClient
) -> None:
    app, client = db_app, db_client
    user_id, path = register_for_link(app, client, "ada@example.org")
    client.post(path)
    change_email(app, client, user_id, "eve@example.com")
    change_path = path_of(link_in(outbox(app)[-1]))
    cancel_path = notice_cancel_path(app)

    # GET (and HEAD: mail scanners open links) changes nothing.
    page = client.get(cancel_path)
    assert page.status_code == 200
    body = text(page)
    assert "ada@example.org" in body and "eve@example.com" in body
    assert '<form method="post">' in body and "Cancel the change" in body
    assert client.head(cancel_path).status_code == 200
    assert client.get(cancel_path, headers=JSON).json == {
        "status": "pending",
        "email": "ada@example.org",
        "new_email": "eve@example.com",
    }
    assert get_user(app, user_id).pending_email == "eve@example.com"

    done = client.post(cancel_path)
    assert done.status_code == 200
    assert "The change is cancelled" in text(done)
    assert "Change your password now" in text(done)
    user = get_user(app, user_id)
    assert (user.email, user.pending_email) == ("ada@example.org", None)
    assert user.email_confirmed  # the address stays confirmed
    # The change link is dead, and the cancel link has nothing left to do.
    assert client.post(change_path, headers=JSON).json["error"] == "token_invalid"  # type: ignore[index]
    again = client.post(cancel_path, headers=JSON)
    assert (again.status_code, again.json["error"]) == (400, "token_invalid")  # type: ignore[index]
    assert "no longer pending" in text(client.get(cancel_path))


def test_cancel_link_json(app: Flask, client: FlaskClient) -> None:
    user_id = register(client, "ada@example.org")
    change_email(app, client, user_id, "eve@example.com")
    response = client.post(notice_cancel_path(app), json={})
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["status"] == "cancelled"
    assert response.json["email"] == "ada@example.org"
    assert get_user(app, user_id).pending_email is None


def test_cancel_link_is_bound_to_its_request(app: Flask, client: FlaskClient) -> None:
    """It cancels the change its notice was about: not a newer request, to
    the same address or another one."""
    user_id = register(client, "ada@example.org")
    change_email(app, client, user_id, "eve@example.com")
    first = notice_cancel_path(app)
    change_email(app, client, user_id, "eve@example.com")  # the same, again
    second = notice_cancel_path(app)
    assert second != first
    for method in ("GET", "POST"):
        response = client.open(first, method=method, headers=JSON)
        assert (response.status_code, response.json["error"]) == (400, "token_invalid")  # type: ignore[index]
    assert get_user(app, user_id).pending_email == "eve@example.com"
    change_email(app, client, user_id, "mallory@example.com")
    assert client.post(second, headers=JSON).status_code == 400
    assert get_user(app, user_id).pending_email == "mallory@example.com"
    assert client.post(notice_cancel_path(app), headers=JSON).status_code == 200
    assert get_user(app, user_id).pending_email is None


def test_cancel_link_after_the_change_was_made(app: Flask, client: FlaskClient) -> None:
    user_id = register(client, "ada@example.org")
    change_email(app, client, user_id, "eve@example.com")
    cancel_path = notice_cancel_path(app)
    client.post(path_of(link_in(outbox(app)[-1])))  # confirmed from the new box
    assert get_user(app, user_id).email == "eve@example.com"
    response = client.post(cancel_path, headers=JSON)
    assert (response.status_code, response.json["error"]) == (400, "token_invalid")  # type: ignore[index]
    assert get_user(app, user_id).email == "eve@example.com"


def test_cancel_link_expires(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_TOKEN_MAX_AGE=600)
    client = app.test_client()
    user_id = register(client, "ada@example.org")
    with freeze_time(dt.datetime.now(dt.timezone.utc)) as frozen:
        change_email(app, client, user_id, "eve@example.com")
        cancel_path = notice_cancel_path(app)
        frozen.tick(601)
        response = client.post(cancel_path, headers=JSON)
        assert (response.status_code, response.json["error"]) == (400, "token_expired")  # type: ignore[index]
        assert "expired" in text(client.get(cancel_path))
    assert get_user(app, user_id).pending_email == "eve@example.com"


def test_cancel_token_is_no_other_token(reset_app: Flask) -> None:
    """Its own salt: a cancel token confirms nothing and resets nothing, and
    no other token cancels."""
    app, client = reset_app, reset_app.test_client()
    user_id = confirmed_user(app, client, "ada@example.org", "a password")
    change_email(app, client, user_id, "eve@example.com")
    change_token = path_of(link_in(outbox(app)[-1])).rsplit("/", 1)[1]
    cancel_token = notice_cancel_path(app).rsplit("/", 1)[1]
    for path in (f"/confirm/{cancel_token}", f"/confirm/reset/{cancel_token}"):
        assert client.post(path, headers=JSON).status_code == 400
    assert (
        client.post(f"/confirm/cancel/{change_token}", headers=JSON).status_code == 400
    )
    user = get_user(app, user_id)
    assert (user.email, user.pending_email) == ("ada@example.org", "eve@example.com")
