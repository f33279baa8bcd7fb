"""The address of a user row: the column that holds it, and the address to
mail."""

from __future__ import annotations

import typing as t

from sqlalchemy import String
from sqlalchemy import TypeDecorator

from ..config import Keys
from ..errors import ConfigError
from .columns import EMAIL_LENGTH
from .keys import _mapper

if t.TYPE_CHECKING:
    from sqlalchemy.schema import Column


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
