"""The ``confirm`` blueprint through the test client: the confirmation page and
resend, with the memory sender and ``CONFIRM_ASYNC`` false."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import typing as t
import urllib.error
import urllib.request

import pytest
from flask import get_flashed_messages
from flask import Request
from freezegun import freeze_time
from itsdangerous import URLSafeTimedSerializer
from werkzeug.urls import iri_to_uri

from conftest import serving
from flask_confirm import signals
from flask_confirm.tokens import address_digest
from flask_confirm.tokens import SALT
from flask_confirm.web.confirm import CONFIRMED_MESSAGE
from flask_confirm.web.confirm import EMAIL_CHANGED_MESSAGE
from flask_confirm.web.resend import RESEND_MESSAGE
from flask_confirm.web.reset import PASSWORD_RESET_MESSAGE
from flask_confirm.web.reset import RESET_REQUEST_MESSAGE

if t.TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse

    from conftest import AppFactory
    from flask_confirm import EmailMessage

EXTERNAL = "https://app.example.test"
LINK = re.compile(r"https?://[^\s\"'<>]+")


# -- helpers ------------------------------------------------------------------


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


def delete_user(app: Flask, user_id: int) -> None:
    m = models(app)
    with app.app_context():
        m["db"].session.delete(m["db"].session.get(m["User"], user_id))
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


@pytest.fixture()
def db_app(make_app: AppFactory, database_url: str) -> Flask:
    return make_app(SQLALCHEMY_DATABASE_URI=database_url)


@pytest.fixture()
def db_client(db_app: Flask) -> FlaskClient:
    return db_app.test_client()


# -- the confirmation page ------------------------------------------------------


def test_get_shows_the_address_and_a_form_without_confirming(
    db_app: Flask, db_client: FlaskClient
) -> None:
    recorder = Recorder()
    user_id, path = register_for_link(db_app, db_client, "ada@example.org")
    with signals.email_confirmed.connected_to(recorder, sender=db_app):
        response = db_client.get(path)
    assert response.status_code == 200
    body = text(response)
    assert "ada@example.org" in body
    form = re.search(r"<form\b[^>]*>.*?</form>", body, re.S)
    assert form is not None
    assert re.search(r"""method=["']?post""", form.group(0), re.I)
    assert re.search(r"<button[^>]*>\s*Confirm\s*</button>", form.group(0))
    # A form without action posts back to the page's own URL (the link).
    action = re.search(r"""action=["']([^"']*)""", form.group(0))
    assert action is None or action.group(1) in ("", path)
    assert not get_user(db_app, user_id).email_confirmed
    assert recorder.calls == []
    assert flashes(db_client) == []


def test_post_confirms(db_app: Flask, db_client: FlaskClient) -> None:
    recorder = Recorder()
    user_id, path = register_for_link(db_app, db_client, "ada@example.org")
    other_id = register(db_client, "grace@example.org")
    before = dt.datetime.now(dt.timezone.utc)
    with signals.email_confirmed.connected_to(recorder, sender=db_app):
        response = db_client.post(path)
    after = dt.datetime.now(dt.timezone.utc)

    assert response.status_code == 302
    assert response.location == "/"
    assert flashes(db_client) == [("success", CONFIRMED_MESSAGE)]

    user = get_user(db_app, user_id)
    assert user.email_confirmed
    confirmed_at = user.email_confirmed_at
    if confirmed_at.tzinfo is None:  # SQLite; see test_confirmed_at_is_timezone_aware
        confirmed_at = confirmed_at.replace(tzinfo=dt.timezone.utc)
    assert before - dt.timedelta(seconds=1) <= confirmed_at <= after
    assert not get_user(db_app, other_id).email_confirmed

    assert len(recorder.calls) == 1
    sender, signalled_id, extra = recorder.calls[0]
    assert sender is db_app
    assert signalled_id == user_id
    assert extra == {}


def test_confirmed_at_is_timezone_aware(db_app: Flask, db_client: FlaskClient) -> None:
    # ConfirmableMixin: "Times are stored timezone-aware, in UTC."
    user_id, path = register_for_link(db_app, db_client, "ada@example.org")
    assert db_client.post(path).status_code == 302
    user = get_user(db_app, user_id)
    for value in (user.email_confirmed_at, user.confirmation_requested_at):
        assert value is not None
        assert value.utcoffset() == dt.timedelta(0)


def test_signal_for_another_app_does_not_fire(
    make_app: AppFactory, app: Flask, client: FlaskClient
) -> None:
    other = make_app()
    recorder = Recorder()
    _, path = register_for_link(app, client, "ada@example.org")
    with signals.email_confirmed.connected_to(recorder, sender=other):
        assert client.post(path).status_code == 302
    assert recorder.calls == []


def test_default_redirect_follows_to_the_home_page(
    app: Flask, client: FlaskClient
) -> None:
    _, path = register_for_link(app, client, "ada@example.org")
    response = client.post(path, follow_redirects=True)
    assert response.request.path == "/"
    assert text(response) == "home"
    # The home page does not show flashes: the message waits in the session.
    assert flashes(client) == [("success", CONFIRMED_MESSAGE)]


def test_custom_redirect_url(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_REDIRECT_URL="/welcome")
    add_flash_page(app, "/welcome")
    client = app.test_client()
    user_id, path = register_for_link(app, client, "ada@example.org")

    response = client.post(path)
    assert response.status_code == 302
    assert response.location == "/welcome"

    page = client.get("/welcome")
    assert page.json == {
        "page": "/welcome",
        "flashes": [["success", CONFIRMED_MESSAGE]],
    }
    assert get_user(app, user_id).email_confirmed
    # Shown once only.
    assert client.get("/welcome").json == {"page": "/welcome", "flashes": []}


def test_custom_absolute_redirect_url(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_REDIRECT_URL="https://app.example.test/welcome?new=1")
    client = app.test_client()
    _, path = register_for_link(app, client, "ada@example.org")
    response = client.post(path)
    assert response.status_code == 302
    assert response.location == "https://app.example.test/welcome?new=1"


@pytest.mark.parametrize("on_get", [False, True])
@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_head_and_options_never_confirm(
    make_app: AppFactory, on_get: bool, method: str
) -> None:
    app = make_app(CONFIRM_ON_GET=on_get)
    client = app.test_client()
    recorder = Recorder()
    user_id, path = register_for_link(app, client, "ada@example.org")
    with signals.email_confirmed.connected_to(recorder, sender=app):
        for _ in range(2):
            response = client.open(path, method=method)
            assert response.status_code == 200
            assert response.data == b""
    assert not get_user(app, user_id).email_confirmed
    assert recorder.calls == []
    assert flashes(client) == []
    if method == "OPTIONS":
        allowed = {m.strip() for m in response.headers["Allow"].split(",")}
        assert {"GET", "POST"} <= allowed


