"""Links (:mod:`flask_confirm.links`): built on ``CONFIRM_EXTERNAL_URL``
only, and each token accepted in the one spelling it was made in."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask

from conftest import AppFactory
from flask_confirm.web.resend import RESEND_MESSAGE
from testapp import add_user
from testapp import change_email
from testapp import confirmed_user
from testapp import EXTERNAL
from testapp import JSON
from testapp import link_in
from testapp import notice_cancel_path
from testapp import outbox
from testapp import path_of
from testapp import register
from testapp import register_for_link
from testapp import text

if t.TYPE_CHECKING:
    from flask.testing import FlaskClient


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


def test_link_is_built_on_external_url_with_path(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_EXTERNAL_URL="https://example.test/accounts/")
    with app.app_context():
        url = app.extensions["confirm"].confirm_url(add_user(app))
    assert url.startswith("https://example.test/accounts/confirm/")


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
