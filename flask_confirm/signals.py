"""Blinker signals sent during the confirmation workflow.

Each signal is sent with the Flask application as sender and the user as the
``user`` keyword argument, so receivers can be connected per application::

    from flask_confirm import signals

    @signals.email_confirmed.connect_via(app)
    def grant_access(app, user, **extra):
        ...

The ``confirmation_*`` signals about sending fire in the process that does the
work: the web process for :data:`confirmation_requested`, the worker for
:data:`confirmation_sent` and :data:`confirmation_failed` (or the web process
too when :data:`CONFIRM_ASYNC` is false).
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

confirmation_requested = _signals.signal(
    "confirmation-requested",
    doc="""Sent by :meth:`.Confirm.send_confirmation` once the request is recorded.

    :param user: the user the link is for.
    :param job_id: the id of the queued job; ``"inline-..."`` when
        :data:`CONFIRM_ASYNC` is false; ``None`` if Redis could not be reached
        (the request stays recorded and the sweeper queues it later).

    Not sent for bulk requests (:meth:`.Confirm.send_many`, sweeps,
    :meth:`.Confirm.retry_failed`).
    """,
)

confirmation_sent = _signals.signal(
    "confirmation-sent",
    doc="""Sent by the worker after the mail provider accepted the message.

    :param user: the user the link was mailed to.
    :param message_id: the provider's message id, when it gives one.
    """,
)

confirmation_failed = _signals.signal(
    "confirmation-failed",
    doc="""Sent by the worker when sending failed and no retry follows: the
    failure was permanent, the retries are spent, or the job ran inline.

    :param user: the user the link was for.
    :param error: the exception raised by the sender.
    :param permanent: whether the failure was classified permanent
        (:func:`.faults.is_permanent`); transient ones stay pending for the
        sweeper.
    """,
)

email_confirmed = _signals.signal(
    "email-confirmed",
    doc="""Sent when a user confirms their address through a valid link.

    :param user: the user, with ``email_confirmed_at`` set and committed.
    """,
)

email_change_requested = _signals.signal(
    "email-change-requested",
    doc="""Sent by :meth:`.Confirm.request_email_change` once the new address
    is recorded as pending.

    :param user: the user, with ``pending_email`` set.
    :param new_email: the address asked for.
    :param job_id: the id of the job mailing the link, or ``None``.
    """,
)

email_changed = _signals.signal(
    "email-changed",
    doc="""Sent when a user confirms an email change through its link, before
    :data:`email_confirmed`.

    :param user: the user, with the new ``email`` committed.
    :param old_email: the address it replaced.
    """,
)

password_reset_requested = _signals.signal(
    "password-reset-requested",
    doc="""Sent by :meth:`.Confirm.request_password_reset` when a reset link
    was queued for a (confirmed) user.

    :param user: the user.
    :param job_id: the id of the job, or ``None`` if it could not be queued.
    """,
)

password_reset = _signals.signal(
    "password-reset",
    doc="""Sent after a user set a new password through a reset link.

    :param user: the user, with the new password committed.
    """,
)

sending_paused = _signals.signal(
    "sending-paused",
    doc="""Sent when the provider refused the sending account itself (SES:
    ``AccountSuspendedException``, ``SendingPausedException``,
    ``MailFromDomainNotVerifiedException``) and every worker stops sending
    for :data:`CONFIRM_SENDING_PAUSE` seconds. Nobody's confirmation fails
    for it: what was owed stays owed, and the sweeper queues it again.

    :param reason: the provider's error code.
    :param until: when sending resumes (an aware UTC datetime).
    :param error: the sender's exception.
    """,
)

email_bounced = _signals.signal(
    "email-bounced",
    doc="""Sent when the provider reports that a mail to an address bounced
    (SES events, :data:`CONFIRM_SES_EVENTS`). A permanent bounce has put
    the address on the suppression list and failed the user's pending
    confirmation or change.

    :param user: the user with that address (current or pending), or
        ``None`` if there is none.
    :param address: the address that bounced.
    :param permanent: a hard bounce (the address does not exist), not a
        full mailbox or a server down.
    :param diagnostic: what the receiving server said, or ``None``.
    """,
)

email_complained = _signals.signal(
    "email-complained",
    doc="""Sent when a recipient marked a mail as spam (SES events); the
    address is on the suppression list.

    :param user: the user with that address, or ``None``.
    :param address: the address that complained.
    :param feedback_type: the complaint's type (``"abuse"``, ...), or
        ``None``.
    """,
)

__all__ = [
    "confirmation_failed",
    "confirmation_requested",
    "confirmation_sent",
    "email_bounced",
    "email_change_requested",
    "email_changed",
    "email_complained",
    "email_confirmed",
    "password_reset",
    "password_reset_requested",
    "sending_paused",
]