def test_confirm_on_get(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_ON_GET=True)
    client = app.test_client()
    recorder = Recorder()
    user_id, path = register_for_link(app, client, "ada@example.org")
    with signals.email_confirmed.connected_to(recorder, sender=app):
        assert client.head(path).status_code == 200
        assert not get_user(app, user_id).email_confirmed
        response = client.get(path)
    assert response.status_code == 302
    assert response.location == "/"
    assert get_user(app, user_id).email_confirmed
    assert [c[1] for c in recorder.calls] == [user_id]
    assert flashes(client) == [("success", CONFIRMED_MESSAGE)]


def test_post_still_confirms_with_confirm_on_get(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_ON_GET=True)
    client = app.test_client()
    user_id, path = register_for_link(app, client, "ada@example.org")
    assert client.post(path).status_code == 302
    assert get_user(app, user_id).email_confirmed


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_not_allowed(
    app: Flask, client: FlaskClient, method: str
) -> None:
    user_id, path = register_for_link(app, client, "ada@example.org")
    assert client.open(path, method=method).status_code == 405
    assert not get_user(app, user_id).email_confirmed


def test_privacy_headers(app: Flask, client: FlaskClient) -> None:
    _, path = register_for_link(app, client, "ada@example.org")
    responses = {
        "page": client.get(path),
        "invalid": client.get("/confirm/not-a-token"),
        "confirmed": client.post(path),
        "resend": client.get("/confirm/resend"),
    }
    for name, response in responses.items():
        assert response.headers.get("Referrer-Policy") == "no-referrer", name
        assert "no-store" in response.headers.get("Cache-Control", ""), name
    assert 'content="no-referrer"' in text(responses["page"])
    # Only the blueprint's pages: the app's own are left alone.
    assert "Referrer-Policy" not in client.get("/").headers


def test_expired_link(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_TOKEN_MAX_AGE=3600)
    client = app.test_client()
    with freeze_time("2030-01-01 12:00:00") as frozen:
        user_id, path = register_for_link(app, client, "ada@example.org")
        frozen.tick(3601)
        for method in ("GET", "POST"):
            response = client.open(path, method=method)
            assert response.status_code == 400, method
            body = text(response)
            assert "expired" in body.lower()
            assert "not valid" not in body
            assert "ada@example.org" not in body
            assert 'href="/confirm/resend"' in body
    assert not get_user(app, user_id).email_confirmed
    assert flashes(client) == []


def test_link_valid_until_max_age(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_TOKEN_MAX_AGE=3600)
    client = app.test_client()
    with freeze_time("2030-01-01 12:00:00") as frozen:
        user_id, path = register_for_link(app, client, "ada@example.org")
        frozen.tick(3600)
        assert client.post(path).status_code == 302
    assert get_user(app, user_id).email_confirmed


def _tamper(path: str) -> str:
    index = len(path) - 10  # inside the signature, not its last character
    return path[:index] + ("A" if path[index] != "A" else "B") + path[index + 1 :]


@pytest.mark.parametrize(
    "kind",
    [
        "garbage",
        "tampered",
        "truncated",
        "foreign-key",
        "deleted-user",
        "changed-address",
        "cleared-address",
        "id-of-another-type",
        "other-users-path",
    ],
)
def test_invalid_link(db_app: Flask, db_client: FlaskClient, kind: str) -> None:
    user_id, path = register_for_link(db_app, db_client, "ada@example.org")
    if kind == "garbage":
        path = "/confirm/not-a-token"
    elif kind == "tampered":
        path = _tamper(path)
    elif kind == "truncated":
        path = path[:-5]
    elif kind == "foreign-key":
        token = URLSafeTimedSerializer("another-secret-key", salt=SALT).dumps(
            [user_id, address_digest("ada@example.org")]
        )
        path = f"/confirm/{token}"
    elif kind == "deleted-user":
        delete_user(db_app, user_id)
    elif kind == "changed-address":
        set_email(db_app, user_id, "ada@example.com")
    elif kind == "cleared-address":
        # As an app that anonymises an account might.
        set_email(db_app, user_id, "")
    elif kind == "id-of-another-type":
        # Signed with this app's key, e.g. by another app sharing it whose user
        # ids are strings; this app's primary key is an integer.
        token = URLSafeTimedSerializer(db_app.secret_key, salt=SALT).dumps(
            ["user-1", address_digest("ada@example.org")]
        )
        path = f"/confirm/{token}"
    elif kind == "other-users-path":
        # Grace's link after her address changed, while Ada's is untouched.
        grace_id, path = register_for_link(db_app, db_client, "grace@example.org")
        set_email(db_app, grace_id, "grace@example.com")

    for method in ("GET", "POST"):
        response = db_client.open(path, method=method)
        assert response.status_code == 400, (kind, method)
        body = text(response)
        assert "not valid" in body
        assert "expired" not in body.lower()
        assert "ada@example.org" not in body
        assert 'href="/confirm/resend"' in body
    user = get_user(db_app, user_id)
    assert user is None or not user.email_confirmed
    assert flashes(db_client) == []


def test_invalid_pages_are_all_alike(app: Flask, client: FlaskClient) -> None:
    # Unknown user, changed address and a bad signature answer identically.
    ada, ada_path = register_for_link(app, client, "ada@example.org")
    grace, grace_path = register_for_link(app, client, "grace@example.org")
    delete_user(app, ada)
    set_email(app, grace, "grace@example.com")
    answers = {
        (r.status_code, r.get_data())
        for r in (
            client.get(ada_path),
            client.get(grace_path),
            client.get(_tamper(grace_path)),
            client.get("/confirm/x"),
        )
    }
    assert len(answers) == 1


@pytest.mark.parametrize("size", [513, 64 * 1024, 10 * 1024 * 1024])
def test_huge_token_in_path(app: Flask, client: FlaskClient, size: int) -> None:
    user_id, path = register_for_link(app, client, "ada@example.org")
    huge = path + "A" * (size - len(path))
    for method in ("GET", "POST"):
        response = client.open(huge, method=method)
        assert response.status_code == 400
        assert "not valid" in text(response)
    assert not get_user(app, user_id).email_confirmed


