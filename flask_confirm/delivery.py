"""Delivery: sending what is owed to users, as the worker's jobs do it.

The jobs in :mod:`.tasks` are thin: they find the app's state and call these.
Each send re-reads the user's row under a per-user lock in Redis, so a job
run twice (a retry after a crash, two workers, a sweep racing a slow worker)
sends once; renders the mail with a fresh link (:mod:`.mail.kinds`); keeps
to the shared send rate; and records the outcome on the row, permanent
failures apart from transient ones (:mod:`.faults`). Before any provider is
called, the addresses a job would mail are looked up on the suppression list
(:mod:`.suppression`), in one query per job; a suppressed one is a permanent
failure, and an SMTP server refusing a recipient for good puts it there. With
:data:`CONFIRM_ASYNC` false the outbox calls these inline. Internal.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
import typing as t
from email.utils import parseaddr

from redis.exceptions import RedisError
from rq import get_current_job
from sqlalchemy import bindparam
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

from . import locks
from . import pauses
from . import signals
from . import stats
from . import suppression
from .faults import AddressSuppressed
from .faults import ConfirmationBusy
from .faults import describe
from .faults import is_permanent
from .faults import is_throttling
from .faults import redact
from .faults import redacted
from .faults import SendingPaused
from .faults import TransientSendError
from .mail import kinds
from .mail.mime import check_recipient
from .models import email_of
from .models import primary_key
from .models import utcnow
from .state import current_app_object
from .tokens import change_digest

if t.TYPE_CHECKING:
    from redis.client import Pipeline
    from sqlalchemy import Select
    from sqlalchemy import Update
    from sqlalchemy.orm import Mapper

    from .models import UserId
    from .senders import EmailMessage
    from .state import AppState

logger = logging.getLogger("flask_confirm")


def send_one(
    state: AppState, user_id: UserId, finish: Pipeline | None = None
) -> str | None:
    """Send the confirmation owed to the user with ``user_id``, if any (see
    :func:`.tasks.send_confirmation_job` for the guarantees). The provider's
    message id, or ``None`` when nothing was owed. Given ``finish``, the
    job's closing writes (its lock released, its counts) go into that
    pipeline, which the caller executes (see :func:`.tasks._closing`).

    :raises ConfirmationBusy: another worker holds the user's lock.
    """
    with (
        stats.gathering(state, finish),
        locks.user_locks(state, [user_id], finish) as locked,
    ):
        if not locked:
            raise ConfirmationBusy(
                f"Another worker is sending the confirmation for user {user_id!r}."
            )
        user = _load_users(state, locked).get(user_id)
        blocked = suppression.owed(state, [user])
        sent = _send(state, user_id, user, in_batch=False, blocked=blocked)
        if sent is None:
            return None
        _record_sent(state, [sent])  # under the lock, as in a batch
        return sent[1]


def send_batch(
    state: AppState, user_ids: list[UserId], finish: Pipeline | None = None
) -> dict[str, int]:
    """Send the confirmations owed to ``user_ids`` over one connection (see
    :func:`.tasks.send_batch_job`). Counts of ``sent``, ``skipped`` and
    ``failed``. ``finish`` as for :func:`send_one`.

    :raises TransientSendError: some failed for now; a retry sends only
        those still owed.
    """
    counts = {"sent": 0, "skipped": 0, "failed": 0}
    transient = 0
    # The users' locks expire CONFIRM_JOB_TIMEOUT per user after they are
    # taken: no send starts with less than one user's time left on them, so
    # a send never outlasts its lock (whatever timeout RQ gave the job).
    budget = state.settings.job_timeout
    last_start = time.monotonic() + budget * (len(user_ids) - 1)
    with (
        stats.gathering(state, finish),
        locks.user_locks(state, user_ids, finish) as locked,
    ):
        users = _load_users(state, locked)
        blocked = suppression.owed(state, users.values())  # one query for all
        unrecorded: list[tuple[t.Any, str | None]] = []
        try:
            for index, user_id in enumerate(user_ids):
                if user_id not in locked:
                    logger.info(
                        "Confirmation for user %r is being sent elsewhere.", user_id
                    )
                    counts["failed"] += 1
                    transient += 1
                    continue
                if index and time.monotonic() > last_start:
                    logger.info(
                        "Out of time for user %r in this job; the retry sends it.",
                        user_id,
                    )
                    counts["failed"] += 1
                    transient += 1
                    continue
                try:
                    user = users.get(user_id)
                    sent = _send(state, user_id, user, in_batch=True, blocked=blocked)
                except Exception as e:
                    counts["failed"] += 1
                    if not is_permanent(e):
                        transient += 1
                    continue
                if sent is None:
                    counts["skipped"] += 1
                    continue
                counts["sent"] += 1
                unrecorded.append(sent)
                if len(unrecorded) >= RECORD_EVERY:
                    _record_sent(state, unrecorded)
        finally:
            _record_sent(state, unrecorded)
    if transient:
        raise TransientSendError(
            f"{transient} of {len(user_ids)} confirmations failed for now;"
            " the retry sends only those still owed."
        )
    return counts


#: A batch job records that mails were sent in one commit per this many mails
#: (and at its end), rather than one per mail. A worker killed in between
#: sends at most this many mails a second time, after the sweep.
RECORD_EVERY = 10


def _record_sent(state: AppState, unrecorded: list[tuple[t.Any, str | None]]) -> None:
    """Commit the ``confirmation_sent_at`` already set on the users of a batch,
    then log and signal each; empties ``unrecorded``."""
    if not unrecorded:
        return
    # One Core UPDATE (an executemany for a batch) and the commit: the
    # values are on the objects already, but not as changes, so the ORM
    # has nothing to flush (no unit of work, no per-row bookkeeping).
    state.db.session.execute(
        _sent_statement(sa_inspect(state.user_model)),
        [
            {
                "_key": state.key.value(primary_key(user)),
                "_sent": user.confirmation_sent_at,
            }
            for user, _ in unrecorded
        ],
    )
    state.db.session.commit()
    app = current_app_object()
    for user, message_id in unrecorded:
        user_id = primary_key(user)
        logger.info("Confirmation for user %r sent (%s).", user_id, message_id)
        signals.confirmation_sent.send(app, user=user, message_id=message_id)
    unrecorded.clear()


@functools.lru_cache(maxsize=64)
def _sent_statement(mapper: Mapper[t.Any]) -> Update:
    """``UPDATE <users> SET confirmation_sent_at = :_sent,
    confirmation_error = NULL WHERE <key> = :_key``, on the table that holds
    the mixin's columns, built once per user model (as
    :func:`.store.confirm_if`'s statements are)."""
    sent = mapper.columns["confirmation_sent_at"]
    error = mapper.columns["confirmation_error"]
    (key,) = mapper.primary_key
    return (
        update(sent.table)
        .where(key == bindparam("_key"))
        .values({sent: bindparam("_sent"), error: None})
    )


