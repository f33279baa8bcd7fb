"""Senders, each against its real counterpart: an SMTP server, moto's SES."""

from __future__ import annotations

import collections.abc as cabc
import copy
import dataclasses
import email.header
import email.utils
import io
import re
import smtplib
import socket
import ssl
import threading
import time
import typing as t
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from botocore.exceptions import ClientError
from flask import Flask

from conftest import AppFactory
from conftest import DKIMTestKey
from conftest import free_port
from conftest import SESServer
from conftest import SMTPServer
from conftest import SMTPSink
from flask_confirm import ConfigError
from flask_confirm import EmailMessage
from flask_confirm import PermanentSendError
from flask_confirm import Sender
from flask_confirm import TransientSendError
from flask_confirm.faults import is_permanent
from flask_confirm.mail.verp import ReturnPath
from flask_confirm.senders import ConsoleSender
from flask_confirm.senders import MemorySender
from flask_confirm.senders import SESSender
from flask_confirm.senders import SMTPSender


def message(
    to: str = "ada@example.org", sender: str = "no-reply@example.test"
) -> EmailMessage:
    return EmailMessage(
        to=to,
        sender=sender,
        subject="Confirm your email address",
        text="Open https://app.example.test/confirm/abc",
        html="<a href='https://app.example.test/confirm/abc'>Confirm</a>",
    )


class RecordingSender:
    """A custom sender, as an app would write one, named by dotted path."""

    sent: t.ClassVar[list[EmailMessage]] = []

    def __init__(self, app: Flask) -> None:
        self.app = app

    def send(self, message: EmailMessage) -> str | None:
        self.sent.append(message)
        return "recorded"

    def close(self) -> None:
        pass


def test_builtin_senders_implement_protocol(app: Flask) -> None:
    for cls in (ConsoleSender, MemorySender, SMTPSender, SESSender):
        assert isinstance(cls(app), Sender)


def test_custom_sender_by_dotted_path(make_app: AppFactory) -> None:
    RecordingSender.sent.clear()
    app = make_app(CONFIRM_SENDER="test_senders.RecordingSender")
    with app.app_context():
        assert isinstance(app.extensions["confirm"].sender, RecordingSender)
    app.test_client().post("/register", data={"email": "ada@example.org"})
    (sent,) = RecordingSender.sent
    assert sent.to == "ada@example.org"


def test_console_sender_prints_the_mail(app: Flask) -> None:
    stream = io.StringIO()
    ConsoleSender(app, stream=stream).send(message())
    out = stream.getvalue()
    assert "To: ada@example.org" in out
    assert "Subject: Confirm your email address" in out
    assert "https://app.example.test/confirm/abc" in out


def test_memory_sender_keeps_messages(app: Flask) -> None:
    sender = MemorySender(app)
    assert sender.send(message()) == "memory-1"
    assert sender.send(message(to="b@example.org")) == "memory-2"
    assert [m.to for m in sender.outbox] == ["ada@example.org", "b@example.org"]


# -- SMTP ---------------------------------------------------------------------


@pytest.fixture()
def smtp_app(make_app: AppFactory, smtp_server: SMTPServer) -> Flask:
    return make_app(**smtp_server.config)


def test_smtp_sends_text_and_html(smtp_app: Flask, smtp_server: SMTPServer) -> None:
    with smtp_app.app_context():
        sender = SMTPSender(smtp_app)
        message_id = sender.send(message())
        sender.close()
    (received,) = smtp_server.messages
    assert received["Message-ID"] == message_id
    assert received["From"] == "no-reply@example.test"
    assert (
        "https://app.example.test/confirm/abc"
        in received.get_body(("plain",)).get_content()
    )
    assert "<a href=" in received.get_body(("html",)).get_content()


def test_smtp_reuses_one_connection(smtp_app: Flask, smtp_server: SMTPServer) -> None:
    with smtp_app.app_context():
        sender = SMTPSender(smtp_app)
        for i in range(5):
            sender.send(message(to=f"user{i}@example.org"))
        sender.close()
    assert len(smtp_server.messages) == 5
    assert smtp_server.sink.connections == 1


