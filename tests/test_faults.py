"""Which send failures are retried, and how they are described."""

from __future__ import annotations

import pickle
import smtplib

import pytest
from botocore.exceptions import ClientError
from botocore.exceptions import EndpointConnectionError

from flask_confirm.faults import AddressSuppressed
from flask_confirm.faults import ConfirmationBusy
from flask_confirm.faults import describe
from flask_confirm.faults import is_permanent
from flask_confirm.faults import PermanentSendError
from flask_confirm.faults import recipient_refusal
from flask_confirm.faults import redact
from flask_confirm.faults import redacted
from flask_confirm.faults import TransientSendError


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "SendEmail",
    )


@pytest.mark.parametrize(
    "error",
    [
        smtplib.SMTPRecipientsRefused({"a@x.test": (550, b"5.1.1 No such user")}),
        smtplib.SMTPDataError(554, b"5.7.1 Message rejected as spam"),
        client_error("MessageRejected"),
        client_error("InvalidParameterValue"),
        PermanentSendError("bounced"),
        AddressSuppressed("hard_bounce"),
    ],
)
def test_permanent(error: BaseException) -> None:
    assert is_permanent(error)


@pytest.mark.parametrize(
    "error",
    [
        smtplib.SMTPRecipientsRefused({"a@x.test": (450, b"4.2.0 Mailbox busy")}),
        smtplib.SMTPRecipientsRefused(
            {"a@x.test": (550, b"no"), "b@x.test": (451, b"later")}
        ),
        smtplib.SMTPDataError(451, b"4.3.0 Try again"),
        smtplib.SMTPSenderRefused(553, b"sender not allowed", "from@x.test"),
        smtplib.SMTPAuthenticationError(535, b"bad credentials"),
        smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
        client_error("Throttling"),
        client_error("TooManyRequestsException", 429),
        client_error("InternalFailure", 500),
        client_error("ServiceUnavailable", 503),
        EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com"),
        TransientSendError("later"),
        ConfirmationBusy("busy"),
        RuntimeError("something unexpected"),
    ],
)
def test_transient(error: BaseException) -> None:
    assert not is_permanent(error)


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (
            smtplib.SMTPRecipientsRefused({"a@x.test": (550, b"5.1.1 No such user")}),
            "SMTPRecipientsRefused: recipient refused: 550 5.1.1 No such user",
        ),
        (
            smtplib.SMTPDataError(451, b"4.3.0 Try again"),
            "SMTPDataError: 451 4.3.0 Try again",
        ),
        (client_error("Throttling"), "Throttling: Throttling happened"),
        (
            ConnectionRefusedError(111, "Connection refused"),
            "ConnectionRefusedError: [Errno 111] Connection refused",
        ),
    ],
)
def test_describe(error: BaseException, text: str) -> None:
    assert describe(error) == text


def test_a_suppressed_address_is_its_own_reason() -> None:
    error = AddressSuppressed("complaint")
    assert describe(error) == str(error) == "suppressed: complaint"
    assert error.reason == "complaint"
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.reason) == ("suppressed: complaint", "complaint")


@pytest.mark.parametrize(
    ("error", "refusal"),
    [
        (
            smtplib.SMTPRecipientsRefused({"a@x.test": (550, b"5.1.1 No such user")}),
            "550 5.1.1 No such user",
        ),
        (
            smtplib.SMTPRecipientsRefused({"a@x.test": (553, "bad mailbox")}),
            "553 bad mailbox",
        ),
        # Not the recipient, or not for good: the address stays mailable.
        (smtplib.SMTPRecipientsRefused({"a@x.test": (450, b"4.2.0 Busy")}), None),
        (smtplib.SMTPDataError(554, b"5.7.1 Message rejected as spam"), None),
        (smtplib.SMTPSenderRefused(553, b"sender not allowed", "from@x.test"), None),
        (PermanentSendError("bounced"), None),
        (client_error("MessageRejected"), None),
    ],
)
def test_recipient_refusal(error: BaseException, refusal: str | None) -> None:
    assert recipient_refusal(error) == refusal


def test_describe_is_bounded() -> None:
    assert len(describe(RuntimeError("x" * 10_000))) == 500


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "550 5.1.1 <ada.lovelace@example.org>: Recipient address rejected",
            "550 5.1.1 <<address>>: Recipient address rejected",
        ),
        ("no mailbox Ada.Lovelace here", "no mailbox <address> here"),
        ("{'ada.lovelace@example.org': (550, b'x')}", "{'<address>': (550, b'x')}"),
        ("see https://example.org/confirm/abc.def for", "see <link> for"),
        (
            "bad eyJpZCI6MX0abc.Zx1a2b.9sdf8g7h6j5k4 here",
            "bad <token> here",
        ),
        ("421 4.3.2 Try later", "421 4.3.2 Try later"),
        # Only the whole local part, not a word that contains it.
        ("ada.lovelaces", "ada.lovelaces"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text, ["ada.lovelace@example.org", None]) == expected


def test_redacted_keeps_the_verdict_and_drops_the_address() -> None:
    address = "ada.lovelace@example.org"
    refused = smtplib.SMTPRecipientsRefused(
        {address: (550, f"5.1.1 <{address}> unknown".encode())}
    )
    later = smtplib.SMTPRecipientsRefused({address: (451, b"4.7.1 ada.lovelace")})
    permanent, transient = redacted(refused, [address]), redacted(later, [address])
    assert isinstance(permanent, PermanentSendError) and is_permanent(permanent)
    assert isinstance(transient, TransientSendError) and not is_permanent(transient)
    for error in (permanent, transient):
        assert "ada" not in repr(error.args) and "<address>" in str(error)
    assert "550 5.1.1" in str(permanent) and "SMTPRecipientsRefused" in str(permanent)


def test_redact_keeps_the_apps_own_address() -> None:
    text = "MessageRejected: not verified: No-Reply@example.com, ada@example.org"
    assert redact(text, ["ada@example.org"], keep=["no-reply@example.com"]) == (
        "MessageRejected: not verified: No-Reply@example.com, <address>"
    )
