"""Who is asking: the client's network, and the limits counted against it.

Internal.
"""

from __future__ import annotations

import ipaddress
import logging
import typing as t
import weakref

from flask import current_app
from flask import request
from redis.exceptions import RedisError

if t.TYPE_CHECKING:
    from ..state import AppState

logger = logging.getLogger("flask_confirm")


def client_ip() -> str:
    """The client's address as the app sees it: ``request.remote_addr``, which
    is the proxy's unless the app trusts proxy headers (with Werkzeug's
    ``ProxyFix``, configured for its own number of proxies). An IPv6 client
    counts as its /64 network, since one host commonly holds a whole /64.

    Without an IP address (a unix socket: Werkzeug says ``"<local>"``,
    other servers nothing), every visitor is the one client ``"unknown"``,
    and a warning says so, once per app."""
    address = request.remote_addr or ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        _warn_no_client_address()
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


#: Apps already warned that requests come without a client address.
_WARNED_NO_ADDRESS: weakref.WeakSet[t.Any] = weakref.WeakSet()


def _warn_no_client_address() -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app in _WARNED_NO_ADDRESS:
        return
    _WARNED_NO_ADDRESS.add(app)
    logger.warning(
        "A request came without a client address (REMOTE_ADDR is %r, as on"
        " a unix socket): every client then shares one CONFIRM_RESEND_IP_LIMIT,"
        " so a few requests lock everyone out. Behind a proxy, wrap the app"
        " in werkzeug's ProxyFix(app.wsgi_app, x_for=<number of proxies>), or"
        " have the server set REMOTE_ADDR (see the deployment docs). Said"
        " once.",
        request.remote_addr,
    )


def hit(
    state: AppState, scope: str, identifier: str | list[str], windows: t.Any
) -> float:
    """Record a hit against a limit; 0 if allowed, else the seconds to wait.

    Fails open: when Redis is down, queued sending is down too (requests are
    only recorded for the sweeper), so nothing can be flooded meanwhile. With
    :data:`CONFIRM_ASYNC` false and no Redis (development), there is no limit.
    """
    try:
        return state.limiter.hit(scope, identifier, windows)
    except RedisError as e:
        logger.warning(
            "Rate limit %s not checked: Redis error %s.", scope, type(e).__name__
        )
        return 0.0
