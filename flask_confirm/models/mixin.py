"""The model mixins that give a user the columns confirmation needs, and the
SQL form of their confirmation state."""

from __future__ import annotations

import datetime as dt
import typing as t

from sqlalchemy import and_
from sqlalchemy import event
from sqlalchemy import not_
from sqlalchemy import or_
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import MappedAsDataclass
from sqlalchemy.orm import validates
from sqlalchemy.orm.attributes import set_committed_value

from .columns import as_utc
from .columns import EMAIL_LENGTH
from .columns import TIME_COLUMNS
from .columns import timestamp_type

if t.TYPE_CHECKING:
    from sqlalchemy import ColumnElement
    from sqlalchemy.orm import QueryContext


class ConfirmableMixin:
    """Adds confirmation state to a Flask-SQLAlchemy user model.

    The model must also have the address to confirm, in a ``String`` column
    of at least 320 characters named ``email`` (or as
    :data:`CONFIRM_EMAIL_ATTRIBUTE` says), and a single-column primary key
    holding an ``int``, a ``str`` or a ``uuid.UUID``; that value (a UUID as
    its string) is what jobs and tokens carry, never the object or the
    address. :meth:`.Confirm.init_app` refuses models that do not.

    .. code-block:: python

        class User(ConfirmableMixin, db.Model):
            id = db.Column(db.Integer, primary_key=True)
            email = db.Column(db.String(320), unique=True, nullable=False)

    For a model that is a dataclass (``MappedAsDataclass``), use
    :class:`ConfirmableDataclassMixin` instead.

    The six columns are nullable and have no server default, so adding them
    to a table that has rows needs no value for those rows. Times are plain
    ``DateTime(timezone=True)`` columns (``DATETIME(6)`` on MySQL and
    MariaDB), stored in UTC; they read back timezone-aware in UTC on every
    database, including those that keep no time zone (SQLite, MySQL).
    """

    #: When the address was confirmed; ``None`` while it is not.
    email_confirmed_at: Mapped[dt.datetime | None] = mapped_column(
        timestamp_type(), default=None, nullable=True
    )
    #: When :meth:`.Confirm.send_confirmation` last asked for a link to be sent.
    confirmation_requested_at: Mapped[dt.datetime | None] = mapped_column(
        timestamp_type(), default=None, nullable=True
    )
    #: When the mail provider last accepted a confirmation mail for this user.
    confirmation_sent_at: Mapped[dt.datetime | None] = mapped_column(
        timestamp_type(), default=None, nullable=True
    )
    #: When sending last failed for good (the provider refused the recipient or
    #: the message). A confirmation failed after its last request is left
    #: alone by the sweeper until it is requested again.
    confirmation_failed_at: Mapped[dt.datetime | None] = mapped_column(
        timestamp_type(), default=None, nullable=True
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
        String(EMAIL_LENGTH), default=None, nullable=True
    )

    @validates(*TIME_COLUMNS)
    def _store_in_utc(self, key: str, value: dt.datetime | None) -> dt.datetime | None:
        # Where the database keeps no time zone, an aware time in another
        # zone would be stored as its wall-clock time.
        return None if value is None else as_utc(value)

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


class ConfirmableDataclassMixin(MappedAsDataclass, ConfirmableMixin):
    """:class:`ConfirmableMixin` for models that are dataclasses
    (SQLAlchemy's ``MappedAsDataclass``), which SQLAlchemy requires every
    mixin with columns to be too (2.0 warns, 2.1 refuses).

    The same columns, state and rules; each column is a keyword-only
    dataclass field defaulting to ``None``, so ``User(email=...)`` works and
    the model's own fields may come in any order.

    .. code-block:: python

        class Base(MappedAsDataclass, DeclarativeBase):
            pass

        db = SQLAlchemy(model_class=Base)

        class User(ConfirmableDataclassMixin, db.Model):
            id: Mapped[int] = mapped_column(primary_key=True, init=False)
            email: Mapped[str] = mapped_column(db.String(320), unique=True)
    """

    email_confirmed_at: Mapped[dt.datetime | None] = mapped_column(
        timestamp_type(), default=None, nullable=True, kw_only=True
    )
    confirmation_requested_at: Mapped[dt.datetime | None] = mapped_column(
        timestamp_type(), default=None, nullable=True, kw_only=True
    )
    confirmation_sent_at: Mapped[dt.datetime | None] = mapped_column(
        timestamp_type(), default=None, nullable=True, kw_only=True
    )
    confirmation_failed_at: Mapped[dt.datetime | None] = mapped_column(
        timestamp_type(), default=None, nullable=True, kw_only=True
    )
    confirmation_error: Mapped[str | None] = mapped_column(
        String(500), default=None, nullable=True, kw_only=True
    )
    pending_email: Mapped[str | None] = mapped_column(
        String(EMAIL_LENGTH), default=None, nullable=True, kw_only=True
    )


def _times_in_utc(
    target: ConfirmableMixin,
    context: QueryContext,
    attrs: t.Iterable[str] | None = None,
) -> None:
    """Make the times just loaded into ``target`` aware, in UTC: SQLite and
    MySQL return the UTC times we store without a zone, PostgreSQL in the
    session's zone. Set as committed values, so nothing looks changed."""
    loaded = target.__dict__
    for key in TIME_COLUMNS:
        value = loaded.get(key)
        if isinstance(value, dt.datetime) and (
            value.tzinfo is None or value.utcoffset()
        ):
            set_committed_value(target, key, as_utc(value))


# Listening on the mixin, with propagate, covers every model that uses it.
event.listen(ConfirmableMixin, "load", _times_in_utc, propagate=True)
event.listen(ConfirmableMixin, "refresh", _times_in_utc, propagate=True)


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
