"""The pages inside a host app: Flask-WTF's global CSRF protection, the app's
own layout and security headers, the pages' states, where a reset lands, and
a subdomain. Forms are submitted as a browser would: parsed from the page,
with the fields it rendered."""

from __future__ import annotations

import dataclasses
import html.parser
import re
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from flask_login import login_user
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from playwright.sync_api import expect

from conftest import SCREENSHOTS
from conftest import serving
from flask_confirm import ConfigError
from flask_confirm.config import APP_LAYOUT_CONTENT_SECURITY_POLICY
from flask_confirm.config import DEFAULTS
from flask_confirm.config import Keys

if t.TYPE_CHECKING:
    from flask.testing import FlaskClient
    from playwright.sync_api import BrowserContext
    from werkzeug.test import TestResponse

    from conftest import AppFactory

EXTERNAL = "https://app.example.test"
LINK = re.compile(r"https?://[^\s\"'<>]+")
PASSWORD = "a new long password"


# -- helpers ------------------------------------------------------------------


@dataclasses.dataclass
class Form:
    action: str | None
    method: str
    fields: dict[str, str]


class _FormParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append(Form(a.get("action"), (a.get("method") or "get"), {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1].fields[t.cast(str, a["name"])] = a.get("value") or ""


def the_form(response: TestResponse) -> Form:
    """The one form of a page."""
    parser = _FormParser()
    parser.feed(response.get_data(as_text=True))
    (form,) = parser.forms
    return form


def submit(
    client: FlaskClient, page_url: str, values: dict[str, str] | None = None
) -> TestResponse:
    """Open ``page_url``, fill its form's fields with ``values`` and post it
    where the form says, with whatever hidden fields the page rendered."""
    page = client.get(page_url)
    assert page.status_code == 200, page.status
    form = the_form(page)
    assert form.method.lower() == "post"
    return client.post(form.action or page_url, data={**form.fields, **(values or {})})


def models(app: Flask) -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", app.extensions["test_models"])


def mailed_path(app: Flask) -> str:
    with app.app_context():
        message = app.extensions["confirm"].sender.outbox[-1]
    (link,) = set(LINK.findall(message.text))
    return link.removeprefix(EXTERNAL)


def mailed_path_of_notice(app: Flask) -> str:
    """The "this wasn't me" link of the last email change notice."""
    with app.app_context():
        (notice,) = [
            m
            for m in app.extensions["confirm"].sender.outbox
            if m.subject == "Your email address is being changed"
        ][-1:]
    (link,) = set(LINK.findall(notice.text))
    return link.removeprefix(EXTERNAL)


def register(app: Flask, client: FlaskClient, email: str) -> tuple[int, str]:
    response = client.post("/register", data={"email": email})
    assert response.status_code == 201, response.data
    return t.cast(int, response.json["id"]), mailed_path(app)  # type: ignore[index]


def get_user(app: Flask, user_id: int) -> t.Any:
    m = models(app)
    with app.app_context():
        user = m["db"].session.get(m["User"], user_id)
        m["db"].session.expunge(user)
        return user


def confirmed_user(app: Flask, client: FlaskClient, email: str) -> int:
    user_id, _ = register(app, client, email)
    with app.app_context():
        m = models(app)
        user = m["db"].session.get(m["User"], user_id)
        app.extensions["confirm"].confirm_user(user)
        user.set_password("the old password")
        m["db"].session.commit()
    return user_id


# -- CSRF ---------------------------------------------------------------------


@pytest.fixture(params=["csrf-on", "csrf-off"])
def csrf_app(request: pytest.FixtureRequest, make_app: AppFactory) -> Flask:
    """The test app with Flask-WTF's CSRFProtect on for every view, or not."""
    app = make_app(CONFIRM_PASSWORD_RESET=True)
    if request.param == "csrf-on":
        CSRFProtect(app)
        # The test app's own /register is an API of the test, not a form.
        app.extensions["csrf"].exempt("testapp.register")
    return app


def test_every_form_carries_the_token_and_goes_through(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    on = "csrf" in csrf_app.extensions
    user_id, path = register(csrf_app, client, "ada@example.org")

    assert ("csrf_token" in the_form(client.get(path)).fields) is on
    confirmed = submit(client, path)
    assert confirmed.status_code == 302, confirmed.get_data(as_text=True)
    assert get_user(csrf_app, user_id).email_confirmed

    register(csrf_app, client, "bob@example.org")
    sent = submit(client, "/confirm/resend", {"email": "bob@example.org"})
    assert sent.status_code == 200, sent.get_data(as_text=True)
    assert "on its way" in sent.get_data(as_text=True)
    assert mailed_path(csrf_app) != path

    confirmed_user(csrf_app, client, "cy@example.org")
    sent = submit(client, "/confirm/reset", {"email": "cy@example.org"})
    assert sent.status_code == 200, sent.get_data(as_text=True)
    reset_path = mailed_path(csrf_app)
    assert reset_path.startswith("/confirm/reset/")
    done = submit(
        client, reset_path, {"password": PASSWORD, "password_confirm": PASSWORD}
    )
    assert done.status_code == 302, done.get_data(as_text=True)
    for page in ("/confirm/resend", "/confirm/reset"):
        assert ("csrf_token" in the_form(client.get(page)).fields) is on


def test_the_cancel_page_carries_the_token(csrf_app: Flask) -> None:
    """The "this wasn't me" page of a change notice: its form has the
    token, and a post without it cancels nothing."""
    client = csrf_app.test_client()
    on = "csrf" in csrf_app.extensions
    if on:
        csrf_app.extensions["csrf"].exempt("testapp.change_email")
    user_id, _ = register(csrf_app, client, "ada@example.org")
    response = client.post(
        "/change-email", data={"id": user_id, "email": "eve@example.com"}
    )
    assert response.status_code == 200
    cancel_path = mailed_path_of_notice(csrf_app)
    assert ("csrf_token" in the_form(client.get(cancel_path)).fields) is on
    if on:
        refused = client.post(cancel_path)
        assert refused.status_code == 400
        assert "did not come from this site" in refused.get_data(as_text=True)
        assert get_user(csrf_app, user_id).pending_email == "eve@example.com"
    done = submit(client, cancel_path)
    assert done.status_code == 200, done.get_data(as_text=True)
    assert "The change is cancelled" in done.get_data(as_text=True)
    assert get_user(csrf_app, user_id).pending_email is None


def test_a_form_without_the_token_is_refused_with_a_page(make_app: AppFactory) -> None:
    app = make_app()
    CSRFProtect(app)
    app.extensions["csrf"].exempt("testapp.register")
    client = app.test_client()
    user_id, path = register(app, client, "ada@example.org")
    form = the_form(client.get(path))
    del form.fields["csrf_token"]
    refused = client.post(path, data=form.fields)
    assert refused.status_code == 400
    body = refused.get_data(as_text=True)
    assert "did not come from this site" in body
    assert 'href="/confirm/' in body  # a way to try again
    assert not get_user(app, user_id).email_confirmed


def test_json_clients_send_the_token_in_a_header(make_app: AppFactory) -> None:
    app = make_app()
    CSRFProtect(app)
    app.extensions["csrf"].exempt("testapp.register")
    client = app.test_client()
    user_id, path = register(app, client, "ada@example.org")
    json_headers = {"Accept": "application/json"}

    refused = client.post(path, json={}, headers=json_headers)
    assert refused.status_code == 400
    assert refused.json is not None
    assert refused.json["error"] == "csrf_failed"
    assert "missing" in refused.json["reason"]

    pending = client.get(path, headers=json_headers).json
    assert pending is not None and pending["status"] == "pending"
    token = pending["csrf_token"]
    ok = client.post(path, json={}, headers={**json_headers, "X-CSRFToken": token})
    assert ok.status_code == 200, ok.json
    assert get_user(app, user_id).email_confirmed

    ready = client.get("/confirm/resend", headers=json_headers).json
    assert ready is not None and ready["csrf_token"]
    sent = client.post(
        "/confirm/resend",
        json={"email": "x@example.org"},
        headers={"X-CSRFToken": ready["csrf_token"]},
    )
    assert sent.status_code == 200
    assert sent.json is not None and sent.json["status"] == "accepted"


def test_without_csrf_protection_json_answers_carry_no_token(app: Flask) -> None:
    ready = app.test_client().get(
        "/confirm/resend", headers={"Accept": "application/json"}
    )
    assert ready.json == {"status": "ready", "fields": ["email"]}


# -- security headers -------------------------------------------------------------


def test_an_app_hook_registered_after_init_app_keeps_its_headers(
    make_app: AppFactory,
) -> None:
    app = make_app()
    policy = "default-src 'self' https://cdn.example.test"

    @app.after_request
    def app_headers(response: t.Any) -> t.Any:
        response.headers["Content-Security-Policy"] = policy
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        return response

    response = app.test_client().get("/confirm/resend")
    assert response.headers["Content-Security-Policy"] == policy
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert response.headers["Referrer-Policy"] == "no-referrer"  # ours, unset by it


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, DEFAULTS[Keys.CONTENT_SECURITY_POLICY]),
        (
            {"CONFIRM_CONTENT_SECURITY_POLICY": "default-src 'self'"},
            "default-src 'self'",
        ),
        ({"CONFIRM_CONTENT_SECURITY_POLICY": None}, None),
        ({"CONFIRM_BASE_TEMPLATE": "site.html"}, APP_LAYOUT_CONTENT_SECURITY_POLICY),
        (
            {
                "CONFIRM_BASE_TEMPLATE": "site.html",
                "CONFIRM_CONTENT_SECURITY_POLICY": None,
            },
            None,
        ),
    ],
)
def test_content_security_policy_setting(
    make_app: AppFactory,
    site_templates: Path,
    config: dict[str, t.Any],
    expected: str | None,
) -> None:
    app = site_app(make_app, site_templates, **config)
    response = app.test_client().get("/confirm/resend")
    assert response.status_code == 200
    assert response.headers.get("Content-Security-Policy") == expected
    assert response.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("value", ["", "  ", "default-src 'self'\r\nX-Evil: 1", 42])
