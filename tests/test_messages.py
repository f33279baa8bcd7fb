"""``messages`` and ``i18n``: each kind's templates, subject and sender, and
translation through Flask-Babel when the app uses it."""

from __future__ import annotations

import html
import re
import typing as t
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from flask_babel import Babel

import flask_confirm
from conftest import AppFactory
from flask_confirm import decorators
from flask_confirm.config import MESSAGE_KINDS
from flask_confirm.i18n import gettext
from flask_confirm.i18n import ngettext
from flask_confirm.mail.messages import compose
from flask_confirm.mail.messages import DEFAULT_SUBJECTS
from flask_confirm.mail.messages import duration_words
from flask_confirm.web import confirm as confirm_flow
from flask_confirm.web import resend as resend_flow
from flask_confirm.web import reset as reset_flow
from testapp import outbox
from testapp import register

if t.TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

    from flask_confirm import EmailMessage


def render_all(app: Flask, email: str = "ada@example.org") -> dict[str, EmailMessage]:
    """One message of every kind, rendered as the worker would, for a new
    user at ``email``."""
    m = app.extensions["test_models"]
    confirm = m["confirm"]
    with app.app_context():
        user = m["User"](email=email)
        m["db"].session.add(user)
        m["db"].session.commit()
        user.set_password("a password")
        user.email_confirmed_at = user.confirmation_requested_at = None
        messages = {"confirm": confirm.render_message(user)}
        user.pending_email = "ada@new.example.org"
        messages["email_change"] = confirm.render_message(user)
        messages["email_change_notice"] = confirm.render_change_notice(user)
        messages["password_reset"] = confirm.render_reset_message(user)
        m["db"].session.rollback()
    return messages


def test_every_kind_has_both_parts(make_app: AppFactory) -> None:
    messages = render_all(make_app(CONFIRM_PASSWORD_RESET=True))
    assert set(messages) == set(MESSAGE_KINDS)
    assert messages["confirm"].subject == "Confirm your email address"
    for kind, subject in DEFAULT_SUBJECTS.items():
        assert messages[kind].subject == subject
    for kind, message in messages.items():
        assert message.sender == "no-reply@example.test"
        assert message.html.startswith("<!doctype html>"), kind
        # Renders in mail clients: inline styles, nothing fetched. The one
        # <style> only adds the dark colours, so a client that drops it
        # loses nothing it needs.
        (style,) = re.findall(r"<style>(.*?)</style>", message.html, re.S)
        assert "url(" not in style and "@import" not in style, kind
        assert "prefers-color-scheme: dark" in style, kind
        assert "<link" not in message.html, kind
        assert "<img" not in message.html and "<script" not in message.html, kind
        assert "src=" not in message.html, kind
        links = set(re.findall(r"https?://[^\s\"'<>]+", message.text))
        assert links == set(re.findall(r'href="([^"]+)"', message.html)), kind
    assert messages["email_change"].to == "ada@new.example.org"
    assert "/confirm/" in messages["email_change"].text
    assert messages["email_change_notice"].to == "ada@example.org"
    assert "ada@new.example.org" in messages["email_change_notice"].text
    assert "/confirm/reset/" in messages["password_reset"].text
    assert "1 hour" in messages["password_reset"].text
    assert "24 hours" in messages["confirm"].text


def test_subject_and_sender_per_kind(make_app: AppFactory) -> None:
    app = make_app(
        CONFIRM_PASSWORD_RESET=True,
        CONFIRM_SUBJECT="Welcome! Confirm your address",
        CONFIRM_MESSAGES={
            "password_reset": {
                "subject": "Your reset link",
                "sender": "Security <security@example.test>",
            },
            "email_change": {"subject": "New address?"},
        },
    )
    messages = render_all(app)
    assert messages["confirm"].subject == "Welcome! Confirm your address"
    assert messages["password_reset"].subject == "Your reset link"
    assert messages["password_reset"].sender == "Security <security@example.test>"
    assert messages["email_change"].subject == "New address?"
    assert messages["email_change"].sender == "no-reply@example.test"


