"""The outbox: what is owed to users, recorded durably and put on the queue.

A request is two steps, in this order: the database records it (committed),
then the user's id joins the send job waiting for the queue, or a new one
(:mod:`.queueing`). Redis
can lose the job; the database keeps the request, and the sweeper
(:func:`.bulk.sweep`) queues it again. Operations on many users at once are
in :mod:`.bulk`. Internal.
"""

from __future__ import annotations

import logging
import typing as t

from .. import signals
from .. import store
from ..addresses import InvalidEmail
from ..addresses import lookup_keys
from ..addresses import normalize_email
from ..config import Keys
from ..errors import EmailInUse
from ..models import email_of
from ..models import primary_key
from ..models import target_address
from ..state import current_app_object
from .queueing import dispatch

if t.TYPE_CHECKING:
    from ..state import AppState

logger = logging.getLogger("flask_confirm")


def request_link(state: AppState, user: t.Any) -> str | None:
    """Record that a link is owed to ``user`` (for the address in
    :func:`.models.target_address`), commit, then queue it.

    With :data:`CONFIRM_CHECK_DELIVERABILITY`, an address whose domain
    accepts no mail is not queued: the confirmation fails for good at once
    (``confirmation_error`` ``undeliverable: ...``, and
    :data:`.confirmation_failed` with ``permanent=True``), as the provider
    would have failed it, without the bounce."""
    # Read before the commit expires the user: reading it after would load
    # it again, in a transaction that an inline send's commit cannot change.
    address = target_address(user, state.settings.email_attribute)
    store.record_request(state, user)
    try:
        state.check_deliverable(address)
    except InvalidEmail as e:
        store.record_failure(state, user, f"undeliverable: {e}")
        signals.confirmation_failed.send(
            current_app_object(), user=user, error=e, permanent=True
        )
        return None
    return dispatch(state, "confirm", primary_key(user))


def send_confirmation(state: AppState, user: t.Any) -> str | None:
    """Ask for a confirmation link to be mailed to ``user``, durably.

    Records the request on the user (``confirmation_requested_at``) and
    **commits the session**, then enqueues a job that carries only the
    user's id. Call it in place of your own commit, so that a new user and
    the request for their confirmation land in the same transaction, or
    after it. The job is enqueued only once the row is committed, and the
    mail is rendered and sent by the worker: the request never waits for
    the mail provider.

    The database, not Redis, holds the request: if Redis cannot be reached
    a warning is logged, ``None`` is returned and the caller's request still
    succeeds; :meth:`.Confirm.sweep` (``flask confirm sweep``, or a worker run
    ``--with-scheduler``) enqueues it again later. With
    :data:`CONFIRM_ASYNC` false the job runs here, at once, and a failure
    to send is logged and signalled rather than raised.

    :return: the job id, or ``None`` if the job could not be queued.
    """
    job_id = request_link(state, user)
    signals.confirmation_requested.send(current_app_object(), user=user, job_id=job_id)
    return job_id


def request_email_change(state: AppState, user: t.Any, new_email: str) -> str | None:
    """Start changing ``user``'s address to ``new_email``.

    The new address is kept in :attr:`~.ConfirmableMixin.pending_email`
    and the request committed, as :meth:`.Confirm.send_confirmation` does; the
    worker mails a link to the new address and, just before it, a notice
    to the current one, whose "this wasn't me" link cancels the change
    (:meth:`.Confirm.cancel_change_url`). The address changes only when the link
    is confirmed; a password reset cancels the change. Until then the
    user keeps the current address, confirmed or not; a link mailed for
    an earlier change stops working, and once
    the change is made so does every link for the old address. The same
    delivery guarantee as for confirmations applies to the link and the
    notice (sweeps, retries, ``status``); the notice goes out once per
    request however often the link is retried, and a notice the old
    mailbox refuses does not hold up the link.

    :raises InvalidEmail: ``new_email`` is not a usable address (with
        :data:`CONFIRM_CHECK_DELIVERABILITY`: or its domain accepts no mail).
    :raises EmailInUse: another user has that address already, in any
        spelling (:func:`.addresses.lookup_keys`: case, the punycode or
        Unicode form of the domain).
    :raises ValueError: it is the user's current address.
    :return: the id of the job that mails the link, or ``None`` if it
        could not be queued (the sweeper queues it later).
    """
    new_email = normalize_email(new_email)
    state.check_deliverable(new_email)
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
    """Mail ``user`` a link to the password reset form.

    Needs :data:`CONFIRM_PASSWORD_RESET`. Does nothing for a user whose
    address is not confirmed: a reset link is only as safe as the address
    it goes to. The link is made by the worker when it sends, binds the
    user's address and current password hash, and so works once. Nothing
    is stored: if Redis cannot be reached, a warning is logged and
    ``None`` returned, and the user can simply ask again.

    :raises RuntimeError: :data:`CONFIRM_PASSWORD_RESET` is off.
    :return: the job id, or ``None`` if nothing was queued.
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
