"""View decorators for apps that use Flask-Confirm."""

from __future__ import annotations

import functools
import typing as t

from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import url_for

from .i18n import gettext
from .i18n import N_
from .logins import current_user
from .state import get_state

F = t.TypeVar("F", bound=t.Callable[..., t.Any])

UNCONFIRMED_MESSAGE = N_("Please confirm your email address to continue.")


def confirmed_required(view: F) -> F:
    """Let only users with a confirmed address through to ``view``.

    The current user comes from the callable registered with
    :meth:`.Confirm.user_loader`, or else from Flask-Login's ``current_user``.
    Nobody signed in gets a 401 (put Flask-Login's ``login_required`` above
    this decorator to send them to the login page instead); a user whose
    address is not confirmed is sent to the page that offers a new link.

    .. code-block:: python

        @app.get("/billing")
        @login_required
        @confirmed_required
        def billing(): ...
    """

    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        user = current_user(get_state())
        if user is None:
            abort(401)
        if not user.email_confirmed:
            flash(gettext(UNCONFIRMED_MESSAGE), "warning")
            return redirect(url_for("confirm.resend"))
        return current_app.ensure_sync(view)(*args, **kwargs)

    return t.cast(F, wrapper)
