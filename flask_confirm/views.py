"""The ``confirm`` blueprint: the pages the links open, resend, and the
password reset and email change cancel pages."""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import typing as t
import weakref
from urllib.parse import urlsplit

from flask import abort
from flask import Blueprint
from flask import current_app
from flask import flash
from flask import redirect
from flask import request
from flask import url_for
from redis.exceptions import RedisError
from werkzeug.wsgi import LimitedStream

from .addresses import InvalidEmail
from .addresses import normalize_email
from .errors import EmailInUse
from .errors import TokenExpired
from .errors import TokenInvalid
from .i18n import gettext
from .i18n import N_
from .i18n import ngettext
from .i18n import render
from .limits import fold_address
from .models import email_of
from .models import primary_key

if t.TYPE_CHECKING:
    from flask.typing import ResponseReturnValue
    from werkzeug.wrappers import Response

    from .config import Settings
    from .extension import Confirm

logger = logging.getLogger("flask_confirm")

# Marked with N_ for pybabel, translated with gettext where they are shown.
CONFIRMED_MESSAGE = N_("Your email address is confirmed. Thank you!")
EMAIL_CHANGED_MESSAGE = N_("Your new email address is confirmed and now in use.")
RESEND_MESSAGE = N_(
    "If that address is registered and not yet confirmed, a new confirmation"
    " link is on its way."
)
RESET_REQUEST_MESSAGE = N_(
    "If that address belongs to a confirmed account, a link to reset its"
    " password is on its way."
)
PASSWORD_RESET_MESSAGE = N_("Your password has been changed.")
CHANGE_CANCELLED_MESSAGE = N_(
    "The change of address is cancelled: your account keeps its address."
)
RATE_LIMITED_MESSAGE = N_(
    "Too many requests from your network. Please try again later."
)

#: The ``error`` code of a JSON answer for each status Flask or Werkzeug may
#: answer before a view runs.
HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}

#: Longer passwords are refused before hashing them costs anything.
MAX_PASSWORD_LENGTH = 1024


