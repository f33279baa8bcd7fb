"""SES events through SNS, posted to ``/confirm/events/ses`` as SNS posts
them (signed by :mod:`sns_messages` with a local key and certificate pinned
by ``CONFIRM_SNS_CERTIFICATES``), against the real database and Redis."""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import pytest
from flask import Flask
from freezegun import freeze_time

from conftest import AppFactory
from flask_confirm import ConfigError
from flask_confirm import signals
from flask_confirm import suppression
from flask_confirm.web import events
from sns_messages import CERT_URL
from sns_messages import notification
from sns_messages import ses_bounce
from sns_messages import ses_complaint
from sns_messages import Signer
from sns_messages import stamp
from sns_messages import subscription
from sns_messages import TOPIC
from testapp import add_user
from testapp import captured
from testapp import models
from testapp import time_ago
from testapp import user_state

PATH = "/confirm/events/ses"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


@pytest.fixture()
def events_app(make_app: AppFactory, signer: Signer, database_url: str) -> Flask:
    return make_app(
        SQLALCHEMY_DATABASE_URI=database_url,
        CONFIRM_SES_EVENTS=True,
        CONFIRM_SES_EVENT_TOPICS=[TOPIC],
        CONFIRM_SNS_CERTIFICATES={CERT_URL: signer.pem.decode()},
    )


def sent_user(app: Flask, email: str = "ada@example.org") -> t.Any:
    """A user whose link was mailed and not yet used."""
    with app.app_context():
        user = add_user(app, email)
        user.confirmation_requested_at = time_ago(60)
        user.confirmation_sent_at = time_ago(59)
        models(app)["db"].session.commit()
        return user.id


def post(app: Flask, fields: dict[str, str]) -> t.Any:
    return app.test_client().post(
        PATH,
        data=json.dumps(fields),
        headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": fields.get("Type", ""),
        },
    )


def suppressed(app: Flask, address: str) -> bool:
    with app.app_context():
        return bool(app.extensions["confirm"].is_suppressed(address))


def test_a_hard_bounce_suppresses_and_fails_what_is_owed(
    events_app: Flask, signer: Signer
) -> None:
    ada = sent_user(events_app)
    message = signer.sign(
        notification(Message=ses_bounce("ada@example.org"), Timestamp=stamp())
    )
    with captured(signals.email_bounced, events_app) as bounced:
        answer = post(events_app, message)
        assert (answer.status_code, answer.json) == (200, {"status": "ok"})
        # SNS delivers at least once: the same message again changes nothing.
        again = post(events_app, message)
        assert (again.status_code, again.json) == (200, {"status": "duplicate"})
    state, error = user_state(events_app, ada)
    assert state == "failed"
    assert error == "bounced: smtp; 550 5.1.1 user unknown"
    assert suppressed(events_app, "ada@example.org")
    assert [(b["user_id"], b["address"], b["permanent"]) for b in bounced] == [
        (ada, "ada@example.org", True)
    ]


def test_a_soft_bounce_only_signals(events_app: Flask, signer: Signer) -> None:
    ada = sent_user(events_app)
    message = signer.sign(
        notification(
            Message=ses_bounce("ada@example.org", "Transient"), Timestamp=stamp()
        )
    )
    with captured(signals.email_bounced, events_app) as bounced:
        assert post(events_app, message).status_code == 200
    assert user_state(events_app, ada)[0] == "sent"
    assert not suppressed(events_app, "ada@example.org")
    assert [b["permanent"] for b in bounced] == [False]


@pytest.mark.parametrize(("feedback", "counts"), [("abuse", True), ("not-spam", False)])
def test_a_complaint_suppresses_unless_not_spam(
    events_app: Flask, signer: Signer, feedback: str, counts: bool
) -> None:
    sent_user(events_app)
    message = signer.sign(
        notification(
            Message=ses_complaint("ADA@example.org", feedback), Timestamp=stamp()
        )
    )
    with captured(signals.email_complained, events_app) as complained:
        assert post(events_app, message).status_code == 200
    assert suppressed(events_app, "ada@example.org") is counts
    assert [c["feedback_type"] for c in complained] == (["abuse"] if counts else [])


def test_a_bounce_for_nobody_still_suppresses(
    events_app: Flask, signer: Signer
) -> None:
    message = signer.sign(
        notification(Message=ses_bounce("gone@example.org"), Timestamp=stamp())
    )
    calls: list[dict[str, t.Any]] = []
    with signals.email_bounced.connected_to(
        lambda s, **kw: calls.append(kw), events_app
    ):
        assert post(events_app, message).status_code == 200
    assert suppressed(events_app, "gone@example.org")
    assert [c["user"] for c in calls] == [None]


