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


class Untranslated(str):
    """A string left in its source language because the catalogue could not
    translate it. Internal.

    :func:`ngettext` returns one when the catalogue lacks the plural form
    its language needs for the count (a catalogue written for another
    plural rule, such as a two-form French catalogue read by a Babel that
    gives French three). :func:`gettext` keeps a sentence that embeds one in
    its source language too, so a reader never gets half a translation
    ("valable 24 hours").
    """

    __slots__ = ()


def gettext(string: str, **variables: t.Any) -> str:
    """Translate ``string`` with Flask-Babel if the app uses it, then fill in
    ``variables``. If a variable is :class:`Untranslated`, the sentence stays
    in its source language as well."""
    babel = _babel()
    if babel is None:
        return string % variables if variables else string
    if any(isinstance(value, Untranslated) for value in variables.values()):
        return Untranslated(string % variables)
    return t.cast(str, babel.gettext(string, **variables))


def ngettext(singular: str, plural: str, num: int, **variables: t.Any) -> str:
    """Like :func:`gettext` for a string with a count; ``%(num)d`` is ``num``.

    A catalogue that has the message but not the plural form its language's
    rule picks for ``num`` gives the source string, as :class:`Untranslated`,
    rather than Python's silent fallback, which would be embedded in a
    translated sentence."""
    babel = _babel()
    if babel is not None and not _lacks_plural_form(
        babel.get_translations(), singular, num
    ):
        return t.cast(str, babel.ngettext(singular, plural, num, **variables))
    source = (singular if num == 1 else plural) % {"num": num, **variables}
    return source if babel is None else Untranslated(source)


def _lacks_plural_form(translations: t.Any, singular: str, num: int) -> bool:
    """Whether the catalogue translates ``singular`` but has no entry for the
    plural form of ``num``. Python's ``GNUTranslations`` keeps plural entries
    as ``(msgid, index)`` in ``_catalog``; other translation objects (Flask-
    Babel's null translations outside a request) have nothing to lack."""
    catalog = getattr(translations, "_catalog", None)
    rule = getattr(translations, "plural", None)
    if not isinstance(catalog, dict) or not callable(rule):
        return False
    return (singular, 0) in catalog and (singular, rule(num)) not in catalog


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
