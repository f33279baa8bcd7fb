"""Connecting to Redis: plain and Sentinel URLs, printing them safely, and
checking the server. Internal.

:data:`CONFIRM_REDIS_URL` takes what redis-py's ``Redis.from_url`` takes
(``redis://``, ``rediss://``, ``unix://``) and, as rq-dashboard and
Flask-Limiter do, ``redis+sentinel://host:port[,host:port...]/service_name[/db]``,
for which a client of redis-py's own :class:`redis.sentinel.Sentinel` is made:
it asks the Sentinels for the current master and follows a failover.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import typing as t
from urllib.parse import parse_qs
from urllib.parse import unquote
from urllib.parse import urlsplit

from redis import Redis
from redis.connection import parse_url
from redis.connection import SSLConnection
from redis.exceptions import RedisError
from redis.sentinel import Sentinel
from redis.sentinel import SentinelConnectionPool
from redis.sentinel import SentinelManagedConnection
from redis.sentinel import SentinelManagedSSLConnection

logger = logging.getLogger("flask_confirm")

SENTINEL_SCHEME = "redis+sentinel"
PLAIN_SCHEMES = ("redis", "rediss", "unix")
#: Sentinel's own port, used when a Sentinel address has none.
SENTINEL_PORT = 26379
#: Query options a Sentinel URL may carry: credentials for the Sentinels
#: themselves, when they ask for them (the URL's own user and password are
#: the Redis servers').
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")

#: The forms of URL accepted, for error messages.
URL_FORMS = (
    "redis://[[user]:password@]host[:port][/db], rediss://... (TLS),"
    " unix:///path/to/redis.sock, or"
    " redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]"
)


@dataclasses.dataclass(frozen=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None
    sentinel_username: str | None
    sentinel_password: str | None


class SentinelConnection(SentinelManagedConnection):
    """redis-py's connection to a Sentinel-managed server, but one whose
    read, interrupted half-way, drops the connection, as every other redis-py
    connection does.

    redis-py's own keeps it (``disconnect_on_error`` defaults to false
    there, redis/redis-py#4292): the next command on it reads the reply of
    the interrupted one. RQ interrupts reads with signals (a warm shutdown
    raises out of the worker's blocking wait for jobs, a job timeout out of
    whatever the job is doing), so a worker on a stock Sentinel client
    answers ``SIGTERM`` with "Wrong number of response items", and a send
    lock can be read from someone else's reply.
    """

    def read_response(  # type: ignore[no-untyped-def]
        self, disable_decoding=False, *, disconnect_on_error=True, **kwargs
    ):
        return super().read_response(
            disable_decoding=disable_decoding,
            disconnect_on_error=disconnect_on_error,
            **kwargs,
        )


class SentinelSSLConnection(SentinelConnection, SSLConnection):
    """:class:`SentinelConnection` over TLS."""


def fix_interrupted_reads(connection: Redis) -> None:
    """Make a Sentinel client's pool open :class:`SentinelConnection` ones
    from now on, if it opens redis-py's stock ones. For the worker's process
    only, whose reads RQ interrupts (as RQ itself changes the pool's socket
    timeout there)."""
    pool = connection.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return
    if pool.connection_class is SentinelManagedConnection:
        pool.connection_class = SentinelConnection
    elif pool.connection_class is SentinelManagedSSLConnection:
        pool.connection_class = SentinelSSLConnection


def check_url(url: str) -> None:
    """Check that ``url`` can be connected to, without connecting.

    :raises ValueError: saying what is wrong. The message never repeats the
        URL or any part of it that could hold the password.
    """
    parts = _split(url)
    if parts.scheme == SENTINEL_SCHEME:
        parse_sentinel_url(url)
        return
    if parts.scheme not in PLAIN_SCHEMES:
        raise ValueError(
            "it does not start with redis://, rediss://, unix:// or redis+sentinel://"
        )
    try:
        options: dict[str, t.Any] = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError:
        # redis-py's messages can quote a port, which a password with an
        # unescaped "/" turns into part of the password.
        raise ValueError(
            "it cannot be parsed (its port or an option is not valid)"
        ) from None
    if parts.scheme != "unix" and parts.path not in ("", "/") and "db" not in options:
        raise ValueError("the database after the host must be a number, as in /0")


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse ``redis+sentinel://[[user]:password@]host:port[,host:port...]/
    service_name[/db][?sentinel_username=...&sentinel_password=...]``.

    :raises ValueError: saying what is wrong, without repeating the URL.
    """
    parts = _split(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = []
    for address in hostlist.split(","):
        host, colon, port = address.strip().rpartition(":")
        if not colon:
            host, port = port, str(SENTINEL_PORT)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                "each Sentinel must be given as host:port, separated by commas"
            )
        sentinels.append((host.strip("[]"), int(port)))
    path = [segment for segment in parts.path.split("/") if segment]
    if not path:
        raise ValueError(
            "it names no service: add the name Sentinel monitors the master"
            " under, as in redis+sentinel://host:26379/mymaster/0"
        )
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("the path must be /service_name or /service_name/db")
    options: dict[str, str] = {}
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        if name not in SENTINEL_OPTIONS:
            raise ValueError(
                f"{name!r} is not an option of a Sentinel URL; the options are"
                f" {', '.join(SENTINEL_OPTIONS)}"
            )
        options[name] = values[-1]
    return SentinelURL(
        sentinels=tuple(sentinels),
        service=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
    )


