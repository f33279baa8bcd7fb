"""The ``smtp`` sender: Flask-Mail's settings, Flask-Confirm's own
connection, and the message built by :mod:`flask_confirm.mail.mime`."""

from __future__ import annotations

import dataclasses
import logging
import threading
import typing as t

from ..config import dkim_key
from ..config import Keys
from ..config import return_path
from ..errors import ConfigError
from ..mail.message import EmailMessage
from ..mail.mime import AUTO_SUBMITTED_HEADERS
from ..mail.mime import OutgoingMail
from ..mail.verp import ReturnPath

logger = logging.getLogger("flask_confirm")

if t.TYPE_CHECKING:
    import smtplib
    import ssl

    from flask import Flask


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

    Every mail says it was sent by a program (``Auto-Submitted:
    auto-generated``, ``X-Auto-Response-Suppress: All``), so that
    auto-responders do not answer it. With the ``CONFIRM_DKIM_*`` keys it is
    DKIM-signed (its bodies then never ``8bit``), and with
    :data:`CONFIRM_RETURN_PATH` its envelope sender is that address tagged
    with the recipient (:mod:`flask_confirm.mail.verp`), so that bounces go
    there, not to the From address.
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
        # Checked by init_app already; read again from the app, which is all
        # a sender is given.
        self._dkim = dkim_key(app.config)
        base = return_path(app.config)
        self._return_path = (
            None
            if base is None
            else ReturnPath.of(
                base,
                [
                    *(app.config.get("SECRET_KEY_FALLBACKS") or ()),
                    t.cast("str | bytes", app.secret_key),
                ],
            )
        )
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
        mail = OutgoingMail.prepare(
            message, message.sender or _default_sender(), self._return_path
        )
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
            data, options = mail.render(host, self._dkim)
            host.sendmail(mail.mail_from, [mail.to.envelope], data, options)
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
            extra_headers=dict(AUTO_SUBMITTED_HEADERS),
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
