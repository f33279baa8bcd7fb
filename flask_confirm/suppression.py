"""The suppression list: addresses that no mail is sent to.

An address is put on it when mail to it cannot be delivered or is not
wanted (a hard bounce, a complaint, an SMTP server refusing the recipient
for good) or by hand, and taken off only by hand. The worker looks every
address up before any provider call (:mod:`.delivery`), in one query per
job, and fails a confirmation to a suppressed address for good instead of
mailing it: mailing an address that bounced or complained again is what
gets a sender's account reviewed or paused. What clients are told does not
change (the resend and reset forms answer as always), so the list reveals
nothing.

One row per address, in :func:`.addresses.canonical_email`'s spelling, so
every spelling of an address is the same row; the table is
:func:`.models.suppression_table`. Internal: the app uses
:meth:`.Confirm.suppress`, :meth:`.Confirm.unsuppress` and
:meth:`.Confirm.is_suppressed`, and operators ``flask confirm suppressed``
and ``flask confirm unsuppress``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import typing as t

from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import SQLAlchemyError

from .addresses import canonical_email
from .faults import recipient_refusal
from .faults import redact
from .models import as_utc
from .models import REASONS
from .models import utcnow
from .models.suppressions import DIAGNOSTIC_LENGTH
from .models.suppressions import SOURCE_LENGTH
from .models.suppressions import TEMPORARY_REASONS

if t.TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy import Table

    from .state import AppState

logger = logging.getLogger("flask_confirm")


@dataclasses.dataclass(frozen=True)
class Suppression:
    """One row of the suppression list, as ``flask confirm suppressed``
    lists it. Internal."""

    address: str
    reason: str
    source: str
    diagnostic: str | None
    first_seen: dt.datetime
    last_seen: dt.datetime


def _in_force(table: Table) -> t.Any:
    """Rows that hold now: for good, or not yet expired."""
    return table.c.expires_at.is_(None) | (table.c.expires_at > utcnow())


def is_suppressed(state: AppState, address: str) -> bool:
    """Whether ``address``, in any spelling, is on the list: one query."""
    table = state.suppressions
    query = select(table.c.id).where(
        table.c.address == canonical_email(address), _in_force(table)
    )
    return _execute(state, query.limit(1)).first() is not None


def reasons(state: AppState, addresses: t.Iterable[str]) -> dict[str, str]:
    """The reason each of ``addresses`` that is on the list is there for,
    keyed by :func:`.addresses.canonical_email`: one query for them all (a
    batch of users is looked up at once), none for no addresses. Read a
    user's with :func:`reason_of`."""
    keys = sorted({canonical_email(address) for address in addresses})
    if not keys:
        return {}
    query = _reasons_query(state.suppressions)
    rows = _execute(state, query, {"keys": keys, "now": utcnow()})
    return {row.address: row.reason for row in rows}


@functools.lru_cache(maxsize=16)
def _reasons_query(table: Table) -> Select[t.Any]:
    """:func:`reasons`'s ``SELECT``, built once per table (the worker runs it
    for every job): the addresses and the time as parameters."""
    return select(table.c.address, table.c.reason).where(
        table.c.address.in_(bindparam("keys", expanding=True)),
        table.c.expires_at.is_(None) | (table.c.expires_at > bindparam("now")),
    )


def reason_of(found: t.Mapping[str, str], address: str | None) -> str | None:
    """Why ``address`` is suppressed, from what :func:`reasons` found, or
    ``None`` if it is not."""
    if address is None or not found:  # nothing found: no need to spell it
        return None
    return found.get(canonical_email(address))


def owed(state: AppState, users: t.Iterable[t.Any]) -> dict[str, str]:
    """For the worker (:mod:`.delivery`): which of the addresses that
    ``users`` are owed mail at (the address being confirmed, and the
    current one, which a change notice goes to) are suppressed, and why:
    one query for them all (:func:`reasons`), none when nothing is owed."""
    attribute = state.settings.email_attribute
    addresses: list[str] = []
    for user in users:
        if user is None or user.confirmation_state != "requested":
            continue
        for address in (getattr(user, attribute, None), user.pending_email):
            if isinstance(address, str) and address:
                addresses.append(address)
    return reasons(state, addresses)


def learn_refusal(
    state: AppState, error: BaseException, address: str, kind: str
) -> None:
    """Put ``address`` on the suppression list if ``error`` is an SMTP
    server refusing it for good (:func:`.faults.recipient_refusal`), with
    the server's reply. Best effort, after the failure is recorded: a
    database error here is logged, and the next refusal tries again."""
    refusal = recipient_refusal(error)
    if refusal is None:
        return
    try:
        suppress(state, address, "smtp_rejected", source="smtp", diagnostic=refusal)
    except SQLAlchemyError as e:
        state.db.session.rollback()
        logger.warning(
            "The %s was refused for good, but the address could not be added to"
            " the suppression list (%s).",
            kind,
            type(e).__name__,
        )


