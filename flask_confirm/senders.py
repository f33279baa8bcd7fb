"""Ways of handing a rendered message to a mail provider.

A sender is made once per process (per worker, not per job) and reused, so it
can keep a connection or an API client open between messages. Choose one with
:data:`CONFIRM_SENDER`: ``"smtp"``, ``"ses"``, ``"console"``, ``"memory"``, or
the dotted path of your own class implementing :class:`Sender`.
"""

from __future__ import annotations

import dataclasses
import email.charset
import email.header
import email.message
import email.policy
import email.utils
import functools
import importlib
import os
import re
import sys
import threading
import typing as t

from .config import Keys
from .errors import ConfigError
from .faults import PermanentSendError
from .faults import TransientSendError

if t.TYPE_CHECKING:
    import smtplib

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
    opens the connection: ``MAIL_SERVER``, ``MAIL_PORT``, ``MAIL_USE_SSL``,
    ``MAIL_USE_TLS``, ``MAIL_USERNAME``/``MAIL_PASSWORD`` and ``MAIL_DEBUG``
    apply as in Flask-Mail. One SMTP connection is opened on the first message
    and reused for the next ones (``MAIL_MAX_EMAILS``, if set, is the most sent
    over one connection); if the server has dropped it in between, it is
    reopened once and the message sent again. Flask-Mail's
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
        self._connection: t.Any = None
        #: Messages sent over the current connection, for ``MAIL_MAX_EMAILS``.
        self._sent = 0
        # One connection is shared by whoever sends from this process: a
        # threaded web server sending inline must not interleave two sessions.
        self._lock = threading.RLock()

    def _open(self) -> t.Any:
        from flask import current_app

        connection = self._flask_mail.Connection(current_app.extensions["mail"])
        connection.__enter__()
        return connection

    def send(self, message: EmailMessage) -> str | None:
        mail = _OutgoingMail.prepare(message)
        with self._lock:
            self._send(mail)
        if self._flask_mail.email_dispatched.receivers:
            self._dispatched(message, mail)
        return mail.message_id

    def _send(self, mail: _OutgoingMail) -> None:
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

    def _deliver(self, mail: _OutgoingMail) -> None:
        if self._connection is None:
            self._connection = self._open()
            self._sent = 0
        host: smtplib.SMTP | None = self._connection.host
        if host is not None:  # None: MAIL_SUPPRESS_SEND
            data, options = mail.render(host)
            host.sendmail(mail.sender.envelope, [mail.to.envelope], data, options)
        self._sent += 1
        if self._sent == self._connection.mail.max_emails:
            self.close()

    def _dispatched(self, message: EmailMessage, mail: _OutgoingMail) -> None:
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
        host: smtplib.SMTP | None = getattr(connection, "host", None)
        if host is not None:
            try:
                host.quit()
            except Exception:
                host.close()


# -- Building SMTP messages ---------------------------------------------------

#: The longest line, in octets before CRLF, a 7bit or 8bit body may have
#: (RFC 5322, section 2.1.1); longer ones are sent quoted-printable.
_MAX_LINE = 998


def _quoted_utf8() -> email.charset.Charset:
    # Set explicitly: Flask-Mail, when imported, changes the global defaults
    # for "utf-8" (8bit bodies, shortest header encoding).
    charset = email.charset.Charset("utf-8")
    charset.header_encoding = email.charset.SHORTEST
    charset.body_encoding = email.charset.QP
    charset.output_charset = "utf-8"
    return charset


#: For what must be 7-bit: quoted-printable bodies, encoded-word headers.
_QUOTED = _quoted_utf8()


class _Folded(str):
    """A header value folded already (with CRLF), to be written as it is."""