@pytest.mark.parametrize(
    ("tamper", "status", "code"),
    [
        (
            lambda f: {**f, "Message": f["Message"].replace("Permanent", "Transient")},
            400,
            "signature_invalid",
        ),
        (
            lambda f: {**f, "TopicArn": "arn:aws:sns:eu-west-1:999999999999:other"},
            403,
            "topic_not_allowed",
        ),
        (
            lambda f: {
                **f,
                "SigningCertURL": "http://sns.eu-west-1.amazonaws.com/c.pem",
            },
            400,
            "url_refused",
        ),
        (
            lambda f: {k: v for k, v in f.items() if k != "Signature"},
            400,
            "invalid_message",
        ),
    ],
)
def test_a_forged_message_is_refused_and_changes_nothing(
    events_app: Flask, signer: Signer, tamper: t.Any, status: int, code: str
) -> None:
    ada = sent_user(events_app)
    message = tamper(
        signer.sign(
            notification(Message=ses_bounce("ada@example.org"), Timestamp=stamp())
        )
    )
    answer = post(events_app, message)
    assert (answer.status_code, answer.json["error"]) == (status, code)
    assert user_state(events_app, ada)[0] == "sent"
    assert not suppressed(events_app, "ada@example.org")


def test_an_old_message_is_refused(events_app: Flask, signer: Signer) -> None:
    message = signer.sign(
        notification(Message=ses_bounce("ada@example.org"), Timestamp=stamp(3700))
    )
    answer = post(events_app, message)
    assert (answer.status_code, answer.json["error"]) == (400, "message_expired")
    assert not suppressed(events_app, "ada@example.org")


def test_a_subscription_is_confirmed_for_an_allowed_topic_only(
    events_app: Flask, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """There is no AWS here to confirm with: the visit of the SubscribeURL is
    recorded instead of made (the one stand-in of this test)."""
    visited: list[str] = []
    monkeypatch.setattr(events, "visit", visited.append)
    message = signer.sign(subscription(Timestamp=stamp()))
    assert post(events_app, message).status_code == 200
    assert visited == [message["SubscribeURL"]]
    foreign = signer.sign(
        subscription(
            Timestamp=stamp(),
            TopicArn="arn:aws:sns:eu-west-1:999999999999:x",
            MessageId="other",
        )
    )
    assert post(events_app, foreign).status_code == 403
    assert visited == [message["SubscribeURL"]]


def test_an_event_that_cannot_be_recorded_is_a_5xx_and_retried(
    events_app: Flask, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = sent_user(events_app)
    message = signer.sign(
        notification(Message=ses_bounce("ada@example.org"), Timestamp=stamp())
    )
    with events_app.app_context():
        table = events_app.extensions["confirm"]._get_state(events_app).suppressions
        table.drop(models(events_app)["db"].engine)  # the database cannot take it
    assert post(events_app, message).status_code == 500
    assert user_state(events_app, ada)[0] == "sent"
    with events_app.app_context():
        table.create(models(events_app)["db"].engine)
    # SNS sends it again: this time it is applied (the MessageId was not kept).
    assert post(events_app, message).json == {"status": "ok"}
    assert suppressed(events_app, "ada@example.org")


def test_a_large_report_is_taken(events_app: Flask, signer: Signer) -> None:
    """SES reports carry the mail's headers: larger than the forms' limit."""
    payload = json.loads(ses_bounce("ada@example.org"))
    payload["mail"]["headers"] = [
        {"name": f"X-{i}", "value": "v" * 200} for i in range(200)
    ]
    message = signer.sign(notification(Message=json.dumps(payload), Timestamp=stamp()))
    assert len(json.dumps(message)) > 40_000
    assert post(events_app, message).status_code == 200


@pytest.mark.parametrize("order", ["csrf-first", "confirm-first"])
def test_global_csrf_protection_does_not_refuse_sns(
    make_app: AppFactory, signer: Signer, order: str
) -> None:
    from flask_wtf.csrf import CSRFProtect

    config = {
        "CONFIRM_SES_EVENTS": True,
        "CONFIRM_SES_EVENT_TOPICS": [TOPIC],
        "CONFIRM_SNS_CERTIFICATES": {CERT_URL: signer.pem.decode()},
    }
    app = make_app(**config)
    CSRFProtect(app)
    message = signer.sign(
        notification(Message=ses_bounce("ada@example.org"), Timestamp=stamp())
    )
    assert post(app, message).status_code == 200
    # ... while the forms stay protected.
    assert (
        app.test_client()
        .post("/confirm/resend", data={"email": "a@example.org"})
        .status_code
        == 400
    )


def test_the_endpoint_is_rate_limited(make_app: AppFactory, signer: Signer) -> None:
    app = make_app(
        CONFIRM_SES_EVENTS=True,
        CONFIRM_SES_EVENT_TOPICS=[TOPIC],
        CONFIRM_SNS_CERTIFICATES={CERT_URL: signer.pem.decode()},
        CONFIRM_SES_EVENT_LIMIT="2 per minute",
    )
    codes = [
        post(
            app, signer.sign(notification(MessageId=f"m-{i}", Timestamp=stamp()))
        ).status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 429]


def test_off_by_default(make_app: AppFactory, signer: Signer) -> None:
    app = make_app()
    assert post(app, signer.sign(notification(Timestamp=stamp()))).status_code == 404


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"CONFIRM_SES_EVENTS": True}, "CONFIRM_SES_EVENT_TOPICS"),
        (
            {"CONFIRM_SES_EVENTS": True, "CONFIRM_SES_EVENT_TOPICS": ["not-an-arn"]},
            "CONFIRM_SES_EVENT_TOPICS",
        ),
        (
            {
                "CONFIRM_SES_EVENTS": True,
                "CONFIRM_SES_EVENT_TOPICS": [TOPIC],
                "CONFIRM_SNS_CERTIFICATES": {"https://evil.example/c.pem": "x"},
            },
            "CONFIRM_SNS_CERTIFICATES",
        ),
        (
            {
                "CONFIRM_SES_EVENTS": True,
                "CONFIRM_SES_EVENT_TOPICS": [TOPIC],
                "CONFIRM_SNS_CERTIFICATES": {CERT_URL: "not a certificate"},
            },
            "CONFIRM_SNS_CERTIFICATES",
        ),
        ({"CONFIRM_SNS_CERTIFICATES": ["x"]}, "CONFIRM_SNS_CERTIFICATES"),
    ],
)
def test_bad_event_config_is_a_config_error(
    make_app: AppFactory, config: dict[str, t.Any], key: str
) -> None:
    with pytest.raises(ConfigError, match=key):
        make_app(**config)


