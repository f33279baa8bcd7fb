"""Sending paused for every worker, when the provider refuses the account.

SES answers ``AccountSuspendedException``, ``SendingPausedException`` or
``MailFromDomainNotVerifiedException`` to every message until someone fixes
the account: nothing is wrong with the message or its recipient, and each
retry would only burn one of the user's retries and hammer the provider.
So the first worker to hear it stops all of them (a key in Redis that lives
:data:`CONFIRM_SENDING_PAUSE` seconds, which each reads at most every
:data:`CHECK_EVERY` seconds while it finds none), logs an error and sends
:data:`.sending_paused`; meanwhile a confirmation is left owed, as it was,
for the sweeper to queue again once the pause is over. Internal.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import typing as t

from redis.exceptions import RedisError

from . import signals
from .faults import is_account_refusal
from .faults import SendingPaused
from .state import current_app_object

if t.TYPE_CHECKING:
    from .mail.message import EmailMessage
    from .state import AppState

logger = logging.getLogger("flask_confirm")


def _key(state: AppState) -> str:
    return f"flask-confirm:paused:{state.settings.queue}"


def send(state: AppState, message: EmailMessage) -> str | None:
    """Send ``message`` through the app's sender, unless sending is paused.

    :raises SendingPaused: sending is paused, or the provider refused the
        account now (which starts the pause).
    """
    if state.settings.is_async:
        check(state)
    try:
        return state.sender.send(message)
    except Exception as e:
        code = is_account_refusal(e)
        if code is None:
            raise
        raise start(state, code, e) from e


#: Seconds a process goes on sending without asking Redis again after it
#: found sending not paused: a pause another worker starts stops this one
#: within this long, and a batch does not ask once per mail.
CHECK_EVERY = 1.0


def check(state: AppState) -> None:
    """Raise :class:`.SendingPaused` while a pause holds. A Redis that cannot
    be read is no pause (the send itself will say what is wrong)."""
    memo = state.memo
    if time.monotonic() - memo.unpaused_at < CHECK_EVERY:
        return
    try:
        reason = state.redis.get(_key(state))
    except RedisError:
        return
    if isinstance(reason, bytes):
        raise SendingPaused(
            f"Sending is paused: the provider refused the account ({reason.decode()})."
        )
    memo.unpaused_at = time.monotonic()


def start(state: AppState, code: str, error: Exception) -> SendingPaused:
    """Pause sending for every worker of the queue, say so (an error in the
    log, :data:`.sending_paused`), and return the exception to raise."""
    state.memo.unpaused_at = float("-inf")  # this process pauses at once
    seconds = state.settings.sending_pause
    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    if state.settings.is_async:
        try:
            state.redis.set(_key(state), code.encode(), ex=seconds)
        except RedisError as e:
            logger.warning("Could not record the sending pause: %s", e)
    logger.error(
        "The mail provider refused the sending account (%s): every worker"
        " pauses sending for %d s. Confirmations stay owed and are queued"
        " again by the sweeper; fix the account (for SES: its sending status,"
        " or the MAIL FROM domain's verification).",
        code,
        seconds,
    )
    signals.sending_paused.send(
        current_app_object(), reason=code, until=until, error=error
    )
    return SendingPaused(f"The provider refused the account ({code}).")