def test_bad_content_security_policy_is_a_config_error(
    make_app: AppFactory, value: t.Any
) -> None:
    with pytest.raises(ConfigError, match="CONFIRM_CONTENT_SECURITY_POLICY"):
        make_app(CONFIRM_CONTENT_SECURITY_POLICY=value)


# -- the app's own layout ----------------------------------------------------------


SITE_LAYOUT = """<!doctype html>
<html><head><title>{% block title %}{% endblock %} - Site</title>
<link rel="stylesheet" href="/static/site.css"></head>
<body><nav id="site-nav">Site navigation</nav>
{% for m in get_flashed_messages() %}<p class="site-flash">{{ m }}</p>{% endfor %}
<div class="container">{% block content %}{% endblock %}</div></body></html>
"""

#: A layout that names its blocks otherwise and prints a ``title`` variable,
#: bridged by overriding flask_confirm/layout.html.
OTHER_LAYOUT = """<!doctype html>
<html><head><title>{{ title }} | Other</title></head>
<body><nav id="other-nav"></nav>{% block app_content %}{% endblock %}</body></html>
"""
BRIDGE = """{% extends "other.html" %}
{% block app_content %}{% block content %}{% endblock %}{% endblock %}
"""

SITE_CSS = "body { background-color: rgb(221, 238, 255); font-family: sans-serif; }\n"