def _load_users(state: AppState, user_ids: t.Collection[UserId]) -> dict[UserId, t.Any]:
    """Read the rows of ``user_ids`` in one query, by id, and keep them from
    expiring on commit, so that recording each send is one ``UPDATE`` and no
    reload. Called under the users' locks, so the rows are as fresh as a
    per-user read."""
    session = state.db.session
    session().expire_on_commit = False  # this job's session only
    if not user_ids:
        return {}
    key = state.key
    query = _users_query(sa_inspect(state.user_model))
    found = session.scalars(query, {"_keys": key.values(user_ids)})
    return {primary_key(user): user for user in found}


@functools.lru_cache(maxsize=64)
def _users_query(mapper: Mapper[t.Any]) -> Select[t.Any]:
    """``SELECT <users> WHERE <key> IN (:_keys)``, built once per user model
    (as :func:`_sent_statement` is)."""
    (key,) = mapper.primary_key
    return select(mapper).where(key.in_(bindparam("_keys", expanding=True)))


def send_reset(state: AppState, user_id: UserId) -> str | None:
    """Mail a password reset link to the user with ``user_id``, if they are
    still there and confirmed (see :func:`.tasks.send_reset_job`) and their
    address is not suppressed. The provider's message id, or ``None`` when
    nothing was sent."""
    user = state.db.session.get(state.user_model, state.key.value(user_id))
    message: EmailMessage | None = None
    if user is not None and user.email_confirmed and state.settings.password_reset:
        message = kinds.password_reset(state, user)
    blocked = message is not None and suppression.is_suppressed(state, message.to)
    state.db.session.rollback()
    if message is None:
        logger.info("No password reset owed to user %r; nothing sent.", user_id)
        return None
    if blocked:
        # Nothing to record: a reset keeps no state on the user.
        logger.info(
            "The address of user %r is suppressed; no password reset sent.", user_id
        )
        return None
    try:
        message_id = _send_within_rate(state, message)
    except SendingPaused as e:
        # Nothing is stored for a reset: the user asks again.
        logger.warning("Password reset for user %r not sent: %s", user_id, e)
        return None
    except Exception as e:
        job = get_current_job()
        if is_permanent(e) and job is not None:
            job.retries_left = 0
        logger.warning(
            "Sending the password reset for user %r failed: %s",
            user_id,
            redact(describe(e), [message.to], _own(message)),
        )
        suppression.learn_refusal(state, e, message.to, "password reset")
        raise redacted(e, [message.to], _own(message)) from None
    logger.info("Password reset for user %r sent (%s).", user_id, message_id)
    return message_id


