"""The types of the mixin's columns, and the UTC times they hold."""

from __future__ import annotations

import datetime as dt
import typing as t

from sqlalchemy import DateTime
from sqlalchemy import TypeDecorator
from sqlalchemy.dialects import mysql

if t.TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.types import TypeEngine


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


# Where migration scripts name it (Alembic writes a type's module), and so
# where they import it from: the path it had before models became a package.
UTCDateTime.__module__ = "flask_confirm.models"


def utcnow() -> dt.datetime:
    """The current time, timezone-aware in UTC. Internal."""
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC, aware: a naive value is taken as UTC (SQLite and
    MySQL return the UTC times we store without a zone). Internal."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)
