"""The mails Flask-Confirm sends, one function per kind, each with its link.

What each kind says lives in its templates (:mod:`.messages` renders them);
this module decides which kind a user is owed, to which address, with which
link and in which locale. The worker calls these at send time, so links are
made when mailed and never stored. Internal.
"""

from __future__ import annotations

import typing as t

from .. import links
from ..models import email_of
from ..models import target_address
from .messages import compose

if t.TYPE_CHECKING:
    from ..state import AppState
    from .message import EmailMessage


def confirmation(state: AppState, user: t.Any) -> EmailMessage:
    """Render the mail with ``user``'s confirmation link: the ``confirm``
    message to the current address, or, while an email change is pending,
    the ``email_change`` message to the new one (see :mod:`.messages`).
    """
    settings = state.settings
    kind = "email_change" if user.pending_email is not None else "confirm"
    return compose(
        settings,
        kind,
        target_address(user, settings.email_attribute),
        locale=state.locale_for(user),
        user=user,
        confirm_url=links.confirm_url(state, user),
        valid_for=settings.token_max_age,
    )


def change_notice(state: AppState, user: t.Any) -> EmailMessage:
    """Render the ``email_change_notice`` mail to ``user``'s current
    address about their pending new one. Its only link, ``cancel_url``,
    is the "this wasn't me" link that cancels the change
    (:meth:`.Confirm.cancel_change_url`).
    """
    settings = state.settings
    return compose(
        settings,
        "email_change_notice",
        email_of(user, settings.email_attribute),
        locale=state.locale_for(user),
        user=user,
        new_email=target_address(user, settings.email_attribute),
        cancel_url=links.cancel_change_url(state, user),
        valid_for=settings.token_max_age,
    )


def password_reset(state: AppState, user: t.Any) -> EmailMessage:
    """Render the ``password_reset`` mail for ``user``."""
    settings = state.settings
    return compose(
        settings,
        "password_reset",
        email_of(user, settings.email_attribute),
        locale=state.locale_for(user),
        user=user,
        reset_url=links.reset_url(state, user),
        valid_for=settings.password_reset_max_age,
    )
