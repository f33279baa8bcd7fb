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
import unicodedata

if t.TYPE_CHECKING:
    from redis import Redis

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_PART = re.compile(
    r"^\s*(\d+)\s*(?:per|/)\s*(\d+)?\s*(second|minute|hour|day)s?\s*$", re.I
)

# KEYS: one group per window (and identifier) of N keys, one per HMAC key,
# oldest first. ARGV: N, a unique member, then limit and period (ms) per
# group. Returns 0 when allowed (and recorded), else the ms to wait. The
# newest key of a group first takes in the hits recorded under the older
# ones (a rotated SECRET_KEY), so it holds the whole history by the time the
# old key is dropped; a hit is recorded under all, so rolling back loses
# nothing either. Time is Redis's own, so hosts with skewed clocks still
# share one window.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local wait = 0
for g = 1, #KEYS / n do
  local limit = tonumber(ARGV[1 + 2 * g])
  local period = tonumber(ARGV[2 + 2 * g])
  local key = KEYS[g * n]
  for i = (g - 1) * n + 1, g * n - 1 do
    if redis.call('EXISTS', KEYS[i]) == 1 then
      redis.call('ZUNIONSTORE', key, 2, key, KEYS[i], 'AGGREGATE', 'MAX')
      redis.call('PEXPIRE', key, period)
    end
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local until_free = tonumber(oldest[2]) + period - now
    if until_free > wait then wait = until_free end
  end
end
if wait > 0 then return wait end
for g = 1, #KEYS / n do
  local period = tonumber(ARGV[2 + 2 * g])
  for i = (g - 1) * n + 1, g * n do
    redis.call('ZADD', KEYS[i], now, ARGV[2])
    redis.call('PEXPIRE', KEYS[i], period)
  end
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


def fold_address(email: str) -> str:
    """The form an address is counted under: Unicode's compatibility caseless
    match (``NFKD(casefold(NFKD(casefold(NFD(x)))))``, D146), recomposed, so
    that every spelling that differs only in case ("Straße", "STRASSE") or in
    compatibility forms ("ﬁ", "fi") is one limit. ``str.lower()`` is not:
    it keeps "ß" and "ss" apart.

    Databases fold further in ways of their own (PostgreSQL lowers "İ" to a
    plain "i", MariaDB's collations equate the dotless i, U+0131, and "i"),
    which no one text form can follow; the views therefore count each
    request against the account it matched as well (:func:`.views._request_by_address`).
    """
    nfd = unicodedata.normalize("NFD", email)
    folded = unicodedata.normalize("NFKD", nfd.casefold())
    return unicodedata.normalize("NFKC", folded.casefold())


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

    Identifiers (addresses, user ids, client IPs) are stored as HMACs, so
    Redis holds no list of who asked for what, and none that a dictionary of
    known addresses could reverse.

    :param keys: the HMAC keys, oldest first: one per ``SECRET_KEY`` in
        ``[*SECRET_KEY_FALLBACKS, SECRET_KEY]``. Limits survive a key rotation: a hit
        is recorded under every key, and checked under the newest once that
        has taken in what the older keys counted. So while the old key is a
        fallback its counts still refuse, the first request of each
        identifier meanwhile carries that history over to the new key, and
        dropping the fallback loses nothing for anyone who asked during the
        rotation. (Who did not ask then starts afresh only if the fallback
        lived less than the longest window: keep it a day, the default
        :data:`CONFIRM_RESEND_ADDRESS_LIMIT`'s.) The alternatives were worse:
        a key from the oldest secret resets every limit when that secret is
        finally dropped, and a dedicated key that never rotates keeps Redis
        reversible by dictionary after the secret leaked.
    """

    def __init__(
        self,
        redis: Redis,
        keys: bytes | t.Sequence[bytes],
        prefix: str = "flask-confirm:limit",
    ) -> None:
        self._redis = redis
        # One key given twice (a fallback equal to the key) counts once.
        self._hmac_keys = list(
            dict.fromkeys([keys] if isinstance(keys, bytes) else keys)
        )
        if not self._hmac_keys:
            raise ValueError("RateLimiter needs at least one key.")
        self._prefix = prefix
        self._script = redis.register_script(_SCRIPT)
        self._restamp = redis.register_script(_RESTAMP)

    def hit(
        self,
        scope: str,
        identifier: str | t.Sequence[str],
        windows: t.Sequence[Window],
        member: str | None = None,
    ) -> float:
        """Record a hit if every window allows it.

        :param identifier: who is counted; several (an address as typed and
            the account it matched) are one hit against each, allowed only
            if every one of them is under the limit, and then counted for all.
        :param member: a name for the hit, to :meth:`restamp` it later.
        :return: 0 if allowed, else the seconds until it would be.
        """
        if not windows:
            return 0.0
        identifiers = [identifier] if isinstance(identifier, str) else identifier
        keys: list[str] = []
        args: list[int | str] = [len(self._hmac_keys), member or os.urandom(12).hex()]
        for window in windows:
            for one in identifiers:
                keys += self._keys(scope, one, window)
                args += [window.limit, round(window.period * 1000)]
        wait_ms = int(self._script(keys=keys, args=args))
        return wait_ms / 1000

    def restamp(self, scope: str, identifier: str, window: Window, member: str) -> None:
        """Move hit ``member`` to now: for a send, from when it was allowed to
        when the provider has the message. A worker that stalls between the
        two (descheduled, a slow connection) then cannot let the next sends
        pile up with its own at the provider's end of the window."""
        for key in self._keys(scope, identifier, window):
            self._restamp(keys=[key], args=[member, round(window.period * 1000)])

    def _keys(self, scope: str, identifier: str, window: Window) -> list[str]:
        """The Redis keys of ``identifier``'s ``window``, one per HMAC key."""
        data = identifier.encode("utf-8")
        return [
            f"{self._prefix}:{scope}:{window.period:g}:"
            + hmac.new(key, data, "sha256").hexdigest()[:32]
            for key in self._hmac_keys
        ]

    def fill(self, scope: str, identifier: str, window: Window) -> None:
        """Use up ``window`` for a whole period from now, as if it had been hit
        ``limit`` times: the way to back off when a provider says we are too
        fast. Internal."""
        seconds, micros = self._redis.time()
        now_ms = seconds * 1000 + micros // 1000
        members = {os.urandom(12).hex(): now_ms for _ in range(window.limit)}
        with self._redis.pipeline() as pipe:
            for key in self._keys(scope, identifier, window):
                pipe.zadd(key, members)
                pipe.pexpire(key, round(window.period * 1000))
            pipe.execute()
