"""The validated configuration of one application, and :func:`load`, which
fills in the defaults and builds it, checking each key (with the checks of
:mod:`.checks` and :mod:`.urls`)."""

from __future__ import annotations

import dataclasses
import typing as t
import warnings

from ..errors import ConfigError
from ..limits import Window
from .checks import _ca_file
from .checks import _content_security_policy
from .checks import _limit
from .checks import _messages
from .checks import _optional_str
from .checks import _require_bool
from .checks import _require_int
from .checks import _require_positive_int
from .checks import _require_str
from .checks import _retry_intervals
from .checks import _send_rate
from .checks import _subdomain
from .events import _certificates
from .events import _topics
from .keys import APP_LAYOUT_CONTENT_SECURITY_POLICY
from .keys import DEFAULTS
from .keys import DEVELOPMENT_MAIL_FROM
from .keys import Keys
from .keys import SENDER_NAMES
from .smtp import dkim_key
from .smtp import DKIMKey
from .smtp import return_path
from .urls import _dashboard_origins
from .urls import _dashboard_url
from .urls import _external_url
from .urls import _redis_url
from .urls import _site_name
from .urls import _url_prefix

if t.TYPE_CHECKING:
    from flask import Flask


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
    #: The SES configuration set every message names (its event
    #: destinations publish bounces and complaints); ``None``: none.
    ses_configuration_set: str | None
    #: Seconds every worker stops sending after the provider refused the
    #: account itself (suspended, paused, MAIL FROM domain unverified).
    sending_pause: int
    #: Whether ``POST <prefix>/events/ses`` takes SES events from SNS.
    ses_events: bool
    #: The SNS topics whose messages it believes.
    ses_event_topics: tuple[str, ...]
    #: The limit on the endpoint, per client network.
    ses_event_limit: tuple[Window, ...]
    #: Pinned SNS signing certificates: URL to PEM.
    sns_certificates: dict[str, str]
    #: A PEM file of the CA certificates to trust for the SMTP server's TLS
    #: certificate; ``None``: the system's.
    smtp_ca_file: str | None
    smtp_verify_tls: bool
    smtp_timeout: int
    #: What the SMTP sender signs mail with; ``None``: unsigned.
    dkim: DKIMKey | None
    #: The base envelope sender of SMTP mail (``bounces@example.com``), which
    #: each mail tags with its recipient; ``None``: the From address.
    return_path: str | None
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
    #: ``{kind: {"subject": ..., "sender": ...}}`` as configured; missing
    #: fields fall back to the defaults of :mod:`.messages`.
    messages: t.Mapping[str, t.Mapping[str, str]]
    password_reset: bool
    password_reset_max_age: int
    password_hash_attribute: str
    password_min_length: int
    #: The user model's attribute that holds the address.
    email_attribute: str
    #: Whether a typed address's domain must accept mail (an MX lookup).
    check_deliverability: bool
    #: Whether Flask-Login sessions and remember-me cookies are bound to the
    #: user's address and password hash (see :mod:`.logins`).
    bind_sessions: bool
    #: The name of the suppression list's table (:mod:`.models.suppressions`).
    suppression_table: str
    #: The site's name as the mails show it (:data:`CONFIRM_SITE_NAME`, or
    #: the host of :attr:`external_url`).
    site_name: str


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

    if _require_bool(config, Keys.COALESCE):
        warnings.warn(
            f"{Keys.COALESCE} is deprecated and does nothing: confirmations now"
            " join the send job that waits for them by default, in jobs of up to"
            f" {Keys.BATCH_SIZE}. Remove the key.",
            DeprecationWarning,
            stacklevel=4,
        )
    external_url = _external_url(config.get(Keys.EXTERNAL_URL))
    return Settings(
        redis_url=_redis_url(config[Keys.REDIS_URL]),
        queue=_require_str(config, Keys.QUEUE),
        is_async=bool(config[Keys.ASYNC]),
        sender=sender,
        mail_from=str(mail_from),
        subject=_require_str(config, Keys.SUBJECT),
        token_max_age=_require_positive_int(config, Keys.TOKEN_MAX_AGE),
        external_url=external_url,
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
        ses_configuration_set=_optional_str(config, Keys.SES_CONFIGURATION_SET),
        sending_pause=_require_positive_int(config, Keys.SENDING_PAUSE),
        ses_events=_require_bool(config, Keys.SES_EVENTS),
        ses_event_topics=_topics(config, bool(config[Keys.SES_EVENTS])),
        ses_event_limit=_limit(config, Keys.SES_EVENT_LIMIT),
        sns_certificates=_certificates(config),
        smtp_ca_file=_ca_file(config[Keys.SMTP_CA_FILE]),
        smtp_verify_tls=_require_bool(config, Keys.SMTP_VERIFY_TLS),
        smtp_timeout=_require_positive_int(config, Keys.SMTP_TIMEOUT),
        dkim=dkim_key(config),
        return_path=return_path(config),
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
        messages=_messages(config[Keys.MESSAGES]),
        password_reset=bool(config[Keys.PASSWORD_RESET]),
        password_reset_max_age=_require_positive_int(
            config, Keys.PASSWORD_RESET_MAX_AGE
        ),
        password_hash_attribute=_require_str(config, Keys.PASSWORD_HASH_ATTRIBUTE),
        password_min_length=_require_int(config, Keys.PASSWORD_MIN_LENGTH, minimum=1),
        email_attribute=_require_str(config, Keys.EMAIL_ATTRIBUTE),
        check_deliverability=_require_bool(config, Keys.CHECK_DELIVERABILITY),
        bind_sessions=_require_bool(config, Keys.BIND_SESSIONS),
        suppression_table=_require_str(config, Keys.SUPPRESSION_TABLE),
        site_name=_site_name(config[Keys.SITE_NAME], external_url),
    )
