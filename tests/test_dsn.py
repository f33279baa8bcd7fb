"""Delivery status notifications (RFC 3464) read as bounces, from an MTA pipe
and from a Maildir. The DSNs are built as an MTA builds them (a
``multipart/report`` with a ``message/delivery-status`` part); the tagged
return path is the app's own (``CONFIRM_RETURN_PATH``)."""

from __future__ import annotations

import email.message
import mailbox
import typing as t
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest
from flask import Flask

from conftest import AppFactory
from flask_confirm import dsn
from flask_confirm import signals
from flask_confirm.mail.verp import ReturnPath
from testapp import add_user
from testapp import captured
from testapp import models
from testapp import time_ago
from testapp import user_state

SECRET = "test-secret-key-that-is-long-enough"  # testapp's SECRET_KEY
BASE = "bounces@example.com"


def return_path(secret: str = SECRET) -> ReturnPath:
    return ReturnPath.of(BASE, [secret])


def report(
    recipient: str,
    *,
    to: str | None = None,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <ada@example.org>: user unknown",
) -> bytes:
    """A DSN for the mail to ``recipient``, delivered to ``to`` (by default
    the tagged return path that mail was sent from)."""
    message = MIMEMultipart("report", report_type="delivery-status")
    message["From"] = "MAILER-DAEMON@mx.example.net"
    message["To"] = to if to is not None else return_path().address_for(recipient)
    message["Subject"] = "Undelivered Mail Returned to Sender"
    message.attach(MIMEText("Your message could not be delivered.\n"))
    status_part = email.message.Message()
    status_part.set_type("message/delivery-status")
    per_message = email.message.Message()
    per_message["Reporting-MTA"] = "dns; mx.example.net"
    per_recipient = email.message.Message()
    per_recipient["Final-Recipient"] = f"rfc822; {recipient}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    per_recipient["Diagnostic-Code"] = diagnostic
    status_part.set_payload([per_message, per_recipient])
    message.attach(status_part)
    return message.as_bytes()


def test_a_failed_dsn_to_a_valid_tag_is_a_hard_bounce() -> None:
    reading = dsn.read(report("ada@example.org"), return_path())
    assert reading.outcome == "bounce"
    assert reading.event is not None and reading.event.permanent
    (recipient,) = reading.event.recipients
    assert recipient.address == "ada@example.org"
    assert recipient.diagnostic == "smtp; 550 5.1.1 <ada@example.org>: user unknown"


@pytest.mark.parametrize(
    ("action", "status"), [("delayed", "4.4.1"), ("failed", "4.2.2")]
)
def test_a_delay_or_a_4xx_is_a_soft_bounce(action: str, status: str) -> None:
    reading = dsn.read(
        report("ada@example.org", action=action, status=status), return_path()
    )
    assert reading.event is not None and not reading.event.permanent


@pytest.mark.parametrize(
    "to",
    [
        BASE,  # untagged
        "bounces+ada=example.org-0000000000000000@example.com",  # a forged tag
        ReturnPath.of(BASE, ["another app's key"]).address_for("ada@example.org"),
        "someone@example.com",
    ],
)
def test_a_dsn_without_a_valid_tag_is_not_believed(to: str) -> None:
    """Anyone can mail the bounce box a DSN naming a victim: only the HMAC
    of the tagged return path says whose mail bounced."""
    reading = dsn.read(report("victim@example.org", to=to), return_path())
    assert (reading.event, reading.outcome) == (None, "unverified")


def test_the_envelope_recipient_can_be_given() -> None:
    """An MTA pipe may pass the envelope recipient rather than keep it in
    a header (Postfix's ${original_recipient})."""
    raw = report("ada@example.org", to="postmaster@example.com")
    tagged = return_path().address_for("ada@example.org")
    assert dsn.read(raw, return_path(), envelope_to=tagged).outcome == "bounce"


def test_other_messages_are_not_dsns() -> None:
    plain = (
        b"From: a@example.net\r\nTo: bounces@example.com\r\nSubject: hi\r\n"
        b"\r\nHello\r\n"
    )
    assert dsn.read(plain, return_path()).outcome == "not_a_dsn"
    delivered = report("ada@example.org", action="delivered", status="2.0.0")
    assert dsn.read(delivered, return_path()).outcome == "delivered"


@pytest.fixture()
def bounce_app(make_app: AppFactory) -> Flask:
    return make_app(CONFIRM_RETURN_PATH=BASE)


def sent_user(app: Flask, email_address: str) -> t.Any:
    with app.app_context():
        user = add_user(app, email_address)
        user.confirmation_requested_at = time_ago(60)
        user.confirmation_sent_at = time_ago(59)
        models(app)["db"].session.commit()
        return user.id


def test_the_command_applies_a_piped_dsn(bounce_app: Flask) -> None:
    ada = sent_user(bounce_app, "ada@example.org")
    with captured(signals.email_bounced, bounce_app) as bounced:
        result = bounce_app.test_cli_runner().invoke(
            args=["confirm", "bounces"], input=report("ada@example.org")
        )
    assert result.exit_code == 0, result.output
    assert "1 hard bounce(s)" in result.output
    assert user_state(bounce_app, ada)[0] == "failed"
    with bounce_app.app_context():
        assert bounce_app.extensions["confirm"].is_suppressed("ada@example.org")
    assert [b["permanent"] for b in bounced] == [True]


def test_the_command_reads_a_maildir(bounce_app: Flask, tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    box.add(report("ada@example.org"))
    box.add(report("victim@example.org", to=BASE))  # forged: ignored
    box.add(b"Subject: not a bounce\r\n\r\nHi\r\n")
    result = bounce_app.test_cli_runner().invoke(
        args=["confirm", "bounces", "--maildir", str(tmp_path / "bounces")]
    )
    assert result.exit_code == 0, result.output
    assert (
        "3 message(s): 1 hard bounce(s), 0 soft, 1 without a valid tag, 1 not a DSN"
        in result.output
    )
    with bounce_app.app_context():
        confirm = bounce_app.extensions["confirm"]
        assert confirm.is_suppressed("ada@example.org")
        assert not confirm.is_suppressed("victim@example.org")
    # Every message read is marked seen, so the next run reads none again.
    assert all(m.get_subdir() == "cur" and "S" in m.get_flags() for m in box)
    again = bounce_app.test_cli_runner().invoke(
        args=["confirm", "bounces", "--maildir", str(tmp_path / "bounces")]
    )
    assert "0 message(s)" in again.output


def test_a_bounce_that_cannot_be_recorded_asks_the_mta_to_retry(
    bounce_app: Flask,
) -> None:
    with bounce_app.app_context():
        table = bounce_app.extensions["confirm"]._get_state(bounce_app).suppressions
        table.drop(models(bounce_app)["db"].engine)
    result = bounce_app.test_cli_runner().invoke(
        args=["confirm", "bounces"], input=report("ada@example.org")
    )
    assert result.exit_code == 75  # EX_TEMPFAIL: the MTA delivers it again later


def test_the_command_needs_a_return_path(make_app: AppFactory) -> None:
    result = (
        make_app()
        .test_cli_runner()
        .invoke(args=["confirm", "bounces"], input=report("ada@example.org"))
    )
    assert result.exit_code != 0
    assert "CONFIRM_RETURN_PATH" in result.output
