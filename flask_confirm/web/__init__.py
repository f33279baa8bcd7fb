"""The ``confirm`` blueprint: one module per flow, and what they share.

- :mod:`.confirm`: the confirmation link's page;
- :mod:`.resend`: the resend form (and the request body the reset form shares);
- :mod:`.reset`: the password reset form and page;
- :mod:`.email_change`: the "this wasn't me" page of a change notice;
- :mod:`.answers`: HTML and JSON answers, fields, CSRF; :mod:`.clients`: the
  client's network and its limits.

The views call the services (:mod:`.links`, :mod:`.store`,
:mod:`.outbox`) with the app's state, never the :class:`.Confirm` object.
Internal.
"""

from __future__ import annotations

import json
import typing as t

from flask import abort
from flask import Blueprint
from flask import current_app
from flask import request
from werkzeug.wsgi import LimitedStream

from . import confirm
from . import email_change
from . import events
from . import resend
from . import reset
from .answers import HTTP_ERROR_CODES
from .answers import register_csrf_error_handler
from .answers import wants_json

if t.TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from ..config import Settings


def create_blueprint(settings: Settings) -> Blueprint:
    """Build the ``confirm`` blueprint for one app. Internal.

    A new blueprint per app, so that nothing registered for one app (the URL
    prefix, the hooks, the password reset routes) leaks into another.
    """
    bp = Blueprint(
        "confirm",
        # The package's name, so that its templates folder is the one found.
        "flask_confirm",
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

    register_csrf_error_handler(bp)

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
        if request.endpoint == events.ENDPOINT:
            # SNS posts whole SES reports, headers and all (256 KiB at most).
            limit = events.MAX_BODY
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

    confirm.register(bp, settings)
    resend.register(bp, settings)
    if settings.password_reset:
        reset.register(bp, settings)
    email_change.register(bp, settings)
    if settings.ses_events:
        events.register(bp, settings)
    return bp
