"""The ``confirm`` blueprint as a whole (:mod:`flask_confirm.web`), through
the test client: the headers every page sends, the request body limit, JSON
answers to HTTP errors, and the URL prefix."""

from __future__ import annotations

import io
import typing as t

import pytest
from flask import Request

from flask_confirm import signals
from flask_confirm.web.resend import RESEND_MESSAGE
from testapp import assert_resend_page
from testapp import flashes
from testapp import get_user
from testapp import JSON
from testapp import outbox
from testapp import Recorder
from testapp import register
from testapp import register_for_link
from testapp import resend
from testapp import text

if t.TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse

    from conftest import AppFactory


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
