"""The model mixins that give a user the columns confirmation needs.

The mixins and the SQL form of their state are in :mod:`.mixin`, the column
types and UTC times in :mod:`.columns`, the primary key that jobs and tokens
carry in :mod:`.keys`, a user row's address in :mod:`.users`, and the
suppression list's table in :mod:`.suppressions`. Everything
is imported from here.
"""

from __future__ import annotations

from .columns import as_utc
from .columns import EMAIL_LENGTH
from .columns import TIME_COLUMNS
from .columns import timestamp_type
from .columns import UTCDateTime
from .columns import utcnow
from .keys import carried_id
from .keys import KEY_TYPES
from .keys import primary_key
from .keys import user_key
from .keys import UserId
from .keys import UserKey
from .mixin import ConfirmableDataclassMixin
from .mixin import ConfirmableMixin
from .mixin import state_filters
from .suppressions import REASONS
from .suppressions import suppression_table
from .users import email_column
from .users import email_of
from .users import target_address

__all__ = [
    "EMAIL_LENGTH",
    "KEY_TYPES",
    "REASONS",
    "TIME_COLUMNS",
    "ConfirmableDataclassMixin",
    "ConfirmableMixin",
    "UTCDateTime",
    "UserId",
    "UserKey",
    "as_utc",
    "carried_id",
    "email_column",
    "email_of",
    "primary_key",
    "state_filters",
    "suppression_table",
    "target_address",
    "timestamp_type",
    "user_key",
    "utcnow",
]
