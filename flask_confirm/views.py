"""The ``confirm`` blueprint: the page a link opens, and resend."""

from __future__ import annotations

import ipaddress
import logging
import math
import typing as t
from urllib.parse import urlsplit

from flask import abort
from flask import Blueprint
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from redis.exceptions import RedisError

from .addresses import InvalidEmail
from .addresses import normalize_email
from .errors import TokenExpired
from .errors import TokenInvalid

if t.TYPE_CHECKING:
    from flask.typing import ResponseReturnValue
    from werkzeug.wrappers import Response

    from .config import Settings
    from .extension import Confirm

logger = logging.getLogger("flask_confirm")

CONFIRMED_MESSAGE = "Your email address is confirmed. Thank you!"
RESEND_MESSAGE = (
    "If that address is registered and not yet confirmed, a new confirmation"
    " link is on its way."
)
RATE_LIMITED_MESSAGE = "Too many requests from your network. Please try again later."


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

    @bp.before_request
    def limit_body() -> None:
        # These endpoints take an address and a button press: anything large
        # is not for us, and is refused before it is parsed.
        request.max_content_length = settings.max_content_length
        request.max_form_memory_size = settings.max_content_length
        length = request.content_length
        if length is not None and length > settings.max_content_length:
            abort(413)

    @bp.after_app_request
    def protect_token(response: Response) -> Response:
        # The page's URL holds the token: keep it out of Referer headers and
        # out of shared caches; and let no other site frame the button. An
        # app-wide hook matched on the path, so that answers given before
        # routing knows the blueprint (405, 413) carry the headers too.
        if not request.path.startswith(f"{settings.url_prefix}/"):
            return response
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
            " frame-ancestors 'none'; base-uri 'none'"
        )
        return response

    @bp.route("/<token>", methods=["GET", "POST"])
    def confirm_email(token: str) -> ResponseReturnValue:
        """Show the address and a Confirm button (GET); confirm it (POST).

        GET changes nothing, since mail scanners open every link in a message;
        with :data:`CONFIRM_ON_GET` a GET confirms too. HEAD never does. After
        confirming, the visitor goes to ``next`` if it is a path on this site,
        else to :data:`CONFIRM_REDIRECT_URL`.
        """
        confirm = _confirm()
        try:
            user = confirm.load_user(token)
        except TokenExpired:
            return render_template("flask_confirm/confirm.html", state="expired"), 400
        except TokenInvalid:
            return render_template("flask_confirm/confirm.html", state="invalid"), 400

        next_url = safe_next(request.values.get("next"))
        if request.method == "POST" or (request.method == "GET" and settings.on_get):
            confirm.confirm_user(user)
            # The same answer whether or not it was confirmed before: the
            # holder of the link learns nothing new either way.
            flash(CONFIRMED_MESSAGE, "success")
            return redirect(next_url or settings.redirect_url)
        return render_template(
            "flask_confirm/confirm.html",
            state="pending",
            email=user.email,
            next_url=next_url,
        )

    @bp.route("/resend", methods=["GET", "POST"])
    def resend() -> ResponseReturnValue:
        """Send a fresh link to an unconfirmed address (POST ``email``).

        The answer is the same, byte for byte, whether the address is unknown,
        unconfirmed, already confirmed or over its own limit, so the form tells
        nobody who is registered. Only the per-client limit answers
        differently (429), and it depends on nothing but the client.
        """
        if request.method != "POST":  # GET, and HEAD (which Flask routes here)
            return render_template("flask_confirm/resend.html")
        confirm = _confirm()
        wait = _hit(confirm, "resend-ip", client_ip(), settings.resend_ip_limit)
        if wait:
            return (
                render_template(
                    "flask_confirm/resend.html", error=RATE_LIMITED_MESSAGE
                ),
                429,
                {"Retry-After": str(math.ceil(wait))},
            )
        try:
            email = normalize_email(request.form.get("email", ""))
        except InvalidEmail as e:
            return render_template("flask_confirm/resend.html", error=str(e)), 400
        if not _hit(
            confirm, "resend-address", email.lower(), settings.resend_address_limit
        ):
            user = confirm.find_user(email)
            if user is not None and not user.email_confirmed:
                confirm.send_confirmation(user)
        return render_template("flask_confirm/resend.html", sent=RESEND_MESSAGE)

    return bp


def client_ip() -> str:
    """The client's address as the app sees it: ``request.remote_addr``, which
    is the proxy's unless the app trusts proxy headers (with Werkzeug's
    ``ProxyFix``, configured for its own number of proxies). An IPv6 client
    counts as its /64 network, since one host commonly holds a whole /64."""
    address = request.remote_addr or "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def safe_next(target: str | None) -> str | None:
    """Return ``target`` if it is a path on this site, else ``None``.

    Accepts only ``/path?query`` forms: no scheme, no host, no ``//`` or
    backslash (which browsers read as ``//``), no control characters.
    """
    if not target or len(target) > 2048 or not target.startswith("/"):
        return None
    if target.startswith("//") or "\\" in target:
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _hit(confirm: Confirm, scope: str, identifier: str, windows: t.Any) -> float:
    """Record a hit against a limit; 0 if allowed, else the seconds to wait.

    Fails open: when Redis is down, queued sending is down too (requests are
    only recorded for the sweeper), so nothing can be flooded meanwhile. With
    :data:`CONFIRM_ASYNC` false and no Redis (development), there is no limit.
    """
    try:
        return confirm._get_state().limiter.hit(scope, identifier, windows)
    except RedisError as e:
        logger.warning(
            "Rate limit %s not checked: Redis error %s.", scope, type(e).__name__
        )
        return 0.0


def _confirm() -> Confirm:
    return t.cast("Confirm", current_app.extensions["confirm"])