@pytest.fixture()
def impatient_smtp() -> cabc.Iterator[Controller]:
    """An SMTP server that drops connections idle for more than 0.3 s."""
    controller = Controller(
        SMTPSink(), hostname="127.0.0.1", port=free_port(), timeout=0.3
    )
    controller.start()
    yield controller
    controller.stop()


def test_smtp_reconnects_when_server_dropped_idle_connection(
    make_app: AppFactory, impatient_smtp: Controller
) -> None:
    app = make_app(
        CONFIRM_SENDER="smtp",
        MAIL_SERVER=impatient_smtp.hostname,
        MAIL_PORT=impatient_smtp.port,
        MAIL_SUPPRESS_SEND=False,
    )
    with app.app_context():
        sender = SMTPSender(app)
        first = sender.send(message(to="first@example.org"))
        time.sleep(0.8)
        second = sender.send(message(to="second@example.org"))
        sender.close()
    sink: SMTPSink = impatient_smtp.handler
    assert [m["To"] for m in sink.messages] == [
        "first@example.org",
        "second@example.org",
    ]
    assert [m["Message-ID"] for m in sink.messages] == [first, second]
    assert first != second
    assert sink.connections == 2


class RejectingSink(SMTPSink):
    async def handle_RCPT(
        self,
        server: t.Any,
        session: t.Any,
        envelope: t.Any,
        address: str,
        options: t.Any,
    ) -> str:
        return "550 5.1.1 No such user here"


