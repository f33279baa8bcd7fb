"""Amazon SNS messages, verified as AWS documents it, before anything trusts them.

SES publishes bounces and complaints to an SNS topic, and SNS posts them to an
HTTPS endpoint of the app: anyone can post to that endpoint, so a message is
believed only once it is proven to come from SNS, for a topic the app
subscribed to, recently:

- its ``SignatureVersion`` is ``1`` (SHA1withRSA) or ``2`` (SHA256withRSA), and
  its ``Signature`` verifies over the canonical string of its ``Type``, under
  the certificate at its ``SigningCertURL``;
- that URL is ``https`` on ``sns.<region>.amazonaws.com`` (or
  ``.amazonaws.com.cn``), with no user, no other port, a ``.pem`` path;
- the certificate comes from the app's pinned ones
  (:data:`CONFIRM_SNS_CERTIFICATES`, consulted first), else is fetched with a
  timeout and kept in a cache;
- its ``TopicArn`` is one of :data:`CONFIRM_SES_EVENT_TOPICS`;
- its ``Timestamp`` is less than an hour old (and not in the future).

A ``SubscriptionConfirmation``'s ``SubscribeURL`` must pass the same URL
check before anything visits it. Repeated deliveries (same ``MessageId``) are
for the caller to apply once. Internal.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
import re
import threading
import typing as t
import urllib.request
from urllib.parse import urlsplit

from .errors import ConfirmError

#: The message types SNS posts to an HTTP(S) subscription.
NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

#: The fields signed, in order, for each type (AWS: "Verifying the signatures
#: of Amazon SNS messages"). ``Subject`` is signed only when present.
SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED_FIELDS[UNSUBSCRIBE_CONFIRMATION] = SIGNED_FIELDS[SUBSCRIPTION_CONFIRMATION]

#: The hosts SNS signs from and confirms subscriptions at.
SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")

#: A message older than this is refused: a replay, or a retry too late.
MAX_AGE = dt.timedelta(hours=1)
#: Clocks differ: this much in the future is still now.
CLOCK_SKEW = dt.timedelta(minutes=5)

#: Seconds a certificate fetch may take.
FETCH_TIMEOUT = 5

#: The largest body an SNS message may be (SNS's own limit is 256 KiB).
MAX_BODY = 512 * 1024


class SNSMessageRefused(ConfirmError):
    """A message that is not proven to be from SNS for an allowed topic, or
    cannot be read: ``code`` is the stable JSON code of the 4xx answer."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.status = code, status


@dataclasses.dataclass(frozen=True)
class SNSMessage:
    """A verified SNS message."""

    type: str
    message_id: str
    topic_arn: str
    timestamp: dt.datetime
    #: The payload: for SES events, a JSON document.
    message: str
    subject: str | None = None
    #: What to visit to confirm a subscription (``SubscriptionConfirmation``).
    subscribe_url: str | None = None


Fetch = t.Callable[[str], bytes]


def parse(body: bytes) -> dict[str, str]:
    """The fields of an SNS message body: a JSON object of strings.

    :raises SNSMessageRefused: anything else.
    """
    if len(body) > MAX_BODY:
        raise SNSMessageRefused("payload_too_large", "The message is too large.", 413)
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError):
        fields = None
    if not isinstance(fields, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in fields.items()
    ):
        raise SNSMessageRefused(
            "invalid_json", "The body must be a JSON object of strings."
        )
    return fields


def check_url(url: str, what: str) -> None:
    """Refuse ``url`` unless it is ``https`` on an SNS host, as AWS's own
    ``SigningCertURL`` and ``SubscribeURL`` are.

    :raises SNSMessageRefused: ``url_refused``.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme != "https"
        or parts.username is not None
        or parts.password is not None
        or port not in (None, 443)
        or not SNS_HOST.fullmatch(parts.hostname or "")
    ):
        raise SNSMessageRefused(
            "url_refused", f"The {what} is not an https URL of Amazon SNS."
        )


def string_to_sign(fields: t.Mapping[str, str]) -> bytes:
    """The canonical string SNS signs for the message's ``Type``: each
    signed field's name and value, one per line."""
    lines = []
    for name in SIGNED_FIELDS[fields["Type"]]:
        if name in fields:
            lines += [name, fields[name]]
    return ("\n".join(lines) + "\n").encode("utf-8")


