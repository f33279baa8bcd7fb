"""The job a worker runs, and the RQ job class that gives it an app context.

A job carries the user's id and nothing else. The token and the link are made
here, at send time, so that expiry counts from sending and no secret is ever
written to Redis, to a worker log or to the dashboard.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import typing as t
import weakref

from flask import current_app
from redis.exceptions import LockError
from rq import get_current_job
from rq.job import Job

from . import signals
from .faults import ConfirmationBusy
from .faults import describe
from .faults import is_permanent
from .models import utcnow

if t.TYPE_CHECKING:
    from flask import Flask

    from .extension import _State
    from .extension import Confirm
    from .tokens import UserId

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
    confirm = current_app.extensions["confirm"]
    state = confirm._get_state()
    lock = None
    if state.settings.is_async:
        lock = state.redis.lock(
            f"flask-confirm:lock:{state.settings.queue}:{user_id}",
            timeout=state.settings.job_timeout + 5,
            blocking=False,
        )
        if not lock.acquire():
            raise ConfirmationBusy(
                f"Another worker is sending the confirmation for user {user_id!r}."
            )
    try:
        return _send(confirm, state, user_id)
    finally:
        if lock is not None:
            with contextlib.suppress(LockError):
                lock.release()


def _send(confirm: Confirm, state: _State, user_id: UserId) -> str | None:
    db = state.db
    user = db.session.get(state.user_model, user_id)
    if user is None or user.confirmation_state != "requested":
        logger.info("No confirmation owed to user %r; nothing sent.", user_id)
        db.session.rollback()
        return None

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    message = confirm.render_message(user)
    try:
        message_id: str | None = state.sender.send(message)
    except Exception as e:
        db.session.rollback()
        permanent = is_permanent(e)
        job = get_current_job()
        if permanent and job is not None:
            job.retries_left = 0  # RQ retries only while this is positive
        retrying = job is not None and bool(job.retries_left)
        reason = describe(e)
        user.confirmation_error = reason
        if permanent:
            user.confirmation_failed_at = utcnow()
        db.session.commit()
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
        raise

    user.confirmation_sent_at = utcnow()
    user.confirmation_error = None
    db.session.commit()
    logger.info("Confirmation for user %r sent (%s).", user_id, message_id)
    signals.confirmation_sent.send(app, user=user, message_id=message_id)
    return message_id
