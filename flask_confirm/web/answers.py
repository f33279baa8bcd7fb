"""What every page of the blueprint answers with: HTML or JSON, alike.

A client that sends JSON, or prefers it in ``Accept``, gets JSON with a
stable ``error`` code; a browser gets the page with the message. The flows
(:mod:`.confirm`, :mod:`.resend`, :mod:`.reset`, :mod:`.email_change`) answer
through these helpers only, so the two always say the same. Internal.
"""

from __future__ import annotations

import functools
import typing as t
from urllib.parse import urlsplit

from flask import current_app
from flask import request

from ..errors import TokenExpired
from ..errors import TokenInvalid
from ..i18n import gettext
from ..i18n import N_
from ..i18n import render
from ..state import get_state

if t.TYPE_CHECKING:
    from flask import Blueprint
    from flask.typing import ResponseReturnValue

    from ..state import AppState

_Opened = t.TypeVar("_Opened")

#: The ``error`` code of a JSON answer for each status Flask or Werkzeug may
#: answer before a view runs.
HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


class BadInput(Exception):
    """A request the view must refuse with ``code`` and ``message``, and
    ``details`` to add to a JSON answer (those that are not ``None``)."""

    def __init__(
        self, code: str, message: str, status: int = 400, **details: t.Any
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
        self.details = {k: v for k, v in details.items() if v is not None}


def wants_json() -> bool:
    """Whether to answer JSON: the request has a JSON body, or prefers
    ``application/json`` to HTML in its ``Accept`` header."""
    if request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def refuse(template: str, error: BadInput, **context: t.Any) -> ResponseReturnValue:
    """Answer a refused request: JSON ``{"error", "message"}`` or the page
    with the message, with the error's status."""
    if wants_json():
        body = {"error": error.code, "message": error.message, **error.details}
        return body, error.status
    return render(template, error=error.message, **context), error.status


def token_error(template: str, error: Exception) -> ResponseReturnValue:
    """Answer a link whose token failed: 400 ``token_expired`` or
    ``token_invalid``, or the page in state ``expired`` or ``invalid``."""
    expired = isinstance(error, TokenExpired)
    if wants_json():
        if expired:
            message = gettext("The link has expired.")
        else:
            message = gettext("The link is not valid.")
        code = "token_expired" if expired else "token_invalid"
        return {"error": code, "message": message}, 400
    return render(template, state="expired" if expired else "invalid"), 400


def link_view(
    template: str,
    load: t.Callable[[AppState, str], _Opened],
    first: t.Callable[[AppState, str], ResponseReturnValue | None] | None = None,
) -> t.Callable[
    [t.Callable[[AppState, _Opened], ResponseReturnValue]],
    t.Callable[[str], ResponseReturnValue],
]:
    """Make a view of the page a mailed link opens: ``load(state, token)``
    finds what the token names (its user), and the view gets the app's state
    and that; an expired or bad token is answered by :func:`token_error`
    before the view runs.

    ``first(state, token)``, if given, runs before ``load`` and answers the
    requests it can without it (the confirm ``POST``: one ``UPDATE``, no
    read); ``None`` goes on to ``load`` and the view. Its token errors are
    answered alike."""

    def decorate(
        view: t.Callable[[AppState, _Opened], ResponseReturnValue],
    ) -> t.Callable[[str], ResponseReturnValue]:
        @functools.wraps(view)
        def open_link(token: str) -> ResponseReturnValue:
            state = get_state()
            try:
                if first is not None:
                    answer = first(state, token)
                    if answer is not None:
                        return answer
                opened = load(state, token)
            except (TokenExpired, TokenInvalid) as e:
                return token_error(template, e)
            return view(state, opened)

        return open_link

    return decorate


def pending(
    template: str, fields: dict[str, t.Any], **page: t.Any
) -> ResponseReturnValue:
    """Answer the ``GET`` of a link's page, which changes nothing (mail
    scanners open links): JSON ``{"status": "pending", **fields}`` with the
    CSRF token to send back, or the page in state ``pending`` with
    ``fields`` and ``page``."""
    if wants_json():
        return with_csrf_token({"status": "pending", **fields})
    return render(template, state="pending", **fields, **page)


def field(name: str, default: str = "") -> str:
    """A string field from the JSON body or the form.

    :raises BadInput: the JSON body is not an object of strings.
    """
    if request.is_json:
        try:
            body = request.get_json(silent=True)
        except RecursionError:
            # Nesting deeper than the parser's recursion limit ("[" * 9000
            # fits in the body limit): as malformed as any other bad JSON.
            body = None
        if not isinstance(body, dict):
            raise BadInput(
                "invalid_json", gettext("The request body must be a JSON object.")
            )
        value = body.get(name, default)
    else:
        value = request.form.get(name, default)
    if not isinstance(value, str):
        raise BadInput("invalid_json", gettext("%(name)s must be a string.", name=name))
    return value


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


def register_csrf_error_handler(bp: Blueprint) -> None:
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
