"""Mounting rq-dashboard behind the app's own access check."""

from __future__ import annotations

import typing as t

from flask import abort
from flask import request

from .config import Keys
from .errors import ConfigError

if t.TYPE_CHECKING:
    from flask import Flask

    from .extension import Confirm


def mount_dashboard(app: Flask, confirm: Confirm) -> None:
    """Register rq-dashboard at :data:`CONFIRM_DASHBOARD_URL`, denied by default.

    rq-dashboard's blueprint is one module-level object shared by every app, so
    no hook may be added to it; the check is an app-level ``before_request``
    that looks at ``request.blueprint``. It runs before the dashboard's own
    hooks. Internal.
    """
    try:
        import rq_dashboard
        from rq_dashboard.web import setup_rq_connection
    except ImportError as e:
        raise ConfigError(
            f"{Keys.DASHBOARD_URL} is set but rq-dashboard is not installed:"
            " install 'flask-confirm[dashboard]', or set"
            f" app.config['{Keys.DASHBOARD_URL}'] = None."
        ) from e

    settings = confirm._get_state(app).settings
    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", settings.redis_url)
    setup_rq_connection(app)
    blueprint_name = rq_dashboard.blueprint.name
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=settings.dashboard_url)

    @app.before_request
    def guard_dashboard() -> None:
        if request.blueprint != blueprint_name:
            return
        auth = confirm._dashboard_auth
        if auth is None:
            abort(
                403,
                description="The dashboard is closed: register a"
                " confirm.dashboard_auth callable to grant access.",
            )
        if not auth():
            abort(403, description="You may not see this dashboard.")
