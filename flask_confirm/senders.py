"""Ways of handing a rendered message to a mail provider.

A sender is made once per process (per worker, not per job) and reused, so it
can keep a connection or an API client open between messages. Choose one with
:data:`CONFIRM_SENDER`: ``"smtp"``, ``"ses"``, ``"console"``, ``"memory"``, or
the dotted path of your own class implementing :class:`Sender`.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import sys
import threading
import typing as t

from .config import Keys
from .errors import ConfigError
from .mime import ascii_address
from .mime import OutgoingMail

logger = logging.getLogger("flask_confirm")

if t.TYPE_CHECKING:
    import smtplib
    import ssl

    from flask import Flask

    from .config import Settings


@dataclasses.dataclass(frozen=True)
class EmailMessage:
    """A rendered mail (a confirmation, an email change link or notice, a
    password reset link), ready to send.

    It exists only in the worker, for the time it takes to send it: it may
    hold a link, so it is never stored or logged.
    """

    #: The recipient's address.
    to: str
    #: The From header: the kind's ``sender`` in :data:`CONFIRM_MESSAGES`, else
    #: :data:`CONFIRM_MAIL_FROM`.
    sender: str
    #: The subject: the kind's ``subject`` in :data:`CONFIRM_MESSAGES`, else its
    #: default (:data:`CONFIRM_SUBJECT` for confirmations).
    subject: str
    #: The plain-text part.
    text: str
    #: The HTML part.
    html: str


@t.runtime_checkable
class Sender(t.Protocol):
    """What Flask-Confirm needs of a sender.

    A class named in :data:`CONFIRM_SENDER` is called once per process with the
    application (``SenderClass(app)``) and must return an object with these
    methods. :meth:`send` raises on failure: raise
    :class:`.PermanentSendError` for a refusal that retrying cannot change,
    :class:`.TransientSendError` (or anything else) for one worth retrying.
    The worker records the reason on the user and lets RQ retry transient
    failures; :data:`.confirmation_failed` is sent when no retry follows.
    """

    def send(self, message: EmailMessage) -> str | None:
        """Send ``message``; return the provider's message id, if any."""

    def close(self) -> None:
        """Release connections. Called when the worker stops."""


class ConsoleSender:
    """Prints each message to standard output, for development.

    The printed text includes the link, which is the point in development and
    why this sender must not be used in production.
    """

    def __init__(self, app: Flask, stream: t.TextIO | None = None) -> None:
        self._stream = stream

    def send(self, message: EmailMessage) -> str | None:
        stream = self._stream or sys.stdout
        rule = "-" * 72
        print(
            f"{rule}\nFrom: {message.sender}\nTo: {message.to}\n"
            f"Subject: {message.subject}\n\n{message.text}\n{rule}",
            file=stream,
            flush=True,
        )
        return None

    def close(self) -> None:
        pass


class MemorySender:
    """Keeps sent messages in :attr:`outbox`, for tests.

    The outbox lives in the process that sends: with :data:`CONFIRM_ASYNC`
    false (the default under ``app.testing``) that is the test process.
    """

    def __init__(self, app: Flask) -> None:
        #: Every message sent, oldest first.
        self.outbox: list[EmailMessage] = []
        self._lock = threading.Lock()

    def send(self, message: EmailMessage) -> str | None:
        with self._lock:
            self.outbox.append(message)
            return f"memory-{len(self.outbox)}"

    def close(self) -> None:
        pass


