"""Putting send jobs on the queue: confirmations joining the job that waits
for them (:func:`join`), or batches, pipelined.

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
    from redis.client import Pipeline
    from redis.commands.core import Script
    from rq.job import Job

    from ..models import UserId
    from ..state import AppState

logger = logging.getLogger("flask_confirm")

#: The jobs, by the names RQ stores (see :mod:`.tasks`).
send_confirmation_job = "flask_confirm.tasks.send_confirmation_job"
send_batch_job = "flask_confirm.tasks.send_batch_job"
send_reset_job = "flask_confirm.tasks.send_reset_job"
send_group_job = "flask_confirm.tasks.send_group_job"


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
        if kind == "confirm":
            return join(state, user_id)
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


#: Adds a confirmation to the send job waiting for the queue, if one does:
#: the group commit of :func:`join`, atomic so that the worker's
#: :data:`_CLAIM` finds each id in exactly one job. KEYS[1]: the marker
#: naming the waiting job; ARGV: the user id (JSON), the most users a job
#: takes, the prefix of the jobs' lists of users, and RQ's prefix of job keys.
#: A marker whose job is gone (a queue emptied from the dashboard) is
#: dropped. Keys are made here from the job's id, so this assumes one Redis
#: or a Sentinel set, not a Cluster. Returns the job's id, or nothing when
#: no job waits.
_JOIN = """
local job = redis.call('GET', KEYS[1])
if not job then
    return false
end
if redis.call('EXISTS', ARGV[4] .. job) == 0 then
    redis.call('DEL', KEYS[1])
    return false
end
if redis.call('RPUSH', ARGV[3] .. job, ARGV[1]) >= tonumber(ARGV[2]) then
    redis.call('DEL', KEYS[1])
end
return job
"""

#: Run by a job as it starts: from now on no confirmation joins it (the
#: marker is dropped if it still names the job), and the users that joined
#: are read. The list is kept, not popped, so that a retry of the job (RQ
#: queues the same job again) and a requeue from the dashboard carry the
#: same users; it goes when the job succeeds. KEYS: the marker, the job's
#: list; ARGV: the job's id.
_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
end
return redis.call('LRANGE', KEYS[2], 0, -1)
"""

#: The scripts above, as redis-py loads them (by their SHA1, once per
#: server), whichever app's client runs them.
_SCRIPTS: dict[str, Script] = {}


def _run(state: AppState, source: str, *, keys: list[str], args: list[t.Any]) -> t.Any:
    script = _SCRIPTS.get(source)
    if script is None:
        script = _SCRIPTS[source] = state.redis.register_script(source)
    return script(keys=keys, args=args, client=state.redis)


#: Seconds a waiting job takes new confirmations after it was queued. Past
#: that, one more job is queued (a long backlog still forms full batches;
#: this only bounds what a job whose enqueueing was lost holds back, which
#: the sweeper then queues again).
JOIN_WINDOW = 60


def _group_keys(state: AppState) -> tuple[str, str]:
    """The marker naming the job that confirmations join, and the prefix of
    each such job's list of users."""
    base = f"flask-confirm:group:{state.settings.queue}"
    return base, f"{base}:users:"


def join(state: AppState, user_id: UserId) -> str:
    """Add ``user_id`` to the send job waiting for the queue, or queue one
    for it if none waits or the waiting one is full (group commit).

    At one confirmation a second the worker is idle: each finds no job
    waiting and queues its own, which the worker starts at once (one hop,
    two round trips). When requests come faster than the worker sends, each
    that arrives while a job waits joins it (one round trip), up to
    :data:`CONFIRM_BATCH_SIZE`, so jobs grow with the backlog and the worker
    sends at batch speed: still one hop. Returns the job's id.
    """
    marker, users = _group_keys(state)
    settings = state.settings
    member = json.dumps(user_id)
    waiting = _run(
        state,
        _JOIN,
        keys=[marker],
        args=[
            member,
            settings.batch_size,
            users,
            state.job_class.redis_job_namespace_prefix,
        ],
    )
    if waiting is not None:
        return waiting.decode() if isinstance(waiting, bytes) else str(waiting)
    job_id = uuid.uuid4().hex
    # One transaction: the job, its list and the marker that lets others
    # join it appear at once, or (on an error) none of them.
    with state.redis.pipeline() as pipe:
        # RQ's commands first: it begins the transaction itself.
        state.queue.enqueue_call(
            send_group_job,
            job_id=job_id,
            description="confirmations for the users who joined while it waited",
            timeout=settings.job_timeout * settings.batch_size,
            retry=retry_policy(state),
            failure_ttl=settings.failed_job_ttl,
            meta={"users": [user_id]},
            pipeline=pipe,
        )
        pipe.rpush(users + job_id, member)
        pipe.expire(users + job_id, _users_ttl(state))
        if settings.batch_size > 1:
            # Not if another job became the one to join meanwhile.
            pipe.set(marker, job_id, nx=True, ex=JOIN_WINDOW)
        pipe.execute()
    return job_id