def verify(
    fields: t.Mapping[str, str],
    *,
    topics: t.Collection[str],
    certificates: CertificateStore,
    now: dt.datetime | None = None,
) -> SNSMessage:
    """Check ``fields`` as the module says, and return the message.

    :raises SNSMessageRefused: it is not proven, or not for us.
    """
    kind = fields.get("Type")
    if kind not in SIGNED_FIELDS:
        raise SNSMessageRefused("unknown_type", "Not an SNS message type.")
    required = [n for n in SIGNED_FIELDS[kind] if n != "Subject"]
    missing = [
        n
        for n in (*required, "Signature", "SignatureVersion", "SigningCertURL")
        if not fields.get(n)
    ]
    if missing:
        raise SNSMessageRefused(
            "invalid_message", f"The message lacks {', '.join(missing)}."
        )
    if fields["TopicArn"] not in topics:
        raise SNSMessageRefused(
            "topic_not_allowed",
            "The message is for a topic this app does not take.",
            403,
        )
    hashes = {"1": "sha1", "2": "sha256"}
    algorithm = hashes.get(fields["SignatureVersion"])
    if algorithm is None:
        raise SNSMessageRefused(
            "signature_invalid", "Unknown SignatureVersion (1 or 2 are)."
        )
    check_url(fields["SigningCertURL"], "SigningCertURL")
    if not urlsplit(fields["SigningCertURL"]).path.endswith(".pem"):
        raise SNSMessageRefused(
            "url_refused", "The SigningCertURL is not a certificate's."
        )
    try:
        signature = base64.b64decode(fields["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise SNSMessageRefused(
            "signature_invalid", "The signature is not base64."
        ) from None
    certificates.verify(
        fields["SigningCertURL"], signature, string_to_sign(fields), algorithm
    )
    timestamp = _timestamp(fields["Timestamp"])
    now = now or dt.datetime.now(dt.timezone.utc)
    if not now - MAX_AGE <= timestamp <= now + CLOCK_SKEW:
        raise SNSMessageRefused("message_expired", "The message is too old.")
    subscribe_url = fields.get("SubscribeURL")
    if kind != NOTIFICATION and subscribe_url:
        check_url(subscribe_url, "SubscribeURL")
    return SNSMessage(
        type=kind,
        message_id=fields["MessageId"],
        topic_arn=fields["TopicArn"],
        timestamp=timestamp,
        message=fields["Message"],
        subject=fields.get("Subject"),
        subscribe_url=subscribe_url if kind != NOTIFICATION else None,
    )


def _timestamp(value: str) -> dt.datetime:
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SNSMessageRefused(
            "invalid_message", "The Timestamp is not a time."
        ) from None
    if stamp.tzinfo is None:
        raise SNSMessageRefused("invalid_message", "The Timestamp has no zone.")
    return stamp


def fetch_certificate(url: str) -> bytes:
    """Fetch the PEM at ``url`` (already checked by :func:`check_url`), with
    a timeout, verifying the server's TLS certificate."""
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:
        return t.cast(bytes, response.read(64 * 1024))


class CertificateStore:
    """The signing certificates: the pinned ones first (URL → PEM), then
    those fetched, kept for the life of the process (SNS rotates them
    rarely, under a new URL)."""

    #: Fetched certificates kept at most (the oldest dropped first).
    MOST = 32

    def __init__(
        self, pinned: t.Mapping[str, str | bytes], fetch: Fetch = fetch_certificate
    ) -> None:
        self._pinned = {url: _public_key(pem, url) for url, pem in pinned.items()}
        self._fetched: dict[str, t.Any] = {}
        self._fetch = fetch
        self._lock = threading.Lock()

    def key(self, url: str) -> t.Any:
        """The public key of the certificate at ``url``.

        :raises SNSMessageRefused: it cannot be had.
        """
        if url in self._pinned:
            return self._pinned[url]
        with self._lock:
            key = self._fetched.get(url)
        if key is not None:
            return key
        try:
            pem = self._fetch(url)
        except Exception as e:
            raise SNSMessageRefused(
                "certificate_unavailable",
                f"The signing certificate could not be fetched ({type(e).__name__}).",
                503,
            ) from None
        key = _public_key(pem, url)
        with self._lock:
            while len(self._fetched) >= self.MOST:
                self._fetched.pop(next(iter(self._fetched)))
            self._fetched[url] = key
        return key

    def verify(self, url: str, signature: bytes, data: bytes, algorithm: str) -> None:
        """Check ``signature`` of ``data`` under the certificate at ``url``.

        :raises SNSMessageRefused: ``signature_invalid``.
        """
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = self.key(url)
        if not isinstance(key, rsa.RSAPublicKey):
            raise SNSMessageRefused("signature_invalid", "Not an RSA certificate.")
        digest = hashes.SHA1() if algorithm == "sha1" else hashes.SHA256()
        try:
            key.verify(signature, data, padding.PKCS1v15(), digest)
        except InvalidSignature:
            raise SNSMessageRefused(
                "signature_invalid", "The signature does not verify."
            ) from None


def _public_key(pem: str | bytes, url: str) -> t.Any:
    from cryptography import x509

    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data).public_key()
    except ValueError:
        raise SNSMessageRefused(
            "signature_invalid", f"The certificate at {url} is not a PEM certificate."
        ) from None