def test_already_confirmed_answers_identically(
    db_app: Flask, db_client: FlaskClient
) -> None:
    recorder = Recorder()
    user_id, path = register_for_link(db_app, db_client, "ada@example.org")
    with signals.email_confirmed.connected_to(recorder, sender=db_app):
        first = db_client.post(path)
        first_flashes = take_flashes(db_client)
        confirmed_at = get_user(db_app, user_id).email_confirmed_at
        second = db_client.post(path)
        second_flashes = flashes(db_client)

    assert first.status_code == second.status_code == 302
    assert first.location == second.location == "/"
    assert first.get_data() == second.get_data()
    assert first_flashes == second_flashes == [("success", CONFIRMED_MESSAGE)]
    assert [c[1] for c in recorder.calls] == [user_id]
    assert get_user(db_app, user_id).email_confirmed_at == confirmed_at


def test_pending_page_escapes_the_address(app: Flask, client: FlaskClient) -> None:
    # Stored by the app itself: no mail goes to it (the worker refuses an
    # address that is not one), but a link made for it shows it escaped.
    user_id = register(client, "ada@example.org")
    set_email(app, user_id, "<script>x</script>@example.org")
    m = models(app)
    with app.app_context():
        user = m["db"].session.get(m["User"], user_id)
        path = path_of(m["confirm"].confirm_url(user))
    body = text(client.get(path))
    assert "<script>x</script>" not in body
    assert "&lt;script&gt;x&lt;/script&gt;@example.org" in body


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("/account/verify", "/account/verify"), ("/account/verify/", "/account/verify")],
)
def test_custom_url_prefix(make_app: AppFactory, prefix: str, expected: str) -> None:
    app = make_app(CONFIRM_URL_PREFIX=prefix)
    client = app.test_client()
    user_id, path = register_for_link(app, client, "ada@example.org")
    assert path.startswith(f"{expected}/")
    token = path.rsplit("/", 1)[1]

    assert client.get(f"/confirm/{token}").status_code == 404
    assert client.get("/confirm/resend").status_code == 404
    assert client.get(f"{expected}/resend").status_code == 200

    page = client.get(path)
    assert page.status_code == 200
    assert "ada@example.org" in text(page)
    assert client.post(path).status_code == 302
    assert get_user(app, user_id).email_confirmed

    invalid = client.get(f"{expected}/x")
    assert invalid.status_code == 400
    assert f'href="{expected}/resend"' in text(invalid)


# -- mailed links ---------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.test"},
        {"Host": "evil.test:8443", "X-Forwarded-Host": "evil.test"},
        {"X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "http"},
        {"Forwarded": "host=evil.test;proto=http"},
    ],
)
def test_mailed_link_ignores_the_request_host(
    app: Flask, client: FlaskClient, headers: dict[str, str]
) -> None:
    register(client, "ada@example.org", headers=headers)
    resent = client.post(
        "/confirm/resend", data={"email": "ada@example.org"}, headers=headers
    )
    assert resent.status_code == 200
    assert RESEND_MESSAGE in text(resent)
    assert "evil" not in text(resent)
    mails = outbox(app)
    assert len(mails) == 2
    for mail in mails:
        link = link_in(mail)
        assert link.startswith(f"{EXTERNAL}/confirm/")
        assert "evil" not in mail.text and "evil" not in mail.html
    # The link works.
    assert client.post(path_of(link_in(mails[-1]))).status_code == 302


def test_mailed_link_keeps_the_external_url_path(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_EXTERNAL_URL="https://example.test/app/")
    client = app.test_client()
    register(client, "ada@example.org", headers={"Host": "evil.test"})
    (mail,) = outbox(app)
    link = link_in(mail)
    assert link.startswith("https://example.test/app/confirm/")
    # Served at /confirm/ here (the app's own root), as behind a path-stripping proxy.
    assert client.get(path_of(link, "https://example.test/app")).status_code == 200


def test_mail_is_addressed_to_the_user(app: Flask, client: FlaskClient) -> None:
    register(client, "ada@example.org")
    (mail,) = outbox(app)
    assert mail.to == "ada@example.org"
    assert mail.sender == "no-reply@example.test"
    assert mail.subject == "Confirm your email address"
    assert "24 hours" in mail.text


# -- resend ---------------------------------------------------------------------
#
# POST /confirm/resend answers 200 with the resend page and RESEND_MESSAGE for
# every well-formed address (never a redirect, never a flash), 400 for bad
# input and 429 over the per-client limit. The limits themselves are tested in
# test_limits.py; here they are at their defaults unless a test says otherwise.


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


def test_resend_form(client: FlaskClient) -> None:
    response = client.get("/confirm/resend")
    assert response.status_code == 200
    body = text(response)
    form = re.search(r"<form\b[^>]*>.*?</form>", body, re.S)
    assert form is not None
    assert re.search(r"""method=["']?post""", form.group(0), re.I)
    assert 'action="/confirm/resend"' in form.group(0)
    assert re.search(r"<input[^>]*name=\"email\"", form.group(0))
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert RESEND_MESSAGE not in body


def test_resend_sends_a_new_link(make_app: AppFactory, database_url: str) -> None:
    # Ada asks twice within three minutes: the second request must send nothing
    # because she is confirmed by then, which the per-address limit would hide.
    # So that limit is off here, deliberately; test_limits.py covers it.
    db_app = make_app(
        SQLALCHEMY_DATABASE_URI=database_url, CONFIRM_RESEND_ADDRESS_LIMIT=None
    )
    db_client = db_app.test_client()
    user_id, first_path = register_for_link(db_app, db_client, "ada@example.org")
    assert first_path.startswith("/confirm/")
    requested_at = get_user(db_app, user_id).confirmation_requested_at

    response = resend(db_client, "ada@example.org")
    assert_resend_page(response)
    assert flashes(db_client) == []

    mails = outbox(db_app)
    assert len(mails) == 2
    assert mails[-1].to == "ada@example.org"
    new_path = path_of(link_in(mails[-1]))
    assert get_user(db_app, user_id).confirmation_requested_at >= requested_at

    assert db_client.post(new_path).status_code == 302
    assert get_user(db_app, user_id).email_confirmed
    # Now confirmed: no more mail, and the same page as before.
    take_flashes(db_client)
    again = resend(db_client, "ada@example.org")
    assert_resend_page(again)
    assert again.get_data() == response.get_data()
    assert len(outbox(db_app)) == 2


def test_resend_ignores_the_redirect_url(make_app: AppFactory) -> None:
    # CONFIRM_REDIRECT_URL used to be where resend went, with a flashed message;
    # now the answer is the resend page itself, wherever that setting points.
    app = make_app(CONFIRM_REDIRECT_URL="/welcome")
    add_flash_page(app, "/welcome")
    client = app.test_client()
    register(client, "ada@example.org")
    response = resend(client, "ada@example.org")
    assert_resend_page(response)
    assert len(outbox(app)) == 2
    # Nothing was left in the session for the next page to show.
    assert flashes(client) == []
    assert client.get("/welcome").json == {"page": "/welcome", "flashes": []}


