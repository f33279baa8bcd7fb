"""The confirmation link's page: ``/<token>``.

Internal.
"""

from __future__ import annotations

import typing as t

from flask import flash
from flask import redirect
from flask import request

from .. import links
from .. import store
from ..errors import EmailInUse
from ..i18n import gettext
from ..i18n import N_
from ..i18n import render
from .answers import BadInput
from .answers import link_view
from .answers import pending
from .answers import refuse
from .answers import safe_next
from .answers import wants_json

if t.TYPE_CHECKING:
    from flask import Blueprint
    from flask.typing import ResponseReturnValue

    from ..config import Settings
    from ..state import AppState

# Marked with N_ for pybabel, translated with gettext where they are shown.
CONFIRMED_MESSAGE = N_("Your email address is confirmed. Thank you!")
EMAIL_CHANGED_MESSAGE = N_("Your new email address is confirmed and now in use.")


def register(bp: Blueprint, settings: Settings) -> None:
    """Add the confirmation route to ``bp``."""

    template = "flask_confirm/confirm.html"

    def confirms() -> bool:
        """Whether this request confirms: a POST, or a GET with
        :data:`CONFIRM_ON_GET` (never a HEAD)."""
        return request.method == "POST" or (request.method == "GET" and settings.on_get)

    def confirmed(address: str, change: bool) -> ResponseReturnValue:
        """The answer once the link has confirmed, or had confirmed before:
        the same either way, so the holder of the link learns nothing new."""
        message = gettext(EMAIL_CHANGED_MESSAGE if change else CONFIRMED_MESSAGE)
        if wants_json():
            return {"status": "confirmed", "email": address, "message": message}
        flash(message, "success")
        return redirect(safe_next(request.values.get("next")) or settings.redirect_url)

    def confirm_at_once(state: AppState, token: str) -> ResponseReturnValue | None:
        """Confirm an unconfirmed user's address with one ``UPDATE``, without
        reading the user first (:func:`.links.confirm_link`); ``None`` for
        every other request and link, which the view below answers."""
        if not confirms():
            return None
        address = links.confirm_link(state, token)
        return None if address is None else confirmed(address, change=False)

    @bp.route("/<token>", methods=["GET", "POST"])
    @link_view(template, links.resolve, first=confirm_at_once)
    def confirm_email(
        state: AppState, opened: tuple[t.Any, str]
    ) -> ResponseReturnValue:
        """Show the address and a Confirm button (GET); confirm it (POST).

        GET changes nothing, since mail scanners open every link in a message;
        with :data:`CONFIRM_ON_GET` a GET confirms too. HEAD never does. After
        confirming, the visitor goes to ``next`` if it is a path on this site,
        else to :data:`CONFIRM_REDIRECT_URL`. A link mailed for an email change
        makes the new address the user's.

        An unconfirmed user's own link is confirmed by ``confirm_at_once``
        before this runs; here are the links confirmed already, those of an
        email change, and those that no longer hold.
        """
        user, address = opened
        change = address == user.pending_email

        if confirms():
            try:
                if change:
                    store.confirm_email_change(state, user, address)
                else:
                    store.confirm_user(state, user)
            except EmailInUse:
                return refuse(
                    template,
                    BadInput(
                        "email_in_use",
                        gettext("That address is now used by another account."),
                        409,
                    ),
                    state="invalid",
                )
            # The same answer whether or not it was confirmed before.
            return confirmed(address, change)
        next_url = safe_next(request.values.get("next"))
        if not change and user.email_confirmed:
            # A link used already: say so, rather than offer a button that
            # would only confirm again.
            if wants_json():
                return {"status": "confirmed", "email": address, "change": False}
            return render(
                template,
                state="confirmed",
                email=address,
                continue_url=next_url or settings.redirect_url,
            )
        return pending(
            template, {"email": address, "change": change}, next_url=next_url
        )