class _Policy(email.policy.Compat32):
    """``compat32`` with CRLF line ends, which writes short ASCII header values
    and values folded beforehand (:class:`_Folded`) as they are. Re-folding
    every header through :class:`email.header.Header` is most of what it costs
    to serialise a message; the values written as they are here are the ones
    it would leave unchanged. Others (long ones, and raw UTF-8 addresses for
    SMTPUTF8) take compat32's own way."""

    def fold_binary(self, name: str, value: t.Any) -> bytes:
        if isinstance(value, _Folded) or (
            isinstance(value, str)
            and len(name) + len(value) <= 76
            and value.isascii()
            and "\n" not in value
            and "\r" not in value
        ):
            return f"{name}: {value}\r\n".encode("ascii")
        return super().fold_binary(name, value)


_POLICY = _Policy(linesep="\r\n")

#: Characters that make an address more than a bare ``local@domain``.
_NOT_BARE = re.compile(r"[\s<>()\[\],;:\"\\]")
#: ``Name <address>``, for a From whose name is not quoted as it should be
#: (``Example, Inc. <no-reply@example.com>``).
_NAME_ADDR = re.compile(r"(.*?)\s*<([^<>]+)>\s*")
#: Characters that make a display name need quotes (as ``formataddr``).
_SPECIALS = re.compile(r"[][\\()<>@,:;\".]")


@dataclasses.dataclass(frozen=True)
class _Address:
    #: The From or To header's value: encoded for 7-bit transport, or raw
    #: UTF-8 (as surrogate escapes) when :attr:`international`.
    header: str
    #: For MAIL FROM and RCPT TO: the local part as it is, the domain in IDNA.
    envelope: str
    #: The domain, in its ASCII (IDNA) form.
    domain: str
    #: The local part is not ASCII: SMTPUTF8 is needed.
    international: bool


def _address(value: str, role: str) -> _Address:
    """The address ``value`` (``local@domain`` or ``Name <local@domain>``)
    ready for the header and the envelope."""
    if value.isascii() and "@" in value and not _NOT_BARE.search(value):
        # The common case, per message: a plain ASCII address as it is.
        return _Address(value, value, value.rpartition("@")[2], False)
    return _parse_address(value, role)


@functools.lru_cache(maxsize=64)
def _parse_address(value: str, role: str) -> _Address:
    if "\r" in value or "\n" in value:
        raise ValueError(f"The {role} address contains a line break.")
    pairs = email.utils.getaddresses([value])
    if len(pairs) == 1 and "@" in pairs[0][1]:
        name, addr_spec = pairs[0]
    elif match := _NAME_ADDR.fullmatch(value.strip()):
        name, addr_spec = match[1].strip('"'), match[2].strip()
    else:
        raise ValueError(f"The {role} address is not one email address.")
    local, _, domain = addr_spec.rpartition("@")
    if not local or not domain:
        raise ValueError(f"The {role} address is not one email address.")
    domain = _ascii_domain(domain)
    addr_spec = f"{local}@{domain}"
    if not name:
        header = addr_spec
    elif name.isascii():
        quote = '"' if _SPECIALS.search(name) else ""
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        header = f"{quote}{escaped}{quote} <{addr_spec}>"
    else:
        # Encoded words of at most 75 characters, separated by spaces.
        words = email.header.Header(name, _QUOTED).encode(linesep="")
        header = f"{words} <{addr_spec}>"
    international = not local.isascii()
    if international:
        # Written raw (SMTPUTF8): the generator writes the surrogate escapes
        # back as the UTF-8 bytes they stand for.
        header = header.encode("utf-8").decode("ascii", "surrogateescape")
    else:
        header = _fold("From" if role == "sender" else "To", header)
    return _Address(header, addr_spec, domain, international)


@functools.lru_cache(maxsize=256)
def _ascii_domain(domain: str) -> str:
    return domain if domain.isascii() else domain.encode("idna").decode("ascii")


def _fold(name: str, value: str) -> _Folded:
    """``value`` folded as compat32 would fold it (encoded words if it is not
    ASCII), once, to be cached."""
    charset = None if value.isascii() else _QUOTED
    header = email.header.Header(value, charset, header_name=name)
    return _Folded(header.encode(linesep="\r\n"))


