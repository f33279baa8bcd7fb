"""The model mixins that give a user the columns confirmation needs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t
import uuid

from sqlalchemy import and_
from sqlalchemy import DateTime
from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import not_
from sqlalchemy import or_
from sqlalchemy import String
from sqlalchemy import TypeDecorator
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import NoInspectionAvailable
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import MappedAsDataclass
from sqlalchemy.orm import validates
from sqlalchemy.orm.attributes import set_committed_value

from .config import Keys
from .errors import ConfigError

if t.TYPE_CHECKING:
    from sqlalchemy import ColumnElement
    from sqlalchemy.engine import Dialect
    from sqlalchemy.orm import Mapper
    from sqlalchemy.orm import QueryContext
    from sqlalchemy.schema import Column
    from sqlalchemy.types import TypeEngine

#: What a job or a token carries to name a user: a primary key that is an
#: ``int`` or a ``str``, or a UUID written as its string.
UserId = int | str

#: The longest address SMTP allows (RFC 5321: 64 + 1 + 255), and so the
#: shortest ``String`` the email column may be declared with.
EMAIL_LENGTH = 320

#: The mixin's time columns.
TIME_COLUMNS = (
    "email_confirmed_at",
    "confirmation_requested_at",
    "confirmation_sent_at",
    "confirmation_failed_at",
)


def timestamp_type() -> TypeEngine[dt.datetime]:
    """The type of the mixin's time columns: a plain ``DateTime(timezone=True)``
    (``TIMESTAMP WITH TIME ZONE`` on PostgreSQL), with microseconds on MySQL
    and MariaDB, whose ``DATETIME`` keeps whole seconds unless told.

    Plain SQLAlchemy types, so that Alembic's autogenerate writes a migration
    that runs as generated (it imports ``sqlalchemy`` and the ``mysql``
    dialect, and nothing of ours). That times read back aware, in UTC, even
    where the database keeps no time zone is done on the model instead: see
    :class:`ConfirmableMixin`. Internal.
    """
    return DateTime(timezone=True).with_variant(
        mysql.DATETIME(fsp=6), "mysql", "mariadb"
    )


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware ``DateTime`` that reads back aware on every database.

    No longer used by the mixin (its columns are plain ``DateTime`` columns
    now, see :func:`timestamp_type`); kept so that migration scripts that
    name ``flask_confirm.models.UTCDateTime`` still import.
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


def primary_key(user: t.Any) -> UserId:
    """The user's id as jobs and tokens carry it: the primary key's value,
    a UUID as its string. Internal.

    :raises ValueError: the user is not saved yet, or the key is not a single
        ``int``, ``str`` or UUID (which :func:`user_key` refuses up front).
    """
    identity = sa_inspect(user).identity
    if identity is None:
        raise ValueError(
            "The user has no primary key yet: add and commit it before calling"
            " send_confirmation()."
        )
    if len(identity) != 1:
        raise ValueError(
            "The user's primary key must be a single int, str or UUID column,"
            " since it is what jobs and tokens carry."
        )
    return carried_id(identity[0])


def carried_id(value: t.Any) -> UserId:
    """A primary key value (of a loaded user, or selected by a query) as
    jobs and tokens carry it: an ``int`` or ``str`` as it is, a UUID as its
    string. Internal.

    :raises ValueError: it is none of these.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return value
    raise ValueError(
        f"A primary key value of type {type(value).__name__} cannot be carried by"
        " jobs and tokens; use an int, str or UUID primary key."
    )


#: The Python types of primary key that :func:`primary_key` can carry.
KEY_TYPES = (int, str, uuid.UUID)


@dataclasses.dataclass(frozen=True)
class UserKey:
    """The user model's primary key column, and how the ids that jobs and
    tokens carry become its values again. Internal."""

    column: ColumnElement[t.Any]
    python_type: type

    def value(self, user_id: t.Any) -> t.Any:
        """The key value for ``user_id`` (from a job, a token or a query).

        :raises ValueError: ``user_id`` cannot be a value of this key.
        """
        if self.python_type is uuid.UUID:
            if isinstance(user_id, uuid.UUID):
                return user_id
            if isinstance(user_id, str):
                return uuid.UUID(user_id)  # ValueError if it is not one
        elif isinstance(user_id, self.python_type) and not isinstance(user_id, bool):
            return user_id
        raise ValueError(f"{user_id!r} is not a {self.python_type.__name__} key.")

    def values(self, user_ids: t.Iterable[t.Any]) -> list[t.Any]:
        """:meth:`value` of each of ``user_ids``."""
        return [self.value(user_id) for user_id in user_ids]