def _own(message: EmailMessage) -> list[str]:
    """The app's own address in ``message`` (its From), which failure
    descriptions keep: see :func:`.faults.redact`."""
    return [parseaddr(message.sender)[1]]


#: Times a job re-sends after a provider says "too fast", before it gives up
#: and lets RQ retry it later.
THROTTLE_ATTEMPTS = 5


def _send_within_rate(state: AppState, message: EmailMessage) -> str | None:
    """Send ``message``, keeping to :data:`CONFIRM_MAX_SEND_RATE` across every
    worker on every host (a sliding window in Redis). When the provider still
    answers "throttled", the window is filled for a period, so all workers
    pause, and the message is sent again: a throttle slows the queue down
    instead of failing jobs."""
    # Before any sender sees it: a recipient no mail library can read as
    # one address fails for good here, whatever the sender would have done.
    check_recipient(message.to)
    message_id = _send_rated(state, message)
    stats.record(state, "sent", message.kind)
    return message_id


def _send_rated(state: AppState, message: EmailMessage) -> str | None:
    window = state.settings.send_rate
    if window is None or not state.settings.is_async:
        return pauses.send(state, message)
    limiter, scope = state.limiter, "send"
    queue = state.settings.queue
    for attempt in range(1, THROTTLE_ATTEMPTS + 1):
        member = os.urandom(12).hex()
        while (wait := limiter.hit(scope, queue, [window], member)) > 0:
            time.sleep(wait)
        try:
            return pauses.send(state, message)
        except Exception as e:
            if not is_throttling(e) or attempt == THROTTLE_ATTEMPTS:
                raise
            logger.info("Provider throttled sending; pausing all workers.")
            limiter.fill(scope, queue, window)
        finally:
            limiter.restamp(scope, queue, window, member)
    raise AssertionError("unreachable")  # pragma: no cover


def _send_change_notice(
    state: AppState, user: t.Any, blocked: t.Mapping[str, str]
) -> None:
    """Tell the current address that a change to ``pending_email`` was asked
    for: once per request, however often the link to the new address is
    retried or swept (:func:`_claim_notice`). Best effort: the old mailbox
    may well be gone, which must not hold up the change. A notice that
    failed for now is tried again with the link's next attempt; none goes
    to a suppressed address (``blocked``, from :func:`.suppression.owed`)."""
    if suppression.reason_of(blocked, email_of(user, state.settings.email_attribute)):
        logger.info(
            "The current address of user %r is suppressed; no email change"
            " notice sent.",
            primary_key(user),
        )
        return
    key = _claim_notice(state, user)
    if key is False:
        logger.info(
            "The email change notice for user %r went out already.", primary_key(user)
        )
        return
    message = kinds.change_notice(state, user)
    try:
        _send_within_rate(state, message)
    except Exception as e:
        if key is not None and not is_permanent(e):
            with contextlib.suppress(RedisError):
                state.redis.delete(key)
        logger.warning(
            "The email change notice to the old address of user %r failed: %s",
            primary_key(user),
            redact(describe(e), [message.to], _own(message)),
        )
        suppression.learn_refusal(state, e, message.to, "email change notice")