def test_smtp_rejection_raises_and_resets_connection(make_app: AppFactory) -> None:
    controller = Controller(RejectingSink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        app = make_app(
            CONFIRM_SENDER="smtp",
            MAIL_SERVER=controller.hostname,
            MAIL_PORT=controller.port,
            MAIL_SUPPRESS_SEND=False,
        )
        with app.app_context():
            sender = SMTPSender(app)
            with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
                sender.send(message())
            assert is_permanent(info.value)
            assert sender._connection is None
    finally:
        controller.stop()
    assert controller.handler.messages == []


def test_smtp_honours_flask_mail_suppress_send(
    make_app: AppFactory, smtp_server: SMTPServer
) -> None:
    app = make_app(**{**smtp_server.config, "MAIL_SUPPRESS_SEND": True})
    with app.app_context():
        SMTPSender(app).send(message())
    assert smtp_server.messages == []
    assert smtp_server.sink.connections == 0


# -- SES ----------------------------------------------------------------------


def test_ses_sends_and_returns_message_id(
    make_app: AppFactory, ses_server: SESServer
) -> None:
    app = make_app(**ses_server.config)
    with app.app_context():
        sender = SESSender(app)
        first = sender.send(message())
        client = sender.client
        second = sender.send(message(to="b@example.org"))
        assert sender.client is client  # one client per process, not per message
        sender.close()
    sent = ses_server.sent_messages()
    assert [m.id for m in sent] == [first, second]
    assert sent[0].destinations["ToAddresses"] == ["ada@example.org"]
    assert sent[0].subject == "Confirm your email address"


def test_ses_rejection_raises(make_app: AppFactory, ses_server: SESServer) -> None:
    app = make_app(**ses_server.config)
    with app.app_context():
        sender = SESSender(app)
        with pytest.raises(ClientError) as info:
            sender.send(message(sender="someone@unverified.test"))
    assert info.value.response["Error"]["Code"] == "MessageRejected"
    assert ses_server.sent_messages() == []


# -- SMTP: the message as it travels ------------------------------------------


class EnvelopeSink(SMTPSink):
    """Keeps, besides the parsed message, what a parser would smooth over:
    the envelope, the MAIL FROM options and the raw bytes."""

    def __init__(self, offer_8bitmime: bool = True) -> None:
        super().__init__()
        self.offer_8bitmime = offer_8bitmime
        self.envelopes: list[t.Any] = []

    async def handle_EHLO(
        self,
        server: t.Any,
        session: t.Any,
        envelope: t.Any,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        responses = await super().handle_EHLO(
            server, session, envelope, hostname, responses
        )
        if not self.offer_8bitmime:
            responses = [r for r in responses if "8BITMIME" not in r.upper()]
        return responses

    async def handle_DATA(self, server: t.Any, session: t.Any, envelope: t.Any) -> str:
        self.envelopes.append(copy.copy(envelope))
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture()
def envelope_smtp() -> cabc.Iterator[t.Callable[..., Controller]]:
    """Start SMTP servers with an :class:`EnvelopeSink`; keyword arguments go
    to the sink (``offer_8bitmime``) and to aiosmtpd (``enable_SMTPUTF8``)."""
    controllers: list[Controller] = []

    def start(offer_8bitmime: bool = True, **smtp: t.Any) -> Controller:
        controller = Controller(
            EnvelopeSink(offer_8bitmime),
            hostname="127.0.0.1",
            port=free_port(),
            **smtp,
        )
        controller.start()
        controllers.append(controller)
        return controller

    yield start
    for controller in controllers:
        controller.stop()


def smtp_config(controller: Controller, **extra: t.Any) -> dict[str, t.Any]:
    return {
        "CONFIRM_SENDER": "smtp",
        "MAIL_SERVER": controller.hostname,
        "MAIL_PORT": controller.port,
        "MAIL_SUPPRESS_SEND": False,
        **extra,
    }


def content(part: t.Any) -> str:
    """A received part's text, with the line ends it was given."""
    return t.cast(str, part.get_content()).replace("\r\n", "\n")


def send_all(app: Flask, *messages: EmailMessage) -> list[str | None]:
    with app.app_context():
        sender = SMTPSender(app)
        try:
            return [sender.send(m) for m in messages]
        finally:
            sender.close()


GERMAN = EmailMessage(
    to="ada@bücher.example",
    sender="Bücherstube Müller <no-reply@bücher.example>",
    subject="Bestätigen Sie Ihre E-Mail-Adresse",
    text="Bitte bestätigen Sie: https://app.example.test/confirm/äbc\n",
    html="<p>Bitte <a href='https://app.example.test/confirm/abc'>bestätigen</a></p>",
)


def test_smtp_headers_parts_and_envelope(
    make_app: AppFactory, envelope_smtp: t.Callable[..., Controller]
) -> None:
    controller = envelope_smtp()
    before = time.time()
    (message_id,) = send_all(make_app(**smtp_config(controller)), GERMAN)
    sink: EnvelopeSink = controller.handler
    (envelope,) = sink.envelopes
    (received,) = sink.messages

    # IDN domains travel in their ASCII form, in the envelope and the headers.
    assert envelope.mail_from == "no-reply@xn--bcher-kva.example"
    assert envelope.rcpt_tos == ["ada@xn--bcher-kva.example"]
    assert "BODY=8BITMIME" in envelope.mail_options  # the 8bit bodies say so
    assert "SMTPUTF8" not in envelope.mail_options
    assert not envelope.smtp_utf8

    raw_headers, _, _ = envelope.content.partition(b"\r\n\r\n")
    assert raw_headers.isascii()  # encoded words, not raw UTF-8
    assert b"\n" not in raw_headers.replace(b"\r\n", b"")  # CRLF throughout
    assert received["From"].addresses[0].display_name == "Bücherstube Müller"
    assert received["From"].addresses[0].addr_spec == "no-reply@xn--bcher-kva.example"
    assert received["To"] == "ada@xn--bcher-kva.example"
    assert received["Subject"] == "Bestätigen Sie Ihre E-Mail-Adresse"
    assert received["MIME-Version"] == "1.0"
    sent_at = email.utils.parsedate_to_datetime(received["Date"]).timestamp()
    assert before - 1 <= sent_at <= time.time() + 1
    # The id returned is the header's, on the From address's domain.
    assert received["Message-ID"] == message_id
    assert message_id is not None
    assert re.fullmatch(r"<[^<>@\s]+@xn--bcher-kva\.example>", message_id)

    assert received.get_content_type() == "multipart/alternative"
    plain, html = received.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    for part, body in ((plain, GERMAN.text), (html, GERMAN.html)):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "8bit"
        assert content(part) == body


def test_smtp_ascii_bodies_are_7bit(
    make_app: AppFactory, envelope_smtp: t.Callable[..., Controller]
) -> None:
    controller = envelope_smtp()
    send_all(make_app(**smtp_config(controller)), message())
    sink: EnvelopeSink = controller.handler
    (envelope,) = sink.envelopes
    (received,) = sink.messages
    assert envelope.content.isascii()
    assert "BODY=8BITMIME" not in envelope.mail_options
    assert received["From"] == "no-reply@example.test"
    assert received["To"] == "ada@example.org"
    assert received["Subject"] == "Confirm your email address"
    for part in received.iter_parts():
        assert part["Content-Transfer-Encoding"] == "7bit"
    assert content(received.get_body(("plain",))) == message().text


def test_smtp_without_8bitmime_sends_quoted_printable(
    make_app: AppFactory, envelope_smtp: t.Callable[..., Controller]
) -> None:
    controller = envelope_smtp(offer_8bitmime=False)
    long_line = EmailMessage(
        to="b@example.org",
        sender="no-reply@example.test",
        subject="Long",
        text="x" * 2000 + "\n",  # too long a line for 7bit, even if ASCII
        html="<p>" + "y" * 1500 + "</p>",
    )
    send_all(make_app(**smtp_config(controller)), GERMAN, long_line)
    sink: EnvelopeSink = controller.handler
    for envelope in sink.envelopes:
        assert envelope.content.isascii()
        assert max(map(len, envelope.content.splitlines())) <= 78
        assert "BODY=8BITMIME" not in envelope.mail_options
    for received, sent in zip(sink.messages, (GERMAN, long_line), strict=True):
        plain, html = received.iter_parts()
        for part, body in ((plain, sent.text), (html, sent.html)):
            assert part["Content-Transfer-Encoding"] == "quoted-printable"
            assert content(part) == body


def test_smtp_long_lines_are_quoted_printable_with_8bitmime(
    make_app: AppFactory, envelope_smtp: t.Callable[..., Controller]
) -> None:
    controller = envelope_smtp()
    text = "ä" * 600 + "\n"  # 600 characters, 1,200 octets
    send_all(
        make_app(**smtp_config(controller)),
        EmailMessage("b@example.org", "no-reply@example.test", "S", text, "<p></p>"),
    )
    sink: EnvelopeSink = controller.handler
    (received,) = sink.messages
    plain, html = received.iter_parts()
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert content(plain) == text
    assert html["Content-Transfer-Encoding"] == "7bit"
    assert "BODY=8BITMIME" not in sink.envelopes[0].mail_options


def test_smtp_message_ids_are_unique_and_returned(
    smtp_app: Flask, smtp_server: SMTPServer
) -> None:
    ids = send_all(smtp_app, *(message(to=f"u{i}@example.org") for i in range(30)))
    assert len(set(ids)) == 30
    assert [m["Message-ID"] for m in smtp_server.messages] == ids
    assert all(str(i).endswith("@example.test>") for i in ids)
    assert smtp_server.sink.connections == 1


def test_smtp_from_with_unquoted_comma_in_its_name(
    make_app: AppFactory, envelope_smtp: t.Callable[..., Controller]
) -> None:
    controller = envelope_smtp()
    send_all(
        make_app(**smtp_config(controller)),
        message(sender="Example, Inc. <no-reply@example.test>"),
    )
    sink: EnvelopeSink = controller.handler
    (received,) = sink.messages
    (address,) = received["From"].addresses
    assert (address.display_name, address.addr_spec) == (
        "Example, Inc.",
        "no-reply@example.test",
    )
    assert sink.envelopes[0].mail_from == "no-reply@example.test"


def test_smtp_utf8_local_part_uses_smtputf8(
    make_app: AppFactory, envelope_smtp: t.Callable[..., Controller]
) -> None:
    controller = envelope_smtp(enable_SMTPUTF8=True)
    app = make_app(**smtp_config(controller))
    (message_id,) = send_all(app, message(to="ünal@bücher.example"))
    sink: EnvelopeSink = controller.handler
    (envelope,) = sink.envelopes
    (received,) = sink.messages
    assert envelope.smtp_utf8
    assert envelope.rcpt_tos == ["ünal@xn--bcher-kva.example"]
    assert "To: ünal@xn--bcher-kva.example\r\n".encode() in envelope.content
    assert received["Message-ID"] == message_id


def test_smtp_utf8_local_part_without_smtputf8(
    make_app: AppFactory, envelope_smtp: t.Callable[..., Controller]
) -> None:
    controller = envelope_smtp(enable_SMTPUTF8=False)
    app = make_app(**smtp_config(controller))
    with app.app_context():
        sender = SMTPSender(app)
        try:
            # The recipient's address: this mail can never go through here.
            with pytest.raises(PermanentSendError, match="SMTPUTF8") as recipient:
                sender.send(message(to="ünal@example.org"))
            assert is_permanent(recipient.value)
            # The sender's: the configuration, to fix; every mail would fail.
            with pytest.raises(TransientSendError, match="SMTPUTF8") as own:
                sender.send(message(sender="Ünal <ünal@example.test>"))
            assert not is_permanent(own.value)
            # Other mails still go.
            sender.send(message())
        finally:
            sender.close()
    sink: EnvelopeSink = controller.handler
    assert [m["To"] for m in sink.messages] == ["ada@example.org"]


def test_smtp_refuses_a_subject_with_a_line_break(
    smtp_app: Flask, smtp_server: SMTPServer
) -> None:
    injected = EmailMessage(
        "ada@example.org", "no-reply@example.test", "Hi\r\nBcc: x@evil.test", "t", "h"
    )
    with pytest.raises(ValueError, match="line break"):
        send_all(smtp_app, injected)
    assert smtp_server.messages == []


def test_smtp_reconnects_after_max_emails(
    make_app: AppFactory, smtp_server: SMTPServer
) -> None:
    app = make_app(**smtp_server.config, MAIL_MAX_EMAILS=2)
    send_all(app, *(message(to=f"u{i}@example.org") for i in range(5)))
    assert len(smtp_server.messages) == 5
    assert smtp_server.sink.connections == 3


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_logs_in_with_flask_mail_credentials(
    make_app: AppFactory, envelope_smtp: t.Callable[..., Controller]
) -> None:
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(
        server: t.Any, session: t.Any, envelope: t.Any, mechanism: str, data: t.Any
    ) -> AuthResult:
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"s3cret")

    controller = envelope_smtp(
        auth_required=True, auth_require_tls=False, authenticator=authenticator
    )
    app = make_app(
        **smtp_config(controller, MAIL_USERNAME="mailer", MAIL_PASSWORD="s3cret")
    )
    send_all(app, message())
    assert logins == [(b"mailer", b"s3cret")]
    assert len(controller.handler.messages) == 1


def test_smtp_sends_flask_mail_signal_to_listeners(
    make_app: AppFactory, smtp_server: SMTPServer
) -> None:
    import flask_mail

    app = make_app(**{**smtp_server.config, "MAIL_SUPPRESS_SEND": True})
    with flask_mail.Mail().record_messages() as outbox:
        (message_id,) = send_all(app, message())
    (recorded,) = outbox
    assert recorded.recipients == ["ada@example.org"]
    assert recorded.subject == "Confirm your email address"
    assert recorded.msgId == message_id
    assert smtp_server.messages == []


def test_smtp_registration_with_an_idn_address(
    smtp_app: Flask, smtp_server: SMTPServer
) -> None:
    try:
        response = smtp_app.test_client().post(
            "/register", data={"email": "ada@bücher.example"}
        )
    finally:
        with smtp_app.app_context():
            smtp_app.extensions["confirm"].sender.close()
    assert response.status_code == 201
    (received,) = smtp_server.messages
    assert received["To"] == "ada@xn--bcher-kva.example"
    assert "/confirm/" in received.get_body(("plain",)).get_content()


def test_ses_gets_seven_bit_addresses(
    make_app: AppFactory, ses_server: SESServer
) -> None:
    """A non-ASCII sender name goes as encoded words and an internationalised
    domain as IDNA, as SES requires; a non-ASCII local part is refused before
    any call, permanently for a recipient."""
    app = make_app(**ses_server.config)
    with app.app_context():
        sender = SESSender(app)
        sender.send(
            message(
                sender="Bücherei Ünïcode <no-reply@example.test>",
                to="ada@bücher.example",
            )
        )
        with pytest.raises(PermanentSendError):
            sender.send(message(to="jürgen@example.org"))
        with pytest.raises(TransientSendError):
            sender.send(message(sender="bücher@example.test"))
        sender.close()
    (sent,) = ses_server.sent_messages()
    assert sent.destinations["ToAddresses"] == ["ada@xn--bcher-kva.example"]
    assert sent.source.isascii()
    assert sent.source.endswith(" <no-reply@example.test>")
    decoded = "".join(
        part.decode(charset or "ascii") if isinstance(part, bytes) else part
        for part, charset in email.header.decode_header(sent.source.split(" <")[0])
    )
    assert decoded == "Bücherei Ünïcode"


# -- SMTP over TLS -------------------------------------------------------------
#
# A local CA (trustme) signs the servers' certificate: the real counterpart,
# a mail provider's certificate from a public CA, cannot be had here.


@dataclasses.dataclass
class LocalCA:
    ca_file: str
    server_context: ssl.SSLContext


@pytest.fixture(scope="module")
def local_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return LocalCA(str(path), server_context)


@pytest.fixture(params=["starttls", "ssl"])
def tls_smtp(
    request: pytest.FixtureRequest,
    local_ca: LocalCA,
    envelope_smtp: t.Callable[..., Controller],
) -> tuple[Controller, dict[str, t.Any]]:
    """A TLS SMTP server with a certificate the system does not trust, by
    STARTTLS (``MAIL_USE_TLS``) or implicit TLS (``MAIL_USE_SSL``), and the
    Flask-Mail keys that reach it."""
    if request.param == "starttls":
        controller = envelope_smtp(
            tls_context=local_ca.server_context, require_starttls=True
        )
        return controller, smtp_config(controller, MAIL_USE_TLS=True)
    controller = envelope_smtp(ssl_context=local_ca.server_context)
    return controller, smtp_config(controller, MAIL_USE_SSL=True)


def test_smtp_tls_refuses_an_unverified_certificate(
    make_app: AppFactory, tls_smtp: tuple[Controller, dict[str, t.Any]]
) -> None:
    controller, config = tls_smtp
    app = make_app(**config)
    with pytest.raises(ssl.SSLCertVerificationError):
        send_all(app, message())
    assert controller.handler.messages == []


def test_smtp_tls_trusts_the_configured_ca(
    make_app: AppFactory,
    tls_smtp: tuple[Controller, dict[str, t.Any]],
    local_ca: LocalCA,
) -> None:
    controller, config = tls_smtp
    app = make_app(**config, CONFIRM_SMTP_CA_FILE=local_ca.ca_file)
    send_all(app, message())
    assert len(controller.handler.messages) == 1


def test_smtp_tls_checks_the_host_name(
    make_app: AppFactory, tmp_path: Path, envelope_smtp: t.Callable[..., Controller]
) -> None:
    # A trusted certificate, but for another host than MAIL_SERVER.
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mail.example.test").configure_cert(server_context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    controller = envelope_smtp(ssl_context=server_context)
    app = make_app(
        **smtp_config(controller, MAIL_USE_SSL=True),
        CONFIRM_SMTP_CA_FILE=str(tmp_path / "ca.pem"),
    )
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        send_all(app, message())
    assert controller.handler.messages == []


def test_smtp_tls_verification_can_be_turned_off(
    make_app: AppFactory,
    tls_smtp: tuple[Controller, dict[str, t.Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    controller, config = tls_smtp
    app = make_app(**config, CONFIRM_SMTP_VERIFY_TLS=False)
    assert "not verified" in caplog.text
    send_all(app, message())
    assert len(controller.handler.messages) == 1


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("CONFIRM_SMTP_CA_FILE", "/nonexistent/ca.pem"),
        ("CONFIRM_SMTP_CA_FILE", 42),
        ("CONFIRM_SMTP_VERIFY_TLS", "no"),
        ("CONFIRM_SMTP_TIMEOUT", 0),
    ],
)
def test_smtp_tls_settings_are_checked(
    make_app: AppFactory, key: str, value: t.Any
) -> None:
    with pytest.raises(ConfigError, match=key):
        make_app(**{key: value})


def test_smtp_never_prints_the_session(
    make_app: AppFactory,
    smtp_server: SMTPServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """``MAIL_DEBUG`` (on with ``app.debug``) made Flask-Mail print the SMTP
    session, the link in the mail included, to standard error."""
    app = make_app(**smtp_server.config, MAIL_DEBUG=True, DEBUG=True)
    send_all(app, message())
    assert len(smtp_server.messages) == 1
    out, err = capfd.readouterr()
    assert "/confirm/abc" not in out + err
    assert "send:" not in err and "reply:" not in err


def test_smtp_times_out_on_a_silent_server(make_app: AppFactory) -> None:
    """A server that accepts the connection and says nothing costs the
    worker CONFIRM_SMTP_TIMEOUT seconds, not the job's whole time. (Sent
    from a thread, so that a sender without a timeout fails this test
    instead of hanging it.)"""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        app = make_app(
            CONFIRM_SENDER="smtp",
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=silent.getsockname()[1],
            MAIL_SUPPRESS_SEND=False,
            CONFIRM_SMTP_TIMEOUT=1,
        )
        raised: list[BaseException] = []

        def send() -> None:
            try:
                send_all(app, message())
            except BaseException as e:
                raised.append(e)

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        thread.join(15)
        assert not thread.is_alive(), "the sender waited on a silent server"
    (error,) = raised
    assert isinstance(error, (TimeoutError, smtplib.SMTPServerDisconnected)), error


# -- SMTP: mail that lands (auto-reply headers, DKIM, Return-Path) ------------


def test_smtp_mail_says_it_is_auto_generated(
    make_app: AppFactory, envelope_smtp: t.Callable[..., Controller]
) -> None:
    controller = envelope_smtp()
    send_all(make_app(**smtp_config(controller)), message(), GERMAN)
    sink: EnvelopeSink = controller.handler
    for envelope, received in zip(sink.envelopes, sink.messages, strict=True):
        headers, _, _ = envelope.content.partition(b"\r\n\r\n")
        assert b"\r\nAuto-Submitted: auto-generated\r\n" in headers
        assert b"\r\nX-Auto-Response-Suppress: All\r\n" in headers
        assert received.get_all("Auto-Submitted") == ["auto-generated"]
        # Unsigned, and the envelope sender is the From address.
        assert b"DKIM-Signature" not in headers
        assert envelope.mail_from == received["From"].addresses[0].addr_spec


def test_flask_mail_dispatched_message_has_the_headers(
    smtp_app: Flask, smtp_server: SMTPServer
) -> None:
    import flask_mail

    seen: list[t.Any] = []

    def record(app: Flask, message: t.Any) -> None:
        seen.append(message)

    flask_mail.email_dispatched.connect(record)
    try:
        send_all(smtp_app, message())
    finally:
        flask_mail.email_dispatched.disconnect(record)
    (dispatched,) = seen
    assert dispatched.extra_headers == {
        "Auto-Submitted": "auto-generated",
        "X-Auto-Response-Suppress": "All",
    }


def dkim_tags(raw: bytes) -> dict[str, str]:
    """The tags of the first DKIM-Signature of ``raw``, white space removed."""
    received = email.message_from_bytes(raw)
    value = re.sub(r"\s+", "", str(received["DKIM-Signature"]))
    return dict(tag.split("=", 1) for tag in value.split(";") if tag)


def test_smtp_dkim_signature_verifies_as_received(
    make_app: AppFactory,
    envelope_smtp: t.Callable[..., Controller],
    dkim_test_key: DKIMTestKey,
) -> None:
    """The bytes the SMTP server received verify with dkimpy against the
    key's DNS record. No DNS here: ``dkim_test_key.dns`` is a stub that
    answers for that one record (the only mock in this test)."""
    import dkim

    controller = envelope_smtp()
    app = make_app(**smtp_config(controller, **dkim_test_key.config))
    send_all(app, message(), GERMAN)
    sink: EnvelopeSink = controller.handler
    assert len(sink.envelopes) == 2
    for envelope in sink.envelopes:
        raw = envelope.content
        assert raw.startswith(b"DKIM-Signature: ")
        assert dkim.verify(raw, dnsfunc=dkim_test_key.dns)
        tags = dkim_tags(raw)
        assert (tags["d"], tags["s"], tags["a"]) == (
            "example.com",
            "mail2026",
            "rsa-sha256",
        )
        assert tags["c"] == "relaxed/relaxed"
        signed = tags["h"].lower().split(":")
        for name in (
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "mime-version",
            "content-type",
            "auto-submitted",
        ):
            assert name in signed
        assert signed.count("from") == 2  # over-signed: no From may be added
        # A stable transfer encoding: nothing 8bit a server might convert.
        assert raw.isascii()
        assert b"Content-Transfer-Encoding: 8bit" not in raw
        assert "BODY=8BITMIME" not in envelope.mail_options
    # The non-ASCII bodies went quoted-printable, and read as they were.
    received = sink.messages[1]
    for part, body in zip(
        received.iter_parts(), (GERMAN.text, GERMAN.html), strict=True
    ):
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        assert content(part) == body


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda raw: raw.replace(b"/confirm/abc", b"/confirm/abd"), id="body"
        ),
        pytest.param(
            lambda raw: raw.replace(b"Subject: Confirm", b"Subject: Confirn"),
            id="subject",
        ),
        pytest.param(
            lambda raw: raw.replace(
                b"\r\nFrom: ", b"\r\nFrom: evil@example.net\r\nFrom: ", 1
            ),
            id="added-from",
        ),
        pytest.param(
            lambda raw: raw.replace(b"\r\nTo: ada@", b"\r\nTo: eve@", 1), id="to"
        ),
    ],
)
def test_smtp_dkim_tampered_mail_fails_verification(
    make_app: AppFactory,
    envelope_smtp: t.Callable[..., Controller],
    dkim_test_key: DKIMTestKey,
    tamper: t.Callable[[bytes], bytes],
) -> None:
    import dkim

    controller = envelope_smtp()
    send_all(make_app(**smtp_config(controller, **dkim_test_key.config)), message())
    (envelope,) = controller.handler.envelopes
    raw = envelope.content
    assert dkim.verify(raw, dnsfunc=dkim_test_key.dns)
    tampered = tamper(raw)
    assert tampered != raw
    assert not dkim.verify(tampered, dnsfunc=dkim_test_key.dns)


