"""Rate limits kept in Redis, shared by every process and host of the app.

A sliding-window log per key: a sorted set of the times of recent hits. All
the windows of one limit ("1 per 3 minutes; 5 per day") are checked and
recorded in one atomic script, so a hit refused by one window is not counted
by the others, and concurrent requests cannot both slip under a limit.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
import re
import typing as t

if t.TYPE_CHECKING:
    from redis import Redis

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_PART = re.compile(
    r"^\s*(\d+)\s*(?:per|/)\s*(\d+)?\s*(second|minute|hour|day)s?\s*$", re.I
)

# KEYS: one per window. ARGV: (unused), a unique member, then limit and period
# (ms) per window. Returns 0 when allowed (and recorded), else the ms to wait.
# Time is Redis's own, so hosts with skewed clocks still share one window.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[1 + 2 * i])
  local period = tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local until_free = tonumber(oldest[2]) + period - now
    if until_free > wait then wait = until_free end
  end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, tonumber(ARGV[2 + 2 * i]))
end
return 0
"""


# KEYS: the window. ARGV: member, period (ms). Sets the member's time to now.
_RESTAMP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 0
"""


@dataclasses.dataclass(frozen=True)
class Window:
    """At most ``limit`` hits in any ``period`` seconds."""

    limit: int
    #: Seconds; fractions allowed.
    period: float


def parse_limit(text: str) -> tuple[Window, ...]:
    """Parse ``"1 per 3 minutes; 5 per day"`` (or ``"20/hour"``).

    :raises ValueError: naming the part that cannot be read.
    """
    windows = []
    for part in text.split(";"):
        match = _PART.match(part)
        if match is None:
            raise ValueError(
                f"{part.strip()!r} is not a limit like '5 per day' or '1 per 3 minutes'"
            )
        count, amount, unit = match.groups()
        period = int(amount or 1) * _UNITS[unit.lower()]
        if int(count) < 1 or period < 1:
            raise ValueError(f"{part.strip()!r} must allow at least one per period")
        windows.append(Window(int(count), float(period)))
    return tuple(windows)


class RateLimiter:
    """Checks and records hits against named limits in Redis. Internal.

    Identifiers (addresses, client IPs) are stored as HMACs under ``key``, so
    Redis holds no list of who asked for what, and none that a dictionary of
    known addresses could reverse.
    """

    def __init__(
        self, redis: Redis, key: bytes, prefix: str = "flask-confirm:limit"
    ) -> None:
        self._redis = redis
        self._hmac_key = key
        self._prefix = prefix
        self._script = redis.register_script(_SCRIPT)
        self._restamp = redis.register_script(_RESTAMP)

    def hit(
        self,
        scope: str,
        identifier: str,
        windows: t.Sequence[Window],
        member: str | None = None,
    ) -> float:
        """Record a hit if every window allows it.

        :param member: a name for the hit, to :meth:`restamp` it later.
        :return: 0 if allowed, else the seconds until it would be.
        """
        if not windows:
            return 0.0
        keys = [self._key(scope, identifier, w) for w in windows]
        args: list[int | str] = [0, member or os.urandom(12).hex()]
        for window in windows:
            args += [window.limit, round(window.period * 1000)]
        wait_ms = int(self._script(keys=keys, args=args))
        return wait_ms / 1000

    def restamp(self, scope: str, identifier: str, window: Window, member: str) -> None:
        """Move hit ``member`` to now: for a send, from when it was allowed to
        when the provider has the message. A worker that stalls between the
        two (descheduled, a slow connection) then cannot let the next sends
        pile up with its own at the provider's end of the window."""
        key = self._key(scope, identifier, window)
        self._restamp(keys=[key], args=[member, round(window.period * 1000)])

    def _key(self, scope: str, identifier: str, window: Window) -> str:
        digest = hmac.new(self._hmac_key, identifier.encode("utf-8"), "sha256")
        return f"{self._prefix}:{scope}:{window.period:g}:{digest.hexdigest()[:32]}"

    def fill(self, scope: str, identifier: str, window: Window) -> None:
        """Use up ``window`` for a whole period from now, as if it had been hit
        ``limit`` times: the way to back off when a provider says we are too
        fast. Internal."""
        key = self._key(scope, identifier, window)
        seconds, micros = self._redis.time()
        now_ms = seconds * 1000 + micros // 1000
        members = {os.urandom(12).hex(): now_ms for _ in range(window.limit)}
        with self._redis.pipeline() as pipe:
            pipe.zadd(key, members)
            pipe.pexpire(key, round(window.period * 1000))
            pipe.execute()
