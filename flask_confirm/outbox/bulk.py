"""Operations on many users at once: bulk requests, sweeps, counts.

These are what :meth:`.Confirm.send_many`, :meth:`.Confirm.resend_all`,
:meth:`.Confirm.sweep`, :meth:`.Confirm.status`, :meth:`.Confirm.failed`,
:meth:`.Confirm.retry_failed` and :meth:`.Confirm.mark_confirmed` do, and
what the ``flask confirm`` commands call. They work on ids with set-based
SQL and pipelined enqueues, never by loading every user. Internal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import typing as t

from redis.exceptions import LockError
from sqlalchemy import and_
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from ..models import as_utc
from ..models import carried_id
from ..models import primary_key
from ..models import state_filters
from ..models import utcnow
from .queueing import enqueue

if t.TYPE_CHECKING:
    from ..models import UserId
    from ..state import AppState

logger = logging.getLogger("flask_confirm")

Progress = t.Callable[[int, int], None]


def send_many(state: AppState, users: t.Iterable[t.Any], batch_size: int | None) -> int:
    """Ask for confirmations for many users at once (a migration, a
    re-send to everyone unconfirmed): one commit, then jobs of
    ``batch_size`` users each (default :data:`CONFIRM_BATCH_SIZE`), queued
    in pipelined round trips. Each batch job sends over one connection, with
    the same per-user state, locking and retry rules as single sends.

    :return: how many confirmations were requested.
    """
    users = list(users)
    now = utcnow()
    for user in users:
        user.confirmation_requested_at = now
        state.db.session.add(user)
    state.db.session.commit()
    user_ids = [primary_key(user) for user in users]
    enqueue(state, user_ids, batch_size)
    return len(user_ids)


def resend_all(
    state: AppState, older_than: int | None, chunk_size: int, progress: Progress | None
) -> int:
    """Request a new link for every unconfirmed user (a migration, a
    change of provider), optionally only those whose last request is at
    least ``older_than`` seconds old. Users whose confirmation failed for
    good are included: asking again is the point of a bulk re-send.

    Works through the users ``chunk_size`` at a time: one ``UPDATE`` and
    commit per chunk, then its batch jobs queued in pipelined round trips.

    :param progress: called after each chunk with the number of users in
        it and the total.
    :return: how many confirmations were requested.
    """
    model = state.user_model
    session = state.db.session
    key_column = state.key.column
    query = select(key_column).where(model.email_confirmed_at.is_(None))
    if older_than is not None:
        cutoff = utcnow() - dt.timedelta(seconds=older_than)
        query = query.where(
            (model.confirmation_requested_at.is_(None))
            | (model.confirmation_requested_at <= cutoff)
        )
    user_ids = [carried_id(v) for v in session.scalars(query.order_by(key_column))]
    session.rollback()
    request_again(state, user_ids, chunk_size, progress)
    return len(user_ids)


def request_again(
    state: AppState,
    user_ids: list[UserId],
    chunk_size: int = 1000,
    progress: Progress | None = None,
) -> None:
    """Record a new request for ``user_ids`` and queue their batch jobs: one
    ``UPDATE`` and commit per chunk, each committed before its jobs are
    queued."""
    model = state.user_model
    key = state.key
    for start in range(0, len(user_ids), chunk_size):
        chunk = user_ids[start : start + chunk_size]
        state.db.session.execute(
            update(model)
            .where(key.column.in_(key.values(chunk)))
            .values(confirmation_requested_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        state.db.session.commit()
        enqueue(state, chunk, batch_size=None)
        if progress is not None:
            progress(len(chunk), len(user_ids))


def sweep(state: AppState, older_than: int | None, hold_lock: int) -> int:
    """Queue again every confirmation requested but not yet sent.

    This is what makes a request survive Redis being down when it was made,
    a worker killed in the middle of a job, or retries running out: the
    database remembers what is owed. Confirmations that failed for good
    are left alone (see :meth:`.Confirm.retry_failed`).

    Safe to run from many processes at once: a lock in Redis lets one
    sweep run at a time, and a job queued twice sends once.

    :param older_than: only confirmations requested at least this many
        seconds ago (default :data:`CONFIRM_SWEEP_AFTER`; 0 means all),
        which leaves the ones whose first job is still on its way.
    :param hold_lock: keep the lock this many seconds after the sweep, so
        that periodic sweeps on many workers run once per period.
    :return: how many confirmations were queued (in jobs of
        :data:`CONFIRM_BATCH_SIZE`); 0 if another sweep holds the lock.
    """
    settings = state.settings
    if older_than is None:
        older_than = settings.sweep_after
    lock = state.redis.lock(
        f"flask-confirm:sweep:{settings.queue}",
        timeout=max(hold_lock, 300),
        blocking=False,
    )
    if not lock.acquire():
        return 0
    try:
        model = state.user_model
        cutoff = utcnow() - dt.timedelta(seconds=older_than)
        query = (
            select(state.key.column)
            .where(state_filters(model)["requested"])
            .where(model.confirmation_requested_at <= cutoff)
        )
        user_ids = [carried_id(v) for v in state.db.session.scalars(query)]
        state.db.session.rollback()
        enqueue(state, user_ids, batch_size=None)
        if user_ids:
            logger.info("Sweep queued %d pending confirmation(s).", len(user_ids))
        return len(user_ids)
    finally:
        with contextlib.suppress(LockError):
            if hold_lock:
                lock.extend(hold_lock, replace_ttl=True)
            else:
                lock.release()


def status(state: AppState) -> dict[str, t.Any]:
    """Count users by :attr:`~.ConfirmableMixin.confirmation_state`.

    :return: ``{"none": n, "requested": n, "sent": n, "failed": n,
        "confirmed": n, "oldest_pending": timedelta | None}``, where
        ``none`` counts the users never asked to confirm (accounts older
        than Flask-Confirm, say; see :meth:`.Confirm.mark_confirmed`), and
        ``oldest_pending`` is the age of the oldest request not yet
        accepted by the provider.
    """
    model = state.user_model
    session = state.db.session
    filters = state_filters(model)
    counts: dict[str, t.Any] = {
        name: session.scalar(select(func.count()).select_from(model).where(cond))
        for name, cond in filters.items()
    }
    oldest = session.scalar(
        select(func.min(model.confirmation_requested_at)).where(filters["requested"])
    )
    counts["oldest_pending"] = utcnow() - as_utc(oldest) if oldest else None
    session.rollback()
    return counts


def failed(state: AppState, limit: int | None) -> list[t.Any]:
    """The users whose confirmation failed for good, most recent first;
    ``confirmation_error`` says why.
    """
    model = state.user_model
    query = (
        select(model)
        .where(state_filters(model)["failed"])
        .order_by(model.confirmation_failed_at.desc())
        .limit(limit)
    )
    return list(state.db.session.scalars(query))


def retry_failed(state: AppState) -> int:
    """Request again every confirmation that failed for good (after the
    cause is fixed, say), and queue them.

    :return: how many were queued again.
    """
    model = state.user_model
    query = select(state.key.column).where(state_filters(model)["failed"])
    user_ids = [carried_id(v) for v in state.db.session.scalars(query)]
    state.db.session.rollback()
    request_again(state, user_ids)
    return len(user_ids)


def mark_confirmed(
    state: AppState, user_ids: list[UserId] | None, chunk_size: int = 1000
) -> int:
    """Record addresses as confirmed without a link: the backfill for an
    app that adds Flask-Confirm to users it already has and trusts.

    After the migration that adds the mixin's columns every existing user
    is in state ``none``: :func:`.confirmed_required` turns them away,
    password reset mails them nothing, and nothing will ever mail them a
    link. ``existing=True`` marks every such user confirmed (or call
    :meth:`.Confirm.resend_all` to ask them all to confirm instead). Users who were
    asked to confirm and have not (states ``requested``, ``sent``,
    ``failed``) are never touched by it.

    Works on the database directly, 1,000 users per ``UPDATE`` and commit,
    so a large table is fine. No :data:`.email_confirmed` signal is sent:
    nobody confirmed anything, and a receiver that welcomes new users
    must not mail every existing one.

    :param users: mark these users (those already confirmed are left as
        they are). Give either this or ``existing=True``.
    :param existing: mark every user in state ``none``: never asked to
        confirm, no email change pending.
    :return: how many users were marked.
    :raises ValueError: neither or both of ``users`` and ``existing``.
    """
    model = state.user_model
    session = state.db.session
    key_column = state.key.column
    if user_ids is not None:
        user_ids = state.key.values(user_ids)  # a UUID key's strings back
    unconfirmed = model.email_confirmed_at.is_(None)
    condition = unconfirmed
    if user_ids is None:
        # Exactly the accounts that predate Flask-Confirm: never requested,
        # nothing pending. A user mailed a link and yet to click is not one.
        condition = and_(
            unconfirmed,
            model.confirmation_requested_at.is_(None),
            model.pending_email.is_(None),
        )
    marked = 0
    last: t.Any = None
    while True:
        if user_ids is not None:
            chunk = user_ids[:chunk_size]
            user_ids = user_ids[chunk_size:]
        else:
            # Keyset pagination, by primary key: ends even if rows change.
            query = select(key_column).where(condition)
            if last is not None:
                query = query.where(key_column > last)
            chunk = list(session.scalars(query.order_by(key_column).limit(chunk_size)))
        if not chunk:
            break
        last = chunk[-1]
        result = session.execute(
            update(model)
            .where(key_column.in_(chunk), condition)
            .values(email_confirmed_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        session.commit()
        marked += getattr(result, "rowcount", 0)
    return marked
