"""Putting send jobs on the queue: one per user, or batches, pipelined.

Everything that enqueues goes through here, so the job's function, timeout,
retry policy and description are decided in one place. Jobs are named by
their dotted path (the functions in :mod:`.tasks`), as RQ stores them, so
the outbox never imports the worker's entry points. Internal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import typing as t
import uuid

from flask import current_app
from redis.exceptions import RedisError
from rq import Retry

from .. import delivery

if t.TYPE_CHECKING:
    from ..models import UserId
    from ..state import AppState

logger = logging.getLogger("flask_confirm")

#: The jobs, by the names RQ stores (see :mod:`.tasks`).
send_confirmation_job = "flask_confirm.tasks.send_confirmation_job"
send_batch_job = "flask_confirm.tasks.send_batch_job"
send_reset_job = "flask_confirm.tasks.send_reset_job"
drain_job = "flask_confirm.tasks.drain_job"


def dispatch(state: AppState, kind: str, user_id: UserId) -> str | None:
    """Queue the job that sends ``user_id`` their ``confirm`` (or
    ``email_change``) or ``password_reset`` message, or run it here when
    :data:`CONFIRM_ASYNC` is false. A Redis or sending failure is logged, not
    raised: the caller's request has done its part, and a confirmation stays
    recorded for the sweeper."""
    words = "confirmation" if kind == "confirm" else kind.replace("_", " ")
    if not state.settings.is_async:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            with app.app_context():
                if kind == "confirm":
                    delivery.send_one(state, user_id)
                else:
                    delivery.send_reset(state, user_id)
        except Exception:
            logger.exception("Inline %s for user %r failed.", words, user_id)
        return f"inline-{uuid.uuid4().hex}"
    try:
        if kind == "confirm" and state.settings.coalesce:
            return coalesce(state, user_id)
        if kind == "confirm":
            return enqueue(state, [user_id])[0]
        return state.queue.enqueue_call(
            send_reset_job,
            args=(user_id,),
            description=f"{kind} message for user {user_id!r}",
            timeout=state.settings.job_timeout,
            retry=retry_policy(state),
            result_ttl=0,
            failure_ttl=state.settings.failed_job_ttl,
        ).id
    except RedisError as e:
        logger.warning(
            "Could not queue the %s for user %r (%s: %s)%s",
            words,
            user_id,
            type(e).__name__,
            e,
            "; the request is recorded and the sweeper will queue it again."
            if kind == "confirm"
            else ".",
        )
        return None


def enqueue(
    state: AppState,
    user_ids: t.Sequence[UserId],
    batch_size: int | None = 1,
) -> list[str]:
    """Queue send jobs for ``user_ids``: one per user (``batch_size`` 1) or
    one per batch, pipelined 1,000 jobs per round trip. Internal."""
    settings = state.settings
    size = batch_size or settings.batch_size
    retry = retry_policy(state)
    job_ids: list[str] = []
    chunks = [user_ids[i : i + size] for i in range(0, len(user_ids), size)]
    for first in range(0, len(chunks), 1000):
        with state.redis.pipeline() as pipe:
            for chunk in chunks[first : first + 1000]:
                func: str
                args: tuple[t.Any, ...]
                if size == 1:
                    func, args = send_confirmation_job, (chunk[0],)
                    description = f"confirmation for user {chunk[0]!r}"
                    timeout = settings.job_timeout
                else:
                    func, args = send_batch_job, (list(chunk),)
                    n = len(chunk)
                    description = f"confirmations for {n} user{'s' * (n != 1)}"
                    timeout = settings.job_timeout * len(chunk)
                job = state.queue.enqueue_call(
                    func,
                    args=args,
                    description=description,
                    timeout=timeout,
                    retry=retry,
                    failure_ttl=settings.failed_job_ttl,
                    pipeline=pipe,
                )
                job_ids.append(job.id)
            pipe.execute()
    return job_ids


def _coalesce_keys(state: AppState) -> tuple[str, str]:
    """The list of user ids waiting to be drained, and the key naming the
    drain job that will take them."""
    base = f"flask-confirm:coalesce:{state.settings.queue}"
    return f"{base}:ids", f"{base}:job"


def coalesce(state: AppState, user_id: UserId) -> str:
    """Add ``user_id`` to the confirmations waiting for the next drain job
    (:data:`CONFIRM_COALESCE`), queueing that job if none waits yet: one
    round trip, two when a job is queued. Returns the drain job's id, which
    the confirmations arriving meanwhile share."""
    ids_key, job_key = _coalesce_keys(state)
    job_id = uuid.uuid4().hex
    with state.redis.pipeline() as pipe:
        pipe.rpush(ids_key, json.dumps(user_id))
        # Expires in case the job is lost (a flushed queue): the next
        # confirmation then queues another. A drain job finding nothing to do
        # costs little.
        pipe.set(job_key, job_id, nx=True, ex=_DRAIN_WAIT)
        pipe.get(job_key)
        _, created, current = pipe.execute()
    if created:
        try:
            _queue_drain(state, job_id)
        except RedisError:
            # Let the next confirmation queue the job rather than wait for
            # the marker to expire.
            with contextlib.suppress(RedisError):
                state.redis.delete(job_key)
            raise
        return job_id
    return current.decode() if isinstance(current, bytes) else str(current)


#: Seconds a queued drain job is trusted to run before a new confirmation
#: queues another.
_DRAIN_WAIT = 300

#: The most confirmations one drain job takes from the list.
_DRAIN_MOST = 1000


def _queue_drain(state: AppState, job_id: str) -> None:
    state.queue.enqueue_call(
        drain_job,
        job_id=job_id,
        description="coalesced confirmations",
        timeout=state.settings.job_timeout,
        retry=retry_policy(state),
        failure_ttl=state.settings.failed_job_ttl,
    )


def drain(state: AppState) -> int:
    """Take the waiting confirmations off the list and queue them as batch
    jobs (which retry as any batch job does). The drain job's marker is
    dropped first, so a confirmation added from then on queues a new drain
    job; one added before is in the list this takes. If more than
    :data:`_DRAIN_MOST` wait, another drain job follows. Returns how many
    were queued.

    A worker killed between taking the ids and queueing their jobs loses
    them from Redis only: they are still requested in the database, and the
    sweeper queues them again."""
    ids_key, job_key = _coalesce_keys(state)
    with state.redis.pipeline() as pipe:  # MULTI: in this order, at once
        pipe.delete(job_key)
        pipe.lpop(ids_key, _DRAIN_MOST)
        pipe.llen(ids_key)
        _, raw, left = pipe.execute()
    user_ids = [json.loads(value) for value in raw or ()]
    enqueue(state, user_ids, batch_size=None)
    if left:
        job_id = uuid.uuid4().hex
        if state.redis.set(job_key, job_id, nx=True, ex=_DRAIN_WAIT):
            _queue_drain(state, job_id)
    return len(user_ids)


def retry_policy(state: AppState) -> Retry | None:
    """RQ's ``Retry`` for :data:`CONFIRM_RETRIES` and
    :data:`CONFIRM_RETRY_INTERVALS`, or ``None`` for no retries."""
    settings = state.settings
    if not settings.retries:
        return None
    return Retry(max=settings.retries, interval=list(settings.retry_intervals))
