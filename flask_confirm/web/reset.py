"""Password reset: the request form, ``/reset``, and the new-password page
its link opens, ``/reset/<token>``. Registered only with
:data:`CONFIRM_PASSWORD_RESET` on. Internal.
"""

from __future__ import annotations

import typing as t

from flask import current_app
from flask import flash
from flask import redirect
from flask import request
from flask import url_for

from .. import links
from .. import outbox
from .. import store
from ..errors import TokenInvalid
from ..i18n import gettext
from ..i18n import N_
from ..i18n import ngettext
from ..models import email_of
from .answers import BadInput
from .answers import field
from .answers import link_view
from .answers import pending
from .answers import refuse
from .answers import token_error
from .answers import wants_json
from .resend import request_by_address

if t.TYPE_CHECKING:
    from flask import Blueprint
    from flask.typing import ResponseReturnValue

    from ..config import Settings
    from ..state import AppState

RESET_REQUEST_MESSAGE = N_(
    "If that address belongs to a confirmed account, a link to reset its"
    " password is on its way."
)
PASSWORD_RESET_MESSAGE = N_("Your password has been changed.")

#: Longer passwords are refused before hashing them costs anything.
MAX_PASSWORD_LENGTH = 1024


def register(bp: Blueprint, settings: Settings) -> None:
    """Add the password reset routes to ``bp``."""

    @bp.route("/reset", methods=["GET", "POST"])
    def reset_request() -> ResponseReturnValue:
        """Mail a password reset link (POST ``email``), answering alike
        whether or not the address belongs to a confirmed account, with
        the same limits as resend."""

        def send(state: AppState, user: t.Any) -> None:
            if user is not None and user.email_confirmed:
                outbox.request_password_reset(state, user)

        return request_by_address(
            settings,
            "reset",
            "flask_confirm/reset_request.html",
            RESET_REQUEST_MESSAGE,
            send,
        )

    template = "flask_confirm/reset.html"

    @bp.route("/reset/<token>", methods=["GET", "POST"])
    @link_view(template, links.load_reset_user)
    def reset_password(state: AppState, user: t.Any) -> ResponseReturnValue:
        """Show the new-password form (GET); set the password (POST
        ``password`` and ``password_confirm``). The link works once: it
        is bound to the password it replaces."""
        address = email_of(user, settings.email_attribute)
        if request.method != "POST":
            return pending(template, {"email": address})
        try:
            password = field("password")
            confirmation = field("password_confirm", default=password)
            check_password(settings, password, confirmation)
        except BadInput as e:
            return refuse(template, e, state="pending", email=address)
        if not store.reset_password(state, user, password):
            # Another request with this link set a password first.
            return token_error(
                template, TokenInvalid("The reset link was used meanwhile.")
            )
        message = gettext(PASSWORD_RESET_MESSAGE)
        if wants_json():
            return {"status": "password_reset", "message": message}
        flash(message, "success")
        return redirect(reset_destination(settings))


def reset_destination(settings: Settings) -> str:
    """Where a password reset lands: :data:`CONFIRM_RESET_REDIRECT_URL`, else
    Flask-Login's login view (the new password is to be used there, and a
    login-required page would only flash "please log in" beside ours), else
    :data:`CONFIRM_REDIRECT_URL`."""
    if settings.reset_redirect_url is not None:
        return settings.reset_redirect_url
    login_view = getattr(
        getattr(current_app, "login_manager", None), "login_view", None
    )
    if isinstance(login_view, str) and login_view:
        return url_for(login_view)
    return settings.redirect_url


def check_password(settings: Settings, password: str, confirmation: str) -> None:
    if len(password) < settings.password_min_length:
        raise BadInput(
            "password_too_short",
            ngettext(
                "The password must be at least %(num)d character long.",
                "The password must be at least %(num)d characters long.",
                settings.password_min_length,
            ),
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise BadInput("password_too_long", gettext("The password is too long."))
    if password != confirmation:
        raise BadInput(
            "password_mismatch", gettext("The two passwords are not the same.")
        )
