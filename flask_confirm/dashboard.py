"""Mounting rq-dashboard behind the app's own access check."""

from __future__ import annotations

import importlib.metadata
import typing as t

from flask import abort
from flask import redirect
from flask import request

from .config import Keys
from .config import origin_of
from .connection import describe
from .errors import ConfigError

if t.TYPE_CHECKING:
    from flask import Flask
    from werkzeug.wrappers import Response

    from .state import AppState


def mount_dashboard(app: Flask, state: AppState) -> None:
    """Register rq-dashboard at :data:`CONFIRM_DASHBOARD_URL`, denied by default.

    rq-dashboard's blueprint is one module-level object shared by every app, so
    no hook may be added to it; the check is an app-level ``before_request``
    that looks at ``request.blueprint``. It runs before the dashboard's own
    hooks. Actions must come from a page of :data:`CONFIRM_EXTERNAL_URL`'s
    origin or of :data:`CONFIRM_DASHBOARD_ORIGINS`, and no dashboard answer
    may be framed.

    Unless the app sets ``RQ_DASHBOARD_REDIS_URL`` itself, the dashboard
    shows the Redis Flask-Confirm uses, through the same client (a Sentinel
    client follows a failover; a client handed to ``Confirm(redis=...)`` is
    used as it is). rq-dashboard connects from a URL, and again on every
    page that names its instance, so it is given a description of the
    client without credentials, for its instance menu, and its connection is
    put back to Flask-Confirm's after each of its own hooks. Internal.
    """
    try:
        import rq_dashboard
        from rq_dashboard.web import setup_rq_connection
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and e.name == "rq_dashboard":
            raise ConfigError(
                f"{Keys.DASHBOARD_URL} is set but rq-dashboard is not installed:"
                " install 'flask-confirm[dashboard]', or set"
                f" app.config['{Keys.DASHBOARD_URL}'] = None."
            ) from e
        # Installed but broken: an old release against a newer rq, or a
        # module it imports without declaring it. Say which.
        raise ConfigError(
            f"{Keys.DASHBOARD_URL} is set but rq-dashboard"
            f" {_version('rq-dashboard')} failed to import with rq"
            f" {_version('rq')}: {type(e).__name__}: {e}. Install"
            " 'flask-confirm[dashboard]' again (pip install --upgrade"
            " 'flask-confirm[dashboard]' brings an rq-dashboard that works"
            " with rq 2 and later, and the modules it needs), or set"
            f" app.config['{Keys.DASHBOARD_URL}'] = None."
        ) from e

    settings = state.settings
    own_connection = "RQ_DASHBOARD_REDIS_URL" not in app.config
    if own_connection:
        app.config["RQ_DASHBOARD_REDIS_URL"] = describe(state.redis)
    setup_rq_connection(app)
    blueprint_name = rq_dashboard.blueprint.name
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=settings.dashboard_url)
    if own_connection:
        app.redis_conn = state.redis  # type: ignore[attr-defined]

        def use_confirm_connection() -> None:
            app.redis_conn = state.redis  # type: ignore[attr-defined]

        # After rq-dashboard's own hook (registered with its blueprint just
        # above), which connects anew from the URL on most of its pages.
        app.before_request_funcs.setdefault(blueprint_name, []).append(
            use_confirm_connection
        )

    _exempt_from_csrf(app, rq_dashboard.blueprint)
    # Where the dashboard's own pages come from: the site's public origin
    # (never the request's Host header, which whoever sends the request
    # chooses, as a DNS rebinding attack does) and the ones the app adds.
    trusted = frozenset(
        o
        for o in (origin_of(settings.external_url), *settings.dashboard_origins)
        if o is not None
    )
    prefix = settings.dashboard_url or ""

    @app.after_request
    def refuse_framing(response: Response) -> Response:
        # Every answer under the prefix, including the 403s below, a 404,
        # static files: a page that may not be framed cannot be clicked
        # through from another site's. Matched on the path, since a 404 has
        # no blueprint. A second Content-Security-Policy header only ever
        # restricts: the app's own, if any, still applies in full.
        if request.path == prefix or request.path.startswith(f"{prefix}/"):
            response.headers["X-Frame-Options"] = "DENY"
            if FRAME_POLICY not in response.headers.getlist("Content-Security-Policy"):
                response.headers.add("Content-Security-Policy", FRAME_POLICY)
        return response

    @app.before_request
    def guard_dashboard() -> Response | None:
        # The bare prefix is routed to no blueprint: Werkzeug redirects it
        # to the prefix with a slash, by an absolute URL built from the Host
        # header, which Werkzeug 3.0 (our floor) cannot always write back (a 500
        # on "Host: ["). It is guarded like the rest, and redirected here by
        # a relative URL, which needs no Host.
        bare = bool(prefix) and request.path == prefix
        if request.blueprint != blueprint_name and not bare:
            return None
        # A CSRFProtect set up after init_app runs its check after this hook,
        # and must not reject the dashboard's actions either.
        _exempt_from_csrf(app, rq_dashboard.blueprint)
        auth = state.hooks.dashboard_auth
        if auth is None:
            abort(
                403,
                description="The dashboard is closed: register a"
                " confirm.dashboard_auth callable to grant access.",
            )
        if not auth():
            abort(403, description="You may not see this dashboard.")
        changes_state = (
            request.method not in SAFE_METHODS
            or request.endpoint in STATE_CHANGING_GET_ENDPOINTS
        )
        if changes_state and not _from_trusted_origin(trusted):
            # rq-dashboard's actions (requeue, delete, empty) have no CSRF
            # protection of their own; a browser names the page that sent a
            # request in Origin (or at least Referer).
            abort(403, description="Cross-site dashboard actions are refused.")
        if bare:
            query = request.query_string.decode("latin-1")
            return redirect(f"{prefix}/" + (f"?{query}" if query else ""), code=308)
        return None


def _exempt_from_csrf(app: Flask, blueprint: t.Any) -> None:
    """Exempt rq-dashboard from Flask-WTF's ``CSRFProtect``, if the app has it.

    The dashboard's pages post with scripts that know nothing of Flask-WTF's
    token, so global CSRF protection would refuse every action; the guard
    below refuses cross-site actions itself, by their ``Origin``.
    """
    csrf = app.extensions.get("csrf")
    exempt = getattr(csrf, "exempt", None)
    if callable(exempt):
        exempt(blueprint)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(unknown version)"


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: rq-dashboard endpoints that change state even on GET.
STATE_CHANGING_GET_ENDPOINTS = frozenset({"rq_dashboard.requeue_all"})


#: Sent with every dashboard response, with ``X-Frame-Options: DENY``.
FRAME_POLICY = "frame-ancestors 'none'"


def _from_trusted_origin(trusted: frozenset[str]) -> bool:
    """Whether the page that sent the request is one of the dashboard's own:
    its ``Origin`` (or, from a browser that sends none, ``Referer``) is the
    origin of :data:`CONFIRM_EXTERNAL_URL` or one of
    :data:`CONFIRM_DASHBOARD_ORIGINS`."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return False
    return origin_of(source) in trusted