@pytest.fixture()
def site_templates(tmp_path: Path) -> Path:
    """A templates folder with the app's layouts, and a static folder with
    its stylesheet; :func:`site_app` makes them the app's own."""
    folder = tmp_path / "templates"
    (folder / "flask_confirm").mkdir(parents=True)
    (folder / "site.html").write_text(SITE_LAYOUT)
    (folder / "other.html").write_text(OTHER_LAYOUT)
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "site.css").write_text(SITE_CSS)
    return folder


def page_title(response: TestResponse) -> str:
    match = re.search(r"<title>(.*?)</title>", response.get_data(as_text=True), re.S)
    assert match is not None
    return match.group(1).strip()


def site_app(make_app: AppFactory, folder: Path, **config: t.Any) -> Flask:
    """The test app with ``folder`` as its own templates folder, as if it
    had been made with ``Flask(..., template_folder=folder)``."""
    app = make_app(**config)
    app.template_folder = str(folder)
    app.__dict__.pop("jinja_loader", None)  # a cached_property of Flask's
    app.static_folder = str(folder.parent / "static")
    return app


@pytest.mark.parametrize(
    ("page", "title"),
    [
        ("/confirm/resend", "Send a new confirmation link"),
        ("/confirm/reset", "Reset your password"),
        ("/confirm/not-a-token", "This link is not valid"),
        ("/confirm/cancel/not-a-token", "This link is not valid"),
    ],
)
def test_pages_extend_the_app_layout(
    make_app: AppFactory, site_templates: Path, page: str, title: str
) -> None:
    app = site_app(
        make_app,
        site_templates,
        CONFIRM_BASE_TEMPLATE="site.html",
        CONFIRM_PASSWORD_RESET=True,
    )
    response = app.test_client().get(page)
    body = response.get_data(as_text=True)
    assert 'id="site-nav"' in body and "/static/site.css" in body
    assert page_title(response) == f"{title} - Site"
    assert f"<h1>{title}</h1>" in body
    assert "<main>" not in body  # not the standalone layout


