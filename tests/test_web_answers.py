"""What the pages share (:mod:`flask_confirm.web.answers`): which ``next``
is followed, when the answer is JSON, and bad JSON bodies."""

from __future__ import annotations

import json
import re
import typing as t
import urllib.error
import urllib.request

import pytest
from werkzeug.urls import iri_to_uri

from conftest import serving
from testapp import get_user
from testapp import register_for_link
from testapp import text

if t.TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

    from conftest import AppFactory


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


def test_json_is_chosen_by_body_or_accept(app: Flask, client: FlaskClient) -> None:
    _, path = register_for_link(app, client, "ada@example.org")
    assert client.get(path).mimetype == "text/html"
    assert client.get(path, headers={"Accept": "*/*"}).mimetype == "text/html"
    prefers_html = {"Accept": "text/html, application/json;q=0.5"}
    assert client.get(path, headers=prefers_html).mimetype == "text/html"
    prefers_json = {"Accept": "application/json, text/html;q=0.5"}
    assert client.get(path, headers=prefers_json).mimetype == "application/json"
    assert client.post(path, json={}).json["status"] == "confirmed"  # type: ignore[index]


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
