"""Links: the tokens in mailed URLs, the URLs themselves, and the way back
from a token to its user.

Three kinds, each with a salt of its own (:mod:`.tokens`): confirmation
links (bound to the address being confirmed, or to the pending change
request), password reset links (bound to the address and the password hash,
so they work once) and the "this wasn't me" links of email change notices
(bound to the change request). Links are built on
:data:`CONFIRM_EXTERNAL_URL`, never on the current request, so a forged
``Host`` header cannot change what is mailed. Internal.
"""

from __future__ import annotations

import hmac
import typing as t
from urllib.parse import urlsplit

from . import store
from .errors import TokenInvalid
from .models import email_of
from .models import primary_key
from .state import current_app_object
from .tokens import address_digest
from .tokens import change_digest
from .tokens import reset_digest

if t.TYPE_CHECKING:
    from .models import UserId
    from .state import AppState

#: The endpoint each kind of link opens.
CONFIRM_ENDPOINT = "confirm.confirm_email"
RESET_ENDPOINT = "confirm.reset_password"
CANCEL_ENDPOINT = "confirm.cancel_change"


def external_url(state: AppState, endpoint: str, token: str) -> str:
    """The absolute URL of ``endpoint`` with ``token``, on
    :data:`CONFIRM_EXTERNAL_URL`."""
    base = urlsplit(state.settings.external_url)
    adapter = current_app_object().url_map.bind(
        base.netloc, script_name=base.path or "/", url_scheme=base.scheme
    )
    return adapter.build(endpoint, {"token": token}, force_external=True)


def _token_user(state: AppState, user_id: UserId) -> t.Any:
    """The user a verified token names; a token whose user is gone, or
    whose id the key cannot hold, is as good as a bad one."""
    try:
        user = store.get_user(state, user_id)
    except store.BadUserId as e:
        raise TokenInvalid("The token's user id cannot be looked up.") from e
    if user is None:
        raise TokenInvalid("The token's user no longer exists.")
    return user


# -- confirmation links ------------------------------------------------------


def binding(state: AppState, user: t.Any) -> str:
    """What a confirmation token of ``user`` is bound to now: the pending
    change request, else the current address."""
    pending = user.pending_email
    if pending is not None:
        return change_digest(pending, user.confirmation_requested_at)
    return address_digest(email_of(user, state.settings.email_attribute))


def make_token(state: AppState, user: t.Any) -> str:
    """Return a new confirmation token for the address ``user`` is
    confirming: the current address, bound to it
    (:func:`.tokens.address_digest`); or, while an email change is
    pending, bound to that request, the new address and the time it was
    asked for (:func:`.tokens.change_digest`), so that a newer request,
    even to the same address, kills every earlier change link.
    """
    return state.serializer.sign(primary_key(user), binding(state, user))


def confirm_url(state: AppState, user: t.Any) -> str:
    """Return a fresh confirmation link for ``user`` (for the pending new
    address while an email change is pending).

    Links are built on :data:`CONFIRM_EXTERNAL_URL`, never on the current
    request, so a forged ``Host`` header cannot change what is mailed.
    """
    return external_url(state, CONFIRM_ENDPOINT, make_token(state, user))


def resolve(state: AppState, token: str) -> tuple[t.Any, str]:
    """The user of a confirmation token and the address it confirms (the
    current one, or the pending new one).

    :raises TokenExpired: older than :data:`CONFIRM_TOKEN_MAX_AGE`.
    :raises TokenInvalid: bad, its user gone, or its address no longer the
        user's current or pending one.
    """
    user_id, digest = state.serializer.loads(token)
    user = _token_user(state, user_id)
    return user, bound_address(state, user, digest)


def bound_address(state: AppState, user: t.Any, digest: str) -> str:
    """The address of ``user`` (a user, or a row with the same attributes)
    that a confirmation token's ``digest`` is bound to: the pending new one,
    or the current one.

    :raises TokenInvalid: neither.
    """
    pending = user.pending_email
    if pending and hmac.compare_digest(
        change_digest(pending, user.confirmation_requested_at), digest
    ):
        return t.cast("str", pending)
    current = getattr(user, state.settings.email_attribute, None)
    if isinstance(current, str) and current:
        # The change link that made the current address is still its
        # own: used again, it answers as a used confirmation link does.
        made_by = change_digest(current, user.confirmation_requested_at)
        for bound in (address_digest(current), made_by):
            if hmac.compare_digest(bound, digest):
                return current
    raise TokenInvalid("The token's user or address is no longer current.")