def test_a_layout_with_other_block_names_is_bridged(
    make_app: AppFactory, site_templates: Path
) -> None:
    (site_templates / "flask_confirm" / "layout.html").write_text(BRIDGE)
    app = site_app(make_app, site_templates)
    response = app.test_client().get("/confirm/resend")
    body = response.get_data(as_text=True)
    assert 'id="other-nav"' in body
    assert page_title(response) == "Send a new confirmation link | Other"
    assert "<h1>Send a new confirmation link</h1>" in body


def test_the_app_layout_shows_what_was_flashed(
    make_app: AppFactory, site_templates: Path
) -> None:
    app = site_app(make_app, site_templates, CONFIRM_BASE_TEMPLATE="site.html")
    client = app.test_client()
    _, path = register(app, client, "ada@example.org")
    client.post(path)
    page = client.get("/confirm/resend").get_data(as_text=True)
    assert (
        '<p class="site-flash">Your email address is confirmed. Thank you!</p>' in page
    )


# -- page states ----------------------------------------------------------------------


def test_a_used_link_says_already_confirmed(app: Flask, client: FlaskClient) -> None:
    _, path = register(app, client, "ada@example.org")
    assert client.post(path).status_code == 302
    page = client.get(path)
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "already confirmed" in body
    assert "<form" not in body  # no Confirm button again
    assert 'href="/">Continue</a>' in body
    json = client.get(path, headers={"Accept": "application/json"}).json
    assert json == {"status": "confirmed", "email": "ada@example.org", "change": False}


def test_every_page_offers_a_way_back(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_PASSWORD_RESET=True)
    client = app.test_client()
    user_id, path = register(app, client, "ada@example.org")
    back = f'<a href="{EXTERNAL}/">Back to the site</a>'
    pages = {
        "pending": client.get(path),
        "invalid": client.get("/confirm/not-a-token"),
        "resend": client.get("/confirm/resend"),
        "resend-bad": client.post("/confirm/resend", data={"email": "nope"}),
        "reset": client.get("/confirm/reset"),
        "reset-invalid": client.get("/confirm/reset/not-a-token"),
        "cancel-invalid": client.get("/confirm/cancel/not-a-token"),
    }
    client.post(path)
    pages["confirmed"] = client.get(path)
    client.post("/change-email", data={"id": user_id, "email": "eve@example.com"})
    cancel_path = mailed_path_of_notice(app)
    pages["cancel"] = client.get(cancel_path)
    pages["cancelled"] = client.post(cancel_path)
    for name, page in pages.items():
        assert back in page.get_data(as_text=True), name


def test_resend_is_prefilled_for_a_signed_in_user(
    app: Flask, client: FlaskClient
) -> None:
    user_id, _ = register(app, client, "ada@example.org")
    confirm = app.extensions["confirm"]
    signed_in: dict[str, t.Any] = {"user": None}
    confirm.user_loader(lambda: signed_in["user"])
    assert the_form(client.get("/confirm/resend")).fields["email"] == ""
    with app.app_context():
        signed_in["user"] = get_user(app, user_id)
    assert the_form(client.get("/confirm/resend")).fields["email"] == "ada@example.org"


def test_resend_without_any_user_source_is_not_prefilled(client: FlaskClient) -> None:
    # No Flask-Login and no user_loader: the page still renders.
    assert the_form(client.get("/confirm/resend")).fields["email"] == ""


@pytest.mark.parametrize("page", ["/confirm/resend", "/confirm/reset"])
def test_an_invalid_address_keeps_what_was_typed(
    make_app: AppFactory, page: str
) -> None:
    app = make_app(CONFIRM_PASSWORD_RESET=True)
    response = app.test_client().post(page, data={"email": "ada at example.org"})
    assert response.status_code == 400
    assert the_form(response).fields["email"] == "ada at example.org"


# -- where a reset lands ---------------------------------------------------------------


def reset_through_the_form(app: Flask) -> TestResponse:
    client = app.test_client()
    confirmed_user(app, client, "ada@example.org")
    submit(client, "/confirm/reset", {"email": "ada@example.org"})
    return submit(
        client, mailed_path(app), {"password": PASSWORD, "password_confirm": PASSWORD}
    )


def test_reset_lands_on_its_own_url(make_app: AppFactory) -> None:
    app = make_app(
        CONFIRM_PASSWORD_RESET=True,
        CONFIRM_REDIRECT_URL="/dashboard",
        CONFIRM_RESET_REDIRECT_URL="/signin?reset=1",
    )
    assert reset_through_the_form(app).location == "/signin?reset=1"