class _BadInput(Exception):
    """A request the view must refuse with ``code`` and ``message``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def create_blueprint(settings: Settings) -> Blueprint:
    """Build the ``confirm`` blueprint for one app. Internal.

    A new blueprint per app, so that nothing registered for one app (the URL
    prefix, the hooks, the password reset routes) leaks into another.
    """
    bp = Blueprint(
        "confirm",
        __name__,
        template_folder="templates",
        url_prefix=settings.url_prefix,
        subdomain=settings.subdomain,
    )

    @bp.context_processor
    def page_context() -> dict[str, t.Any]:
        # The pages extend flask_confirm/layout.html, which extends the
        # app's own layout when CONFIRM_BASE_TEMPLATE names one.
        return {
            "confirm_base_template": settings.base_template
            or "flask_confirm/standalone.html",
            "confirm_home_url": f"{settings.external_url}/",
            "confirm_csrf_field": current_app.config.get(
                "WTF_CSRF_FIELD_NAME", "csrf_token"
            ),
        }

    _register_csrf_error_handler(bp)

    @bp.before_request
    def limit_body() -> None:
        # These endpoints take an address and a button press: anything large
        # is not for us, and is refused before it is parsed. A body of known
        # length is never read past it; one the server ends itself (chunked,
        # wsgi.input_terminated) is capped as Werkzeug caps it for
        # max_content_length, 413 past the limit. Not by setting
        # request.max_content_length: Flask 3.0 makes it read-only, and the
        # app's own MAX_CONTENT_LENGTH, when smaller, is to hold here too.
        limit = settings.max_content_length
        length = request.content_length
        if length is not None and length > limit:
            abort(413)
        environ = request.environ
        if "wsgi.input_terminated" in environ:
            environ["wsgi.input"] = LimitedStream(
                environ["wsgi.input"], limit, is_max=True
            )

    @bp.after_app_request
    def finish(response: Response) -> Response:
        # The page's URL holds the token: keep it out of Referer headers and
        # out of shared caches; and let no other site frame the button. An
        # app-wide hook matched on the path, so that answers given before
        # routing knows the blueprint (405, 413) carry the headers too, and
        # are JSON when the client asked for JSON.
        if not request.path.startswith(f"{settings.url_prefix}/"):
            return response
        code = HTTP_ERROR_CODES.get(response.status_code)
        if code and response.mimetype != "application/json" and wants_json():
            response.set_data(json.dumps({"error": code, "message": response.status}))
            response.mimetype = "application/json"
        # setdefault: a header the app's own after_request hook set (one
        # registered after init_app runs before this one) is the app's word.
        headers = response.headers
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Cache-Control", "no-store")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        if settings.content_security_policy is not None:
            headers.setdefault(
                "Content-Security-Policy", settings.content_security_policy
            )
        return response

    @bp.route("/<token>", methods=["GET", "POST"])
    def confirm_email(token: str) -> ResponseReturnValue:
        """Show the address and a Confirm button (GET); confirm it (POST).

        GET changes nothing, since mail scanners open every link in a message;
        with :data:`CONFIRM_ON_GET` a GET confirms too. HEAD never does. After
        confirming, the visitor goes to ``next`` if it is a path on this site,
        else to :data:`CONFIRM_REDIRECT_URL`. A link mailed for an email change
        makes the new address the user's.
        """
        template = "flask_confirm/confirm.html"
        confirm = _confirm()
        try:
            user, address = confirm._resolve(token)
        except (TokenExpired, TokenInvalid) as e:
            return _token_error(template, e)
        change = address == user.pending_email

        if request.method == "POST" or (request.method == "GET" and settings.on_get):
            try:
                if change:
                    confirm.confirm_email_change(user, address)
                else:
                    confirm.confirm_user(user)
            except EmailInUse:
                return _refuse(
                    template,
                    _BadInput(
                        "email_in_use",
                        gettext("That address is now used by another account."),
                        409,
                    ),
                    state="invalid",
                )
            # The same answer whether or not it was confirmed before: the
            # holder of the link learns nothing new either way.
            message = gettext(EMAIL_CHANGED_MESSAGE if change else CONFIRMED_MESSAGE)
            if wants_json():
                return {"status": "confirmed", "email": address, "message": message}
            flash(message, "success")
            return redirect(
                safe_next(request.values.get("next")) or settings.redirect_url
            )
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
        if wants_json():
            return with_csrf_token(
                {"status": "pending", "email": address, "change": change}
            )
        return render(
            template, state="pending", email=address, change=change, next_url=next_url
        )

    @bp.route("/resend", methods=["GET", "POST"])
    def resend() -> ResponseReturnValue:
        """Send a fresh link to an unconfirmed address (POST ``email``).

        The answer is the same, byte for byte, whether the address is unknown,
        unconfirmed, already confirmed or over its own limit, so the form tells
        nobody who is registered. Only the per-client limit answers
        differently (429), and it depends on nothing but the client.
        """

        def send(confirm: Confirm, user: t.Any) -> None:
            if user is not None and not user.email_confirmed:
                confirm.send_confirmation(user)

        return _request_by_address(
            settings, "resend", "flask_confirm/resend.html", RESEND_MESSAGE, send
        )

    if settings.password_reset:

        @bp.route("/reset", methods=["GET", "POST"])
        def reset_request() -> ResponseReturnValue:
            """Mail a password reset link (POST ``email``), answering alike
            whether or not the address belongs to a confirmed account, with
            the same limits as resend."""

            def send(confirm: Confirm, user: t.Any) -> None:
                if user is not None and user.email_confirmed:
                    confirm.request_password_reset(user)

            return _request_by_address(
                settings,
                "reset",
                "flask_confirm/reset_request.html",
                RESET_REQUEST_MESSAGE,
                send,
            )

        @bp.route("/reset/<token>", methods=["GET", "POST"])
        def reset_password(token: str) -> ResponseReturnValue:
            """Show the new-password form (GET); set the password (POST
            ``password`` and ``password_confirm``). The link works once: it
            is bound to the password it replaces."""
            template = "flask_confirm/reset.html"
            confirm = _confirm()
            try:
                user = confirm.load_reset_user(token)
            except (TokenExpired, TokenInvalid) as e:
                return _token_error(template, e)
            address = email_of(user, settings.email_attribute)
            if request.method != "POST":
                if wants_json():
                    return with_csrf_token({"status": "pending", "email": address})
                return render(template, state="pending", email=address)
            try:
                password = _field("password")
                confirmation = _field("password_confirm", default=password)
                _check_password(settings, password, confirmation)
            except _BadInput as e:
                return _refuse(template, e, state="pending", email=address)
            if not confirm.reset_password(user, password):
                # Another request with this link set a password first.
                return _token_error(
                    template, TokenInvalid("The reset link was used meanwhile.")
                )
            message = gettext(PASSWORD_RESET_MESSAGE)
            if wants_json():
                return {"status": "password_reset", "message": message}
            flash(message, "success")
            return redirect(reset_destination(settings))

    @bp.route("/cancel/<token>", methods=["GET", "POST"])
    def cancel_change(token: str) -> ResponseReturnValue:
        """The "this wasn't me" link of an email change notice: show the
        change and a Cancel button (GET, which mail scanners open, changes
        nothing); cancel it (POST). The link cancels the one request its
        notice was about."""
        template = "flask_confirm/cancel_change.html"
        confirm = _confirm()
        try:
            user = confirm.load_cancel_user(token)
        except (TokenExpired, TokenInvalid) as e:
            return _token_error(template, e)
        address = email_of(user, settings.email_attribute)
        new_email = user.pending_email
        if request.method != "POST":
            if wants_json():
                return with_csrf_token(
                    {"status": "pending", "email": address, "new_email": new_email}
                )
            return render(template, state="pending", email=address, new_email=new_email)
        if not confirm.cancel_email_change(user):
            # Confirmed or cancelled between the check and the UPDATE.
            return _token_error(
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

    return bp


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


def csrf_token() -> str | None:
    """The current CSRF token when Flask-WTF's ``CSRFProtect`` is on for the
    app, else ``None``. ``CSRFProtect`` puts ``csrf_token`` among the Jinja
    globals, which is all the templates need too."""
    if "csrf" not in current_app.extensions:
        return None
    generate = current_app.jinja_env.globals.get("csrf_token")
    return str(generate()) if callable(generate) else None


def with_csrf_token(body: dict[str, t.Any]) -> dict[str, t.Any]:
    """``body`` with ``csrf_token`` added when CSRF protection is on, so a
    JSON client can send it back in ``X-CSRFToken``."""
    token = csrf_token()
    if token is not None:
        body["csrf_token"] = token
    return body


CSRF_FAILED_MESSAGE = N_(
    "This form has expired or did not come from this site. Reload the page"
    " and try again."
)


def _register_csrf_error_handler(bp: Blueprint) -> None:
    """Answer Flask-WTF's ``CSRFError`` under the prefix with the JSON code
    ``csrf_failed`` or a page that says what happened, instead of a bare
    400. Flask-WTF is optional: without it there is nothing to handle."""
    try:
        from flask_wtf.csrf import CSRFError
    except ImportError:
        return

    def csrf_failed(error: CSRFError) -> ResponseReturnValue:
        message = gettext(CSRF_FAILED_MESSAGE)
        if wants_json():
            return {
                "error": "csrf_failed",
                "message": message,
                "reason": error.description,
            }, 400
        return (
            render(
                "flask_confirm/error.html",
                title=gettext("The form could not be sent"),
                error=message,
                retry_url=request.path if request.method == "POST" else None,
            ),
            400,
        )

    bp.register_error_handler(CSRFError, csrf_failed)


def wants_json() -> bool:
    """Whether to answer JSON: the request has a JSON body, or prefers
    ``application/json`` to HTML in its ``Accept`` header."""
    if request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _refuse(template: str, error: _BadInput, **context: t.Any) -> ResponseReturnValue:
    """Answer a refused request: JSON ``{"error", "message"}`` or the page
    with the message, with the error's status."""
    if wants_json():
        return {"error": error.code, "message": error.message}, error.status
    return render(template, error=error.message, **context), error.status