def test_html_escapes_what_it_shows(make_app: AppFactory) -> None:
    app = make_app()
    with app.app_context():
        settings = app.extensions["confirm"]._get_state().settings
        message = compose(
            settings,
            "email_change_notice",
            "ada@example.org",
            new_email="<b>x</b>@example.org",
        )
    assert "&lt;b&gt;x&lt;/b&gt;@example.org" in message.html
    assert "<b>x</b>@example.org" in message.text  # plain text is not HTML


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (86400, "24 hours"),
        (172800, "2 days"),
        (3600, "1 hour"),
        (5400, "90 minutes"),
        (60, "1 minute"),
        (61, "61 seconds"),
        (1, "1 second"),
    ],
)
def test_duration_words(make_app: AppFactory, seconds: int, words: str) -> None:
    with make_app().app_context():
        assert duration_words(seconds) == words


def test_without_babel_strings_are_filled_in(make_app: AppFactory) -> None:
    with make_app().app_context():
        assert gettext("To %(email)s", email="a@b.c") == "To a@b.c"
        assert gettext("100%") == "100%"
        assert ngettext("%(num)d day", "%(num)d days", 1) == "1 day"
        assert ngettext("%(num)d day", "%(num)d days", 3) == "3 days"


FRENCH = {
    "Confirm your email address": "Confirmez votre adresse e-mail",
    "Please confirm your email address by opening this link:": (
        "Veuillez confirmer votre adresse en ouvrant ce lien :"
    ),
    "Reset your password": "Réinitialisez votre mot de passe",
    "Your email address is confirmed. Thank you!": (
        "Votre adresse est confirmée. Merci !"
    ),
    ("%(num)d hour", "%(num)d hours"): ("%(num)d heure", "%(num)d heures"),
}


def write_catalog(
    folder: Path, messages: dict[t.Any, t.Any], plural_forms: str | None = None
) -> Path:
    """Compile ``messages`` into ``folder/fr/LC_MESSAGES/messages.mo``, as
    ``pybabel compile`` would. Plural translations get as many forms as the
    catalogue's rule has (Babel's rule for French, unless ``plural_forms``
    gives another), the last one repeated: Babel 2.19 gives French three
    forms where earlier releases gave two."""
    catalog = Catalog(locale="fr")
    if plural_forms is not None:
        catalog.mime_headers = [("Plural-Forms", plural_forms)]
    for msgid, msgstr in messages.items():
        if isinstance(msgstr, tuple) and plural_forms is None:
            extra = catalog.num_plurals - len(msgstr)
            msgstr = (*msgstr, *[msgstr[-1]] * extra)
        catalog.add(msgid, msgstr)
    path = folder / "fr" / "LC_MESSAGES"
    path.mkdir(parents=True)
    with (path / "messages.mo").open("wb") as f:
        write_mo(f, catalog)
    return folder


@pytest.fixture()
def french_catalog(tmp_path: Path) -> Path:
    """A real compiled French catalogue."""
    return write_catalog(tmp_path, FRENCH)


def test_translated_with_flask_babel(
    make_app: AppFactory, french_catalog: Path
) -> None:
    app = make_app(
        CONFIRM_PASSWORD_RESET=True,
        BABEL_TRANSLATION_DIRECTORIES=str(french_catalog),
    )
    Babel(app, locale_selector=lambda: "fr")
    app.extensions["confirm"].mail_locale(lambda user: "fr")
    messages = render_all(app)
    assert messages["confirm"].subject == "Confirmez votre adresse e-mail"
    assert "Veuillez confirmer votre adresse en ouvrant ce lien :" in (
        messages["confirm"].text
    )
    assert "24 heures" in messages["confirm"].text
    assert '<html lang="fr">' in messages["confirm"].html
    assert messages["password_reset"].subject == "Réinitialisez votre mot de passe"
    # The pages too, and what is flashed.
    client = app.test_client()
    page = client.get("/confirm/not-a-token")
    assert '<html lang="fr">' in page.text
    user_id = client.post("/register", data={"email": "bob@example.org"}).json["id"]  # type: ignore[index]
    with app.app_context():
        user = app.extensions["test_models"]["db"].session.get(
            app.extensions["test_models"]["User"], user_id
        )
        link = app.extensions["confirm"].confirm_url(user)
    page = client.get(link.removeprefix("https://app.example.test"))
    assert "Confirmez votre adresse e-mail" in page.text
    client.post(link.removeprefix("https://app.example.test"))
    with client.session_transaction() as session:
        assert ("success", "Votre adresse est confirmée. Merci !") in session[
            "_flashes"
        ]