def test_reset_lands_on_flask_logins_login_view(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_PASSWORD_RESET=True, CONFIRM_REDIRECT_URL="/dashboard")
    app.add_url_rule("/account/login", "login", lambda: "log in")
    login_manager = LoginManager(app)
    login_manager.login_view = "login"
    login_manager.user_loader(lambda user_id: None)
    assert reset_through_the_form(app).location == "/account/login"


def test_reset_lands_on_the_redirect_url_otherwise(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_PASSWORD_RESET=True, CONFIRM_REDIRECT_URL="/dashboard")
    assert reset_through_the_form(app).location == "/dashboard"


def test_confirmed_required_view_with_login(make_app: AppFactory) -> None:
    """Flask-Login's current user is who the resend page is prefilled for."""
    app = make_app()
    login_manager = LoginManager(app)
    m = models(app)
    login_manager.user_loader(
        lambda user_id: m["db"].session.get(m["User"], int(user_id))
    )
    m["User"].is_authenticated = True
    m["User"].is_active = True
    m["User"].get_id = lambda self: str(self.id)

    @app.post("/login-as/<int:user_id>")
    def login_as(user_id: int) -> str:
        login_user(m["db"].session.get(m["User"], user_id))
        return "ok"

    client = app.test_client()
    user_id, _ = register(app, client, "ada@example.org")
    client.post(f"/login-as/{user_id}")
    assert the_form(client.get("/confirm/resend")).fields["email"] == "ada@example.org"


# -- a subdomain ---------------------------------------------------------------


def test_pages_on_a_subdomain(make_app: AppFactory) -> None:
    app = make_app(
        SERVER_NAME="app.example.test",
        CONFIRM_SUBDOMAIN="accounts",
        CONFIRM_PASSWORD_RESET=True,
    )
    client = app.test_client()
    accounts = "http://accounts.app.example.test"
    assert client.get("/confirm/resend", base_url=accounts).status_code == 200
    assert client.get("/confirm/resend").status_code == 404
    response = client.post("/register", data={"email": "ada@example.org"})
    user_id = response.json["id"]  # type: ignore[index]
    with app.app_context():
        message = app.extensions["confirm"].sender.outbox[-1]
    (link,) = set(LINK.findall(message.text))
    assert link.startswith("https://accounts.app.example.test/confirm/")
    path = link.removeprefix("https://accounts.app.example.test")
    assert client.post(path, base_url=accounts).status_code == 302
    assert get_user(app, user_id).email_confirmed


@pytest.mark.parametrize("value", ["", "a/b", "a:1", 3])
def test_bad_subdomain_is_a_config_error(make_app: AppFactory, value: t.Any) -> None:
    with pytest.raises(ConfigError, match="CONFIRM_SUBDOMAIN"):
        make_app(CONFIRM_SUBDOMAIN=value, SERVER_NAME="app.example.test")


def test_subdomain_without_server_name_is_a_config_error(make_app: AppFactory) -> None:
    with pytest.raises(ConfigError, match=r"CONFIRM_SUBDOMAIN.*SERVER_NAME"):
        make_app(CONFIRM_SUBDOMAIN="accounts")


# -- in a real browser --------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "styled"),
    [
        ({}, True),  # the default policy for an app layout lets it load
        (
            {"CONFIRM_CONTENT_SECURITY_POLICY": DEFAULTS[Keys.CONTENT_SECURITY_POLICY]},
            False,
        ),
    ],
)
def test_the_app_stylesheet_applies_in_a_browser(
    make_app: AppFactory,
    site_templates: Path,
    new_context: t.Callable[..., BrowserContext],
    policy: dict[str, t.Any],
    styled: bool,
) -> None:
    """Chromium renders the resend page in the app's layout with the app's
    same-origin stylesheet; the standalone layout's strict policy would
    block it, which the second case shows is what the policy decides."""
    app = site_app(
        make_app, site_templates, CONFIRM_BASE_TEMPLATE="site.html", **policy
    )
    with serving(app) as base:
        page = new_context().new_page()
        blocked: list[str] = []
        page.on(
            "console",
            lambda m: (
                blocked.append(m.text) if "Content Security Policy" in m.text else None
            ),
        )
        page.goto(f"{base}/confirm/resend")
        expect(page.locator("#site-nav")).to_be_visible()
        expect(page).to_have_title("Send a new confirmation link - Site")
        page.wait_for_load_state("load")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        if styled:
            page.screenshot(path=SCREENSHOTS / "pages-app-layout.png", full_page=True)
    assert (background == "rgb(221, 238, 255)") is styled, background
    assert bool(blocked) is not styled, blocked