def _claim_notice(state: AppState, user: t.Any) -> str | t.Literal[False] | None:
    """Record in Redis that the notice of ``user``'s pending change is being
    sent. Returns the key, ``False`` if it was recorded before, or ``None``
    when nothing is recorded (jobs run inline, or Redis failed: a second
    notice is better than none).

    The key is bound to the request as the notice's cancel link is
    (:func:`.tokens.change_digest`: the new address and the time it was
    asked for), so a newer request, even to the same address, gets a
    notice of its own, whose cancel link is the one that works. It lives as
    long as that link (:data:`CONFIRM_TOKEN_MAX_AGE`): a link still owed
    after that is mailed with a fresh notice and a live cancel link.
    Redis rather than a column: no migration for apps, and losing the record
    (a flushed Redis) can only repeat a notice, never suppress one.
    """
    if not state.settings.is_async:
        return None
    digest = change_digest(user.pending_email, user.confirmation_requested_at)
    key = f"flask-confirm:notice:{state.settings.queue}:{primary_key(user)}:{digest}"
    try:
        first = state.redis.set(key, b"1", nx=True, ex=state.settings.token_max_age)
    except RedisError:
        return None
    return key if first else False


def _send(
    state: AppState,
    user_id: UserId,
    user: t.Any,
    *,
    in_batch: bool,
    blocked: t.Mapping[str, str],
) -> tuple[t.Any, str | None] | None:
    """Send the confirmation owed to ``user`` (read by :func:`_load_users`;
    ``None`` if gone), if any. Returns ``(user, message_id)`` with
    ``confirmation_sent_at`` set but not committed (:func:`_record_sent` does
    that), or ``None`` if nothing was owed. A failure is recorded on the user
    and raised; in a batch it leaves the job's retries to the others. An
    address in ``blocked`` (:func:`.suppression.owed`) fails for good as
    :class:`.AddressSuppressed`, before any provider call: no link to it,
    and no change notice either, since the change cannot be confirmed."""
    db = state.db
    if user is None or user.confirmation_state != "requested":
        logger.info("No confirmation owed to user %r; nothing sent.", user_id)
        db.session.commit()  # ends the read; the session keeps the batch's rows
        return None

    app = current_app_object()
    message = kinds.confirmation(state, user)
    reason = suppression.reason_of(blocked, message.to)
    if reason is None and user.pending_email is not None:
        _send_change_notice(state, user, blocked)
    try:
        if reason is not None:
            raise AddressSuppressed(reason)
        message_id = _send_within_rate(state, message)
    except SendingPaused as e:
        # The account, not this user: the confirmation stays owed (state
        # "requested"), no retry is spent, and the sweeper queues it again.
        user.confirmation_error = f"paused: {e}"
        db.session.commit()
        logger.info("Confirmation for user %r deferred: %s", user_id, e)
        return None
    except Exception as e:
        # No rollback: in a batch, the session holds sends not yet recorded.
        permanent = is_permanent(e)
        job = get_current_job()
        if permanent and job is not None and not in_batch:
            job.retries_left = 0  # RQ retries only while this is positive
        retrying = not permanent and job is not None and bool(job.retries_left)
        addresses = [message.to, user.pending_email]
        reason = redact(describe(e), addresses, _own(message))
        user.confirmation_error = reason
        if permanent:
            user.confirmation_failed_at = utcnow()
        db.session.commit()
        suppression.learn_refusal(state, e, message.to, "confirmation")
        logger.warning(
            "Sending the confirmation for user %r failed (%s, %s): %s",
            user_id,
            "permanent" if permanent else "transient",
            "will retry" if retrying else "no retry left",
            reason,
        )
        if not retrying:
            signals.confirmation_failed.send(
                app, user=user, error=e, permanent=permanent
            )
        # What RQ stores of the failure, for the dashboard, names nobody.
        raise redacted(e, addresses, _own(message)) from None

    # Set as loaded values, not changes: _record_sent writes them with one
    # Core UPDATE, so the ORM's flush has nothing to do.
    set_committed_value(user, "confirmation_sent_at", utcnow())
    set_committed_value(user, "confirmation_error", None)
    return user, message_id
