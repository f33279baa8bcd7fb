"""The resend form (:mod:`flask_confirm.web.resend`) through the test client,
with the memory sender and ``CONFIRM_ASYNC`` false."""

from __future__ import annotations

import re
import typing as t

import pytest

from flask_confirm.web.resend import RESEND_MESSAGE
from testapp import add_flash_page
from testapp import assert_resend_page
from testapp import flashes
from testapp import get_user
from testapp import JSON
from testapp import link_in
from testapp import models
from testapp import outbox
from testapp import path_of
from testapp import register
from testapp import register_for_link
from testapp import resend
from testapp import take_flashes
from testapp import text

if t.TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse

    from conftest import AppFactory
    from conftest import DNSServer


# -- the resend page ------------------------------------------------------------
#
# POST /confirm/resend answers 200 with the resend page and RESEND_MESSAGE for
# every well-formed address (never a redirect, never a flash), 400 for bad
# input and 429 over the per-client limit. The limits themselves are tested in
# test_limits.py; here they are at their defaults unless a test says otherwise.


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


# -- typos and undeliverable domains --------------------------------------------


def test_a_likely_typo_is_suggested_alike_for_every_address(
    db_app: Flask, db_client: FlaskClient
) -> None:
    """The suggestion depends on what was typed only: registered or not, the
    answer is the same, with ``did_you_mean`` in JSON and a one-press form
    on the page."""
    register(db_client, "ada@gmial.com")
    visitor = db_app.test_client()
    registered = visitor.post("/confirm/resend", json={"email": "ada@gmial.com"})
    unknown = visitor.post("/confirm/resend", json={"email": "bob@gmial.com"})
    assert registered.status_code == unknown.status_code == 200
    assert registered.json is not None and unknown.json is not None
    assert registered.json["did_you_mean"] == "ada@gmail.com"
    assert unknown.json["did_you_mean"] == "bob@gmail.com"
    assert {**registered.json, "did_you_mean": ""} == {
        **unknown.json,
        "did_you_mean": "",
    }
    # No typo, no key.
    plain = visitor.post("/confirm/resend", json={"email": "eve@example.org"})
    assert plain.json is not None and "did_you_mean" not in plain.json

    page = text(visitor.post("/confirm/resend", data={"email": "carol@gmial.com"}))
    assert "Did you mean carol@gmail.com?" in page
    assert re.search(
        r'<input type="hidden" name="email" value="carol@gmail.com">', page
    )


def test_an_address_refused_for_a_typo_gets_a_suggestion(client: FlaskClient) -> None:
    response = client.post("/confirm/resend", json={"email": "ada@gmail"})
    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_email",
        "message": response.json["message"],
        "did_you_mean": "ada@gmail.com",
    }


def test_an_undeliverable_domain_is_refused_when_checked(
    make_app: AppFactory, dns_server: DNSServer
) -> None:
    app = make_app(CONFIRM_CHECK_DELIVERABILITY=True)
    app.extensions["confirm"]._get_state(app).resolver = dns_server.resolver()
    client = app.test_client()
    refused = client.post("/confirm/resend", json={"email": "ada@nomail.example.com"})
    assert refused.status_code == 400
    assert refused.json is not None
    assert refused.json["error"] == "invalid_email"
    assert refused.json["message"] == "The domain of that address does not accept mail."
    accepted = client.post("/confirm/resend", json={"email": "ada@example.org"})
    assert accepted.status_code == 200
    assert ("nomail.example.com", "MX") in dns_server.queries


def test_no_lookup_unless_asked(make_app: AppFactory, dns_server: DNSServer) -> None:
    app = make_app()
    assert app.extensions["confirm"]._get_state(app).resolver is None
    client = app.test_client()
    assert (
        client.post(
            "/confirm/resend", json={"email": "ada@nomail.example.com"}
        ).status_code
        == 200
    )
    assert dns_server.queries == []
