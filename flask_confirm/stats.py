"""How many mails of each kind were sent, bounced and complained about.

SES reviews an account above about 5 % bounces or 0.1 % complaints and
pauses it beyond; an operator needs these rates before SES acts. Counts are
kept in Redis, per kind of mail and per hour, for eight days: enough for
``flask confirm status`` to show the last 24 hours and the last 7 days.
Counting never fails a send: a Redis error loses a count, not a mail.
Bounces and complaints are counted from SES's events (see :mod:`.feedback`);
only configuration-set events carry the kind of mail, so those from identity
notifications count as ``unknown``. Internal.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
import typing as t

from redis.exceptions import RedisError

from .config import MESSAGE_KINDS

if t.TYPE_CHECKING:
    from redis.client import Pipeline

    from .state import AppState

logger = logging.getLogger("flask_confirm")

#: What is counted.
EVENTS = ("sent", "bounced", "complained")
#: The kinds counted: the kinds of mail, and ``unknown``.
KINDS = (*MESSAGE_KINDS, "unknown")
#: Seconds per bucket, and how long a bucket is kept.
BUCKET = 3600
KEEP = 8 * 86400

#: SES's review thresholds (AWS: "Amazon SES sending review process"); the
#: status command warns at half of each.
SES_BOUNCE_REVIEW = 0.05
SES_COMPLAINT_REVIEW = 0.001


def _key(state: AppState, event: str, kind: str, hour: int) -> str:
    return f"flask-confirm:stats:{state.settings.queue}:{event}:{kind}:{hour}"


#: The counts :func:`gathering` holds back, by key, while it is active.
_gathered: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar(
    "flask_confirm_stats_gathered", default=None
)


def record(state: AppState, event: str, kind: str | None, count: int = 1) -> None:
    """Count ``count`` ``event``\\ s of mails of ``kind`` now (only where
    jobs run queued: inline, there may be no Redis to count in). Inside
    :func:`gathering`, the count is written when it ends."""
    if not state.settings.is_async:
        return
    kind = kind if kind in KINDS else "unknown"
    key = _key(state, event, kind, int(time.time()) // BUCKET)
    gathered = _gathered.get()
    if gathered is not None:
        gathered[key] = gathered.get(key, 0) + count
        return
    _write(state, {key: count})


@contextlib.contextmanager
def gathering(state: AppState, finish: Pipeline | None = None) -> t.Iterator[None]:
    """Hold back the counts :func:`record` makes meanwhile and write them
    together at the end, in one round trip: a job's counts, rather than a
    round trip per mail; given ``finish`` (the job's closing pipeline, see
    :func:`.tasks._closing`), in that pipeline's. Nested, the
    outermost writes."""
    if _gathered.get() is not None:
        yield
        return
    gathered: dict[str, int] = {}
    token = _gathered.set(gathered)
    try:
        yield
    finally:
        _gathered.reset(token)
        if gathered and finish is not None:
            _count(finish, gathered)
        elif gathered:
            _write(state, gathered)


def _count(pipe: Pipeline, counts: t.Mapping[str, int]) -> None:
    for key, count in counts.items():
        pipe.incrby(key, count)
        pipe.expire(key, KEEP)


def _write(state: AppState, counts: t.Mapping[str, int]) -> None:
    try:
        with state.redis.pipeline(transaction=False) as pipe:
            _count(pipe, counts)
            pipe.execute()
    except RedisError as e:
        logger.debug(
            "%d counts were lost: Redis error %s.", len(counts), type(e).__name__
        )


def totals(state: AppState, hours: int) -> dict[str, dict[str, int]]:
    """``{kind: {event: count}}`` over the last ``hours`` hours (the current,
    partial hour included), in one round trip."""
    now = int(time.time()) // BUCKET
    keys = [
        (kind, event, _key(state, event, kind, hour))
        for kind in KINDS
        for event in EVENTS
        for hour in range(now - hours + 1, now + 1)
    ]
    values = state.redis.mget([key for _, _, key in keys])
    found: dict[str, dict[str, int]] = {k: dict.fromkeys(EVENTS, 0) for k in KINDS}
    for (kind, event, _), value in zip(keys, values, strict=True):
        if value is not None:
            found[kind][event] += int(value)
    return found


def warnings(counts: t.Mapping[str, t.Mapping[str, int]]) -> list[str]:
    """Warnings for rates at half of SES's review thresholds or more."""
    sent = sum(c["sent"] for c in counts.values())
    if not sent:
        return []
    said = []
    bounced = sum(c["bounced"] for c in counts.values())
    complained = sum(c["complained"] for c in counts.values())
    if bounced / sent >= SES_BOUNCE_REVIEW / 2:
        said.append(
            f"bounce rate {bounced / sent:.1%} is at half of SES's review"
            f" threshold ({SES_BOUNCE_REVIEW:.0%}) or above"
        )
    if complained / sent >= SES_COMPLAINT_REVIEW / 2:
        said.append(
            f"complaint rate {complained / sent:.2%} is at half of SES's review"
            f" threshold ({SES_COMPLAINT_REVIEW:.1%}) or above"
        )
    return said
