"""The resend form, ``/resend``, and the address-taking request body it
shares with the password reset form: limits, address check, one answer for
every address. Internal.
"""

from __future__ import annotations

import math
import typing as t

from flask import request

from .. import outbox
from .. import store
from ..addresses import InvalidEmail
from ..addresses import normalize_email
from ..i18n import gettext
from ..i18n import N_
from ..i18n import render
from ..limits import fold_address
from ..logins import current_user
from ..models import primary_key
from ..state import get_state
from ..suggestions import suggest
from .answers import BadInput
from .answers import field
from .answers import refuse
from .answers import wants_json
from .answers import with_csrf_token
from .clients import client_ip
from .clients import hit

if t.TYPE_CHECKING:
    from flask import Blueprint
    from flask.typing import ResponseReturnValue

    from ..config import Settings
    from ..state import AppState

RESEND_MESSAGE = N_(
    "If that address is registered and not yet confirmed, a new confirmation"
    " link is on its way."
)
RATE_LIMITED_MESSAGE = N_(
    "Too many requests from your network. Please try again later."
)


def register(bp: Blueprint, settings: Settings) -> None:
    """Add the resend route to ``bp``."""

    @bp.route("/resend", methods=["GET", "POST"])
    def resend() -> ResponseReturnValue:
        """Send a fresh link to an unconfirmed address (POST ``email``).

        The answer is the same, byte for byte, whether the address is unknown,
        unconfirmed, already confirmed or over its own limit, so the form tells
        nobody who is registered. Only the per-client limit answers
        differently (429), and it depends on nothing but the client.
        """

        def send(state: AppState, user: t.Any) -> None:
            if user is not None and not user.email_confirmed:
                outbox.send_confirmation(state, user)

        return request_by_address(
            settings, "resend", "flask_confirm/resend.html", RESEND_MESSAGE, send
        )


def request_by_address(
    settings: Settings,
    scope: str,
    template: str,
    done_message: str,
    send: t.Callable[[AppState, t.Any], None],
) -> ResponseReturnValue:
    """The shared body of resend and reset requests: per-client limit (429),
    address check (400), per-address limit (silent), then ``send`` with the
    user found (or ``None``); the same answer for every address.

    The per-address limit counts each request against the address in one
    folded form (:func:`.limits.fold_address`) *and* against the account the
    database matched, by its primary key: a database compares addresses by
    rules of its own (PostgreSQL's ``lower()`` makes "İ" an "i"; MariaDB's
    collations equate the dotless i, U+0131, with "i" and the long s,
    U+017F, with "s"), so every spelling that finds the account was a fresh
    limit, and 17 spellings sent 16 mails. The lookup runs for every
    request, found or not, so the work done does not tell either."""
    if request.method != "POST":  # GET, and HEAD (which Flask routes here)
        if wants_json():
            return with_csrf_token({"status": "ready", "fields": ["email"]})
        return render(
            template, email=_signed_in_address() if scope == "resend" else None
        )
    state = get_state()
    wait = hit(state, f"{scope}-ip", client_ip(), settings.resend_ip_limit)
    if wait:
        retry_after = math.ceil(wait)
        if wants_json():
            body = {
                "error": "rate_limited",
                "message": gettext(RATE_LIMITED_MESSAGE),
                "retry_after": retry_after,
            }
            return body, 429, {"Retry-After": str(retry_after)}
        return (
            render(template, error=gettext(RATE_LIMITED_MESSAGE)),
            429,
            {"Retry-After": str(retry_after)},
        )
    try:
        typed = field("email")
    except BadInput as e:
        return refuse(template, e)
    # From what was typed only, so it tells nothing about who is registered.
    did_you_mean = suggest(typed)
    try:
        email = normalize_email(typed)
        state.check_deliverable(email)
    except InvalidEmail as e:
        # The form keeps what was typed, to be corrected rather than retyped.
        error = BadInput("invalid_email", str(e), did_you_mean=did_you_mean)
        return refuse(
            template,
            error,
            email=None if request.is_json else typed,
            did_you_mean=did_you_mean,
        )
    user = store.find_user(state, email)
    identifiers = [fold_address(email)]
    if user is not None:
        # An address never contains ":", so this is no address's identifier.
        identifiers.append(f"user:{primary_key(user)}")
    if not hit(state, f"{scope}-address", identifiers, settings.resend_address_limit):
        send(state, user)
    message = gettext(done_message)
    if wants_json():
        body = {"status": "accepted", "message": message}
        if did_you_mean is not None:
            body["did_you_mean"] = did_you_mean
        return body
    return render(template, sent=message, did_you_mean=did_you_mean)


def _signed_in_address() -> str | None:
    """The signed-in user's address, to prefill the resend form; ``None``
    when nobody is signed in or the app has no way to say who is."""
    state = get_state()
    try:
        user = current_user(state)
    except RuntimeError:
        return None
    if user is None:
        return None
    attribute = state.settings.email_attribute
    address = getattr(user, attribute, None)
    return address if isinstance(address, str) else None