def connect(url: str, **options: t.Any) -> Redis:
    """A client for ``url`` (checked with :func:`check_url`) with redis-py's
    ``options`` (timeouts), connecting on first use. For a Sentinel URL it
    is a client of the service's current master, which asks the Sentinels
    again whenever the master it knew stops being one."""
    if _split(url).scheme != SENTINEL_SCHEME:
        return Redis.from_url(url, **options)
    parsed = parse_sentinel_url(url)
    sentinel_kwargs: dict[str, t.Any] = {
        key: value for key, value in options.items() if key.startswith("socket_")
    }
    if parsed.sentinel_username:
        sentinel_kwargs["username"] = parsed.sentinel_username
    if parsed.sentinel_password:
        sentinel_kwargs["password"] = parsed.sentinel_password
    # Through Any: redis-py types Sentinel from 8.2 on, not before, and the
    # code is to type-check on every version we allow.
    make_sentinel: t.Callable[..., t.Any] = Sentinel
    sentinel = make_sentinel(list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs)
    return t.cast(
        "Redis",
        sentinel.master_for(
            parsed.service,
            connection_class=SentinelConnection,
            db=parsed.db,
            username=parsed.username,
            password=parsed.password,
            **options,
        ),
    )


def redact(url: str) -> str:
    """``url`` fit to print: the password of its user part and the value of
    every ``...password=`` option replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed "[": print none of it
        return "(a URL that cannot be parsed)"
    netloc = parts.netloc
    userinfo, at, hostlist = netloc.rpartition("@")
    if at:
        # "user:password@", or a lone "password@", which some clients take
        # to be a password.
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hostlist}" if colon else f"***@{hostlist}"
    query = re.sub(r"([^&=]*password)=[^&]*", r"\1=***", parts.query, flags=re.I)
    return parts._replace(netloc=netloc, query=query).geturl()


def describe(connection: Redis) -> str:
    """A URL that says where ``connection`` leads, without its credentials:
    the master's service and the Sentinels for a Sentinel client."""
    pool = connection.connection_pool
    kwargs = pool.connection_kwargs
    db = kwargs.get("db", 0)
    if isinstance(pool, SentinelConnectionPool):
        hosts = ",".join(
            "{host}:{port}".format(**s.connection_pool.connection_kwargs)
            for s in pool.sentinel_manager.sentinels
        )
        return f"{SENTINEL_SCHEME}://{hosts}/{pool.service_name}/{db}"
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={db}"
    connection_class = getattr(pool, "connection_class", None)
    scheme = (
        "rediss"
        if isinstance(connection_class, type)
        and issubclass(connection_class, SSLConnection)
        else "redis"
    )
    return (
        f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"
    )


def check_client(connection: t.Any, what: str) -> None:
    """Refuse a client RQ cannot work with.

    :raises TypeError: it is not a redis-py client.
    :raises ValueError: it decodes responses: RQ stores pickled jobs, which
        are bytes.
    """
    if not isinstance(connection, Redis):
        raise TypeError(
            f"{what} must be a redis.Redis client (such as Redis.from_url(...) or"
            f" Sentinel(...).master_for(...)), not {type(connection).__name__}."
        )
    if connection.connection_pool.connection_kwargs.get("decode_responses"):
        raise ValueError(
            f"{what} decodes responses (decode_responses=True), but RQ stores"
            " jobs as bytes and cannot read them back through it: give"
            " Flask-Confirm a client made without decode_responses, for example"
            " one on the same connection pool settings."
        )


#: The only ``maxmemory-policy`` that never evicts RQ's keys.
SAFE_POLICY = "noeviction"


def eviction_warning(connection: Redis) -> str | None:
    """A warning if the server may evict keys (its ``maxmemory-policy`` is
    not ``noeviction``), as Sidekiq and BullMQ give; ``None`` if it may not,
    or if it will not say (``CONFIG`` disabled or denied, as on some managed
    services)."""
    try:
        reply = connection.config_get("maxmemory-policy")
    except RedisError as e:
        logger.info(
            "Could not read Redis's maxmemory-policy (%s: %s); make sure it is %r.",
            type(e).__name__,
            e,
            SAFE_POLICY,
        )
        return None
    policy = next(
        (
            _text(value)
            for key, value in reply.items()
            if _text(key) == "maxmemory-policy"
        ),
        None,
    )
    if policy is None or policy == SAFE_POLICY:
        return None
    return (
        f"Redis's maxmemory-policy is {policy!r}, not {SAFE_POLICY!r}: once Redis"
        " reaches maxmemory it evicts keys, and with them queued jobs, scheduled"
        " retries and the send locks that keep a mail from going out twice. Set"
        f" 'maxmemory-policy {SAFE_POLICY}' in redis.conf (or run CONFIG SET"
        f" maxmemory-policy {SAFE_POLICY}; on a managed service, in its parameter"
        " group), and give Redis memory for the queue."
    )


def _text(value: t.Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def _split(url: str) -> t.Any:
    """``urlsplit(url)``, refusing what would make the URL print its password
    where :func:`redact` cannot see it: an ``@`` after the host means a
    password with an unescaped ``/``, ``?`` or ``#``."""
    parts = urlsplit(url)
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        raise ValueError(
            "it has an '@' after the host: percent-encode the password"
            " (urllib.parse.quote(password, safe='')), and any '@' in an option"
        )
    return parts