def _answer(response: TestResponse) -> tuple[int, list[tuple[str, str]], bytes]:
    """Everything a client can see of a response: status, headers (names,
    values, order) and body."""
    return response.status_code, response.headers.to_wsgi_list(), response.get_data()


def test_resend_answers_alike_for_every_address(
    db_app: Flask, db_client: FlaskClient
) -> None:
    register(db_client, "ada@example.org")
    grace_id, path = register_for_link(db_app, db_client, "grace@example.org")
    assert db_client.post(path).status_code == 302
    assert len(outbox(db_app)) == 2
    grace = get_user(db_app, grace_id)

    # A visitor with a session of their own (no flashes waiting in it).
    visitor = db_app.test_client()
    unknown = resend(visitor, "nobody@example.org")
    assert len(outbox(db_app)) == 2
    unconfirmed = resend(visitor, "ada@example.org")
    assert len(outbox(db_app)) == 3
    confirmed = resend(visitor, "grace@example.org")
    assert len(outbox(db_app)) == 3
    # Ada again at once, deliberately: over her address's limit (1 per 3
    # minutes), so nothing is sent, and the answer must not say so.
    over_limit = resend(visitor, "ada@example.org")
    assert len(outbox(db_app)) == 3
    # Typed differently, the same address shares the same limit.
    over_limit_other_case = resend(visitor, "  ADA@Example.ORG ")
    assert len(outbox(db_app)) == 3
    unknown_again = resend(visitor, "nobody@example.org")
    assert len(outbox(db_app)) == 3

    responses = {
        "unknown": unknown,
        "unconfirmed": unconfirmed,
        "confirmed": confirmed,
        "over-limit": over_limit,
        "over-limit-other-case": over_limit_other_case,
        "unknown-again": unknown_again,
    }
    for name, response in responses.items():
        assert_resend_page(response)
        assert not any(k.lower() == "set-cookie" for k, _ in response.headers), name
        assert _answer(response) == _answer(unknown), name
    assert flashes(visitor) == []

    # Nothing was recorded for the confirmed user, nor anyone created.
    after = get_user(db_app, grace_id)
    assert after.confirmation_requested_at == grace.confirmation_requested_at
    assert after.confirmation_sent_at == grace.confirmation_sent_at
    m = models(db_app)
    with db_app.app_context():
        assert m["db"].session.query(m["User"]).count() == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "Please enter your email address."),
        ({"email": ""}, "Please enter your email address."),
        ({"email": "   "}, "Please enter your email address."),
        ({"email": "a" * 243 + "@example.org"}, "That email address is too long."),
        ({"email": "a" * 10_000 + "@example.org"}, "That email address is too long."),
        ({"email": "a" * 65 + "@example.org"}, "That email address is too long."),
        (
            {"email": "ada@example.org\r\nBcc: eve@example.org"},
            "That does not look like an email address.",
        ),
        (
            {"email": "ada\r\n@example.org"},
            "That does not look like an email address.",
        ),
        (
            {"email": "ada@example.org\r\nX-Injected: yes"},
            "That does not look like an email address.",
        ),
        ({"email": "ada@example.org\n"}, "That does not look like an email address."),
        ({"email": "ada@exa\nmple.org"}, "That does not look like an email address."),
        ({"email": "ada@example\x00.org"}, "That does not look like an email address."),
        (
            {"email": "ada lovelace@example.org"},
            "That does not look like an email address.",
        ),
        ({"email": "ada\t@example.org"}, "That does not look like an email address."),
        ({"email": "ada.example.org"}, "That does not look like an email address."),
        ({"email": "ada@@example.org"}, "That does not look like an email address."),
        ({"email": "ada@b@example.org"}, "That does not look like an email address."),
        ({"email": "@example.org"}, "That does not look like an email address."),
        ({"email": "ada@"}, "That does not look like an email address."),
        # RFC 5321 allows a dotless domain, but no mail is delivered to one on
        # the public internet: refused, as a domain that cannot be right.
        ({"email": "ada@localhost"}, "The domain of that address is not valid."),
        ({"email": "ada@example.123"}, "The domain of that address is not valid."),
        ({"email": "ada@192.168.0.1"}, "The domain of that address is not valid."),
        ({"email": "ada@exa_mple.org"}, "The domain of that address is not valid."),
        ({"email": "ada@-example.org"}, "The domain of that address is not valid."),
        ({"email": "ada@example..org"}, "The domain of that address is not valid."),
        (
            {"email": "ada@" + "ü" * 60 + ".org"},
            "The domain of that address is not valid.",
        ),
        (
            {"email": "ada\u202e@example.org"},
            "That does not look like an email address.",
        ),
    ],
    ids=[
        "missing",
        "empty",
        "blank",
        "255-chars",
        "10k-chars",
        "65-char-local-part",
        "crlf-bcc",
        "crlf-local",
        "crlf-header",
        "trailing-lf",
        "lf",
        "nul",
        "space-inside",
        "tab-inside",
        "no-at",
        "two-ats",
        "two-ats-apart",
        "no-local",
        "no-domain",
        "dotless-domain",
        "numeric-tld",
        "ip-address",
        "underscore-in-domain",
        "hyphen-first-in-label",
        "empty-label",
        "bad-idn",
        "bidi-override",
    ],
)
def test_resend_rejects_bad_input(
    app: Flask, client: FlaskClient, data: dict[str, str], message: str
) -> None:
    register(client, "ada@example.org")
    response = client.post("/confirm/resend", data=data)
    assert response.status_code == 400
    body = text(response)
    assert message.replace("'", "&#39;") in body
    assert 'role="alert"' in body
    assert RESEND_MESSAGE not in body
    assert "<form" in body  # the form is shown again
    assert len(outbox(app)) == 1
    assert flashes(client) == []


#: RFC 5321: a 64-octet local part, and a domain of labels of at most 63
#: octets, 254 characters in all.
LONGEST = "l" * 64 + "@" + ".".join(["a" * 63, "b" * 63, "c" * 57, "org"])


