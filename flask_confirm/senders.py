"""Ways of handing a rendered message to a mail provider.

A sender is made once per process (per worker, not per job) and reused, so it
can keep a connection or an API client open between messages. Choose one with
:data:`CONFIRM_SENDER`: ``"smtp"``, ``"ses"``, ``"console"``, ``"memory"``, or
the dotted path of your own class implementing :class:`Sender`.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import threading
import typing as t

from .config import Keys
from .errors import ConfigError

if t.TYPE_CHECKING:
    import smtplib

    from flask import Flask

    from .config import Settings


@dataclasses.dataclass(frozen=True)
class EmailMessage:
    """A rendered confirmation mail, ready to send.

    It exists only in the worker, for the time it takes to send it: it holds
    the link, so it is never stored or logged.
    """

    #: The recipient's address.
    to: str
    #: The From header, as in :data:`CONFIRM_MAIL_FROM`.
    sender: str
    #: The subject, as in :data:`CONFIRM_SUBJECT`.
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
    """Sends through SMTP with Flask-Mail, configured by its ``MAIL_*`` keys.

    Flask-Mail is set up on the app if the app has not done so itself. One SMTP
    connection is opened on the first message and reused for the next ones; if
    the server has dropped it in between, it is reopened once and the message
    sent again. Flask-Mail's ``MAIL_SUPPRESS_SEND`` (true under
    ``app.testing``) is honoured.
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
        self._connection: t.Any = None
        # One connection is shared by whoever sends from this process: a
        # threaded web server sending inline must not interleave two sessions.
        self._lock = threading.RLock()

    def _open(self) -> t.Any:
        from flask import current_app

        connection = self._flask_mail.Connection(current_app.extensions["mail"])
        connection.__enter__()
        return connection

    def send(self, message: EmailMessage) -> str | None:
        mail_message = self._flask_mail.Message(
            subject=message.subject,
            recipients=[message.to],
            body=message.text,
            html=message.html,
            sender=message.sender,
        )
        with self._lock:
            return self._send(mail_message)

    def _send(self, mail_message: t.Any) -> str:
        import smtplib

        reused = self._connection is not None
        try:
            try:
                if self._connection is None:
                    self._connection = self._open()
                self._connection.send(mail_message)
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
                self._connection = self._open()
                self._connection.send(mail_message)
        except BaseException:
            # After any failure the connection's state is unknown; start afresh.
            self.close()
            raise
        return str(mail_message.msgId)

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        host: smtplib.SMTP | None = getattr(connection, "host", None)
        if host is not None:
            try:
                host.quit()
            except Exception:
                host.close()


class SESSender:
    """Sends through Amazon SES (the v2 API) with boto3.

    Credentials and the endpoint come from boto3's standard chain (environment,
    shared config, instance role; ``AWS_ENDPOINT_URL`` is honoured), the region
    from :data:`CONFIRM_SES_REGION` or that chain. The client is made on the
    first message and reused. The returned message id is SES's ``MessageId``.
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
            FromEmailAddress=message.sender,
            Destination={"ToAddresses": [message.to]},
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