def _users_ttl(state: AppState) -> int:
    """How long a job's list of users is kept: as long as a failed job (so
    that a requeue from the dashboard still carries them), plus a day for
    the job to wait in the queue."""
    return state.settings.failed_job_ttl + 86400


def claim(state: AppState, job: Job) -> list[UserId]:
    """The users that joined ``job`` (:func:`join`), which from now on takes
    no more. Recorded in the job's ``meta`` as ``users``, so the dashboard
    shows whom a job carries: :func:`join` records the first as it queues
    the job, and this the others, if any joined."""
    marker, users = _group_keys(state)
    raw = _run(state, _CLAIM, keys=[marker, users + job.id], args=[job.id])
    user_ids: list[UserId] = [json.loads(value) for value in raw]
    if job.meta.get("users") != user_ids:  # others joined after the first
        job.meta["users"] = user_ids
        with contextlib.suppress(RedisError):
            job.save_meta()  # type: ignore[no-untyped-call]
    return user_ids


def members(state: AppState, job_id: str) -> list[UserId]:
    """The users who joined the job ``job_id`` so far, without claiming it
    (what a waiting job carries, before its meta says so)."""
    _, users = _group_keys(state)
    return [json.loads(value) for value in state.redis.lrange(users + job_id, 0, -1)]


def keep_for_failure(state: AppState, job: Job, pipe: Pipeline) -> None:
    """``job`` is failing: keep its list of users as long as RQ keeps the
    failed job (:data:`CONFIRM_FAILED_JOB_TTL`), so a requeue from the
    dashboard still carries them and nothing of the job outlives it; until
    its last retry, also the longest wait before one. Queued on ``pipe``,
    the job's closing pipeline."""
    _, users = _group_keys(state)
    settings = state.settings
    ttl = settings.failed_job_ttl
    if job.retries_left:
        ttl += max(settings.retry_intervals, default=0)
    pipe.expire(users + job.id, ttl)


def release(state: AppState, job: Job, pipe: Pipeline) -> None:
    """Drop the list of ``job``'s users once it has done its work. Queued on
    ``pipe``, the job's closing pipeline."""
    _, users = _group_keys(state)
    pipe.delete(users + job.id)


def _coalesce_keys(state: AppState) -> tuple[str, str]:
    """Where ``CONFIRM_COALESCE`` kept the ids waiting for a drain job,
    before batching became adaptive, and the key naming that job."""
    base = f"flask-confirm:coalesce:{state.settings.queue}"
    return f"{base}:ids", f"{base}:job"


#: The most confirmations one drain job takes from the list.
_DRAIN_MOST = 1000


def drain(state: AppState) -> int:
    """Queue, as batch jobs, the confirmations that ``CONFIRM_COALESCE``
    gathered before this version made batching adaptive: a drain job queued
    then still runs after the upgrade. Returns how many were queued.

    A worker killed between taking the ids and queueing their jobs loses
    them from Redis only: they are still requested in the database, and the
    sweeper queues them again."""
    ids_key, job_key = _coalesce_keys(state)
    total = 0
    while True:
        with state.redis.pipeline() as pipe:  # MULTI: in this order, at once
            pipe.delete(job_key)
            pipe.lpop(ids_key, _DRAIN_MOST)
            _, raw = pipe.execute()
        user_ids = [json.loads(value) for value in raw or ()]
        if not user_ids:
            return total
        enqueue(state, user_ids, batch_size=None)
        total += len(user_ids)


def retry_policy(state: AppState) -> Retry | None:
    """RQ's ``Retry`` for :data:`CONFIRM_RETRIES` and
    :data:`CONFIRM_RETRY_INTERVALS`, or ``None`` for no retries."""
    settings = state.settings
    if not settings.retries:
        return None
    return Retry(max=settings.retries, interval=list(settings.retry_intervals))
