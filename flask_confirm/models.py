"""The model mixin that gives a user the columns confirmation needs."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column


class ConfirmableMixin:
    """Adds confirmation state to a Flask-SQLAlchemy user model.

    The model must also have an ``email`` attribute (the address to confirm) and
    a primary key whose value is an ``int`` or ``str``; that value is what jobs
    and tokens carry, never the object or the address.

    .. code-block:: python

        class User(ConfirmableMixin, db.Model):
            id = db.Column(db.Integer, primary_key=True)
            email = db.Column(db.String(320), unique=True, nullable=False)

    Times are stored timezone-aware, in UTC.
    """

    #: When the address was confirmed; ``None`` while it is not.
    email_confirmed_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), default=None, nullable=True
    )
    #: When :meth:`.Confirm.send_confirmation` last asked for a link to be sent.
    confirmation_requested_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), default=None, nullable=True
    )
    #: When the mail provider last accepted a confirmation mail for this user.
    confirmation_sent_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), default=None, nullable=True
    )

    @property
    def email_confirmed(self) -> bool:
        """Whether the current address has been confirmed. Read-only: confirm
        through a link, or set :attr:`email_confirmed_at` yourself."""
        return self.email_confirmed_at is not None


def utcnow() -> dt.datetime:
    """The current time, timezone-aware in UTC. Internal."""
    return dt.datetime.now(dt.timezone.utc)