def confirm_link(state: AppState, token: str) -> str | None:
    """Confirm the current address of the user a confirmation token names,
    without loading the user first: the token's signature and age are
    checked, then one conditional ``UPDATE ... RETURNING``
    (:func:`.store.confirm_if`) confirms the row if it is unconfirmed, and
    the token's binding is checked against the row it returns before the
    commit. The binding is a digest of the address, which SQL cannot
    compare; a row it does not match is rolled back.

    :return: the address confirmed (and :data:`.email_confirmed` sent); or
        ``None``, having changed nothing, when the link is not that simple:
        confirmed already, an email change's link, no longer bound to the
        row, its user gone. :func:`resolve` then says what it is.
    :raises TokenExpired: older than :data:`CONFIRM_TOKEN_MAX_AGE`.
    :raises TokenInvalid: the token itself is bad (as :func:`resolve`).
    """
    user_id, digest = state.serializer.loads(token)

    def current_address(row: t.Any) -> str | None:
        # What resolve() would say of this row, where the view confirms the
        # current address: not a link to the pending change.
        try:
            address = bound_address(state, row, digest)
        except TokenInvalid:
            return None
        return None if address == row.pending_email else address

    return store.confirm_if(state, user_id, current_address)


# -- password reset links ----------------------------------------------------


def reset_binding(state: AppState, user: t.Any) -> str:
    """What a reset token of ``user`` is bound to: the address and the
    stored password hash."""
    stored = getattr(user, state.settings.password_hash_attribute, None)
    return reset_digest(
        email_of(user, state.settings.email_attribute),
        None if stored is None else str(stored),
    )


def make_reset_token(state: AppState, user: t.Any) -> str:
    """Return a password-reset token for ``user``, bound to their address
    and current password hash (:data:`CONFIRM_PASSWORD_HASH_ATTRIBUTE`).
    """
    return state.reset_serializer.sign(primary_key(user), reset_binding(state, user))


def reset_url(state: AppState, user: t.Any) -> str:
    """Return a fresh password-reset link for ``user``."""
    return external_url(state, RESET_ENDPOINT, make_reset_token(state, user))


def load_reset_user(state: AppState, token: str) -> t.Any:
    """Return the user a password-reset token was made for.

    :raises TokenExpired: older than :data:`CONFIRM_PASSWORD_RESET_MAX_AGE`.
    :raises TokenInvalid: the token is bad, was used already (the password
        changed), or its user is gone, changed address or is unconfirmed.
    """
    user_id, digest = state.reset_serializer.loads(token)
    user = _token_user(state, user_id)
    if not user.email_confirmed or not hmac.compare_digest(
        reset_binding(state, user), digest
    ):
        raise TokenInvalid("The reset token is used, stale or not for this user.")
    return user


# -- "this wasn't me" links --------------------------------------------------


def make_cancel_token(state: AppState, user: t.Any) -> str:
    """Return a token for the "this wasn't me" link of the notice about
    ``user``'s pending email change. It has a salt of its own and is
    bound to that request (the new address and the time it was asked
    for), so it cancels that change only: not a later request, to the
    same address or another.

    :raises ValueError: no change is pending.
    """
    if user.pending_email is None:
        raise ValueError("No email change is pending for this user.")
    return state.cancel_serializer.sign(
        primary_key(user),
        change_digest(user.pending_email, user.confirmation_requested_at),
    )


def cancel_change_url(state: AppState, user: t.Any) -> str:
    """Return a fresh "this wasn't me" link for ``user``'s pending email
    change, as the notice to the current address carries. ``GET`` shows a
    Cancel button (mail scanners open links); ``POST`` cancels.

    :raises ValueError: no change is pending.
    """
    return external_url(state, CANCEL_ENDPOINT, make_cancel_token(state, user))


def load_cancel_user(state: AppState, token: str) -> t.Any:
    """Return the user whose pending email change a cancel token is for.

    :raises TokenExpired: older than :data:`CONFIRM_TOKEN_MAX_AGE`.
    :raises TokenInvalid: the token is bad, its user is gone, or the
        change it was made for is no longer pending (it was made,
        cancelled, or replaced by a newer request).
    """
    user_id, digest = state.cancel_serializer.loads(token)
    user = _token_user(state, user_id)
    pending = user.pending_email
    if pending is None or not hmac.compare_digest(
        change_digest(pending, user.confirmation_requested_at), digest
    ):
        raise TokenInvalid("The change this link cancels is no longer pending.")
    return user
