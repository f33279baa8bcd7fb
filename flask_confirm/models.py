"""The model mixin that gives a user the columns confirmation needs."""

from __future__ import annotations

import datetime as dt
import typing as t

from sqlalchemy import and_
from sqlalchemy import DateTime
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import not_
from sqlalchemy import or_
from sqlalchemy import String
from sqlalchemy import TypeDecorator
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

if t.TYPE_CHECKING:
    from sqlalchemy import ColumnElement
    from sqlalchemy.engine import Dialect


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware ``DateTime`` that reads back aware on every database.

    SQLite keeps no time zone; the times we store are UTC, so a naive value
    read back is UTC. Values written are converted to UTC first.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        return None if value is None else as_utc(value)


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
        UTCDateTime(), default=None, nullable=True
    )
    #: When :meth:`.Confirm.send_confirmation` last asked for a link to be sent.
    confirmation_requested_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), default=None, nullable=True
    )
    #: When the mail provider last accepted a confirmation mail for this user.
    confirmation_sent_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), default=None, nullable=True
    )
    #: When sending last failed for good (the provider refused the recipient or
    #: the message). A confirmation failed after its last request is left
    #: alone by the sweeper until it is requested again.
    confirmation_failed_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), default=None, nullable=True
    )
    #: Why the last attempt failed (the provider's reply), or ``None``.
    confirmation_error: Mapped[str | None] = mapped_column(
        String(500), default=None, nullable=True
    )
    #: The new address asked for by :meth:`.Confirm.request_email_change`,
    #: until its link is confirmed (then it becomes :attr:`email`) or the
    #: change is cancelled. While it is set, the ``confirmation_*`` columns
    #: describe the link mailed to it.
    pending_email: Mapped[str | None] = mapped_column(
        String(320), default=None, nullable=True
    )

    @property
    def email_confirmed(self) -> bool:
        """Whether the current address has been confirmed. Read-only: confirm
        through a link, or set :attr:`email_confirmed_at` yourself."""
        return self.email_confirmed_at is not None

    @property
    def confirmation_state(self) -> str:
        """One of ``"confirmed"``, ``"failed"``, ``"requested"`` (a link is
        owed and not yet accepted by the provider), ``"sent"`` (awaiting the
        click) or ``"none"`` (never requested).

        While an email change is pending (:attr:`pending_email`), it is the
        state of the link to the new address, never ``"confirmed"``.
        """
        if self.email_confirmed_at is not None and self.pending_email is None:
            return "confirmed"
        if self.confirmation_requested_at is None:
            return "none"
        requested = as_utc(self.confirmation_requested_at)
        failed, sent = self.confirmation_failed_at, self.confirmation_sent_at
        if failed is not None and as_utc(failed) >= requested:
            return "failed"
        if sent is not None and as_utc(sent) >= requested:
            return "sent"
        return "requested"


def utcnow() -> dt.datetime:
    """The current time, timezone-aware in UTC. Internal."""
    return dt.datetime.now(dt.timezone.utc)


def state_filters(model: type[t.Any]) -> dict[str, ColumnElement[bool]]:
    """SQL conditions matching :attr:`ConfirmableMixin.confirmation_state`,
    for counting and sweeping without loading rows. Internal."""
    requested = model.confirmation_requested_at
    sent, failed = model.confirmation_sent_at, model.confirmation_failed_at
    confirmed = and_(
        model.email_confirmed_at.is_not(None), model.pending_email.is_(None)
    )
    unconfirmed = not_(confirmed)
    is_failed = and_(failed.is_not(None), failed >= requested)
    is_sent = and_(sent.is_not(None), sent >= requested)
    return {
        "none": and_(unconfirmed, requested.is_(None)),
        "confirmed": confirmed,
        "failed": and_(unconfirmed, requested.is_not(None), is_failed),
        "sent": and_(unconfirmed, requested.is_not(None), is_sent, not_(is_failed)),
        "requested": and_(
            unconfirmed,
            requested.is_not(None),
            or_(sent.is_(None), sent < requested),
            or_(failed.is_(None), failed < requested),
        ),
    }


def primary_key(user: t.Any) -> t.Any:
    """The user's primary key value, what jobs and tokens carry. Internal.

    :raises ValueError: the user is not saved yet, or the key is not a single
        ``int`` or ``str``.
    """
    identity = sa_inspect(user).identity
    if identity is None:
        raise ValueError(
            "The user has no primary key yet: add and commit it before calling"
            " send_confirmation()."
        )
    if len(identity) != 1 or not isinstance(identity[0], (int, str)):
        raise ValueError(
            "The user's primary key must be a single int or str column, since"
            " it is what jobs and tokens carry."
        )
    return identity[0]


def email_of(user: t.Any) -> str:
    """The user's current address. Internal.

    :raises ValueError: it has none.
    """
    email = user.email
    if not isinstance(email, str) or not email:
        raise ValueError("The user has no email address.")
    return email


def target_address(user: t.Any) -> str:
    """The address being confirmed: the pending new one, else the current.
    Internal."""
    pending = getattr(user, "pending_email", None)
    return pending if isinstance(pending, str) and pending else email_of(user)


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` with its time zone: SQLite returns the UTC times we store
    without one. Internal."""
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