@functools.lru_cache(maxsize=64)
def _subject(subject: str) -> _Folded:
    if "\r" in subject or "\n" in subject:
        raise ValueError("The subject contains a line break.")
    return _fold("Subject", subject)


def _fits_as_is(text: str) -> bool:
    """No line of ``text`` is too long to send without an encoding."""
    data = text.encode("utf-8")
    return len(data) <= _MAX_LINE or max(map(len, data.splitlines())) <= _MAX_LINE


@dataclasses.dataclass(frozen=True)
class _OutgoingMail:
    """One message on its way over SMTP: everything but its bytes, which
    depend on what the server offers (:meth:`render`)."""

    sender: _Address
    to: _Address
    subject: _Folded
    date: str
    message_id: str
    text: str
    html: str

    @classmethod
    def prepare(cls, message: EmailMessage) -> _OutgoingMail:
        sender = _address(message.sender or _default_sender(), "sender")
        return cls(
            sender=sender,
            to=_address(message.to, "recipient"),
            subject=_subject(message.subject),
            date=email.utils.formatdate(localtime=True),
            # With a domain, make_msgid does not ask for the host's name.
            message_id=email.utils.make_msgid(domain=sender.domain),
            text=message.text,
            html=message.html,
        )

    def render(self, host: smtplib.SMTP) -> tuple[bytes, list[str]]:
        """The message's bytes and the MAIL FROM options, for ``host``."""
        host.ehlo_or_helo_if_needed()
        options: list[str] = []
        eight_bit = host.has_extn("8bitmime")
        if self.sender.international or self.to.international:
            if not host.has_extn("smtputf8"):
                if self.sender.international:
                    raise TransientSendError(
                        f"The sender address ({Keys.MAIL_FROM}) is not ASCII before"
                        " the @, which needs SMTPUTF8; the SMTP server does not"
                        " offer it."
                    )
                raise PermanentSendError(
                    "The recipient's address is not ASCII before the @, which"
                    " needs SMTPUTF8; the SMTP server does not offer it."
                )
            options.append("SMTPUTF8")
            eight_bit = True
        root = email.message.Message(policy=_POLICY)
        root["From"] = self.sender.header
        root["To"] = self.to.header
        root["Subject"] = self.subject
        root["Date"] = self.date
        root["Message-ID"] = self.message_id
        root["MIME-Version"] = "1.0"
        boundary = _boundary(self.text, self.html)
        root["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
        for body, subtype in ((self.text, "plain"), (self.html, "html")):
            part = email.message.Message(policy=_POLICY)
            part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
            if body.isascii() and _fits_as_is(body):
                part["Content-Transfer-Encoding"] = "7bit"
                part.set_payload(body)
            elif eight_bit and _fits_as_is(body):
                part["Content-Transfer-Encoding"] = "8bit"
                # As surrogate escapes, which the generator writes as bytes.
                part.set_payload(body.encode().decode("ascii", "surrogateescape"))
                if "BODY=8BITMIME" not in options:
                    options.append("BODY=8BITMIME")
            else:
                part["Content-Transfer-Encoding"] = "quoted-printable"
                part.set_payload(_QUOTED.body_encode(body))
            root.attach(part)
        if "SMTPUTF8" in options and "BODY=8BITMIME" not in options:
            options.append("BODY=8BITMIME")  # RFC 6531: SMTPUTF8 goes with it
        return root.as_bytes(policy=_POLICY), options


def _boundary(*bodies: str) -> str:
    # Set here: the generator would otherwise make one and compile a regular
    # expression to check it, for each message. "=_" never occurs in
    # quoted-printable; the check covers the bodies sent as they are.
    while True:
        boundary = "=_" + os.urandom(12).hex()
        if not any(boundary in body for body in bodies):
            return boundary


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