def suppress(
    state: AppState,
    address: str,
    reason: str,
    *,
    source: str,
    diagnostic: str | None = None,
    expires_in: dt.timedelta | None = None,
) -> None:
    """Put ``address`` on the list, or, if it is there, record this as its
    latest reason (``first_seen`` kept, ``last_seen`` now), and commit. With
    ``expires_in`` (for ``soft_bounce`` only) it holds that long; without,
    for good, even if it held for a while before. One
    statement, atomic on SQLite, PostgreSQL and MySQL/MariaDB, so two
    workers suppressing one address at once leave one row.

    :param diagnostic: the provider's text, kept with addresses, links and
        tokens replaced by placeholders (:func:`.faults.redact`), so the
        list names nobody but the address itself; cut to 500 characters.
    :raises ValueError: ``reason`` is not one of :data:`.models.REASONS`,
        ``source`` is empty or longer than 32 characters, or ``address``
        is empty.
    """
    if reason not in REASONS:
        raise ValueError(
            f"reason must be one of {', '.join(map(repr, REASONS))}, not {reason!r}."
        )
    if (expires_in is not None) != (reason in TEMPORARY_REASONS):
        raise ValueError(
            f"reason {reason!r} {'needs' if expires_in is None else 'takes no'}"
            " expiry: only a soft bounce's suppression expires."
        )
    if not isinstance(source, str) or not 0 < len(source) <= SOURCE_LENGTH:
        raise ValueError(
            f"source must be a short name such as 'smtp', 'ses', 'cli' or 'api'"
            f" (1 to {SOURCE_LENGTH} characters), not {source!r}."
        )
    key = canonical_email(address)
    if not key:
        raise ValueError("An empty address cannot be suppressed.")
    if diagnostic is not None:
        diagnostic = redact(diagnostic, [address, key])[:DIAGNOSTIC_LENGTH]
    now = utcnow()
    values = {
        "address": key,
        "reason": reason,
        "source": source,
        "diagnostic": diagnostic,
        "first_seen": now,
        "last_seen": now,
        "expires_at": None if expires_in is None else now + expires_in,
    }
    _upsert(state, state.suppressions, values)
    state.db.session.commit()
    logger.info("Suppressed an address (%s, from %s).", reason, source)


def _upsert(state: AppState, table: Table, values: dict[str, t.Any]) -> None:
    """Insert the row of ``values``, or update the one with its address:
    each dialect's own upsert, else an update and, if it matched nothing,
    an insert."""
    changed = {k: v for k, v in values.items() if k not in ("address", "first_seen")}
    dialect = _bind(state).dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(table).values(values)
        _execute(
            state,
            pg.on_conflict_do_update(
                index_elements=[table.c.address],
                set_={k: pg.excluded[k] for k in changed},
            ),
        )
    elif dialect == "sqlite":
        lite = sqlite.insert(table).values(values)
        _execute(
            state,
            lite.on_conflict_do_update(
                index_elements=[table.c.address],
                set_={k: lite.excluded[k] for k in changed},
            ),
        )
    elif dialect in ("mysql", "mariadb"):
        my = mysql.insert(table).values(values)
        _execute(
            state, my.on_duplicate_key_update({k: my.inserted[k] for k in changed})
        )
    else:  # pragma: no cover - no other database in the suite
        where = table.c.address == values["address"]
        result = _execute(state, update(table).where(where).values(changed))
        if getattr(result, "rowcount", 0) == 0:
            _execute(state, insert(table).values(values))


def _bind(state: AppState) -> t.Any:
    """The engine of the suppression table: the user model's bind.
    Flask-SQLAlchemy finds it for a table, and for an insert, update or
    delete of one, but sends a ``SELECT`` to the default engine."""
    return state.db.session.get_bind(clause=state.suppressions)


def _execute(
    state: AppState, statement: t.Any, parameters: dict[str, t.Any] | None = None
) -> t.Any:
    """Run ``statement`` (with values for its ``parameters``) in the app's
    session, on the table's engine."""
    return state.db.session.execute(
        statement, parameters, bind_arguments={"bind": _bind(state)}
    )


def unsuppress(state: AppState, address: str) -> bool:
    """Take ``address`` (any spelling) off the list and commit; whether it
    was on it. Mail to it is sent again from the next request: a
    confirmation that failed as suppressed stays failed until it is
    requested again (a resend, ``flask confirm retry-failed``)."""
    table = state.suppressions
    statement = delete(table).where(table.c.address == canonical_email(address))
    result = _execute(state, statement)
    state.db.session.commit()
    return bool(getattr(result, "rowcount", 0))


def suppressed(state: AppState, limit: int | None = None) -> list[Suppression]:
    """The rows of the list, the most recently seen first, at most
    ``limit``."""
    table = state.suppressions
    query = (
        select(table)
        .where(_in_force(table))
        .order_by(table.c.last_seen.desc(), table.c.address)
    )
    if limit is not None:
        query = query.limit(limit)
    rows = _execute(state, query).all()
    return [
        Suppression(
            address=row.address,
            reason=row.reason,
            source=row.source,
            diagnostic=row.diagnostic,
            # SQLite and MySQL keep no zone: read back in UTC, as the mixin.
            first_seen=as_utc(row.first_seen),
            last_seen=as_utc(row.last_seen),
        )
        for row in rows
    ]
