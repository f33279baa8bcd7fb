"""SES notifications read, in both of SES's formats. The payloads follow the
examples of AWS's documentation ("Amazon SES notification contents" and
"Event publishing: examples"), trimmed of fields nothing reads."""

from __future__ import annotations

import json
import typing as t

import pytest

from flask_confirm.ses_events import read
from flask_confirm.ses_events import Recipient

MAIL = {
    "timestamp": "2026-12-02T11:58:00.000Z",
    "source": "no-reply@example.com",
    "messageId": "0100018c1d2e3f4a-ses-message",
    "destination": ["ada@example.org"],
}


def bounce(
    bounce_type: str = "Permanent", sub_type: str = "General"
) -> dict[str, t.Any]:
    return {
        "bounceType": bounce_type,
        "bounceSubType": sub_type,
        "bouncedRecipients": [
            {
                "emailAddress": "ada@example.org",
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
            }
        ],
        "timestamp": "2026-12-02T11:58:05.000Z",
        "feedbackId": "0100018c-feedback",
        "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
    }


def identity(kind: str, body: dict[str, t.Any]) -> str:
    """An identity notification (``notificationType``)."""
    return json.dumps({"notificationType": kind, kind.lower(): body, "mail": MAIL})


def published(
    kind: str, key: str, body: dict[str, t.Any], mail_kind: str = "confirm"
) -> str:
    """A configuration-set event (``eventType``), with the message's tags."""
    mail = {
        **MAIL,
        "tags": {
            "flask-confirm-kind": [mail_kind],
            "ses:configuration-set": ["confirmations"],
        },
    }
    return json.dumps({"eventType": kind, key: body, "mail": mail})


@pytest.mark.parametrize("fmt", ["identity", "published"])
def test_a_hard_bounce(fmt: str) -> None:
    message = (
        identity("Bounce", bounce())
        if fmt == "identity"
        else published("Bounce", "bounce", bounce())
    )
    event = read(message)
    assert event.kind == "bounce"
    assert event.permanent
    assert event.recipients == (
        Recipient("ada@example.org", "smtp; 550 5.1.1 user unknown"),
    )
    assert event.detail == "Permanent/General"
    assert event.message_id == "0100018c1d2e3f4a-ses-message"
    assert event.mail_kind == ("confirm" if fmt == "published" else None)


def test_a_soft_bounce_is_not_permanent() -> None:
    event = read(identity("Bounce", bounce("Transient", "MailboxFull")))
    assert event.kind == "bounce" and not event.permanent
    assert event.detail == "Transient/MailboxFull"


@pytest.mark.parametrize(
    ("feedback", "spam"), [("abuse", True), (None, True), ("not-spam", False)]
)
def test_a_complaint(feedback: str | None, spam: bool) -> None:
    body: dict[str, t.Any] = {
        "complainedRecipients": [{"emailAddress": "Ada <ada@example.org>"}],
        "timestamp": "2026-12-02T12:00:00.000Z",
        "feedbackId": "0100018c-complaint",
    }
    if feedback:
        body["complaintFeedbackType"] = feedback
    event = read(published("Complaint", "complaint", body, "email_change_notice"))
    assert event.kind == "complaint"
    assert event.recipients == (Recipient("ada@example.org"),)
    assert event.is_spam_complaint is spam
    assert event.mail_kind == "email_change_notice"


def test_a_delivery() -> None:
    body = {
        "timestamp": "2026-12-02T11:58:02.000Z",
        "processingTimeMillis": 546,
        "recipients": ["ada@example.org"],
        "smtpResponse": "250 ok dirdel",
    }
    event = read(identity("Delivery", body))
    assert event.kind == "delivery"
    assert event.recipients == (Recipient("ada@example.org", "250 ok dirdel"),)


def test_a_reject_and_a_rendering_failure() -> None:
    reject = read(published("Reject", "reject", {"reason": "Bad content"}))
    assert (reject.kind, reject.detail) == ("reject", "Bad content")
    assert reject.recipients == (Recipient("ada@example.org"),)
    failure = read(
        published(
            "Rendering Failure",
            "failure",
            {"errorMessage": "Attribute 'x' is not present", "templateName": "t"},
        )
    )
    assert (failure.kind, failure.detail) == (
        "rendering_failure",
        "Attribute 'x' is not present",
    )


@pytest.mark.parametrize(
    "message",
    [
        "Hello from the console",  # a test message published to the topic
        "[]",
        json.dumps({"eventType": "Open", "open": {}, "mail": MAIL}),
        json.dumps({"notificationType": "AmazonSnsSubscriptionSucceeded"}),
        json.dumps({"eventType": 3}),
    ],
)
def test_anything_else_is_other(message: str) -> None:
    assert read(message).kind == "other"


def test_malformed_parts_are_read_as_absent() -> None:
    event = read(
        json.dumps(
            {
                "notificationType": "Bounce",
                "bounce": {"bouncedRecipients": [{"emailAddress": 5}, "x", {}]},
                "mail": [],
            }
        )
    )
    assert event.kind == "bounce" and event.recipients == () and not event.permanent