class SMTPSender:
    """Sends through SMTP, configured by Flask-Mail's ``MAIL_*`` keys.

    Flask-Mail is set up on the app if the app has not done so itself, and
    its settings apply: ``MAIL_SERVER``, ``MAIL_PORT``, ``MAIL_USE_SSL``,
    ``MAIL_USE_TLS``, ``MAIL_USERNAME``/``MAIL_PASSWORD``. The connection is
    Flask-Confirm's own, though: TLS (``MAIL_USE_TLS`` or ``MAIL_USE_SSL``)
    verifies the server's certificate and name (:data:`CONFIRM_SMTP_CA_FILE`,
    :data:`CONFIRM_SMTP_VERIFY_TLS`), every socket operation has a timeout
    (:data:`CONFIRM_SMTP_TIMEOUT`), and ``MAIL_DEBUG`` is ignored, since the
    session it prints holds the links. One SMTP connection is opened on the
    first message and reused for the next ones (``MAIL_MAX_EMAILS``, if set,
    is the most sent over one connection); if the server has dropped it in
    between, it is reopened once and the message sent again. Flask-Mail's
    ``MAIL_SUPPRESS_SEND`` (true under ``app.testing``) is honoured, and its
    ``email_dispatched`` signal is sent when something listens to it.

    The message is built here, with the standard library, rather than as a
    Flask-Mail ``Message``, whose serialisation was most of the CPU a mail
    cost (and whose ``Message-ID`` asked for the host's name each time): a
    ``multipart/alternative`` of the text and the HTML part in UTF-8 (``7bit``
    when ASCII, else ``8bit`` if the server offers ``8BITMIME`` and
    quoted-printable if not), with From, To, Subject, Date and a
    ``Message-ID`` on the From address's domain, which :meth:`send` returns.
    Internationalised domains are sent in their ASCII (IDNA) form. An address
    whose local part is not ASCII needs a server that offers ``SMTPUTF8``;
    without it the recipient's raises :class:`.PermanentSendError` and the
    sender's (a configuration problem) :class:`.TransientSendError`.
    """

    def __init__(self, app: Flask) -> None:
        try:
            import flask_mail
        except ImportError as e:
            raise ConfigError(
                f"{Keys.SENDER} = 'smtp' needs Flask-Mail: install"
                " 'flask-confirm[smtp]', or choose another sender."
            ) from e
        self._flask_mail = flask_mail
        if "mail" not in app.extensions:
            flask_mail.Mail(app)
        self._tls = _tls_context(app)
        self._timeout: int = app.config[Keys.SMTP_TIMEOUT]
        self._connection: _Connection | None = None
        #: Messages sent over the current connection, for ``MAIL_MAX_EMAILS``.
        self._sent = 0
        # One connection is shared by whoever sends from this process: a
        # threaded web server sending inline must not interleave two sessions.
        self._lock = threading.RLock()

    def _open(self) -> _Connection:
        """Connect as Flask-Mail's settings say, with a verified TLS context
        and never a session transcript.

        Flask-Mail's own connection is not used: it calls ``starttls()``
        without a context (on Python before 3.12 the server's certificate is
        then not checked, so a man in the middle would read the password),
        waits forever on a silent server, and with ``MAIL_DEBUG`` (on with
        ``app.debug``) prints the whole session, links and AUTH included, to
        standard error.
        """
        import smtplib

        from flask import current_app

        mail = current_app.extensions["mail"]
        if mail.suppress:
            return _Connection(None, mail.max_emails)
        host: smtplib.SMTP
        if mail.use_ssl:
            host = smtplib.SMTP_SSL(
                mail.server, mail.port, timeout=self._timeout, context=self._tls
            )
        else:
            host = smtplib.SMTP(mail.server, mail.port, timeout=self._timeout)
        try:
            host.set_debuglevel(0)
            if mail.use_tls:
                host.starttls(context=self._tls)
            if mail.username and mail.password:
                host.login(mail.username, mail.password)
        except BaseException:
            host.close()
            raise
        return _Connection(host, mail.max_emails)

    def send(self, message: EmailMessage) -> str | None:
        mail = OutgoingMail.prepare(message, message.sender or _default_sender())
        with self._lock:
            self._send(mail)
        if self._flask_mail.email_dispatched.receivers:
            self._dispatched(message, mail)
        return mail.message_id

    def _send(self, mail: OutgoingMail) -> None:
        import smtplib

        reused = self._connection is not None
        try:
            try:
                self._deliver(mail)
            except (
                smtplib.SMTPServerDisconnected,
                ConnectionResetError,
                BrokenPipeError,
            ):
                if not reused:
                    raise
                # The server closed the connection kept from an earlier message
                # while the worker was idle: reconnect once and try again.
                self.close()
                self._deliver(mail)
        except BaseException:
            # After any failure the connection's state is unknown; start afresh.
            self.close()
            raise

    def _deliver(self, mail: OutgoingMail) -> None:
        if self._connection is None:
            self._connection = self._open()
            self._sent = 0
        host = self._connection.host
        if host is not None:  # None: MAIL_SUPPRESS_SEND
            data, options = mail.render(host)
            host.sendmail(mail.sender.envelope, [mail.to.envelope], data, options)
        self._sent += 1
        if self._sent == self._connection.max_emails:
            self.close()

    def _dispatched(self, message: EmailMessage, mail: OutgoingMail) -> None:
        """Send Flask-Mail's ``email_dispatched`` with a Flask-Mail message,
        as Flask-Mail itself would, for apps that record mails with it."""
        from flask import current_app

        flask_message = self._flask_mail.Message(
            subject=message.subject,
            recipients=[message.to],
            body=message.text,
            html=message.html,
            sender=message.sender or None,
        )
        flask_message.msgId = mail.message_id
        self._flask_mail.email_dispatched.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            message=flask_message,
        )

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        host = connection.host if connection is not None else None
        if host is not None:
            try:
                host.quit()
            except Exception:
                host.close()


