"""The per-user send locks, in Redis: two jobs never send to one user at once.

A job, a retry after a crash, a second worker and a sweep racing a slow
worker may all hold the same user's id; each takes the user's lock before
it re-reads the row and sends, so the second finds the mail sent. Internal.
"""

from __future__ import annotations

import contextlib
import os
import typing as t

from redis.exceptions import RedisError

if t.TYPE_CHECKING:
    from redis.client import Pipeline

    from .models import UserId
    from .state import AppState


#: Deletes a lock only if it still holds our token (a lock that expired and
#: was taken by another worker is not ours to delete). KEYS: the locks;
#: ARGV: their tokens, in the same order.
_RELEASE_LOCKS = """
local released = 0
for i, key in ipairs(KEYS) do
    if redis.call('get', key) == ARGV[i] then
        redis.call('del', key)
        released = released + 1
    end
end
return released
"""


@contextlib.contextmanager
def user_locks(
    state: AppState, user_ids: t.Sequence[UserId], finish: Pipeline | None = None
) -> t.Iterator[set[UserId]]:
    """Take the per-user send locks of ``user_ids`` in one round trip, so two
    jobs never send to one user at once; yield the ids whose lock was taken
    (the others are being sent elsewhere) and release them in one round trip,
    or, given ``finish`` (the job's closing pipeline, see
    :func:`.tasks._closing`), in that pipeline's. The locks expire
    with the job's own timeout (the per-user timeout times the users, plus
    5 s): as long as the job may still be running, no other may send to its
    users; once RQ would give up on it, they are free. Not needed (and
    Redis maybe absent) when jobs run inline."""
    if not state.settings.is_async:
        yield set(user_ids)
        return
    ttl = state.settings.job_timeout * max(1, len(user_ids)) + 5
    keys = [f"flask-confirm:lock:{state.settings.queue}:{uid}" for uid in user_ids]
    tokens = [os.urandom(16).hex() for _ in user_ids]
    with state.redis.pipeline(transaction=False) as pipe:
        for key, token in zip(keys, tokens, strict=True):
            pipe.set(key, token, nx=True, ex=ttl)
        taken = pipe.execute()
    held = [i for i, ok in enumerate(taken) if ok]
    try:
        yield {user_ids[i] for i in held}
    finally:
        if held:
            # EVAL, not a loaded script's EVALSHA: in a pipeline, redis-py
            # would first ask whether the script is loaded, a round trip.
            with contextlib.suppress(RedisError):
                (state.redis if finish is None else finish).eval(
                    _RELEASE_LOCKS,
                    len(held),
                    *[keys[i] for i in held],
                    *[tokens[i] for i in held],
                )