def test_three_soft_bounces_in_two_weeks_rest_the_address_a_week(
    events_app: Flask, signer: Signer
) -> None:
    for i in range(3):
        if i == 2:
            assert not suppressed(events_app, "ada@example.org")
        message = signer.sign(
            notification(
                Message=ses_bounce("ada@example.org", "Transient"),
                MessageId=f"soft-{i}",
                Timestamp=stamp(),
            )
        )
        assert post(events_app, message).status_code == 200
    assert suppressed(events_app, "ada@example.org")
    with events_app.app_context():
        state = events_app.extensions["confirm"]._get_state(events_app)
        (row,) = suppression.suppressed(state)
    assert row.reason == "soft_bounce"
    # It expires: a week on, the address is mailed again.
    with freeze_time(
        dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=7, minutes=1)
    ):
        assert not suppressed(events_app, "ada@example.org")


def test_a_soft_bounce_never_shortens_a_hard_one(
    events_app: Flask, signer: Signer
) -> None:
    hard = signer.sign(
        notification(Message=ses_bounce("ada@example.org"), Timestamp=stamp())
    )
    assert post(events_app, hard).status_code == 200
    for i in range(3):
        soft = signer.sign(
            notification(
                Message=ses_bounce("ada@example.org", "Transient"),
                MessageId=f"soft-{i}",
                Timestamp=stamp(),
            )
        )
        assert post(events_app, soft).status_code == 200
    with freeze_time(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)):
        assert suppressed(events_app, "ada@example.org")


def test_a_delivery_is_kept_where_the_model_has_the_column(
    redis_url: str, signer: Signer, tmp_path: t.Any
) -> None:
    """An app whose model maps ``confirmation_delivered_at`` gets it stamped
    when SES reports the confirmation delivered; others are untouched."""
    import sqlalchemy as sa
    from flask_sqlalchemy import SQLAlchemy

    from flask_confirm import Confirm
    from flask_confirm import ConfirmableMixin
    from testapp import BASE_CONFIG

    app = Flask("delivered_test_app")
    app.config.update(
        BASE_CONFIG,
        CONFIRM_REDIS_URL=redis_url,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'delivered.sqlite'}",
        CONFIRM_SES_EVENTS=True,
        CONFIRM_SES_EVENT_TOPICS=[TOPIC],
        CONFIRM_SNS_CERTIFICATES={CERT_URL: signer.pem.decode()},
    )
    db = SQLAlchemy(app)

    class Member(ConfirmableMixin, db.Model):  # type: ignore[name-defined,misc]
        id = db.Column(db.Integer, primary_key=True)
        email = db.Column(db.String(320), unique=True, nullable=False)
        confirmation_delivered_at = db.Column(sa.DateTime(timezone=True))

    Confirm(app, db=db, user_model=Member)
    with app.app_context():
        db.create_all()
        db.session.add(
            Member(
                email="ada@example.org",
                confirmation_requested_at=time_ago(60),
                confirmation_sent_at=time_ago(59),
            )
        )
        db.session.commit()
    delivery = json.dumps(
        {
            "notificationType": "Delivery",
            "delivery": {"recipients": ["ada@example.org"], "smtpResponse": "250 ok"},
            "mail": {"messageId": "m", "destination": ["ada@example.org"]},
        }
    )
    message = signer.sign(notification(Message=delivery, Timestamp=stamp()))
    assert post(app, message).status_code == 200
    with app.app_context():
        member = db.session.scalars(sa.select(Member)).one()
        assert member.confirmation_delivered_at is not None
        db.session.remove()
        db.engine.dispose()
