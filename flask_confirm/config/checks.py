"""The checks of single configuration values that :func:`.load` runs: types,
ranges, rate limits, messages. Those of URLs and origins are in :mod:`.urls`."""

from __future__ import annotations

import os
import typing as t

from ..errors import ConfigError
from ..limits import parse_limit
from ..limits import Window
from .keys import Keys
from .keys import MESSAGE_FIELDS
from .keys import MESSAGE_KINDS

if t.TYPE_CHECKING:
    from flask import Flask


def _messages(value: t.Any) -> dict[str, dict[str, str]]:
    """Check :data:`CONFIRM_MESSAGES`: known kinds, known fields, strings."""
    if not isinstance(value, t.Mapping):
        raise ConfigError(
            f"{Keys.MESSAGES} must be a dict such as {{'password_reset':"
            f" {{'subject': 'Reset your password'}}}}, not {value!r}."
        )
    checked: dict[str, dict[str, str]] = {}
    for kind, fields in value.items():
        if kind not in MESSAGE_KINDS:
            raise ConfigError(
                f"{Keys.MESSAGES} has an unknown message kind {kind!r}; the kinds"
                f" are {', '.join(map(repr, MESSAGE_KINDS))}."
            )
        if not isinstance(fields, t.Mapping) or not all(
            field in MESSAGE_FIELDS and isinstance(text, str) and text
            for field, text in fields.items()
        ):
            raise ConfigError(
                f"{Keys.MESSAGES}[{kind!r}] must map 'subject' and/or 'sender' to"
                f" non-empty strings, not {fields!r}."
            )
        checked[kind] = dict(fields)
    return checked


def _require_str(config: t.Mapping[str, t.Any], key: str) -> str:
    value = config[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, not {value!r}.")
    return value


def _require_bool(config: t.Mapping[str, t.Any], key: str) -> bool:
    value = config[key]
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be True or False, not {value!r}.")
    return value


def _ca_file(value: t.Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.path.isfile(value):
        raise ConfigError(
            f"{Keys.SMTP_CA_FILE} = {value!r} is not a file: name the PEM file of"
            " the CA certificates that signed the SMTP server's certificate, or"
            " None to trust the system's."
        )
    return os.fspath(value)


def _optional_str(config: t.Mapping[str, t.Any], key: str) -> str | None:
    value = config[key]
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{key} must be a non-empty string, or None for the default; got {value!r}."
        )
    return value


def _content_security_policy(value: t.Any) -> str | None:
    # A header value: a newline would split it, and an empty policy would
    # read as "no restrictions" while looking configured.
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.strip()
        or "\n" in value
        or "\r" in value
    ):
        raise ConfigError(
            f"{Keys.CONTENT_SECURITY_POLICY} must be a policy on one line, such as"
            " \"default-src 'self'; frame-ancestors 'none'\", or None to leave the"
            f" header to the app; got {value!r}."
        )
    return value.strip()


def _subdomain(app: Flask, value: t.Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or "/" in value or ":" in value:
        raise ConfigError(
            f"{Keys.SUBDOMAIN} must be a subdomain such as 'accounts' (with"
            f" SERVER_NAME set), or None; got {value!r}."
        )
    # Without both, Flask matches no route on the subdomain: every page
    # would be a 404 with nothing saying why.
    if not app.config.get("SERVER_NAME") or not app.subdomain_matching:
        raise ConfigError(
            f"{Keys.SUBDOMAIN} = {value!r} needs Flask's subdomain matching:"
            " create the app with Flask(__name__, subdomain_matching=True) and"
            " set SERVER_NAME to the site's domain (for example 'example.com')."
        )
    return value


def _require_positive_int(
    config: t.Mapping[str, t.Any], key: str, unit: str = "seconds"
) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(
            f"{key} must be a positive whole number of {unit}, not {value!r}."
        )
    return value


#: Stretches the send window a little for the network between us and the
#: provider (each send is also re-stamped when the provider has it).
SEND_WINDOW_MARGIN = 0.02


def _send_rate(value: t.Any) -> Window | None:
    """``20`` messages/s -> at most 20 sends in any 1.02 s; ``0.5`` -> 1 in
    2.02 s."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(
            f"{Keys.MAX_SEND_RATE} must be a number of messages per second above"
            f" 0 (your provider's quota, e.g. 14 for SES), or None; got {value!r}."
        )
    limit = max(1, round(value))
    return Window(limit, limit / value + SEND_WINDOW_MARGIN)


def _limit(config: t.Mapping[str, t.Any], key: str) -> tuple[Window, ...]:
    value = config[key]
    if value is None:
        return ()
    if not isinstance(value, str):
        raise ConfigError(
            f"{key} must be a string such as '5 per day; 1 per 3 minutes', or"
            f" None for no limit; got {value!r}."
        )
    try:
        return parse_limit(value)
    except ValueError as e:
        raise ConfigError(f"{key} = {value!r}: {e}.") from None


def _require_int(config: t.Mapping[str, t.Any], key: str, minimum: int) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key} must be a whole number >= {minimum}, not {value!r}.")
    return value


def _retry_intervals(value: t.Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or any(v < 0 for v in value)
    ):
        raise ConfigError(
            f"{Keys.RETRY_INTERVALS} must be a non-empty list of seconds >= 0, such"
            f" as [10, 60, 300, 900, 3600] ([0] retries at once); got {value!r}."
        )
    return tuple(value)
