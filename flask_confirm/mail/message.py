"""The rendered mail, as :mod:`.messages` makes it and a sender sends it."""

from __future__ import annotations

import dataclasses

#: The provider tag that names a message's :attr:`EmailMessage.kind` (the
#: ``ses`` sender tags every message with it; SES's events give it back).
KIND_TAG = "flask-confirm-kind"


@dataclasses.dataclass(frozen=True)
class EmailMessage:
    """A rendered mail (a confirmation, an email change link or notice, a
    password reset link), ready to send.

    It exists only in the worker, for the time it takes to send it: it may
    hold a link, so it is never stored or logged.
    """

    #: The recipient's address.
    to: str
    #: The From header: the kind's ``sender`` in :data:`CONFIRM_MESSAGES`, else
    #: :data:`CONFIRM_MAIL_FROM`.
    sender: str
    #: The subject: the kind's ``subject`` in :data:`CONFIRM_MESSAGES`, else its
    #: default (:data:`CONFIRM_SUBJECT` for confirmations).
    subject: str
    #: The plain-text part.
    text: str
    #: The HTML part.
    html: str
    #: Which mail this is, one of :data:`.config.MESSAGE_KINDS` (``None`` for
    #: a message made by hand): SES tags it with this, so that its events
    #: say which kind bounced.
    kind: str | None = None
