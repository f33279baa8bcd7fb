"""Senders, each against its real counterpart: an SMTP server, moto's SES."""

from __future__ import annotations

import collections.abc as cabc
import io
import smtplib
import time
import typing as t

import pytest
from aiosmtpd.controller import Controller
from botocore.exceptions import ClientError
from flask import Flask

from conftest import AppFactory
from conftest import free_port
from conftest import SESServer
from conftest import SMTPServer
from conftest import SMTPSink
from flask_confirm import EmailMessage
from flask_confirm import Sender
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
        sender.send(message(to="first@example.org"))
        time.sleep(0.8)
        sender.send(message(to="second@example.org"))
        sender.close()
    sink: SMTPSink = impatient_smtp.handler
    assert [m["To"] for m in sink.messages] == [
        "first@example.org",
        "second@example.org",
    ]
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
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                sender.send(message())
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
