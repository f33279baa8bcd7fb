"""The job a worker runs, and the RQ job class that gives it an app context.

A job carries the user's id and nothing else. The token and the link are made
here, at send time, so that expiry counts from sending and no secret is ever
written to Redis, to a worker log or to the dashboard.
"""

from __future__ import annotations

import functools
import logging
import typing as t
import weakref

from flask import current_app
from rq.job import Job

from . import signals
from .models import utcnow

if t.TYPE_CHECKING:
    from flask import Flask

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

    A user who was deleted or confirmed since the job was queued gets no mail,
    and the job succeeds. If the sender raises, :data:`.confirmation_failed` is
    sent and the exception propagates so that RQ records the failed job.

    :return: the provider's message id, which is not a secret.
    """
    confirm = current_app.extensions["confirm"]
    state = confirm._get_state()
    db = state.db
    user = db.session.get(state.user_model, user_id)
    if user is None or user.email_confirmed:
        logger.info("No confirmation needed for user %r; nothing sent.", user_id)
        return None

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    message = confirm.render_message(user)
    try:
        message_id: str | None = state.sender.send(message)
    except Exception as e:
        db.session.rollback()
        logger.warning(
            "Sending the confirmation for user %r failed: %s",
            user_id,
            type(e).__name__,
        )
        signals.confirmation_failed.send(app, user=user, error=e)
        raise

    user.confirmation_sent_at = utcnow()
    db.session.commit()
    logger.info("Confirmation for user %r sent (%s).", user_id, message_id)
    signals.confirmation_sent.send(app, user=user, message_id=message_id)
    return message_id
