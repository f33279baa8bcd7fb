"""The checks of the configured URLs (Redis, the site, the pages' prefix, the
dashboard) and of the dashboard's origins, with :func:`origin_of`, and the
site's name, which defaults to the site URL's host."""

from __future__ import annotations

import contextlib
import typing as t
from urllib.parse import urlsplit

from ..connection import check_url
from ..connection import URL_FORMS
from ..errors import ConfigError
from .keys import Keys


def _redis_url(value: t.Any) -> str:
    # The value is never repeated: a Redis URL may hold a password.
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{Keys.REDIS_URL} must be a Redis URL string, not"
            f" {type(value).__name__}; use {URL_FORMS}. (To hand Flask-Confirm a"
            " client you made yourself, pass it as Confirm(redis=...).)"
        )
    try:
        check_url(value)
    except ValueError as e:
        raise ConfigError(
            f"{Keys.REDIS_URL} is not a usable Redis URL: {e}. Use {URL_FORMS}."
        ) from None
    return value


def _external_url(value: t.Any) -> str:
    # Links are built outside any request, in the worker, and must never be
    # taken from a request's Host header, which the client controls.
    if not value:
        raise ConfigError(
            f"{Keys.EXTERNAL_URL} is not set. Confirmation links are built from it"
            " (never from the request's Host header): set it to the public base"
            " URL of the site, for example 'https://example.com'."
        )
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{Keys.EXTERNAL_URL} = {value!r} is not an absolute http(s) URL; set"
            " it to something like 'https://example.com'."
        )
    if parts.query or parts.fragment:
        raise ConfigError(
            f"{Keys.EXTERNAL_URL} = {value!r} must not have a query or fragment."
        )
    return str(value).rstrip("/")


def _site_name(value: t.Any, external_url: str) -> str:
    """The name the mails give the site: :data:`CONFIRM_SITE_NAME`, else the
    host of ``external_url`` (``https://www.example.com:8443/app`` gives
    ``example.com``), which is what a reader can check against the links."""
    if value is None:
        host = urlsplit(external_url).hostname or external_url
        with contextlib.suppress(UnicodeError):
            # Shown to people: an IDNA host in the form they typed.
            host = host.encode("ascii").decode("idna")
        return host.removeprefix("www.")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{Keys.SITE_NAME} must be the site's name as a non-empty string (such"
            f" as 'Example'), or None for the host of {Keys.EXTERNAL_URL};"
            f" got {value!r}."
        )
    if "\r" in value or "\n" in value:
        raise ConfigError(
            f"{Keys.SITE_NAME} = {value!r} contains a line break; the mails show it"
            " on one line: remove it."
        )
    return value.strip()


def _url_prefix(value: t.Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(
            f"{Keys.URL_PREFIX} must be a path starting with '/', not {value!r}."
        )
    return value.rstrip("/")


def _dashboard_url(value: t.Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/") or value == "/":
        raise ConfigError(
            f"{Keys.DASHBOARD_URL} must be a path such as '/rq', or None to not"
            f" mount the dashboard; got {value!r}."
        )
    return value.rstrip("/")


#: The port a browser leaves out of an origin, per scheme.
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """The origin of ``url`` as a browser writes it in an ``Origin`` header:
    ``scheme://host[:port]``, lower-cased, without the scheme's default port,
    an internationalised host in its ASCII (IDNA) form. ``None`` if ``url``
    is not an absolute http(s) URL. Internal."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, an unclosed "["
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in DEFAULT_PORTS or not host:
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _dashboard_origins(value: t.Any) -> tuple[str, ...]:
    # One origin given as a string is a list of one, as Flask-CORS takes it.
    values = [value] if isinstance(value, str) else value
    fix = (
        f"{Keys.DASHBOARD_ORIGINS} must be a list of origins (scheme, host and"
        " port, nothing more) whose pages may act on the dashboard besides"
        f" {Keys.EXTERNAL_URL}'s, such as ['https://admin.example.com'], or []"
    )
    if not isinstance(values, (list, tuple, set, frozenset)):
        raise ConfigError(f"{fix}; got {value!r}.")
    origins = []
    for item in values:
        origin = origin_of(item) if isinstance(item, str) else None
        if origin is None:
            raise ConfigError(f"{fix}; {item!r} is not one.")
        parts = urlsplit(item)
        if (
            parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
        ):
            raise ConfigError(f"{fix}; {item!r} is not one.")
        origins.append(origin)
    return tuple(origins)