@dataclasses.dataclass
class _Connection:
    """An open SMTP session and how many mails it may carry. Internal."""

    #: ``None`` when Flask-Mail's ``MAIL_SUPPRESS_SEND`` is on.
    host: smtplib.SMTP | None
    max_emails: int | None


def _tls_context(app: Flask) -> ssl.SSLContext:
    """The TLS context for ``MAIL_USE_TLS`` and ``MAIL_USE_SSL``: the
    server's certificate is verified against :data:`CONFIRM_SMTP_CA_FILE`
    or the system's CAs, and its host name checked, unless
    :data:`CONFIRM_SMTP_VERIFY_TLS` is false."""
    import ssl

    if app.config[Keys.SMTP_VERIFY_TLS]:
        return ssl.create_default_context(cafile=app.config[Keys.SMTP_CA_FILE])
    logger.warning(
        "%s is False: the SMTP server's TLS certificate is not verified, so"
        " anyone on the network path can read the mails and the password.",
        Keys.SMTP_VERIFY_TLS,
    )
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _default_sender() -> str:
    from flask import current_app

    sender = current_app.extensions["mail"].default_sender
    if isinstance(sender, tuple):  # Flask-Mail accepts (name, address).
        sender = f"{sender[0]} <{sender[1]}>"
    if not sender:
        raise ValueError(f"No sender address: set {Keys.MAIL_FROM}.")
    return t.cast(str, sender)


class SESSender:
    """Sends through Amazon SES (the v2 API) with boto3.

    Credentials and the endpoint come from boto3's standard chain (environment,
    shared config, instance role; ``AWS_ENDPOINT_URL`` is honoured), the region
    from :data:`CONFIRM_SES_REGION` or that chain. The client is made on the
    first message and reused. The returned message id is SES's ``MessageId``.
    Addresses are passed as SES asks: a non-ASCII name as encoded words, an
    internationalised domain in IDNA; a local part that is not ASCII, which
    SES cannot carry, is refused (permanently for a recipient).
    """

    def __init__(self, app: Flask) -> None:
        try:
            import boto3
        except ImportError as e:
            raise ConfigError(
                f"{Keys.SENDER} = 'ses' needs boto3: install 'flask-confirm[ses]',"
                " or choose another sender."
            ) from e
        self._boto3 = boto3
        self._region: str | None = app.config.get(Keys.SES_REGION) or None
        self._client: t.Any = None

    @property
    def client(self) -> t.Any:
        """The ``sesv2`` client, made on first use."""
        if self._client is None:
            self._client = self._boto3.client("sesv2", region_name=self._region)
        return self._client

    def send(self, message: EmailMessage) -> str | None:
        response = self.client.send_email(
            FromEmailAddress=ascii_address(message.sender, "sender", "SES"),
            Destination={
                "ToAddresses": [ascii_address(message.to, "recipient", "SES")]
            },
            Content={
                "Simple": {
                    "Subject": {"Data": message.subject, "Charset": "UTF-8"},
                    "Body": {
                        "Text": {"Data": message.text, "Charset": "UTF-8"},
                        "Html": {"Data": message.html, "Charset": "UTF-8"},
                    },
                }
            },
        )
        return t.cast("str", response["MessageId"])

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


_BUILTIN: dict[str, type[t.Any]] = {
    "smtp": SMTPSender,
    "ses": SESSender,
    "console": ConsoleSender,
    "memory": MemorySender,
}


def make_sender(app: Flask, settings: Settings) -> Sender:
    """Make the sender named by :data:`CONFIRM_SENDER`. Internal.

    :raises ConfigError: the name or path does not lead to a usable class.
    """
    name = settings.sender
    cls = _BUILTIN.get(name) or _import_class(name)
    try:
        sender = cls(app)
    except ConfigError:
        raise
    except TypeError as e:
        raise ConfigError(
            f"{Keys.SENDER} = {name!r}: the class must accept the app as its only"
            f" argument ({e})."
        ) from e
    if not isinstance(sender, Sender):
        raise ConfigError(
            f"{Keys.SENDER} = {name!r} does not implement the Sender protocol: it"
            " needs send(message) and close() methods."
        )
    return sender


def _import_class(path: str) -> type[t.Any]:
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(
            f"{Keys.SENDER} = {path!r} cannot be imported ({e}). Use one of"
            " 'smtp', 'ses', 'console', 'memory', or 'package.module.ClassName'."
        ) from e
    if not isinstance(cls, type):
        raise ConfigError(f"{Keys.SENDER} = {path!r} is not a class.")
    return cls
