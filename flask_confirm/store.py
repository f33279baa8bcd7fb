"""The store: every read and conditional ``UPDATE`` of one user's row.

Each change a flow makes to a user is one ``UPDATE`` whose ``WHERE`` holds
what the change assumed (the address, the pending request, the old password
hash), committed at once: of two requests racing with one link, one changes
the row and signals, the other finds nothing to do. The signal for a change
is sent here, after its commit, so every path that makes the change (a page,
the JSON API, a method call) sends it once. The confirm POST's
:func:`confirm_if` reads nothing first: its ``UPDATE`` returns the row, and
what SQL cannot compare (a digest of the address) is compared with it before
the commit, or rolled back. Bulk work over many users is in
:mod:`.outbox.bulk`. Internal.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import typing as t

from sqlalchemy import bindparam
from sqlalchemy import case
from sqlalchemy import Column
from sqlalchemy import func
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import literal
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import ColumnElement

from . import signals
from .addresses import lookup_keys
from .config import Keys
from .errors import EmailInUse
from .models import email_of
from .models import primary_key
from .models import utcnow
from .state import current_app_object

if t.TYPE_CHECKING:
    from sqlalchemy import Row
    from sqlalchemy import Select
    from sqlalchemy import Update
    from sqlalchemy.orm import Mapper

    from .models import UserId
    from .models import UserKey
    from .state import AppState

logger = logging.getLogger("flask_confirm")

#: What the ``check`` of :func:`confirm_if` accepts a row for.
_Bound = t.TypeVar("_Bound")


class BadUserId(ValueError):
    """A user id the primary key's type cannot hold (a token of another app
    sharing the secret key, say)."""


def get_user(state: AppState, user_id: UserId) -> t.Any | None:
    """The user with ``user_id``, or ``None`` if there is none.

    :raises BadUserId: the id cannot be looked up at all (the session is
        rolled back).
    """
    try:
        return state.db.session.get(state.user_model, state.key.value(user_id))
    except (SQLAlchemyError, OverflowError, ValueError, TypeError) as e:
        state.db.session.rollback()
        raise BadUserId("The user id cannot be looked up.") from e


def find_user(state: AppState, email: str) -> t.Any | None:
    """Return the user with address ``email``, or ``None``.

    Addresses are compared without regard to case or surrounding space,
    and with the domain in either form, so ``carol@xn--bcher-kva.example``
    finds ``carol@bücher.example`` (:func:`.addresses.lookup_keys`).
    SQLite's ``lower()`` folds ASCII letters only, so there a stored
    capital non-ASCII letter matches only as stored.

    Where several rows match (twins stored before these rules, or by the
    app), the answer is deterministic: a user whose address is
    confirmed before one whose is not, then the earliest confirmed,
    then the lowest primary key (the oldest row, for keys that grow).
    """
    model = state.user_model
    column = getattr(model, state.settings.email_attribute)
    confirmed_at = model.email_confirmed_at
    query = (
        select(model)
        .where(func.lower(column).in_(lookup_keys(email)))
        .order_by(
            case((confirmed_at.is_(None), 1), else_=0),
            confirmed_at,
            state.key.column,
        )
    )
    return state.db.session.scalars(query.limit(1)).first()


def users_at(state: AppState, address: str) -> list[t.Any]:
    """The users whose current or pending address is ``address``, in any
    spelling: whom a provider's report about it concerns."""
    model = state.user_model
    keys = lookup_keys(address)
    column = getattr(model, state.settings.email_attribute)
    query = select(model).where(
        func.lower(column).in_(keys) | func.lower(model.pending_email).in_(keys)
    )
    return list(state.db.session.scalars(query.order_by(state.key.column)))


def record_request(state: AppState, user: t.Any) -> None:
    """Record that a link is owed to ``user`` now, and commit: the durable
    half of a request, which the sweeper reads if the queue loses it."""
    user.confirmation_requested_at = utcnow()
    state.db.session.add(user)
    state.db.session.commit()


def record_failure(state: AppState, user: t.Any, reason: str) -> None:
    """Record that ``user``'s confirmation failed for good, and why, and
    commit."""
    user.confirmation_error = reason
    user.confirmation_failed_at = utcnow()
    state.db.session.commit()


def update_user(
    state: AppState,
    user: t.Any,
    conditions: list[t.Any],
    values: dict[t.Any, t.Any],
) -> bool:
    """``UPDATE`` ``user``'s row with ``values`` (keyed by the model's
    attributes) if ``conditions`` still hold, and commit (which expires
    ``user``, so it reloads what was stored). Whether a row changed."""
    model = state.user_model
    key = state.key
    result = state.db.session.execute(
        update(model)
        .where(key.column == key.value(primary_key(user)), *conditions)
        .values(values)
        .execution_options(synchronize_session=False)
    )
    state.db.session.commit()
    return getattr(result, "rowcount", 0) == 1


