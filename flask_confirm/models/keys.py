"""How jobs and tokens name a user: by the value of its model's primary key."""

from __future__ import annotations

import dataclasses
import typing as t
import uuid

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import NoInspectionAvailable

from ..errors import ConfigError

if t.TYPE_CHECKING:
    from sqlalchemy import ColumnElement
    from sqlalchemy.orm import Mapper

#: What a job or a token carries to name a user: a primary key that is an
#: ``int`` or a ``str``, or a UUID written as its string.
UserId = int | str


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


def _mapper(model: type[t.Any]) -> Mapper[t.Any]:
    try:
        return t.cast("Mapper[t.Any]", sa_inspect(model))
    except NoInspectionAvailable:
        raise ConfigError(
            f"user_model={model!r} is not a mapped model class (a db.Model subclass)."
        ) from None