def test_resend_accepts_the_longest_address(app: Flask, client: FlaskClient) -> None:
    assert len(LONGEST) == 254
    register(client, LONGEST)
    response = resend(client, LONGEST)
    assert_resend_page(response)
    assert [m.to for m in outbox(app)] == [LONGEST, LONGEST]
    # One character more, anywhere, is too long.
    for longer in ("l" + LONGEST, LONGEST.replace("c" * 57, "c" * 58)):
        assert len(longer) == 255
        refused = resend(client, longer)
        assert refused.status_code == 400
        assert "That email address is too long." in text(refused)
    assert len(outbox(app)) == 2


@pytest.mark.parametrize(
    "typed",
    ["ada@example.org", "ADA@EXAMPLE.ORG", "  Ada@Example.Org  ", "aDa@eXaMpLe.oRg"],
)
def test_resend_lookup_ignores_case(
    db_app: Flask, db_client: FlaskClient, typed: str
) -> None:
    register(db_client, "Ada@Example.org")
    response = resend(db_client, typed)
    assert_resend_page(response)
    mails = outbox(db_app)
    assert len(mails) == 2
    # Sent to the address on record, not to what was typed.
    assert mails[-1].to == "Ada@Example.org"


def test_resend_finds_a_non_ascii_address_typed_as_registered(
    db_app: Flask, db_client: FlaskClient
) -> None:
    # An internationalised address (RFC 6531) with an upper-case non-ASCII
    # letter, typed exactly as it was registered.
    register(db_client, "Ünal@example.org")
    response = resend(db_client, "Ünal@example.org")
    assert_resend_page(response)
    assert [m.to for m in outbox(db_app)] == ["Ünal@example.org"] * 2


def test_resend_does_not_match_a_prefix_or_pattern(
    app: Flask, client: FlaskClient
) -> None:
    register(client, "ada@example.org")
    answers = set()
    for typed in (
        "ada@example.or",
        "%@example.org",
        "_da@example.org",
        "da@example.org",
    ):
        response = resend(client, typed)
        assert_resend_page(response)
        answers.add(_answer(response)[2])
    assert len(answers) == 1
    assert len(outbox(app)) == 1


def test_resend_reads_the_body_not_the_query(app: Flask, client: FlaskClient) -> None:
    register(client, "ada@example.org")
    response = client.post("/confirm/resend?email=ada@example.org")
    assert response.status_code == 400
    assert len(outbox(app)) == 1
    response = client.post("/confirm/resend", json={"email": "ada@example.org"})
    assert response.status_code == 200
    assert response.json == {"status": "accepted", "message": RESEND_MESSAGE}
    assert len(outbox(app)) == 2


# -- next after confirming --------------------------------------------------------


#: ``next`` values that must never be followed: other sites (directly, or in
#: the forms browsers read as other sites), script URLs, header injection, and
#: values over the 2048-character limit.
HOSTILE_NEXT = {
    "protocol-relative": "//evil.test",
    "absolute": "https://evil.test",
    "absolute-no-slashes": "https:evil.test",
    "backslash": "/\\evil.test",
    "backslashes": "\\\\evil.test",
    "triple-slash": "///evil.test",
    "crlf-injection": "/\r\nLocation: https://evil.test",
    "lf": "/\nx",
    "nul": "/\x00",
    "del": "/\x7f",
    "javascript": "javascript:alert(1)",
    "leading-tab": "\t//evil.test",
    "tab-between-slashes": "/\t/evil.test",
    "leading-space": " /account",
    "relative": "account",
    "very-long": "/" + "a" * 2048,
    "huge": "/" + "a" * 15_000,
}


@pytest.fixture()
def next_app(make_app: AppFactory) -> Flask:
    # A redirect URL no hostile value could be confused with.
    return make_app(CONFIRM_REDIRECT_URL="/welcome")


@pytest.mark.parametrize("target", list(HOSTILE_NEXT.values()), ids=list(HOSTILE_NEXT))
def test_hostile_next_is_not_followed(next_app: Flask, target: str) -> None:
    client = next_app.test_client()
    user_id, path = register_for_link(next_app, client, "ada@example.org")

    page = client.get(path, query_string={"next": target})
    assert page.status_code == 200
    assert 'name="next"' not in text(page)

    # In the form, as the page's hidden input would carry it, and in the query,
    # as a crafted link would; confirming again answers the same, so one link
    # serves for both.
    for how in ({"data": {"next": target}}, {"query_string": {"next": target}}):
        response = client.post(path, **how)
        assert response.status_code == 302, how
        assert response.headers.getlist("Location") == ["/welcome"], how
    assert get_user(next_app, user_id).email_confirmed


@pytest.mark.parametrize(
    "query",
    [
        "next=/%0d%0aLocation:x",
        "next=/%0D%0ASet-Cookie:%20x=1",
        "next=%2F%2Fevil.test",
        "next=%2F%5Cevil.test",
        "next=%09%2F%2Fevil.test",
        "next=javascript%3Aalert(1)",
        "next=https%3A%2F%2Fevil.test",
    ],
)
def test_hostile_next_in_a_crafted_link(next_app: Flask, query: str) -> None:
    # As an attacker would write it in a link: percent-encoded in the URL.
    client = next_app.test_client()
    _, path = register_for_link(next_app, client, "ada@example.org")
    assert 'name="next"' not in text(client.get(f"{path}?{query}"))
    response = client.post(f"{path}?{query}")
    assert response.status_code == 302
    assert response.headers.getlist("Location") == ["/welcome"]
    assert not any("\r" in v or "\n" in v for _, v in response.headers)


@pytest.mark.parametrize(
    "target",
    [
        "/account?tab=1",
        "/",
        "/account/settings#email",
        "/search?q=%2F%2Fevil.test",
        "/" + "a" * 2047,  # 2048 characters: the longest accepted
    ],
)
def test_safe_next_is_followed(next_app: Flask, target: str) -> None:
    client = next_app.test_client()
    user_id, path = register_for_link(next_app, client, "ada@example.org")
    for how in ({"data": {"next": target}}, {"query_string": {"next": target}}):
        response = client.post(path, **how)
        assert response.status_code == 302, how
        assert response.headers.getlist("Location") == [target], how
    assert get_user(next_app, user_id).email_confirmed


def test_confirm_page_carries_next_to_the_form(next_app: Flask) -> None:
    client = next_app.test_client()
    user_id, path = register_for_link(next_app, client, "ada@example.org")
    target = '/account?tab=1&q="<b>"'
    page = client.get(path, query_string={"next": target})
    body = text(page)
    assert "<b>" not in body  # escaped in the attribute
    form = re.search(r"<form\b[^>]*>.*?</form>", body, re.S)
    assert form is not None
    hidden = re.findall(r"<input[^>]*>", form.group(0))
    assert hidden == [
        '<input type="hidden" name="next"'
        ' value="/account?tab=1&amp;q=&#34;&lt;b&gt;&#34;">'
    ]
    # Pressing the button: the form posts to the page's own URL (no action),
    # without the query string, with the hidden input. Werkzeug quotes what a
    # URI may not hold as it is.
    response = client.post(path, data={"next": target})
    assert response.status_code == 302
    assert response.headers.getlist("Location") == [iri_to_uri(target)]
    assert iri_to_uri(target) == "/account?tab=1&q=%22%3Cb%3E%22"
    assert get_user(next_app, user_id).email_confirmed