def confirm_user(state: AppState, user: t.Any) -> bool:
    """Mark ``user``'s address confirmed, commit, and send
    :data:`.email_confirmed`.

    One conditional ``UPDATE`` does it, so that two requests racing with
    the same link confirm once and signal once, and an address changed in
    the meantime is not confirmed in its place.

    :return: ``False`` if it was already confirmed (nothing is done then).
    """
    if user.email_confirmed:
        return False
    model = state.user_model
    attribute = state.settings.email_attribute
    done = update_user(
        state,
        user,
        [
            getattr(model, attribute) == email_of(user, attribute),
            model.email_confirmed_at.is_(None),
        ],
        {model.email_confirmed_at: utcnow()},
    )
    if done:
        signals.email_confirmed.send(current_app_object(), user=user)
    return done


def confirm_if(
    state: AppState, user_id: UserId, check: t.Callable[[t.Any], _Bound | None]
) -> _Bound | None:
    """Confirm the user with ``user_id`` if their address is unconfirmed and
    ``check`` accepts their row: commit, and send :data:`.email_confirmed`.

    The row is read by the ``UPDATE`` itself where the database has
    ``UPDATE ... RETURNING`` (PostgreSQL, SQLite 3.35+): one statement,
    ``UPDATE ... SET email_confirmed_at = :now WHERE <key> = :id AND
    email_confirmed_at IS NULL RETURNING ...``. Elsewhere (MySQL, MariaDB)
    the ``UPDATE`` is followed by a read of the row in the same transaction.
    Either way the row is locked from the ``UPDATE`` to the commit, so
    ``check`` sees it as it will be committed, and of two requests racing
    with one link one confirms and signals, the other's ``UPDATE`` finds it
    confirmed. ``check(row)`` returns what it accepts the row for (the
    address a link confirms), or ``None`` to roll the ``UPDATE`` back: what
    SQL cannot compare (a token binds a digest of the address) is compared
    there. It is given the user, or, when nothing listens to
    :data:`.email_confirmed` (blinker's ``has_receivers_for``), a row of
    the columns it reads, ``pending_email``, ``confirmation_requested_at``
    and the address, as attributes: an ORM object costs more to make than
    the rest of the request, and only receivers need one.

    The user signalled holds the values committed, loaded: reading them
    runs no query.

    :return: what ``check`` returned; ``None`` if nothing was confirmed
        (confirmed already, no such user, ``user_id`` not a value of the
        key, or ``check`` refused the row), and nothing changed.
    """
    model = state.user_model
    session = state.db.session
    statements = _confirm_statements(
        sa_inspect(model), state.key, state.settings.email_attribute
    )
    app = current_app_object()
    listened = signals.email_confirmed.has_receivers_for(app)
    entity = listened or statements.row_update is None
    try:
        params = {"fc_id": state.key.value(user_id), "fc_at": utcnow()}
        returning = session.get_bind(model).dialect.update_returning
        if entity:
            row = _update_entity(state, statements, params, returning)
        else:
            row = _update_row(state, statements, params, returning)
    except (SQLAlchemyError, OverflowError, ValueError, TypeError):
        # As get_user: an id the key cannot hold is no user.
        session.rollback()
        return None
    accepted = None if row is None else check(row)
    if accepted is None:
        session.rollback()
        return None
    if not entity:
        session.commit()
        return accepted
    _commit_keeping(state, row)
    signals.email_confirmed.send(app, user=row)
    return accepted


@dataclasses.dataclass(frozen=True)
class _ConfirmStatements:
    """The statements of :func:`confirm_if` for one user model, built once.
    Their parameters: ``fc_id``, the key's value, and ``fc_at``, the time."""

    #: ORM-enabled: the ``UPDATE``, and with ``RETURNING`` the user.
    entity_update: Update
    entity_returning: Update
    #: On the model's table: the ``UPDATE``; with ``RETURNING`` the columns
    #: the check reads, labelled with their attributes' names; and the
    #: ``SELECT`` of them, where there is no ``RETURNING``. ``None`` when the
    #: model is not one plain table (inheritance, a column that is an
    #: expression): only the ORM knows how to update it then.
    row_update: Update | None = None
    row_returning: Update | None = None
    row_select: Select[t.Any] | None = None