def user_key(model: type[t.Any]) -> UserKey:
    """Check that ``model`` has a primary key that jobs and tokens can carry:
    one column whose values are ``int``, ``str`` or ``uuid.UUID``. Internal.

    :raises ConfigError: naming the model and what to change.
    """
    columns = _mapper(model).primary_key
    if len(columns) != 1:
        names = ", ".join(column.name for column in columns)
        raise ConfigError(
            f"user_model={model.__name__} has a primary key of {len(columns)}"
            f" columns ({names}). Flask-Confirm names a user in jobs and tokens by"
            " a single-column primary key: give the model one (an Integer, a"
            " String or a Uuid column) and keep the others unique instead."
        )
    column = columns[0]
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        python_type = None
    if python_type not in KEY_TYPES:
        raise ConfigError(
            f"user_model={model.__name__}'s primary key {column.name!r} is"
            f" {column.type!r}, whose values jobs and tokens cannot carry. Use an"
            " Integer, a String or a Uuid primary key."
        )
    return UserKey(column, python_type)


def email_column(model: type[t.Any], attribute: str) -> Column[t.Any]:
    """Check that ``model`` keeps addresses in a mapped column named
    ``attribute``, long enough for any address (:data:`EMAIL_LENGTH`), and
    return it. Internal.

    :raises ConfigError: naming the attribute, the column and the fix.
    """
    columns = _mapper(model).columns
    if attribute not in columns:
        raise ConfigError(
            f"user_model={model.__name__} has no mapped column {attribute!r}"
            f" ({Keys.EMAIL_ATTRIBUTE}): the address to confirm must be in a"
            f" column of the model. Set {Keys.EMAIL_ATTRIBUTE} to the name of the"
            " attribute that holds it."
        )
    column = columns[attribute]
    type_ = column.type
    if isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    length = getattr(type_, "length", None)
    if not isinstance(type_, String):
        problem = "not a String column"
    elif length is not None and length < EMAIL_LENGTH:
        problem = "too short for an address"
    else:
        return column
    raise ConfigError(
        f"user_model={model.__name__}.{attribute} is {column.type!r} (column"
        f" {column.table.name}.{column.name}), {problem}: an address may have"
        f" up to {EMAIL_LENGTH} characters (RFC 5321), and a longer one than the"
        " column holds would fail in the database when it is confirmed. Declare"
        f" it db.String({EMAIL_LENGTH}) and migrate the column (an Alembic"
        f" alter_column, or ALTER TABLE ... ALTER COLUMN {column.name} TYPE"
        f" VARCHAR({EMAIL_LENGTH}))."
    )


def _mapper(model: type[t.Any]) -> Mapper[t.Any]:
    try:
        return t.cast("Mapper[t.Any]", sa_inspect(model))
    except NoInspectionAvailable:
        raise ConfigError(
            f"user_model={model!r} is not a mapped model class (a db.Model subclass)."
        ) from None


def email_of(user: t.Any, attribute: str = "email") -> str:
    """The user's current address, from ``attribute``
    (:data:`CONFIRM_EMAIL_ATTRIBUTE`). Internal.

    :raises ValueError: it has none.
    """
    email = getattr(user, attribute, None)
    if not isinstance(email, str) or not email:
        raise ValueError("The user has no email address.")
    return email


def target_address(user: t.Any, attribute: str = "email") -> str:
    """The address being confirmed: the pending new one, else the current.
    Internal."""
    pending = getattr(user, "pending_email", None)
    if isinstance(pending, str) and pending:
        return pending
    return email_of(user, attribute)


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC, aware: a naive value is taken as UTC (SQLite and
    MySQL return the UTC times we store without a zone). Internal."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)
