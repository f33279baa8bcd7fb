"""Configuration keys, their defaults, and the one place they are read.

Every ``CONFIRM_*`` key is named once, as a constant of :class:`Keys`; the rest
of the package reads the frozen :class:`Settings` built by :func:`load` during
:meth:`.Confirm.init_app`, so a misspelt or missing key fails on start-up with a
message that names it instead of on the first registration.
"""

from __future__ import annotations

import dataclasses
import os
import typing as t
from urllib.parse import urlsplit

from .connection import check_url
from .connection import URL_FORMS
from .errors import ConfigError
from .limits import parse_limit
from .limits import Window

if t.TYPE_CHECKING:
    from flask import Flask


class Keys:
    """The names of the configuration keys Flask-Confirm reads."""

    REDIS_URL = "CONFIRM_REDIS_URL"
    QUEUE = "CONFIRM_QUEUE"
    ASYNC = "CONFIRM_ASYNC"
    SENDER = "CONFIRM_SENDER"
    MAIL_FROM = "CONFIRM_MAIL_FROM"
    SUBJECT = "CONFIRM_SUBJECT"
    TOKEN_MAX_AGE = "CONFIRM_TOKEN_MAX_AGE"
    EXTERNAL_URL = "CONFIRM_EXTERNAL_URL"
    URL_PREFIX = "CONFIRM_URL_PREFIX"
    REDIRECT_URL = "CONFIRM_REDIRECT_URL"
    RESET_REDIRECT_URL = "CONFIRM_RESET_REDIRECT_URL"
    BASE_TEMPLATE = "CONFIRM_BASE_TEMPLATE"
    CONTENT_SECURITY_POLICY = "CONFIRM_CONTENT_SECURITY_POLICY"
    SUBDOMAIN = "CONFIRM_SUBDOMAIN"
    ON_GET = "CONFIRM_ON_GET"
    SES_REGION = "CONFIRM_SES_REGION"
    SMTP_CA_FILE = "CONFIRM_SMTP_CA_FILE"
    SMTP_VERIFY_TLS = "CONFIRM_SMTP_VERIFY_TLS"
    SMTP_TIMEOUT = "CONFIRM_SMTP_TIMEOUT"
    DASHBOARD_URL = "CONFIRM_DASHBOARD_URL"
    DASHBOARD_ORIGINS = "CONFIRM_DASHBOARD_ORIGINS"
    JOB_TIMEOUT = "CONFIRM_JOB_TIMEOUT"
    FAILED_JOB_TTL = "CONFIRM_FAILED_JOB_TTL"
    SWEEP_AFTER = "CONFIRM_SWEEP_AFTER"
    SWEEP_INTERVAL = "CONFIRM_SWEEP_INTERVAL"
    RETRIES = "CONFIRM_RETRIES"
    RETRY_INTERVALS = "CONFIRM_RETRY_INTERVALS"
    RESEND_ADDRESS_LIMIT = "CONFIRM_RESEND_ADDRESS_LIMIT"
    RESEND_IP_LIMIT = "CONFIRM_RESEND_IP_LIMIT"
    MAX_CONTENT_LENGTH = "CONFIRM_MAX_CONTENT_LENGTH"
    MAX_SEND_RATE = "CONFIRM_MAX_SEND_RATE"
    BATCH_SIZE = "CONFIRM_BATCH_SIZE"
    COALESCE = "CONFIRM_COALESCE"
    MESSAGES = "CONFIRM_MESSAGES"
    PASSWORD_RESET = "CONFIRM_PASSWORD_RESET"
    PASSWORD_RESET_MAX_AGE = "CONFIRM_PASSWORD_RESET_MAX_AGE"
    PASSWORD_HASH_ATTRIBUTE = "CONFIRM_PASSWORD_HASH_ATTRIBUTE"
    PASSWORD_MIN_LENGTH = "CONFIRM_PASSWORD_MIN_LENGTH"
    EMAIL_ATTRIBUTE = "CONFIRM_EMAIL_ATTRIBUTE"
    BIND_SESSIONS = "CONFIRM_BIND_SESSIONS"


