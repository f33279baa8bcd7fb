"""The jobs a worker runs, and the RQ job class that gives them an app context.

A job carries the user's id and nothing else. The token and the link are made
at send time (:mod:`.delivery`), so that expiry counts from sending and no
secret is ever written to Redis, to a worker log or to the dashboard. These
functions are what RQ stores by name (``flask_confirm.tasks.<name>``), so
their names and arguments stay as they are for jobs already queued.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import typing as t
import weakref

from flask import has_app_context
from redis.exceptions import RedisError
from rq import get_current_job
from rq.job import Job

from . import delivery
from .outbox import queueing
from .state import get_state

if t.TYPE_CHECKING:
    from flask import Flask
    from redis.client import Pipeline

    from .models import UserId
    from .state import AppState

logger = logging.getLogger("flask_confirm")


def make_job_class(app: Flask) -> type[Job]:
    """Return an RQ job class whose jobs run inside an app context of ``app``.

    Each job gets a fresh app context, so Flask-SQLAlchemy hands it a fresh
    session and removes it afterwards, and the worker never needs to import the
    app from ``FLASK_APP`` again. The app is held through a weak reference, as
    the job class outlives no app. Internal.
    """
    app_ref = weakref.ref(app)

    class AppJob(Job):
        @property
        def func(self) -> t.Any:
            func = super().func
            bound_app = app_ref()
            if bound_app is None:  # pragma: no cover - the app was collected
                return func

            def in_app_context(*args: t.Any, **kwargs: t.Any) -> t.Any:
                with bound_app.app_context():
                    return func(*args, **kwargs)

            return functools.update_wrapper(in_app_context, func)

    AppJob.__name__ = AppJob.__qualname__ = f"AppJob[{app.import_name}]"
    return AppJob


#: Why a job failed in a worker that has no application: RQ's own
#: ``rq worker`` imports the job's function but not the app it needs.
NO_APP_MESSAGE = (
    "This Flask-Confirm job ran without its Flask application, as it does in a"
    " plain 'rq worker', and failed. A confirmation stays recorded in the"
    " database and the sweeper queues it again (a password reset link does"
    " not: the user asks again). Run the queue with"
    " 'flask --app <your app> confirm-worker' instead, which loads the app and"
    " runs each job in an app context; add '--queue <name>' for each of your"
    " app's own queues to serve them from the same worker."
)


def _this_state() -> AppState:
    """The state of the app the job runs in, or a clear, logged error when
    the worker gave it none."""
    if not has_app_context():
        logger.error(NO_APP_MESSAGE)
        raise RuntimeError(NO_APP_MESSAGE)
    return get_state()


def send_confirmation_job(user_id: UserId) -> str | None:
    """Mail a confirmation link to the user with ``user_id``. Runs in the worker.

    Safe to run more than once for the same request (a retry after a crash,
    two workers, a sweep racing a slow worker): a lock per user in Redis keeps
    two sends from overlapping, and the row is read again under the lock, so a
    confirmation already sent, confirmed, or whose user is gone is skipped and
    the job succeeds. A second mail can then only come from the window between
    the provider accepting the first and the row recording it.

    On failure the reason is recorded on the user and the exception propagates
    so that RQ records it and retries. A permanent failure
    (:func:`.faults.is_permanent`) marks the confirmation failed and cancels
    the job's remaining retries; :data:`.confirmation_failed` is sent when no
    retry follows.

    :return: the provider's message id, which is not a secret.
    """
    state = _this_state()
    with _closing(state) as finish:
        return delivery.send_one(state, user_id, finish)


def send_batch_job(user_ids: list[UserId]) -> dict[str, int]:
    """Mail confirmation links to many users over one connection. Runs in the
    worker; bulk sends (:meth:`.Confirm.send_many`, sweeps) queue these.

    Each confirmation follows the rules of :func:`send_confirmation_job`: its
    own lock, re-check, state and failure record. A permanent failure affects
    only its user. If any failed transiently, the job raises at the end so
    that RQ retries it; the retry skips those already sent or failed for good,
    so it sends only what is still owed.

    :return: counts of ``sent``, ``skipped`` and ``failed`` confirmations.
    """
    state = _this_state()
    with _closing(state) as finish:
        return delivery.send_batch(state, user_ids, finish)


@contextlib.contextmanager
def _closing(state: AppState) -> t.Iterator[Pipeline]:
    """The job's closing pipeline: what it writes to Redis once its sends
    are recorded (its users' locks released, its counts, its list of users
    dropped or kept) goes in one round trip at its end, success or not.
    Lost to a Redis error, the locks expire, a list outlives its job for a
    day and the counts are short: nothing is sent twice or left unsent."""
    with state.redis.pipeline(transaction=False) as finish:
        try:
            yield finish
        finally:
            with contextlib.suppress(RedisError):
                finish.execute()


def send_group_job() -> str | dict[str, int] | None:
    """Mail confirmation links to the users who joined this job while it
    waited (:func:`.outbox.queueing.join`): what
    :meth:`.Confirm.send_confirmation` queues. Runs in the worker.

    A job that one user joined runs exactly as :func:`send_confirmation_job`
    (a permanent failure fails the job, with no retry left); more run as
    :func:`send_batch_job`. A retry, or a requeue from the dashboard,
    carries the same users, and sends only what is still owed.

    :return: the provider's message id for one user, counts of ``sent``,
        ``skipped`` and ``failed`` for more.
    """
    state = _this_state()
    job = get_current_job()
    if job is None:  # pragma: no cover - RQ always sets it
        raise RuntimeError("send_group_job runs only as an RQ job.")
    user_ids = queueing.claim(state, job)
    result: str | dict[str, int] | None
    with _closing(state) as finish:
        try:
            if len(user_ids) == 1:
                result = delivery.send_one(state, user_ids[0], finish)
            else:
                result = delivery.send_batch(state, user_ids, finish)
        except BaseException:
            queueing.keep_for_failure(state, job, finish)
            raise
        queueing.release(state, job, finish)
    return result


def drain_job() -> int:
    """Queue, as batch jobs, the confirmations that ``CONFIRM_COALESCE``
    gathered for a drain job queued before batching became adaptive. Runs
    in the worker.

    :return: how many confirmations it queued.
    """
    return queueing.drain(_this_state())


def send_reset_job(user_id: UserId) -> str | None:
    """Mail a password reset link to the user with ``user_id``. Runs in the
    worker.

    The link is made now, so the token is never stored; nothing is sent if
    the user is gone or their address is not confirmed. Failures are logged
    and raised for RQ to retry (a permanent one cancels the retries); nothing
    is recorded on the user, who can simply ask again.

    :return: the provider's message id.
    """
    return delivery.send_reset(_this_state(), user_id)