def test_percent_encoded_next_stays_encoded(next_app: Flask) -> None:
    # A path with percent-encoded line breaks is a path on this site: it may be
    # followed, but only as it is, never decoded into the Location header.
    client = next_app.test_client()
    _, path = register_for_link(next_app, client, "ada@example.org")
    response = client.post(path, data={"next": "/%0d%0aLocation:x"})
    assert response.status_code == 302
    assert response.headers.getlist("Location") in (["/%0d%0aLocation:x"], ["/welcome"])
    assert not any("\r" in v or "\n" in v for _, v in response.headers)


# -- replay, body size, headers ---------------------------------------------------


def test_token_replay_from_another_client(db_app: Flask) -> None:
    recorder = Recorder()
    owner = db_app.test_client()
    user_id, path = register_for_link(db_app, owner, "ada@example.org")
    replayer = db_app.test_client()  # whoever else saw the link, later
    with signals.email_confirmed.connected_to(recorder, sender=db_app):
        first = owner.post(path)
        confirmed_at = get_user(db_app, user_id).email_confirmed_at
        replays = [replayer.post(path), replayer.post(path)]
    for response in replays:
        assert response.status_code == 302
        assert response.location == "/"
        assert response.get_data() == first.get_data()
    assert [c[1] for c in recorder.calls] == [user_id]
    assert get_user(db_app, user_id).email_confirmed_at == confirmed_at
    assert take_flashes(owner) == [("success", CONFIRMED_MESSAGE)]
    assert take_flashes(replayer) == [("success", CONFIRMED_MESSAGE)] * 2


BIG = "x" * 100_000


def test_big_form_to_resend_is_refused(app: Flask, client: FlaskClient) -> None:
    register(client, "ada@example.org")
    response = client.post(
        "/confirm/resend", data={"email": "ada@example.org", "pad": BIG}
    )
    assert response.status_code == 413
    assert RESEND_MESSAGE not in text(response)
    assert len(outbox(app)) == 1


def test_big_form_to_the_confirm_url_is_refused(
    app: Flask, client: FlaskClient
) -> None:
    recorder = Recorder()
    user_id, path = register_for_link(app, client, "ada@example.org")
    with signals.email_confirmed.connected_to(recorder, sender=app):
        response = client.post(path, data={"pad": BIG})
    assert response.status_code == 413
    assert response.location is None
    assert not get_user(app, user_id).email_confirmed
    assert recorder.calls == []
    assert flashes(client) == []


@pytest.mark.parametrize("url", ["/confirm/resend", "/confirm/some-token"])
def test_big_json_body_is_refused(app: Flask, client: FlaskClient, url: str) -> None:
    response = client.post(url, json={"email": "a" * 20_000 + "@example.org"})
    assert response.status_code == 413


def test_big_body_on_get_is_refused(client: FlaskClient) -> None:
    response = client.get(
        "/confirm/resend", data=BIG, content_type="application/octet-stream"
    )
    assert response.status_code == 413