def test_smtp_dkim_fails_against_another_key(
    make_app: AppFactory,
    envelope_smtp: t.Callable[..., Controller],
    dkim_test_key: DKIMTestKey,
) -> None:
    """The stub DNS is what decides: with another key's record, the same
    bytes do not verify."""
    import base64

    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = other.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    controller = envelope_smtp()
    send_all(make_app(**smtp_config(controller, **dkim_test_key.config)), message())
    (envelope,) = controller.handler.envelopes
    assert dkim.verify(envelope.content, dnsfunc=dkim_test_key.dns)
    assert not dkim.verify(envelope.content, dnsfunc=lambda name, timeout=5: record)


def test_smtp_dkim_with_smtputf8(
    make_app: AppFactory,
    envelope_smtp: t.Callable[..., Controller],
    dkim_test_key: DKIMTestKey,
) -> None:
    import dkim

    controller = envelope_smtp(enable_SMTPUTF8=True)
    unal = dataclasses.replace(GERMAN, to="ünal@bücher.example")
    send_all(make_app(**smtp_config(controller, **dkim_test_key.config)), unal)
    (envelope,) = controller.handler.envelopes
    assert envelope.smtp_utf8
    assert "ünal".encode() in envelope.content  # raw UTF-8 in the To header
    assert b"Content-Transfer-Encoding: 8bit" not in envelope.content
    assert dkim.verify(envelope.content, dnsfunc=dkim_test_key.dns)