#: Defaults put into ``app.config`` with ``setdefault``. ``CONFIRM_ASYNC`` and
#: ``CONFIRM_MAIL_FROM`` depend on the app and are filled in by :func:`load`.
DEFAULTS: dict[str, t.Any] = {
    Keys.REDIS_URL: "redis://localhost:6379/0",
    Keys.QUEUE: "confirm",
    Keys.SENDER: "smtp",
    Keys.SUBJECT: "Confirm your email address",
    Keys.TOKEN_MAX_AGE: 86400,
    Keys.EXTERNAL_URL: None,
    Keys.URL_PREFIX: "/confirm",
    Keys.REDIRECT_URL: "/",
    Keys.RESET_REDIRECT_URL: None,
    Keys.BASE_TEMPLATE: None,
    Keys.CONTENT_SECURITY_POLICY: (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
    Keys.SUBDOMAIN: None,
    Keys.ON_GET: False,
    Keys.SES_REGION: None,
    Keys.SMTP_CA_FILE: None,
    Keys.SMTP_VERIFY_TLS: True,
    Keys.SMTP_TIMEOUT: 30,
    Keys.DASHBOARD_URL: "/rq",
    Keys.DASHBOARD_ORIGINS: (),
    Keys.JOB_TIMEOUT: 60,
    Keys.FAILED_JOB_TTL: 7 * 86400,
    Keys.SWEEP_AFTER: 300,
    Keys.SWEEP_INTERVAL: 60,
    Keys.RETRIES: 5,
    Keys.RETRY_INTERVALS: (10, 60, 300, 900, 3600),
    Keys.RESEND_ADDRESS_LIMIT: "1 per 3 minutes; 5 per day",
    Keys.RESEND_IP_LIMIT: "20 per hour",
    Keys.MAX_CONTENT_LENGTH: 16 * 1024,
    Keys.MAX_SEND_RATE: None,
    Keys.BATCH_SIZE: 50,
    Keys.COALESCE: False,
    Keys.MESSAGES: {},
    Keys.PASSWORD_RESET: False,
    Keys.PASSWORD_RESET_MAX_AGE: 3600,
    Keys.PASSWORD_HASH_ATTRIBUTE: "password_hash",
    Keys.PASSWORD_MIN_LENGTH: 8,
    Keys.EMAIL_ATTRIBUTE: "email",
    Keys.BIND_SESSIONS: True,
}

#: The default :data:`CONFIRM_CONTENT_SECURITY_POLICY` when the pages extend
#: the app's own layout (:data:`CONFIRM_BASE_TEMPLATE`): that layout's
#: stylesheets, scripts, images and fonts come from the site itself, so
#: same-origin resources are allowed; inline scripts, plugins, framing and
#: other sites still are not.
APP_LAYOUT_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; object-src 'none';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

#: The kinds of message Flask-Confirm sends, each with its own templates
#: (``flask_confirm/mail/<kind>.txt`` and ``.html``) and, through
#: :data:`CONFIRM_MESSAGES`, its own subject and sender.
MESSAGE_KINDS = ("confirm", "email_change", "email_change_notice", "password_reset")

#: The fields a :data:`CONFIRM_MESSAGES` entry may set.
MESSAGE_FIELDS = ("subject", "sender")

#: The senders that can be named by a short name in ``CONFIRM_SENDER``.
SENDER_NAMES = ("smtp", "ses", "console", "memory")

#: Used as the From address by the development senders when none is set.
DEVELOPMENT_MAIL_FROM = "Flask-Confirm <no-reply@localhost>"


@dataclasses.dataclass(frozen=True)
class Settings:
    """The validated configuration of one application. Internal."""

    redis_url: str
    queue: str
    is_async: bool
    sender: str
    mail_from: str
    subject: str
    token_max_age: int
    external_url: str
    url_prefix: str
    redirect_url: str
    #: Where a password reset lands; ``None``: Flask-Login's login view if
    #: the app has one, else :attr:`redirect_url`.
    reset_redirect_url: str | None
    base_template: str | None
    content_security_policy: str | None
    subdomain: str | None
    on_get: bool
    ses_region: str | None
    #: A PEM file of the CA certificates to trust for the SMTP server's TLS
    #: certificate; ``None``: the system's.
    smtp_ca_file: str | None
    smtp_verify_tls: bool
    smtp_timeout: int
    dashboard_url: str | None
    #: The origins, besides :attr:`external_url`'s, whose pages may act on
    #: the dashboard, in :func:`origin_of`'s form.
    dashboard_origins: tuple[str, ...]
    job_timeout: int
    #: Seconds RQ keeps a failed job (and its redacted error) for the
    #: dashboard, rather than RQ's own year.
    failed_job_ttl: int
    sweep_after: int
    sweep_interval: int
    retries: int
    retry_intervals: tuple[int, ...]
    resend_address_limit: tuple[Window, ...]
    resend_ip_limit: tuple[Window, ...]
    max_content_length: int
    send_rate: Window | None
    batch_size: int
    coalesce: bool
    #: ``{kind: {"subject": ..., "sender": ...}}`` as configured; missing
    #: fields fall back to the defaults of :mod:`.messages`.
    messages: t.Mapping[str, t.Mapping[str, str]]
    password_reset: bool
    password_reset_max_age: int
    password_hash_attribute: str
    password_min_length: int
    #: The user model's attribute that holds the address.
    email_attribute: str
    #: Whether Flask-Login sessions and remember-me cookies are bound to the
    #: user's address and password hash (see :mod:`.logins`).
    bind_sessions: bool


def load(app: Flask) -> Settings:
    """Fill in defaults and validate the ``CONFIRM_*`` keys of ``app``.

    :raises ConfigError: naming the first key that cannot work, and the fix.
    """
    config = app.config
    if config.get(Keys.BASE_TEMPLATE):
        config.setdefault(
            Keys.CONTENT_SECURITY_POLICY, APP_LAYOUT_CONTENT_SECURITY_POLICY
        )
    for key, value in DEFAULTS.items():
        config.setdefault(key, value)
    config.setdefault(Keys.ASYNC, not app.testing)

    if not app.secret_key:
        raise ConfigError(
            "'SECRET_KEY' is not set. Confirmation links are signed with it: set"
            " app.config['SECRET_KEY'] to a long random string (for example"
            " secrets.token_hex(32)) before calling init_app."
        )

    sender = config[Keys.SENDER]
    if not isinstance(sender, str) or not (
        sender in SENDER_NAMES or "." in sender or ":" in sender
    ):
        raise ConfigError(
            f"{Keys.SENDER} = {sender!r} is not a sender. Use one of"
            f" {', '.join(map(repr, SENDER_NAMES))}, or the dotted path of a class"
            " implementing flask_confirm.senders.Sender."
        )

    mail_from = config.get(Keys.MAIL_FROM) or config.get("MAIL_DEFAULT_SENDER")
    if not mail_from:
        if sender in ("console", "memory"):
            mail_from = DEVELOPMENT_MAIL_FROM
        else:
            raise ConfigError(
                f"{Keys.MAIL_FROM} is not set. Set it (or Flask-Mail's"
                " MAIL_DEFAULT_SENDER) to the address confirmation mails come from,"
                " for example 'Example <no-reply@example.com>'."
            )
    if isinstance(mail_from, tuple):  # Flask-Mail accepts (name, address).
        mail_from = f"{mail_from[0]} <{mail_from[1]}>"

    return Settings(
        redis_url=_redis_url(config[Keys.REDIS_URL]),
        queue=_require_str(config, Keys.QUEUE),
        is_async=bool(config[Keys.ASYNC]),
        sender=sender,
        mail_from=str(mail_from),
        subject=_require_str(config, Keys.SUBJECT),
        token_max_age=_require_positive_int(config, Keys.TOKEN_MAX_AGE),
        external_url=_external_url(config.get(Keys.EXTERNAL_URL)),
        url_prefix=_url_prefix(config[Keys.URL_PREFIX]),
        redirect_url=_require_str(config, Keys.REDIRECT_URL),
        reset_redirect_url=_optional_str(config, Keys.RESET_REDIRECT_URL),
        base_template=_optional_str(config, Keys.BASE_TEMPLATE),
        content_security_policy=_content_security_policy(
            config[Keys.CONTENT_SECURITY_POLICY]
        ),
        subdomain=_subdomain(app, config[Keys.SUBDOMAIN]),
        on_get=bool(config[Keys.ON_GET]),
        ses_region=config[Keys.SES_REGION] or None,
        smtp_ca_file=_ca_file(config[Keys.SMTP_CA_FILE]),
        smtp_verify_tls=_require_bool(config, Keys.SMTP_VERIFY_TLS),
        smtp_timeout=_require_positive_int(config, Keys.SMTP_TIMEOUT),
        dashboard_url=_dashboard_url(config[Keys.DASHBOARD_URL]),
        dashboard_origins=_dashboard_origins(config[Keys.DASHBOARD_ORIGINS]),
        job_timeout=_require_positive_int(config, Keys.JOB_TIMEOUT),
        failed_job_ttl=_require_positive_int(config, Keys.FAILED_JOB_TTL),
        sweep_after=_require_int(config, Keys.SWEEP_AFTER, minimum=0),
        sweep_interval=_require_positive_int(config, Keys.SWEEP_INTERVAL),
        retries=_require_int(config, Keys.RETRIES, minimum=0),
        retry_intervals=_retry_intervals(config[Keys.RETRY_INTERVALS]),
        resend_address_limit=_limit(config, Keys.RESEND_ADDRESS_LIMIT),
        resend_ip_limit=_limit(config, Keys.RESEND_IP_LIMIT),
        max_content_length=_require_positive_int(
            config, Keys.MAX_CONTENT_LENGTH, "bytes"
        ),
        send_rate=_send_rate(config[Keys.MAX_SEND_RATE]),
        batch_size=_require_int(config, Keys.BATCH_SIZE, minimum=1),
        coalesce=bool(config[Keys.COALESCE]),
        messages=_messages(config[Keys.MESSAGES]),
        password_reset=bool(config[Keys.PASSWORD_RESET]),
        password_reset_max_age=_require_positive_int(
            config, Keys.PASSWORD_RESET_MAX_AGE
        ),
        password_hash_attribute=_require_str(config, Keys.PASSWORD_HASH_ATTRIBUTE),
        password_min_length=_require_int(config, Keys.PASSWORD_MIN_LENGTH, minimum=1),
        email_attribute=_require_str(config, Keys.EMAIL_ATTRIBUTE),
        bind_sessions=_require_bool(config, Keys.BIND_SESSIONS),
    )


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