@functools.lru_cache(maxsize=64)
def _confirm_statements(
    mapper: Mapper[t.Any], key: UserKey, email_attribute: str
) -> _ConfirmStatements:
    model = mapper.class_
    confirmed_at = mapper.columns["email_confirmed_at"]
    id_param = bindparam("fc_id", type_=key.column.type)
    at_param = bindparam("fc_at", type_=confirmed_at.type)
    entity_update = (
        update(model)
        .where(key.column == id_param, model.email_confirmed_at.is_(None))
        .values({model.email_confirmed_at: at_param})
        .execution_options(synchronize_session=False)
    )
    names = (email_attribute, "pending_email", "confirmation_requested_at")
    columns = [mapper.columns[name] for name in names]
    table = confirmed_at.table
    entity_returning = entity_update.returning(model)
    if (
        mapper.inherits is not None
        or mapper.local_table is not table
        or not all(
            isinstance(column, Column) and column.table is table
            for column in (key.column, confirmed_at, *columns)
        )
    ):
        return _ConfirmStatements(entity_update, entity_returning)
    labelled = [column.label(name) for column, name in zip(columns, names, strict=True)]
    row_update = (
        update(table)
        .where(key.column == id_param, confirmed_at.is_(None))
        .values({confirmed_at: at_param})
    )
    return _ConfirmStatements(
        entity_update,
        entity_returning,
        row_update,
        row_update.returning(*labelled),
        select(*labelled).where(key.column == id_param),
    )


def _update_entity(
    state: AppState,
    statements: _ConfirmStatements,
    params: dict[str, t.Any],
    returning: bool,
) -> t.Any | None:
    """:func:`confirm_if`'s ``UPDATE``, and the user it confirmed (or
    ``None``), in the session."""
    session = state.db.session
    model = state.user_model
    # A user already in the session (a signed-in one, say) is to take the
    # values the UPDATE stores: expired first, having flushed what it holds
    # as the UPDATE's autoflush would, it is loaded from the row returned.
    # (populate_existing does that for UPDATE ... RETURNING only from
    # SQLAlchemy 2.0.36.)
    existing = session.identity_map.get(session.identity_key(model, params["fc_id"]))
    if existing is not None:
        session.flush()
        session.expire(existing)
    if returning:
        return session.scalars(statements.entity_returning, params).first()
    result = session.execute(statements.entity_update, params)
    if getattr(result, "rowcount", 0) != 1:
        return None
    return session.get(model, params["fc_id"], populate_existing=True)


def _update_row(
    state: AppState,
    statements: _ConfirmStatements,
    params: dict[str, t.Any],
    returning: bool,
) -> Row[t.Any] | None:
    """:func:`confirm_if`'s ``UPDATE`` on the table, and the row it
    confirmed (or ``None``): the columns the check reads."""
    session = state.db.session
    bind = {"mapper": state.user_model}
    if returning:
        assert statements.row_returning is not None
        return session.execute(
            statements.row_returning, params, bind_arguments=bind
        ).first()
    assert statements.row_update is not None and statements.row_select is not None
    result = session.execute(statements.row_update, params, bind_arguments=bind)
    if getattr(result, "rowcount", 0) != 1:
        return None
    return session.execute(statements.row_select, params, bind_arguments=bind).first()


def _commit_keeping(state: AppState, user: t.Any) -> None:
    """Commit, and keep ``user``'s column values loaded, as committed: the
    commit expires every object (``expire_on_commit``), so that reading
    ``user`` would query the row the transaction just wrote."""
    loaded = sa_inspect(user).dict
    keys = [attr.key for attr in sa_inspect(user).mapper.column_attrs]
    values = {key: loaded[key] for key in keys if key in loaded}
    state.db.session.commit()
    for key, value in values.items():
        set_committed_value(user, key, value)


def confirm_email_change(state: AppState, user: t.Any, new_email: str) -> bool:
    """Complete ``user``'s pending change to ``new_email``: it becomes the
    confirmed address, in one conditional ``UPDATE``, and
    :data:`.email_changed` and :data:`.email_confirmed` are sent.

    The ``UPDATE`` also requires that no other row holds ``new_email``
    in any spelling (``NOT EXISTS``, case-insensitively, either form of
    the domain), so that an account registered with ``SHARED@...``
    after a change to ``shared@...`` was asked for does not end up with
    a twin. That check runs inside the statement; only a unique index
    on ``lower(email)`` also closes the moment between two transactions
    committing at once (see :ref:`unique-lower-email`).

    :return: ``False`` if no change to ``new_email`` is pending (it was
        made already, or cancelled, or replaced by another).
    :raises EmailInUse: someone else has the address (the ``NOT
        EXISTS`` or the database's unique constraint said so); the
        change stays pending.
    """
    model = state.user_model
    attribute = state.settings.email_attribute
    old_email = email_of(user, attribute)
    try:
        done = update_user(
            state,
            user,
            [
                model.pending_email == new_email,
                _same_time(
                    model.confirmation_requested_at, user.confirmation_requested_at
                ),
                ~used_by_another(state, user, new_email),
            ],
            {
                getattr(model, attribute): new_email,
                model.pending_email: None,
                model.email_confirmed_at: utcnow(),
            },
        )
    except IntegrityError as e:
        state.db.session.rollback()
        raise EmailInUse("Another user has that address already.") from e
    if not done and address_taken(state, user, new_email):
        raise EmailInUse("Another user has that address already.")
    if done:
        app = current_app_object()
        signals.email_changed.send(app, user=user, old_email=old_email)
        signals.email_confirmed.send(app, user=user)
    return done