def test_smtp_return_path_is_the_tagged_envelope_sender(
    make_app: AppFactory, envelope_smtp: t.Callable[..., Controller]
) -> None:
    controller = envelope_smtp()
    app = make_app(**smtp_config(controller, CONFIRM_RETURN_PATH="bounces@example.com"))
    recipients = ["ada@example.org", "ada+news@bücher.example"]
    send_all(app, *(message(to=to) for to in recipients))
    sink: EnvelopeSink = controller.handler
    path = ReturnPath.of(
        "bounces@example.com",
        [app.config["SECRET_KEY"]],
    )
    named = []
    for envelope, received in zip(sink.envelopes, sink.messages, strict=True):
        assert envelope.mail_from.startswith("bounces+")
        assert envelope.mail_from.endswith("@example.com")
        assert envelope.mail_from.isascii()
        assert "SMTPUTF8" not in envelope.mail_options
        # The From header is unchanged: only the envelope sender is tagged.
        assert received["From"] == "no-reply@example.test"
        named.append(path.recipient_of(envelope.mail_from))
    assert named == ["ada@example.org", "ada+news@xn--bcher-kva.example"]
    # The tag is the recipient's own: it names nobody else.
    assert sink.envelopes[0].mail_from != sink.envelopes[1].mail_from
