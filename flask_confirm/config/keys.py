"""The names of the ``CONFIRM_*`` configuration keys, their defaults, and the
fixed sets some of them choose from (message kinds, sender names)."""

from __future__ import annotations

import typing as t


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
    SES_CONFIGURATION_SET = "CONFIRM_SES_CONFIGURATION_SET"
    SENDING_PAUSE = "CONFIRM_SENDING_PAUSE"
    SES_EVENTS = "CONFIRM_SES_EVENTS"
    SES_EVENT_TOPICS = "CONFIRM_SES_EVENT_TOPICS"
    SES_EVENT_LIMIT = "CONFIRM_SES_EVENT_LIMIT"
    SNS_CERTIFICATES = "CONFIRM_SNS_CERTIFICATES"
    SMTP_CA_FILE = "CONFIRM_SMTP_CA_FILE"
    SMTP_VERIFY_TLS = "CONFIRM_SMTP_VERIFY_TLS"
    SMTP_TIMEOUT = "CONFIRM_SMTP_TIMEOUT"
    DKIM_DOMAIN = "CONFIRM_DKIM_DOMAIN"
    DKIM_SELECTOR = "CONFIRM_DKIM_SELECTOR"
    DKIM_PRIVATE_KEY = "CONFIRM_DKIM_PRIVATE_KEY"
    RETURN_PATH = "CONFIRM_RETURN_PATH"
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
    CHECK_DELIVERABILITY = "CONFIRM_CHECK_DELIVERABILITY"
    BIND_SESSIONS = "CONFIRM_BIND_SESSIONS"
    SUPPRESSION_TABLE = "CONFIRM_SUPPRESSION_TABLE"
    SITE_NAME = "CONFIRM_SITE_NAME"


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
    Keys.SES_CONFIGURATION_SET: None,
    Keys.SENDING_PAUSE: 900,
    Keys.SES_EVENTS: False,
    Keys.SES_EVENT_TOPICS: (),
    Keys.SES_EVENT_LIMIT: "600 per minute",
    Keys.SNS_CERTIFICATES: {},
    Keys.SMTP_CA_FILE: None,
    Keys.SMTP_VERIFY_TLS: True,
    Keys.SMTP_TIMEOUT: 30,
    Keys.DKIM_DOMAIN: None,
    Keys.DKIM_SELECTOR: None,
    Keys.DKIM_PRIVATE_KEY: None,
    Keys.RETURN_PATH: None,
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
    Keys.CHECK_DELIVERABILITY: False,
    Keys.BIND_SESSIONS: True,
    Keys.SUPPRESSION_TABLE: "confirm_suppressions",
    Keys.SITE_NAME: None,
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