def test_pybabel_extracts_every_shown_message() -> None:
    """The messages kept in constants are marked, so an app's ``pybabel
    extract`` over the package puts them in its catalogue."""
    package = Path(flask_confirm.__file__).parent
    found = {
        message
        for _, _, message, _, _ in extract_from_dir(
            str(package), method_map=[("**.py", "python")]
        )
    }
    shown = [
        confirm_flow.CONFIRMED_MESSAGE,
        confirm_flow.EMAIL_CHANGED_MESSAGE,
        resend_flow.RESEND_MESSAGE,
        reset_flow.RESET_REQUEST_MESSAGE,
        reset_flow.PASSWORD_RESET_MESSAGE,
        resend_flow.RATE_LIMITED_MESSAGE,
        decorators.UNCONFIRMED_MESSAGE,
        "The link has expired.",
        "The link is not valid.",
        *DEFAULT_SUBJECTS.values(),
    ]
    assert [m for m in shown if m not in found] == []


def test_mails_in_the_worker_do_not_ask_the_request_locale(
    make_app: AppFactory, french_catalog: Path
) -> None:
    """A locale selector that reads the request cannot run in the worker:
    mails there use the default locale, or the one ``mail_locale`` names."""
    from flask import request

    app = make_app(
        CONFIRM_PASSWORD_RESET=True,
        BABEL_TRANSLATION_DIRECTORIES=str(french_catalog),
    )
    Babel(
        app,
        locale_selector=lambda: request.accept_languages.best_match(["en", "fr"]),
    )
    messages = render_all(app)  # an app context and no request, as a worker
    assert messages["confirm"].subject == "Confirm your email address"

    confirm = app.extensions["confirm"]

    @confirm.mail_locale
    def locale_of(user: t.Any) -> str | None:
        return "fr" if user.email.endswith(".org") else None

    messages = render_all(app, "bob@example.org")
    assert messages["confirm"].subject == "Confirmez votre adresse e-mail"
    assert messages["password_reset"].subject == "Réinitialisez votre mot de passe"
    assert "24 heures" in messages["confirm"].text
    # In a request, inline sending follows the request's locale by default.
    confirm._hooks.mail_locale = None
    with app.test_request_context(headers={"Accept-Language": "fr"}):
        messages = render_all(app, "cy@example.org")
        assert messages["confirm"].subject == "Confirmez votre adresse e-mail"


VALID_FOR = (
    "The link is valid for %(duration)s. If you did not sign up, you can ignore"
    " this message."
)


@pytest.mark.parametrize(
    ("max_age", "sentence"),
    [
        # 3 hours: the rule picks form 1, which the catalogue has.
        (3 * 3600, "Le lien est valable 3 heures."),
        # 24 hours: the rule picks form 2, which it lacks: the whole
        # sentence stays in English rather than "valable 24 hours".
        (24 * 3600, "The link is valid for 24 hours. If you did not sign up"),
    ],
)
def test_catalogue_with_too_few_plural_forms_gives_whole_sentences(
    make_app: AppFactory, tmp_path: Path, max_age: int, sentence: str
) -> None:
    """A catalogue whose plural forms do not match its rule (as a two-form
    catalogue does under a Babel that gives the language three) never
    yields a half-translated sentence."""
    folder = write_catalog(
        tmp_path,
        {
            ("%(num)d hour", "%(num)d hours"): ("%(num)d heure", "%(num)d heures"),
            VALID_FOR: "Le lien est valable %(duration)s.",
        },
        plural_forms="nplurals=3; plural=(n == 1 ? 0 : n < 10 ? 1 : 2);",
    )
    app = make_app(
        BABEL_TRANSLATION_DIRECTORIES=str(folder),
        CONFIRM_TOKEN_MAX_AGE=max_age,
        CONFIRM_PASSWORD_RESET=True,
    )
    Babel(app, locale_selector=lambda: "fr")
    app.extensions["confirm"].mail_locale(lambda user: "fr")
    message = render_all(app)["confirm"]
    assert sentence in message.text
    assert f"valable {max_age // 3600} hours" not in message.text


