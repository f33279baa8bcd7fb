"""The suppression list's table: one row per address that no mail may go to.

A plain SQLAlchemy ``Table`` in the user model's metadata (the app's ``db``,
or the bind its user model is on), so that ``db.create_all()`` creates it and
Alembic's autogenerate, which compares that metadata with the database,
writes it into the app's next migration. A ``Table`` rather than a mapped
class: several apps may share one ``db``, each with its own
:class:`.Confirm`, and a second mapped class of one name in one registry is
an error, while a table found in the metadata is simply the same table.
Internal.
"""

from __future__ import annotations

import typing as t

from sqlalchemy import Column
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy.dialects import mysql

from ..config import Keys
from ..errors import ConfigError
from .columns import EMAIL_LENGTH
from .columns import timestamp_type

if t.TYPE_CHECKING:
    from sqlalchemy import MetaData

#: Why an address is on the list.
REASONS = ("hard_bounce", "complaint", "smtp_rejected", "manual", "soft_bounce")

#: The reason of a suppression that expires (:data:`expires_at` set): an
#: address that bounced softly again and again is rested, not dropped.
TEMPORARY_REASONS = ("soft_bounce",)
#: The longest ``source`` ("smtp", "ses", "cli", "api", ...).
SOURCE_LENGTH = 32
#: The longest diagnostic kept, as for ``confirmation_error``.
DIAGNOSTIC_LENGTH = 500

_COLUMNS = (
    "id",
    "address",
    "reason",
    "source",
    "diagnostic",
    "first_seen",
    "last_seen",
    "expires_at",
)


def _address_type() -> t.Any:
    """``VARCHAR(320)``, compared byte for byte on MySQL and MariaDB.

    Addresses are stored in one canonical, lower-cased form, so the unique
    key needs no case folding; MariaDB's default collations would also fold
    accents (``bücher`` = ``bucher``) and put two addresses on one row.
    ``utf8mb4_bin`` keys 320 characters in 1,280 bytes, within InnoDB's
    3,072-byte limit for an index. Plain SQLAlchemy types, so a generated
    migration runs as written.
    """
    return String(EMAIL_LENGTH).with_variant(
        mysql.VARCHAR(EMAIL_LENGTH, charset="utf8mb4", collation="utf8mb4_bin"),
        "mysql",
        "mariadb",
    )


def suppression_table(metadata: MetaData, name: str) -> Table:
    """The suppression table called ``name`` in ``metadata``: defined there
    the first time, the same object for every later app on that metadata.

    :raises ConfigError: ``metadata`` has a table of that name that is not
        a suppression table (one of the app's own).
    """
    existing = metadata.tables.get(name)
    if existing is not None:
        if tuple(existing.columns.keys()) != _COLUMNS:
            raise ConfigError(
                f"{Keys.SUPPRESSION_TABLE} = {name!r}, but the app's metadata has"
                " a table of that name that is not Flask-Confirm's suppression"
                f" list (columns {', '.join(existing.columns.keys())}). Set"
                f" {Keys.SUPPRESSION_TABLE} to a name of its own."
            )
        return existing
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True),
        Column("address", _address_type(), nullable=False, unique=True),
        Column("reason", String(20), nullable=False),
        Column("source", String(SOURCE_LENGTH), nullable=False),
        Column("diagnostic", String(DIAGNOSTIC_LENGTH), nullable=True),
        Column("first_seen", timestamp_type(), nullable=False),
        Column("last_seen", timestamp_type(), nullable=False),
        # NULL: for good; else the end of a rest after repeated soft bounces.
        Column("expires_at", timestamp_type(), nullable=True),
    )
