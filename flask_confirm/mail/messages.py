"""The mails Flask-Confirm sends, and how each is rendered.

Each kind of message (:data:`.config.MESSAGE_KINDS`) has a text and an HTML
template, ``flask_confirm/mail/<kind>.txt`` and ``flask_confirm/mail/<kind>.html``,
which an app overrides by putting files of the same names in its own
templates folder, and a subject and sender it can set per kind in
:data:`CONFIRM_MESSAGES`:

``confirm``
    The link that confirms a new user's address.
``email_change``
    The link, mailed to the new address, that completes an email change.
``email_change_notice``
    The notice to the old address that a change was asked for, with a
    "this wasn't me" link (``cancel_url``) that cancels it.
``password_reset``
    The link to the password reset form.

Messages are rendered in the worker, at send time, so the links in them are
never stored anywhere.
"""

from __future__ import annotations

import datetime as dt
import typing as t

from ..i18n import gettext
from ..i18n import mail_locale
from ..i18n import N_
from ..i18n import ngettext
from ..i18n import render
from .message import EmailMessage

if t.TYPE_CHECKING:
    from ..config import Settings

#: The subject of each kind when :data:`CONFIRM_MESSAGES` sets none (the
#: ``confirm`` kind's is :data:`CONFIRM_SUBJECT`). Translated with
#: :func:`.i18n.gettext` when the message is rendered.
DEFAULT_SUBJECTS = {
    "email_change": N_("Confirm your new email address"),
    "email_change_notice": N_("Your email address is being changed"),
    "password_reset": N_("Reset your password"),
}


def compose(
    settings: Settings,
    kind: str,
    to: str,
    *,
    locale: str | None = None,
    valid_for: int | None = None,
    **context: t.Any,
) -> EmailMessage:
    """Render the message of ``kind`` to ``to``, in ``locale`` (see
    :func:`.i18n.mail_locale`). ``context`` goes to both templates, with
    ``to``, ``kind``, ``site_name`` and ``site_url`` (so a reader can tell
    which site wrote, and why: the first mail to an unverified address is
    the one most often taken for phishing) and, for a link valid for
    ``valid_for`` seconds, ``expires_in`` and ``expires_in_words``.
    Internal."""
    fields = settings.messages.get(kind, {})
    default = settings.subject if kind == "confirm" else DEFAULT_SUBJECTS[kind]
    context.update(to=to, kind=kind)
    context.setdefault("site_name", settings.site_name)
    context.setdefault("site_url", settings.external_url)
    with mail_locale(locale):
        if valid_for is not None:
            context.update(validity(valid_for))
        return EmailMessage(
            to=to,
            sender=fields.get("sender", settings.mail_from),
            subject=gettext(fields.get("subject", default)),
            text=render(f"flask_confirm/mail/{kind}.txt", **context),
            html=render(f"flask_confirm/mail/{kind}.html", **context),
            kind=kind,
        )


def duration_words(seconds: int) -> str:
    """``86400`` -> ``"24 hours"``: the largest unit that divides evenly, so the
    mail never rounds a validity period up. Translated. Internal."""
    if seconds % 86400 == 0 and seconds > 86400:
        return ngettext("%(num)d day", "%(num)d days", seconds // 86400)
    if seconds % 3600 == 0:
        return ngettext("%(num)d hour", "%(num)d hours", seconds // 3600)
    if seconds % 60 == 0:
        return ngettext("%(num)d minute", "%(num)d minutes", seconds // 60)
    return ngettext("%(num)d second", "%(num)d seconds", seconds)


def validity(seconds: int) -> dict[str, t.Any]:
    """The template context that says how long a link is valid. Internal."""
    return {
        "expires_in": dt.timedelta(seconds=seconds),
        "expires_in_words": duration_words(seconds),
    }
