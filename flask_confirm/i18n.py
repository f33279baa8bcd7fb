"""Translation hooks: every user-facing string passes through :func:`gettext`.

Flask-Babel is optional. When the app has set it up, strings are translated
through it (in the app's own catalogues, with the current locale); otherwise
they are returned as written, with ``%(name)s`` placeholders filled in. The
templates get the same functions as ``_``, ``gettext`` and ``ngettext``.
"""

from __future__ import annotations

import contextlib
import typing as t

from flask import current_app
from flask import has_request_context
from flask import render_template


def _babel() -> t.Any:
    """Flask-Babel's module when the current app uses it, else ``None``."""
    if "babel" not in current_app.extensions:
        return None
    try:
        import flask_babel
    except ImportError:  # pragma: no cover - an extension without its package
        return None
    return flask_babel


@contextlib.contextmanager
def mail_locale(locale: str | None) -> t.Iterator[None]:
    """Translate a mail into ``locale`` (a name such as ``"fr"``), or, if it
    is ``None``, into the locale the app's selector picks for the current
    request, and outside a request (in the worker) into the app's default
    locale: the selector is not asked there, since it usually reads the
    request. Without Flask-Babel, nothing changes."""
    babel = _babel()
    if babel is None or (locale is None and has_request_context()):
        yield
        return
    if locale is None:
        locale = str(babel.get_babel().instance.default_locale)
    with babel.force_locale(locale):
        yield


def gettext(string: str, **variables: t.Any) -> str:
    """Translate ``string`` with Flask-Babel if the app uses it, then fill in
    ``variables``."""
    babel = _babel()
    if babel is not None:
        return t.cast(str, babel.gettext(string, **variables))
    return string % variables if variables else string


def ngettext(singular: str, plural: str, num: int, **variables: t.Any) -> str:
    """Like :func:`gettext` for a string with a count; ``%(num)d`` is ``num``."""
    babel = _babel()
    if babel is not None:
        return t.cast(str, babel.ngettext(singular, plural, num, **variables))
    variables.setdefault("num", num)
    return (singular if num == 1 else plural) % variables


def N_(string: str) -> str:
    """Mark ``string`` for extraction without translating it yet: for
    messages kept in constants and translated where they are shown."""
    return string


def render(template: str, **context: t.Any) -> str:
    """Render one of Flask-Confirm's templates with the translation functions
    in its context, so an overriding template can use them too, and ``lang``,
    the language it is written in (for ``<html lang>``)."""
    babel = _babel()
    locale = babel.get_locale() if babel is not None else None
    context.setdefault("lang", locale.language if locale is not None else "en")
    return render_template(
        template, _=gettext, gettext=gettext, ngettext=ngettext, **context
    )
