"""SNS messages for the tests, signed as SNS signs them.

There is no network here and no AWS signing key: messages are signed with a
key and a self-signed certificate made for the test run, pinned under an SNS
certificate URL as ``CONFIRM_SNS_CERTIFICATES`` pins them (the one part that
stands in for AWS: its private key)."""

from __future__ import annotations

import base64
import datetime as dt
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from flask_confirm.sns import string_to_sign

CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)


class Signer:
    """An RSA key and its self-signed certificate, as SNS's signing pair."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        self.pem = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=365))
            .sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )

    def sign(self, fields: dict[str, str], version: str = "2") -> dict[str, str]:
        fields = {
            **fields,
            "SignatureVersion": version,
            "SigningCertURL": fields.get("SigningCertURL", CERT_URL),
        }
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(string_to_sign(fields), padding.PKCS1v15(), digest)
        return {**fields, "Signature": base64.b64encode(signature).decode()}


def notification(**changes: str) -> dict[str, str]:
    fields = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps({"notificationType": "Bounce"}),
        "Timestamp": "2026-12-02T11:59:30.123Z",
    }
    fields.update(changes)
    return fields


def subscription(**changes: str) -> dict[str, str]:
    fields = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e2425e90ccf23f",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=2336",
        "Timestamp": "2026-12-02T11:59:00.000Z",
    }
    fields.update(changes)
    return fields


def stamp(seconds_ago: float = 0) -> str:
    """An SNS ``Timestamp`` of now (or of so long ago)."""
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds_ago)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def ses_bounce(address: str, bounce_type: str = "Permanent") -> str:
    """An SES identity notification of a bounce (AWS's documented shape)."""
    return json.dumps(
        {
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": bounce_type,
                "bounceSubType": "General"
                if bounce_type == "Permanent"
                else "MailboxFull",
                "bouncedRecipients": [
                    {
                        "emailAddress": address,
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
                "timestamp": stamp(),
                "feedbackId": "0100018c-feedback",
            },
            "mail": {"messageId": "0100018c-ses", "destination": [address]},
        }
    )


def ses_complaint(address: str, feedback: str = "abuse") -> str:
    """An SES configuration-set event of a complaint."""
    return json.dumps(
        {
            "eventType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": address}],
                "complaintFeedbackType": feedback,
                "timestamp": stamp(),
                "feedbackId": "0100018c-complaint",
            },
            "mail": {
                "messageId": "0100018c-ses",
                "destination": [address],
                "tags": {"flask-confirm-kind": ["confirm"]},
            },
        }
    )