def test_mail_is_addressed_to_the_user(app: Flask, client: FlaskClient) -> None:
    register(client, "ada@example.org")
    (mail,) = outbox(app)
    assert mail.to == "ada@example.org"
    assert mail.sender == "no-reply@example.test"
    assert mail.subject == "Confirm your email address"
    assert "24 hours" in mail.text


# -- what makes a mail trusted: the site, why it came, what to do --------------------

#: The footer of each kind: why the reader got it.
WHY = {
    "confirm": (
        "You received this because someone entered this address to sign up at %(site)s."
    ),
    "email_change": (
        "You received this because someone asked at %(site)s to make this the"
        " address of their account."
    ),
    "email_change_notice": (
        "You received this because this address belongs to an account at"
        " %(site)s whose address someone asked to change."
    ),
    "password_reset": (
        "You received this because someone asked at %(site)s to reset the"
        " password of the account for this address."
    ),
}

#: The hidden line each kind's HTML starts with, for the mail list's preview.
PREHEADERS = {
    "confirm": "Confirm your address to finish signing up at %(site)s.",
    "email_change": (
        "Confirm ada@new.example.org as the new address of your account at %(site)s."
    ),
    "email_change_notice": (
        "Someone asked to change the address of your account at %(site)s to"
        " ada@new.example.org. Not you? Cancel it from this mail."
    ),
    "password_reset": (
        "Your link to choose a new password at %(site)s, valid for 1 hour."
    ),
}


def visible_text(page: str) -> str:
    """The HTML part's text as a reader sees it, roughly: tags and the
    hidden preheader out, entities and spaces folded."""
    page = re.sub(r"<head>.*?</head>", " ", page, flags=re.S)
    page = re.sub(r'<div style="display:none;[^"]*">.*?</div>', " ", page, flags=re.S)
    page = re.sub(r"<!--.*?-->", " ", page, flags=re.S)
    page = re.sub(r"<[^>]+>", " ", page)
    return " ".join(html.unescape(page).split())


@pytest.mark.parametrize(
    ("config", "site"),
    [
        ({}, "app.example.test"),  # the host of CONFIRM_EXTERNAL_URL
        ({"CONFIRM_SITE_NAME": "Example Widgets"}, "Example Widgets"),
    ],
)
def test_site_name_and_why_in_both_parts(
    make_app: AppFactory, config: dict[str, t.Any], site: str
) -> None:
    messages = render_all(make_app(CONFIRM_PASSWORD_RESET=True, **config))
    assert set(messages) == set(WHY)
    for kind, message in messages.items():
        why = WHY[kind] % {"site": site}
        shown = visible_text(message.html)
        # The site names itself on top of the card, and says why below it.
        assert shown.startswith(f"{site} "), (kind, shown[:80])
        assert shown.endswith(why), (kind, shown[-200:])
        # The text part ends the same way, under a signature line.
        assert message.text.rstrip("\n").endswith(f"\n\n-- \n{site}\n{why}"), kind
        # No other kind's reason leaks in.
        for other, sentence in WHY.items():
            if other != kind:
                assert sentence % {"site": site} not in message.text, (kind, other)


def test_site_name_is_escaped_in_html(make_app: AppFactory) -> None:
    message = render_all(
        make_app(CONFIRM_PASSWORD_RESET=True, CONFIRM_SITE_NAME="Tom & <Jerry>")
    )["confirm"]
    assert "Tom &amp; &lt;Jerry&gt;" in message.html
    assert "<Jerry>" not in message.html
    assert "Tom & <Jerry>\n" in message.text


