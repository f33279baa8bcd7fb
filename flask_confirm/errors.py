"""The exceptions Flask-Confirm raises.

Everything derives from :class:`ConfirmError`, so an application can catch the
whole family in one place while still telling a bad configuration apart from a
bad link.
"""

from __future__ import annotations


class ConfirmError(Exception):
    """Base class of every exception raised by Flask-Confirm."""


class ConfigError(ConfirmError):
    """The application's configuration cannot work.

    Raised by :meth:`.Confirm.init_app` and at worker start. The message names
    the configuration key and says how to fix it, so that the error is found on
    the first deploy rather than when the first user registers.
    """


class TokenError(ConfirmError):
    """A confirmation token cannot be used."""


class TokenInvalid(TokenError):
    """The token is malformed, tampered with, too long, signed with an unknown
    key, or no longer matches its user (deleted, or the address changed).

    These cases are deliberately not told apart to the visitor: doing so would
    reveal which accounts exist.
    """


class TokenExpired(TokenError):
    """The token was genuine but is older than :data:`CONFIRM_TOKEN_MAX_AGE`.

    Unlike :class:`TokenInvalid`, this is worth telling the visitor, because the
    fix (ask for a new link) is in their hands.
    """


class EmailInUse(ConfirmError, ValueError):
    """Another user already has the address an email change asks for.

    Raised by :meth:`.Confirm.request_email_change`, and caught by the confirm
    page when someone took the address between the request and the click.
    Telling the signed-in user is the app's choice; it does reveal that the
    address is registered.
    """