def cancel_email_change(state: AppState, user: t.Any) -> bool:
    """Drop ``user``'s pending email change, if any, and commit; its link
    stops working, and so does the "this wasn't me" link of its notice.

    One conditional ``UPDATE`` does it, so that a change confirmed in the
    meantime is not reported as cancelled.

    :return: whether a change was pending (and is now cancelled).
    """
    pending = user.pending_email
    if pending is None:
        return False
    model = state.user_model
    return update_user(
        state, user, [model.pending_email == pending], {model.pending_email: None}
    )


def reset_password(state: AppState, user: t.Any, password: str) -> bool:
    """Set ``user``'s password through the app's setter, cancel any
    pending email change, commit, and send :data:`.password_reset`.

    The new hash is written by one ``UPDATE`` conditional on the hash it
    replaces (:data:`CONFIRM_PASSWORD_HASH_ATTRIBUTE`, as ``user`` was
    loaded) and on the address, so that of several requests racing with
    one reset link exactly one sets a password; the others change
    nothing. Everything else the setter changed is committed with it.
    The reset link dies with the old hash, and with
    :data:`CONFIRM_BIND_SESSIONS` so does every Flask-Login session and
    remember-me cookie of the user.

    :return: ``False`` if the password or the address changed since
        ``user`` was loaded (another use of the same link won); nothing is
        changed then.
    :raises RuntimeError: the setter did not change the hash attribute.
    """
    settings = state.settings
    model = state.user_model
    key = state.key
    attribute = settings.password_hash_attribute
    old_hash = getattr(user, attribute, None)
    email = email_of(user, settings.email_attribute)
    session = state.db.session
    # No autoflush: the ORM must not write the new hash before the
    # conditional UPDATE has checked the old one.
    with session.no_autoflush:
        setter = state.password_setter
        if setter is not None:
            setter(user, password)
        else:
            user.set_password(password)
        new_hash = getattr(user, attribute, None)
        if new_hash is None or new_hash == old_hash:
            session.rollback()
            raise RuntimeError(
                f"The password setter did not change {model.__name__}.{attribute}"
                f" ({Keys.PASSWORD_HASH_ATTRIBUTE}): name the attribute it sets,"
                " since reset links are bound to it."
            )
        column = getattr(model, attribute)
        result = session.execute(
            update(model)
            .where(
                key.column == key.value(primary_key(user)),
                column.is_(None) if old_hash is None else column == old_hash,
                getattr(model, settings.email_attribute) == email,
            )
            .values({column: new_hash, model.pending_email: None})
            .execution_options(synchronize_session=False)
        )
    if getattr(result, "rowcount", 0) != 1:
        session.rollback()
        logger.info("Password reset lost a race: the hash changed meanwhile.")
        return False
    session.commit()
    signals.password_reset.send(current_app_object(), user=user)
    return True


def address_taken(state: AppState, user: t.Any, email: str) -> bool:
    """Whether a row other than ``user``'s holds ``email`` in any spelling."""
    return bool(state.db.session.scalar(select(used_by_another(state, user, email))))


def used_by_another(state: AppState, user: t.Any, email: str) -> ColumnElement[bool]:
    """``EXISTS``: a row other than ``user``'s holds ``email`` in any
    spelling. The rows are read through a derived table with a ``LIMIT``,
    which MySQL and MariaDB materialise, since they refuse an ``UPDATE``
    whose subquery reads the table being updated."""
    model = state.user_model
    other = aliased(model)
    key_name = sa_inspect(model).get_property_by_column(state.key.column).key
    other_key = getattr(other, key_name)
    column = getattr(other, state.settings.email_attribute)
    rows = (
        select(other_key)
        .where(
            func.lower(column).in_(lookup_keys(email)),
            other_key != state.key.value(primary_key(user)),
        )
        .limit(1)
        .subquery("used_by_another")
    )
    return select(literal(1)).select_from(rows).exists()


def _same_time(column: t.Any, value: t.Any) -> ColumnElement[bool]:
    """``column`` holds ``value`` (``None`` too): the request a link was
    made for is still the one recorded."""
    return column.is_(None) if value is None else column == value  # type: ignore[no-any-return]