def test_big_body_without_content_length_is_refused(
    app: Flask, client: FlaskClient
) -> None:
    # Chunked: the length is known only once read. A server that terminates
    # the stream (gunicorn, Werkzeug's) says so with wsgi.input_terminated.
    register(client, "ada@example.org")
    body = b"email=ada%40example.org&pad=" + BIG.encode()
    response = client.post(
        "/confirm/resend",
        input_stream=io.BytesIO(body),
        content_type="application/x-www-form-urlencoded",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert len(outbox(app)) == 1


def test_big_upload_without_content_length_is_refused(
    app: Flask, client: FlaskClient
) -> None:
    # A file part is not held in memory but spooled to disk: only the
    # request's own length limit stops it.
    register(client, "ada@example.org")
    body = (
        b"--b\r\nContent-Disposition: form-data; name=email\r\n\r\n"
        b"ada@example.org\r\n"
        b'--b\r\nContent-Disposition: form-data; name=f; filename="f"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
        + BIG.encode()
        + b"\r\n--b--\r\n"
    )
    response = client.post(
        "/confirm/resend",
        input_stream=io.BytesIO(body),
        content_type="multipart/form-data; boundary=b",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert len(outbox(app)) == 1


def _form_body(size: int) -> bytes:
    prefix = b"email=ada%40example.org&pad="
    return prefix + b"x" * (size - len(prefix))


@pytest.mark.parametrize("limit", [None, 1024])
def test_body_limit_boundary(make_app: AppFactory, limit: int | None) -> None:
    app = make_app() if limit is None else make_app(CONFIRM_MAX_CONTENT_LENGTH=limit)
    size = limit or 16 * 1024
    client = app.test_client()
    register(client, "ada@example.org")
    at_limit = client.post(
        "/confirm/resend",
        data=_form_body(size),
        content_type="application/x-www-form-urlencoded",
    )
    assert_resend_page(at_limit)
    assert len(outbox(app)) == 2
    over = client.post(
        "/confirm/resend",
        data=_form_body(size + 1),
        content_type="application/x-www-form-urlencoded",
    )
    assert over.status_code == 413


def test_body_limit_is_the_blueprints_only(app: Flask, client: FlaskClient) -> None:
    # The app's own routes keep the app's own limits (none here).
    response = client.post("/register", data={"email": "ada@example.org", "pad": BIG})
    assert response.status_code == 201


def _chunked(body: bytes) -> dict[str, t.Any]:
    """Test-client arguments for a form body of unknown length, ended by the
    server (as gunicorn and Werkzeug's server end a chunked one)."""
    return {
        "input_stream": io.BytesIO(body),
        "content_type": "application/x-www-form-urlencoded",
        "environ_overrides": {"wsgi.input_terminated": True},
    }


class ReadOnlyLimitsRequest(Request):
    """Request limits as read-only properties, as Flask 3.0 has
    ``max_content_length`` (and as an app's own request class may have them)."""

    @property  # type: ignore[override]
    def max_content_length(self) -> int | None:
        return None

    @property  # type: ignore[override]
    def max_form_memory_size(self) -> int | None:
        return None


def test_body_limit_with_read_only_request_limits(make_app: AppFactory) -> None:
    # Setting request.max_content_length answered every route 500 on Flask 3.0.
    app = make_app()
    app.request_class = ReadOnlyLimitsRequest
    client = app.test_client()
    user_id, path = register_for_link(app, client, "ada@example.org")
    assert client.get(path).status_code == 200
    small = b"email=ada%40example.org"
    assert_resend_page(client.post("/confirm/resend", **_chunked(small)))
    assert len(outbox(app)) == 2
    big = small + b"&pad=" + BIG.encode()
    assert client.post("/confirm/resend", **_chunked(big)).status_code == 413
    assert client.post(path, data={"pad": BIG}).status_code == 413
    assert len(outbox(app)) == 2
    assert not get_user(app, user_id).email_confirmed
    assert client.post(path).status_code == 302
    assert get_user(app, user_id).email_confirmed


def test_a_smaller_app_body_limit_still_holds(make_app: AppFactory) -> None:
    app = make_app(MAX_CONTENT_LENGTH=100)
    client = app.test_client()
    body = b"email=ada%40example.org&pad=" + b"x" * 100
    assert client.post("/confirm/resend", **_chunked(body)).status_code == 413
    response = client.post(
        "/confirm/resend",
        data=body,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 413


def assert_security_headers(response: TestResponse, name: str) -> None:
    headers = response.headers
    assert headers.get("Referrer-Policy") == "no-referrer", name
    assert headers.get("Cache-Control") == "no-store", name
    assert headers.get("X-Frame-Options") == "DENY", name
    assert headers.get("X-Content-Type-Options") == "nosniff", name
    csp = headers.get("Content-Security-Policy", "")
    directives = {d.strip() for d in csp.split(";")}
    assert "default-src 'none'" in directives, name
    assert "frame-ancestors 'none'" in directives, name
    assert "form-action 'self'" in directives, name


def test_security_headers(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_RESEND_IP_LIMIT="1 per hour")
    client = app.test_client()
    _, path = register_for_link(app, client, "ada@example.org")
    other = {"environ_base": {"REMOTE_ADDR": "192.0.2.1"}}
    responses = {
        "page": client.get(path),
        "head": client.head(path),
        "options": client.options(path),
        "invalid": client.get("/confirm/not-a-token"),
        "confirmed": client.post(path),
        "resend-form": client.get("/confirm/resend"),
        "resend-sent": resend(client, "ada@example.org"),
        "resend-limited": resend(client, "ada@example.org"),
        "resend-bad": resend(client, "not an address", **other),
        "too-large": client.post(path, data={"pad": BIG}),
    }
    assert responses["resend-limited"].status_code == 429
    assert responses["resend-bad"].status_code == 400
    assert responses["too-large"].status_code == 413
    for name, response in responses.items():
        assert_security_headers(response, name)
    # The app's own pages are left alone.
    for header in ("X-Frame-Options", "Content-Security-Policy", "Referrer-Policy"):
        assert header not in client.get("/").headers


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_security_headers_on_method_not_allowed(
    app: Flask, client: FlaskClient, method: str
) -> None:
    # A 405 is decided while routing, before the blueprint is known: the
    # headers must not depend on a blueprint-level hook.
    _, path = register_for_link(app, client, "ada@example.org")
    for url in (path, "/confirm/resend"):
        response = client.open(url, method=method)
        assert response.status_code == 405
        assert_security_headers(response, f"{method} {url}")


@pytest.mark.parametrize("url", ["/confirm/a/b", "/confirm/resend/x"])
def test_security_headers_on_unknown_subpaths(client: FlaskClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert_security_headers(response, url)


# Flask routes HEAD to the GET view: HEAD must be the GET page, never the
# POST branch (limit, address check, sending).


def test_head_resend_is_like_get(app: Flask, client: FlaskClient) -> None:
    register(client, "ada@example.org")
    head = client.head("/confirm/resend", data={"email": "ada@example.org"})
    get = client.get("/confirm/resend")
    assert head.status_code == get.status_code == 200
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    assert len(outbox(app)) == 1  # the registration's only


def test_head_resend_does_not_use_up_the_ip_limit(
    make_app: AppFactory,
) -> None:
    # Link checkers and monitors send HEAD; they must not lock out the
    # people behind the same address.
    app = make_app(CONFIRM_RESEND_IP_LIMIT="3 per hour")
    client = app.test_client()
    for _ in range(5):
        assert client.head("/confirm/resend").status_code == 200
    assert_resend_page(resend(client, "ada@example.org"))


# -- JSON API -----------------------------------------------------------------

JSON = {"Accept": "application/json"}


def test_json_confirm_flow(app: Flask, client: FlaskClient) -> None:
    user_id, path = register_for_link(app, client, "ada@example.org")
    response = client.get(path, headers=JSON)
    assert response.status_code == 200
    assert response.json == {
        "status": "pending",
        "email": "ada@example.org",
        "change": False,
    }
    assert not get_user(app, user_id).email_confirmed
    response = client.post(path, headers=JSON)
    assert response.status_code == 200
    assert response.json == {
        "status": "confirmed",
        "email": "ada@example.org",
        "message": CONFIRMED_MESSAGE,
    }
    assert get_user(app, user_id).email_confirmed
    assert flashes(client) == []  # a single-page app shows its own message


def test_json_is_chosen_by_body_or_accept(app: Flask, client: FlaskClient) -> None:
    _, path = register_for_link(app, client, "ada@example.org")
    assert client.get(path).mimetype == "text/html"
    assert client.get(path, headers={"Accept": "*/*"}).mimetype == "text/html"
    prefers_html = {"Accept": "text/html, application/json;q=0.5"}
    assert client.get(path, headers=prefers_html).mimetype == "text/html"
    prefers_json = {"Accept": "application/json, text/html;q=0.5"}
    assert client.get(path, headers=prefers_json).mimetype == "application/json"
    assert client.post(path, json={}).json["status"] == "confirmed"  # type: ignore[index]


@pytest.mark.parametrize(
    ("token", "code"),
    [("not-a-token", "token_invalid"), ("x" * 600, "token_invalid")],
)
def test_json_token_errors(client: FlaskClient, token: str, code: str) -> None:
    for method in (client.get, client.post):
        response = method(f"/confirm/{token}", headers=JSON)
        assert response.status_code == 400
        assert response.json is not None
        assert response.json["error"] == code
        assert response.json["message"]


def test_json_expired_token(app: Flask, client: FlaskClient) -> None:
    with freeze_time("2026-01-01 00:00:00"):
        user_id, path = register_for_link(app, client, "ada@example.org")
    with freeze_time("2026-01-02 00:00:01"):
        response = client.post(path, headers=JSON)
    assert response.status_code == 400
    assert response.json == {
        "error": "token_expired",
        "message": "The link has expired.",
    }
    assert not get_user(app, user_id).email_confirmed


def test_json_resend_answers(app: Flask, client: FlaskClient) -> None:
    register(client, "ada@example.org")
    assert client.get("/confirm/resend", headers=JSON).json == {
        "status": "ready",
        "fields": ["email"],
    }
    response = client.post("/confirm/resend", json={"email": "nobody@example.org"})
    assert response.status_code == 200
    assert response.json == {"status": "accepted", "message": RESEND_MESSAGE}
    for body, code in [
        ({"email": "not an address"}, "invalid_email"),
        ({"email": ["ada@example.org"]}, "invalid_json"),
        (["ada@example.org"], "invalid_json"),
    ]:
        response = client.post("/confirm/resend", json=body)
        assert response.status_code == 400, body
        assert response.json is not None
        assert response.json["error"] == code, body
    response = client.post(
        "/confirm/resend", data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_json"
    assert len(outbox(app)) == 1


def test_json_rate_limited(make_app: AppFactory, redis_url: str) -> None:
    app = make_app(
        CONFIRM_ASYNC=True,
        CONFIRM_REDIS_URL=redis_url,
        CONFIRM_RESEND_IP_LIMIT="2 per hour",
    )
    client = app.test_client()
    for _ in range(2):
        response = client.post("/confirm/resend", json={"email": "a@example.org"})
        assert response.status_code == 200
    response = client.post("/confirm/resend", json={"email": "a@example.org"})
    assert response.status_code == 429
    assert response.json is not None
    assert response.json["error"] == "rate_limited"
    assert response.json["retry_after"] == int(response.headers["Retry-After"]) > 0


def test_json_http_errors(app: Flask, client: FlaskClient) -> None:
    response = client.put("/confirm/resend", headers=JSON)
    assert response.status_code == 405
    assert response.json is not None
    assert response.json["error"] == "method_not_allowed"
    big = {"email": "a" * (app.config["CONFIRM_MAX_CONTENT_LENGTH"] + 1)}
    response = client.post("/confirm/resend", json=big)
    assert response.status_code == 413
    assert response.json is not None
    assert response.json["error"] == "payload_too_large"
    assert response.headers["Cache-Control"] == "no-store"
    # Outside the blueprint, the app's own answers are left alone.
    assert client.put("/", headers=JSON).mimetype == "text/html"


# -- email change -------------------------------------------------------------


def change_email(app: Flask, client: FlaskClient, user_id: int, email: str) -> None:
    response = client.post("/change-email", data={"id": user_id, "email": email})
    assert response.status_code == 200, response.data


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


# -- password reset -----------------------------------------------------------


@pytest.fixture()
def reset_app(make_app: AppFactory) -> Flask:
    return make_app(CONFIRM_PASSWORD_RESET=True)


@pytest.fixture()
def db_reset_app(make_app: AppFactory, database_url: str) -> Flask:
    return make_app(CONFIRM_PASSWORD_RESET=True, SQLALCHEMY_DATABASE_URI=database_url)


def confirmed_user(app: Flask, client: FlaskClient, email: str, password: str) -> int:
    user_id, path = register_for_link(app, client, email)
    client.post(path)
    m = models(app)
    with app.app_context():
        user = m["db"].session.get(m["User"], user_id)
        user.set_password(password)
        m["db"].session.commit()
    return user_id


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


@pytest.mark.parametrize("path", ["/confirm/resend", "/confirm/reset"])
@pytest.mark.parametrize(
    "body",
    ["[" * 9000, '{"email": ' + "[" * 5000 + "]" * 5000 + "}", '{"a":' * 3000],
    ids=["brackets", "nested-email", "objects"],
)
def test_deeply_nested_json_is_invalid_json_not_500(
    make_app: AppFactory, path: str, body: str
) -> None:
    """Nesting past the parser's recursion limit, sent over HTTP, is bad
    JSON like any other (it raised RecursionError: a 500)."""
    app = make_app(CONFIRM_PASSWORD_RESET=True)
    with serving(app) as base:
        request = urllib.request.Request(
            base + path,
            data=body.encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        answer = json.loads(info.value.read())
    assert info.value.code == 400
    assert answer["error"] == "invalid_json"


# -- the "this wasn't me" link of an email change notice ----------------------------


def notice_cancel_path(app: Flask) -> str:
    """The cancel link of the last change notice mailed."""
    (notice,) = [
        m for m in outbox(app) if m.subject == "Your email address is being changed"
    ][-1:]
    path = path_of(link_in(notice))
    assert path.startswith("/confirm/cancel/")
    return path


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


# -- one spelling per token -----------------------------------------------------

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def other_spellings(token: str) -> list[str]:
    """The spellings of ``token`` that decode to the same bytes: the
    signature with ``=`` padding, and with the unused low bits of its last
    character set otherwise (an HMAC-SHA1 of 20 bytes leaves 2 of them)."""
    head, _, signature = token.rpartition(".")
    unused = len(signature) * 6 % 8
    assert unused == 2
    last = B64.index(signature[-1])
    altered = [f"{token}=", f"{token}=="]
    for bits in range(1, 1 << unused):
        twin = B64[last ^ bits]
        altered.append(f"{head}.{signature[:-1]}{twin}")
    return altered


def test_a_token_has_one_spelling(reset_app: Flask) -> None:
    """Five spellings of one confirmation, reset or cancel link decode to
    the same signature; only the one that was mailed is accepted."""
    app, client = reset_app, reset_app.test_client()
    user_id, confirm_path = register_for_link(app, client, "ada@example.org")
    links = {"confirm": confirm_path}
    user_id = confirmed_user(app, client, "bob@example.org", "old password")
    client.post("/confirm/reset", data={"email": "bob@example.org"})
    links["reset"] = path_of(link_in(outbox(app)[-1]))
    change_email(app, client, user_id, "bob@new.example.org")
    links["cancel"] = notice_cancel_path(app)
    for kind, path in links.items():
        prefix, _, token = path.rpartition("/")
        for spelling in other_spellings(token):
            response = client.get(f"{prefix}/{spelling}", headers=JSON)
            assert response.status_code == 400, (kind, spelling)
            assert response.json is not None
            assert response.json["error"] == "token_invalid", (kind, spelling)
        assert client.get(path, headers=JSON).status_code == 200, kind
