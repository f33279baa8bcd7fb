"""The SES sender's request as SES receives it (moto's server), and how the
faults SES v2 answers with are read."""

from __future__ import annotations

import json
import typing as t

import pytest
from botocore.exceptions import ClientError

from conftest import AppFactory
from conftest import SESServer
from flask_confirm import ConfigError
from flask_confirm import EmailMessage
from flask_confirm.faults import is_account_refusal
from flask_confirm.faults import is_permanent
from flask_confirm.senders import SESSender


def message(kind: str | None = "confirm") -> EmailMessage:
    return EmailMessage(
        to="ada@example.org",
        sender="no-reply@example.test",
        subject="Confirm your email address",
        text="Open https://app.example.test/confirm/abc",
        html="<a href='https://app.example.test/confirm/abc'>Confirm</a>",
        kind=kind,
    )


def sent_requests(sender: SESSender) -> list[dict[str, t.Any]]:
    """The bodies of the ``SendEmail`` requests this sender's client puts on
    the wire, read from botocore's own ``before-send`` event: what moto (which
    keeps no headers, tags or configuration set) receives."""
    bodies: list[dict[str, t.Any]] = []

    def keep(request: t.Any, **_: t.Any) -> None:
        bodies.append(json.loads(request.body))

    sender.client.meta.events.register("before-send.sesv2.SendEmail", keep)
    return bodies


def test_every_message_says_it_is_automatic_and_its_kind(
    make_app: AppFactory, ses_server: SESServer
) -> None:
    app = make_app(**ses_server.config)
    with app.app_context():
        sender = SESSender(app)
        bodies = sent_requests(sender)
        sender.send(message("email_change_notice"))
        sender.send(message(None))  # made by hand: no kind, no tag
        sender.close()
    assert len(ses_server.sent_messages()) == 2
    first, second = bodies
    headers = {h["Name"]: h["Value"] for h in first["Content"]["Simple"]["Headers"]}
    assert headers == {
        "Auto-Submitted": "auto-generated",
        "X-Auto-Response-Suppress": "All",
    }
    assert first["EmailTags"] == [
        {"Name": "flask-confirm-kind", "Value": "email_change_notice"}
    ]
    assert "ConfigurationSetName" not in first
    assert "EmailTags" not in second
    assert (
        second["Content"]["Simple"]["Headers"] == first["Content"]["Simple"]["Headers"]
    )


def test_the_configuration_set_is_named(
    make_app: AppFactory, ses_server: SESServer
) -> None:
    import boto3

    client = boto3.client("sesv2", region_name=ses_server.region)
    client.create_configuration_set(ConfigurationSetName="confirmations")
    client.close()
    app = make_app(**ses_server.config, CONFIRM_SES_CONFIGURATION_SET="confirmations")
    with app.app_context():
        sender = SESSender(app)
        bodies = sent_requests(sender)
        sender.send(message())
        sender.close()
    assert [b["ConfigurationSetName"] for b in bodies] == ["confirmations"]
    assert len(ses_server.sent_messages()) == 1


def test_the_mails_composed_carry_their_kind(
    make_app: AppFactory, ses_server: SESServer
) -> None:
    app = make_app(**ses_server.config)
    with app.app_context():
        db = app.extensions["test_models"]["db"]
        user = app.extensions["test_models"]["User"](email="ada@example.org")
        db.session.add(user)
        db.session.commit()
        confirm = app.extensions["confirm"]
        assert confirm.render_message(user).kind == "confirm"


@pytest.mark.parametrize("value", ["", 3, ["a"]])
def test_a_bad_configuration_set_is_a_config_error(
    make_app: AppFactory, value: object
) -> None:
    with pytest.raises(ConfigError, match="CONFIRM_SES_CONFIGURATION_SET"):
        make_app(CONFIRM_SES_CONFIGURATION_SET=value)


def ses_error(code: str, text: str) -> ClientError:
    """An error as botocore builds it from SES's reply (the shape
    ``{"Error": {"Code", "Message"}}`` of any AWS error)."""
    return ClientError({"Error": {"Code": code, "Message": text}}, "SendEmail")


@pytest.mark.parametrize(
    ("text", "permanent"),
    [
        # SES v2's answers to a malformed recipient.
        ("Missing final '@domain'", True),
        ("Illegal address", True),
        ("Domain contains illegal character", True),
        ("Local address contains control or whitespace", True),
        # About the request, or the app's own From address: not the user's.
        ("Invalid configuration set name", False),
        ("Illegal address in the From header", False),
        ("Sender address is not valid", False),
    ],
)
def test_bad_request_is_permanent_when_about_the_address(
    text: str, permanent: bool
) -> None:
    assert is_permanent(ses_error("BadRequestException", text)) is permanent


@pytest.mark.parametrize(
    "code",
    [
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
    ],
)
def test_an_account_refusal_is_neither_permanent_nor_the_users(code: str) -> None:
    error = ses_error(code, "Account is not allowed to send.")
    assert is_account_refusal(error) == code
    assert not is_permanent(error)


def test_a_message_refusal_is_not_an_account_refusal() -> None:
    assert is_account_refusal(ses_error("MessageRejected", "Rejected")) is None
    assert is_account_refusal(ValueError("no response")) is None
