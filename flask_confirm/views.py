"""The ``confirm`` blueprint: the page a link opens, and resend."""

from __future__ import annotations

import typing as t

from flask import Blueprint
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request

from .errors import TokenExpired
from .errors import TokenInvalid

if t.TYPE_CHECKING:
    from flask.typing import ResponseReturnValue
    from werkzeug.wrappers import Response

    from .config import Settings
    from .extension import Confirm

#: RFC 5321 caps a path at 256 octets including the angle brackets.
MAX_EMAIL_LENGTH = 254

CONFIRMED_MESSAGE = "Your email address is confirmed. Thank you!"
RESEND_MESSAGE = (
    "If that address is registered and not yet confirmed, a new confirmation"
    " link is on its way."
)


def create_blueprint(settings: Settings) -> Blueprint:
    """Build the ``confirm`` blueprint for one app. Internal.

    A new blueprint per app, so that nothing registered for one app (the URL
    prefix, the hooks) leaks into another.
    """
    bp = Blueprint(
        "confirm",
        __name__,
        template_folder="templates",
        url_prefix=settings.url_prefix,
    )

    @bp.after_request
    def protect_token(response: Response) -> Response:
        # The page's URL holds the token: keep it out of Referer headers and
        # out of shared caches.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.route("/<token>", methods=["GET", "POST"])
    def confirm_email(token: str) -> ResponseReturnValue:
        """Show the address and a Confirm button (GET); confirm it (POST).

        GET changes nothing, since mail scanners open every link in a message;
        with :data:`CONFIRM_ON_GET` a GET confirms too. HEAD never does.
        """
        confirm = _confirm()
        try:
            user = confirm.load_user(token)
        except TokenExpired:
            return render_template("flask_confirm/confirm.html", state="expired"), 400
        except TokenInvalid:
            return render_template("flask_confirm/confirm.html", state="invalid"), 400

        if request.method == "POST" or (request.method == "GET" and settings.on_get):
            confirm.confirm_user(user)
            # The same answer whether or not it was confirmed before: the
            # holder of the link learns nothing new either way.
            flash(CONFIRMED_MESSAGE, "success")
            return redirect(settings.redirect_url)
        return render_template(
            "flask_confirm/confirm.html", state="pending", email=user.email
        )

    @bp.route("/resend", methods=["GET", "POST"])
    def resend() -> ResponseReturnValue:
        """Send a fresh link to an unconfirmed address (POST ``email``).

        Answers the same whether the address is unknown, unconfirmed or already
        confirmed, so the form cannot be used to find out who is registered.
        GET shows a small form.
        """
        if request.method == "GET":
            return render_template("flask_confirm/resend.html")
        email = request.form.get("email", "")
        error = validate_email(email)
        if error is not None:
            return render_template("flask_confirm/resend.html", error=error), 400
        confirm = _confirm()
        user = confirm.find_user(email)
        if user is not None and not user.email_confirmed:
            confirm.send_confirmation(user)
        flash(RESEND_MESSAGE, "info")
        return redirect(settings.redirect_url)

    return bp


def validate_email(email: str) -> str | None:
    """Return why ``email`` is not an address worth looking up, or ``None``."""
    if any(c in email for c in "\r\n\0"):
        # Checked before stripping: line breaks are never part of an address,
        # and a header-injection attempt deserves a 400, not a quiet trim.
        return "That does not look like an email address."
    email = email.strip()
    if not email:
        return "Please enter your email address."
    if len(email) > MAX_EMAIL_LENGTH:
        return "That email address is too long."
    if email.count("@") != 1:
        return "That does not look like an email address."
    local, domain = email.split("@")
    if not local or not domain or "." not in domain.strip("."):
        return "That does not look like an email address."
    return None


def _confirm() -> Confirm:
    return t.cast("Confirm", current_app.extensions["confirm"])