def test_preheader_is_first_and_hidden(make_app: AppFactory) -> None:
    messages = render_all(make_app(CONFIRM_PASSWORD_RESET=True))
    for kind, message in messages.items():
        body = message.html.split("<body", 1)[1]
        # The first element of the body, hidden from the reader (the browser
        # test checks that it takes no room), carrying the kind's own line.
        match = re.match(r'[^>]*>\s*<div style="([^"]*)">([^<]*)</div>', body)
        assert match is not None, (kind, body[:300])
        style, text = match.groups()
        assert "display:none" in style and "max-height:0" in style, kind
        assert "mso-hide:all" in style, kind
        assert text == PREHEADERS[kind] % {"site": "app.example.test"}, kind
        # The preheader is not the text part's business.
        assert text not in message.text


def test_a_template_without_a_preheader_has_none(
    make_app: AppFactory, tmp_path: Path
) -> None:
    """An app's own mail that keeps the layout but sets no preheader gets no
    empty hidden block (and still the generic footer)."""
    folder = tmp_path / "flask_confirm" / "mail"
    folder.mkdir(parents=True)
    (folder / "confirm.html").write_text(
        '{% extends "flask_confirm/mail/layout.html" %}'
        "{% block heading %}Hi{% endblock %}"
    )
    app = make_app(CONFIRM_PASSWORD_RESET=True)
    # As if made with Flask(..., template_folder=tmp_path).
    app.template_folder = str(tmp_path)
    app.__dict__.pop("jinja_loader", None)  # a cached_property of Flask's
    message = render_all(app)["confirm"]
    assert "display:none" not in message.html
    assert visible_text(message.html).endswith(
        "You received this because someone entered this address at app.example.test."
    )


def test_color_schemes_declared(make_app: AppFactory) -> None:
    for kind, message in render_all(make_app(CONFIRM_PASSWORD_RESET=True)).items():
        head = message.html.split("</head>", 1)[0]
        assert '<meta name="color-scheme" content="light dark">' in head, kind
        assert '<meta name="supported-color-schemes" content="light dark">' in head
        assert "color-scheme: light dark; supported-color-schemes: light dark;" in head
        # Fluid: no fixed width on any table, only a max-width.
        assert not re.search(r'<table[^>]* width="\d+"[^>]*style', message.html)
        assert "max-width:560px" in message.html, kind


def test_change_notice_offers_this_was_not_me_in_both_parts(
    make_app: AppFactory,
) -> None:
    notice = render_all(make_app(CONFIRM_PASSWORD_RESET=True))["email_change_notice"]
    (cancel,) = re.findall(r"https?://\S+", notice.text)
    assert "/confirm/cancel/" in cancel
    # A button, and what happens when the reader does nothing.
    ((href, label),) = re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', notice.html)
    assert (href, html.unescape(label)) == (cancel, "This wasn't me: cancel the change")
    ignored = (
        "If you ignore this message, the address changes as soon as someone"
        " confirms it from ada@new.example.org."
    )
    assert ignored in visible_text(notice.html)
    assert ignored in notice.text
    # In the text part, the link comes right after what to do with it.
    assert (
        "If it was not, cancel the change with this link, then change your"
        f" password:\n\n{cancel}\n"
    ) in notice.text


def test_pybabel_extracts_the_mails_strings() -> None:
    """The templates' strings (the new footer and preheaders among them) are
    marked with ``_``, so the ``babel.cfg`` of :doc:`emails` extracts them."""
    package = Path(flask_confirm.__file__).parent
    found = {
        message
        for _, _, message, _, _ in extract_from_dir(
            str(package),
            method_map=[
                ("**/templates/**.html", "jinja2.ext:babel_extract"),
                ("**/templates/**.txt", "jinja2.ext:babel_extract"),
            ],
        )
    }
    expected = {
        *WHY.values(),
        "You received this because someone entered this address at %(site)s.",
        "Confirm your address to finish signing up at %(site)s.",
        "Confirm %(email)s as the new address of your account at %(site)s.",
        "Someone asked to change the address of your account at %(site)s to"
        " %(new)s. Not you? Cancel it from this mail.",
        "Your link to choose a new password at %(site)s, valid for %(duration)s.",
        "If you ignore this message, the address changes as soon as someone"
        " confirms it from %(new)s.",
        "This wasn't me: cancel the change",
    }
    assert expected - found == set()
