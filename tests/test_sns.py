"""SNS messages are believed only once verified as AWS documents it (the
messages are signed by :mod:`sns_messages`, with a local key)."""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import pytest

from flask_confirm.sns import CertificateStore
from flask_confirm.sns import check_url
from flask_confirm.sns import parse
from flask_confirm.sns import SNSMessageRefused
from flask_confirm.sns import string_to_sign
from flask_confirm.sns import verify
from sns_messages import CERT_URL
from sns_messages import notification
from sns_messages import NOW
from sns_messages import Signer
from sns_messages import subscription
from sns_messages import TOPIC


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


def check(
    fields: dict[str, str],
    store: CertificateStore,
    topics: t.Collection[str] = (TOPIC,),
) -> t.Any:
    return verify(fields, topics=topics, certificates=store, now=NOW)


@pytest.fixture()
def store(signer: Signer) -> CertificateStore:
    return CertificateStore({CERT_URL: signer.pem.decode()}, fetch=refuse_to_fetch)


def refuse_to_fetch(url: str) -> bytes:
    raise AssertionError(f"fetched {url}, which is pinned")


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_notification_verifies(
    signer: Signer, store: CertificateStore, version: str
) -> None:
    message = check(signer.sign(notification(), version), store)
    assert message.type == "Notification"
    assert message.topic_arn == TOPIC
    assert json.loads(message.message) == {"notificationType": "Bounce"}
    assert message.timestamp == dt.datetime(
        2026, 12, 2, 11, 59, 30, 123000, tzinfo=dt.timezone.utc
    )


def test_a_notification_without_subject_verifies(
    signer: Signer, store: CertificateStore
) -> None:
    fields = notification()
    del fields["Subject"]
    assert check(signer.sign(fields), store).subject is None


def test_a_subscription_confirmation_verifies(
    signer: Signer, store: CertificateStore
) -> None:
    message = check(signer.sign(subscription()), store)
    assert message.subscribe_url.startswith("https://sns.eu-west-1.amazonaws.com/")


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (
            lambda f: {**f, "Message": f["Message"].replace("Bounce", "Delivery")},
            "signature_invalid",
        ),
        (lambda f: {**f, "Subject": "Other"}, "signature_invalid"),
        (
            lambda f: {**f, "Signature": "AAAA" + f["Signature"][4:]},
            "signature_invalid",
        ),
        (lambda f: {**f, "Signature": "not base64!"}, "signature_invalid"),
        (lambda f: {**f, "SignatureVersion": "3"}, "signature_invalid"),
        (lambda f: {k: v for k, v in f.items() if k != "Signature"}, "invalid_message"),
        (lambda f: {**f, "Type": "Other"}, "unknown_type"),
        (
            lambda f: {**f, "TopicArn": "arn:aws:sns:eu-west-1:999999999999:other"},
            "topic_not_allowed",
        ),
    ],
)
def test_a_tampered_or_foreign_message_is_refused(
    signer: Signer, store: CertificateStore, tamper: t.Any, code: str
) -> None:
    with pytest.raises(SNSMessageRefused) as info:
        check(tamper(signer.sign(notification())), store)
    assert info.value.code == code


def test_a_signature_by_another_key_is_refused(store: CertificateStore) -> None:
    with pytest.raises(SNSMessageRefused, match="does not verify"):
        check(Signer().sign(notification()), store)


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-12-02T10:59:59.000Z",
        "2026-12-02T12:06:00.000Z",
        "yesterday",
        "2026-12-02T11:59:30",
    ],
)
def test_an_old_future_or_unreadable_timestamp_is_refused(
    signer: Signer, store: CertificateStore, stamp: str
) -> None:
    with pytest.raises(SNSMessageRefused) as info:
        check(signer.sign(notification(Timestamp=stamp)), store)
    assert info.value.code in {"message_expired", "invalid_message"}


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.eu-west-1.amazonaws.com/cert.pem",  # not https
        "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com@evil.example/cert.pem",
        "https://user@sns.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/cert.pem",
        "https://s3.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com/cert.txt",  # not a certificate
        "https://[::1/cert.pem",
    ],
)
def test_a_certificate_url_not_of_sns_is_refused(signer: Signer, url: str) -> None:
    fetched: list[str] = []
    store = CertificateStore({}, fetch=lambda u: fetched.append(u) or signer.pem)
    with pytest.raises(SNSMessageRefused) as info:
        check(signer.sign(notification(SigningCertURL=url)), store)
    assert info.value.code == "url_refused"
    assert fetched == []  # refused before anything was fetched


def test_china_regions_are_sns_hosts() -> None:
    check_url("https://sns.cn-north-1.amazonaws.com.cn/cert.pem", "SigningCertURL")


def test_a_subscribe_url_not_of_sns_is_refused(
    signer: Signer, store: CertificateStore
) -> None:
    fields = signer.sign(subscription(SubscribeURL="https://evil.example/confirm"))
    with pytest.raises(SNSMessageRefused) as info:
        check(fields, store)
    assert info.value.code == "url_refused"


def test_a_certificate_is_fetched_once(signer: Signer) -> None:
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return signer.pem

    store = CertificateStore({}, fetch=fetch)
    check(signer.sign(notification()), store)
    check(signer.sign(notification(MessageId="another")), store)
    assert fetched == [CERT_URL]


def test_a_certificate_that_cannot_be_fetched_is_a_5xx(signer: Signer) -> None:
    """SNS retries a 5xx: the message is not lost for a network blip."""

    def fetch(url: str) -> bytes:
        raise TimeoutError("timed out")

    with pytest.raises(SNSMessageRefused) as info:
        check(signer.sign(notification()), CertificateStore({}, fetch=fetch))
    assert (info.value.code, info.value.status) == ("certificate_unavailable", 503)


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'{"Type": 1}', b"{" * 10000, b"x" * (600 * 1024)],
)
def test_a_body_that_is_not_a_message_is_refused(body: bytes) -> None:
    with pytest.raises(SNSMessageRefused):
        parse(body)


def test_string_to_sign_is_the_documented_one() -> None:
    fields = notification(Message="hello", Subject="Hi")
    assert string_to_sign(fields) == (
        b"Message\nhello\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n"
        b"Subject\nHi\nTimestamp\n2026-12-02T11:59:30.123Z\n"
        b"TopicArn\n" + TOPIC.encode() + b"\nType\nNotification\n"
    )