def _token_error(template: str, error: Exception) -> ResponseReturnValue:
    expired = isinstance(error, TokenExpired)
    if wants_json():
        if expired:
            message = gettext("The link has expired.")
        else:
            message = gettext("The link is not valid.")
        code = "token_expired" if expired else "token_invalid"
        return {"error": code, "message": message}, 400
    return render(template, state="expired" if expired else "invalid"), 400


def _field(name: str, default: str = "") -> str:
    """A string field from the JSON body or the form.

    :raises _BadInput: the JSON body is not an object of strings.
    """
    if request.is_json:
        try:
            body = request.get_json(silent=True)
        except RecursionError:
            # Nesting deeper than the parser's recursion limit ("[" * 9000
            # fits in the body limit): as malformed as any other bad JSON.
            body = None
        if not isinstance(body, dict):
            raise _BadInput(
                "invalid_json", gettext("The request body must be a JSON object.")
            )
        value = body.get(name, default)
    else:
        value = request.form.get(name, default)
    if not isinstance(value, str):
        raise _BadInput(
            "invalid_json", gettext("%(name)s must be a string.", name=name)
        )
    return value


def _check_password(settings: Settings, password: str, confirmation: str) -> None:
    if len(password) < settings.password_min_length:
        raise _BadInput(
            "password_too_short",
            ngettext(
                "The password must be at least %(num)d character long.",
                "The password must be at least %(num)d characters long.",
                settings.password_min_length,
            ),
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise _BadInput("password_too_long", gettext("The password is too long."))
    if password != confirmation:
        raise _BadInput(
            "password_mismatch", gettext("The two passwords are not the same.")
        )


def _request_by_address(
    settings: Settings,
    scope: str,
    template: str,
    done_message: str,
    send: t.Callable[[Confirm, t.Any], None],
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
    confirm = _confirm()
    wait = _hit(confirm, f"{scope}-ip", client_ip(), settings.resend_ip_limit)
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
        email = normalize_email(_field("email"))
    except InvalidEmail as e:
        # The form keeps what was typed, to be corrected rather than retyped.
        typed = request.form.get("email") if not request.is_json else None
        return _refuse(template, _BadInput("invalid_email", str(e)), email=typed)
    except _BadInput as e:
        return _refuse(template, e)
    user = confirm.find_user(email)
    identifiers = [fold_address(email)]
    if user is not None:
        # An address never contains ":", so this is no address's identifier.
        identifiers.append(f"user:{primary_key(user)}")
    if not _hit(
        confirm, f"{scope}-address", identifiers, settings.resend_address_limit
    ):
        send(confirm, user)
    message = gettext(done_message)
    if wants_json():
        return {"status": "accepted", "message": message}
    return render(template, sent=message)


def _signed_in_address() -> str | None:
    """The signed-in user's address, to prefill the resend form; ``None``
    when nobody is signed in or the app has no way to say who is."""
    confirm = _confirm()
    try:
        user = confirm.current_user()
    except RuntimeError:
        return None
    if user is None:
        return None
    attribute = confirm._get_state().settings.email_attribute
    address = getattr(user, attribute, None)
    return address if isinstance(address, str) else None


def client_ip() -> str:
    """The client's address as the app sees it: ``request.remote_addr``, which
    is the proxy's unless the app trusts proxy headers (with Werkzeug's
    ``ProxyFix``, configured for its own number of proxies). An IPv6 client
    counts as its /64 network, since one host commonly holds a whole /64.

    Without an IP address (a unix socket: Werkzeug says ``"<local>"``,
    other servers nothing), every visitor is the one client ``"unknown"``,
    and a warning says so, once per app."""
    address = request.remote_addr or ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        _warn_no_client_address()
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


#: Apps already warned that requests come without a client address.
_WARNED_NO_ADDRESS: weakref.WeakSet[t.Any] = weakref.WeakSet()


def _warn_no_client_address() -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app in _WARNED_NO_ADDRESS:
        return
    _WARNED_NO_ADDRESS.add(app)
    logger.warning(
        "A request came without a client address (REMOTE_ADDR is %r, as on"
        " a unix socket): every client then shares one CONFIRM_RESEND_IP_LIMIT,"
        " so a few requests lock everyone out. Behind a proxy, wrap the app"
        " in werkzeug's ProxyFix(app.wsgi_app, x_for=<number of proxies>), or"
        " have the server set REMOTE_ADDR (see the deployment docs). Said"
        " once.",
        request.remote_addr,
    )


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


def _hit(
    confirm: Confirm, scope: str, identifier: str | list[str], windows: t.Any
) -> float:
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
