"""The "this wasn't me" link of an email change notice: ``/cancel/<token>``.

Internal.
"""

from __future__ import annotations

import typing as t

from flask import request
from flask import url_for

from .. import links
from .. import store
from ..errors import TokenInvalid
from ..i18n import gettext
from ..i18n import N_
from ..i18n import render
from ..models import email_of
from .answers import link_view
from .answers import pending
from .answers import token_error
from .answers import wants_json

if t.TYPE_CHECKING:
    from flask import Blueprint
    from flask.typing import ResponseReturnValue

    from ..config import Settings
    from ..state import AppState

CHANGE_CANCELLED_MESSAGE = N_(
    "The change of address is cancelled: your account keeps its address."
)


def register(bp: Blueprint, settings: Settings) -> None:
    """Add the cancel route to ``bp``."""

    template = "flask_confirm/cancel_change.html"

    @bp.route("/cancel/<token>", methods=["GET", "POST"])
    @link_view(template, links.load_cancel_user)
    def cancel_change(state: AppState, user: t.Any) -> ResponseReturnValue:
        """The "this wasn't me" link of an email change notice: show the
        change and a Cancel button (GET, which mail scanners open, changes
        nothing); cancel it (POST). The link cancels the one request its
        notice was about."""
        address = email_of(user, settings.email_attribute)
        new_email = user.pending_email
        if request.method != "POST":
            return pending(template, {"email": address, "new_email": new_email})
        if not store.cancel_email_change(state, user):
            # Confirmed or cancelled between the check and the UPDATE.
            return token_error(
                template, TokenInvalid("The change is no longer pending.")
            )
        message = gettext(CHANGE_CANCELLED_MESSAGE)
        if wants_json():
            return {"status": "cancelled", "email": address, "message": message}
        return render(
            template,
            state="cancelled",
            email=address,
            new_email=new_email,
            message=message,
            reset_url=url_for("confirm.reset_request")
            if settings.password_reset
            else None,
        )
