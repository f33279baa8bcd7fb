"""The outbox: what is owed to users, recorded durably and put on the queue.

A request is two steps, in this order: the database records it (committed),
then a job carrying only the user's id is queued (:mod:`.queueing`). Redis
can lose the job; the database keeps the request, and the sweeper
(:func:`.bulk.sweep`) queues it again. Operations on many users at once are
in :mod:`.bulk`. Internal.
"""

from __future__ import annotations

import logging
import typing as t

from .. import signals
from .. import store
from ..addresses import lookup_keys
from ..addresses import normalize_email
from ..config import Keys
from ..errors import EmailInUse
from ..models import email_of
from ..models import primary_key
from ..state import current_app_object
from .queueing import dispatch

if t.TYPE_CHECKING:
    from ..state import AppState

logger = logging.getLogger("flask_confirm")


def request_link(state: AppState, user: t.Any) -> str | None:
    """Record that a link is owed to ``user`` (for the address in
    :func:`.models.target_address`), commit, then queue it."""
    store.record_request(state, user)
    return dispatch(state, "confirm", primary_key(user))


def send_confirmation(state: AppState, user: t.Any) -> str | None:
    """Request a confirmation link for ``user`` and send
    :data:`.confirmation_requested` (see :meth:`.Confirm.send_confirmation`)."""
    job_id = request_link(state, user)
    signals.confirmation_requested.send(current_app_object(), user=user, job_id=job_id)
    return job_id


def request_email_change(state: AppState, user: t.Any, new_email: str) -> str | None:
    """Keep ``new_email`` pending on ``user`` and request its link (see
    :meth:`.Confirm.request_email_change`).

    :raises InvalidEmail: ``new_email`` is not a usable address.
    :raises EmailInUse: another user has it, in any spelling.
    :raises ValueError: it is the user's current address.
    """
    new_email = normalize_email(new_email)
    old_email = email_of(user, state.settings.email_attribute)
    if set(lookup_keys(new_email)) & set(lookup_keys(old_email)):
        raise ValueError("The new address is the user's current address.")
    if store.address_taken(state, user, new_email):
        raise EmailInUse("Another user has that address already.")
    user.pending_email = new_email
    job_id = request_link(state, user)
    signals.email_change_requested.send(
        current_app_object(), user=user, new_email=new_email, job_id=job_id
    )
    return job_id


def request_password_reset(state: AppState, user: t.Any) -> str | None:
    """Queue a password reset link for ``user`` if their address is
    confirmed, and send :data:`.password_reset_requested` (see
    :meth:`.Confirm.request_password_reset`).

    :raises RuntimeError: :data:`CONFIRM_PASSWORD_RESET` is off.
    """
    if not state.settings.password_reset:
        raise RuntimeError(f"Password reset is off: set {Keys.PASSWORD_RESET} = True.")
    if not user.email_confirmed:
        logger.info("Password reset refused: address not confirmed.")
        return None
    job_id = dispatch(state, "password_reset", primary_key(user))
    signals.password_reset_requested.send(
        current_app_object(), user=user, job_id=job_id
    )
    return job_id
