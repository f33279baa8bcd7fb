"""Mail counts per kind, in the real Redis, and what ``flask confirm status``
makes of them."""

from __future__ import annotations

import pytest
import redis
from flask import Flask

from conftest import AppFactory
from flask_confirm import feedback
from flask_confirm import stats
from flask_confirm.ses_events import Recipient
from flask_confirm.ses_events import SESEvent
from flask_confirm.tasks import send_confirmation_job
from testapp import add_user
from testapp import models
from testapp import time_ago


@pytest.fixture()
def async_app(make_app: AppFactory, redis_client: redis.Redis) -> Flask:
    return make_app(CONFIRM_ASYNC=True)


def test_sends_bounces_and_complaints_are_counted_by_kind(async_app: Flask) -> None:
    state = async_app.extensions["confirm"]._get_state(async_app)
    with async_app.app_context():
        user = add_user(async_app)
        user.confirmation_requested_at = time_ago(1)
        models(async_app)["db"].session.commit()
        send_confirmation_job(user.id)  # as the worker runs it
        bounce = SESEvent(
            "bounce",
            (Recipient("gone@example.org", "550 user unknown"),),
            permanent=True,
            mail_kind="confirm",
        )
        feedback.apply(state, bounce)
        feedback.apply(
            state, SESEvent("complaint", (Recipient("b@example.org"),), detail="abuse")
        )
        counts = stats.totals(state, 24)
    assert counts["confirm"] == {"sent": 1, "bounced": 1, "complained": 0}
    # Identity notifications carry no tags: their kind is unknown.
    assert counts["unknown"] == {"sent": 0, "bounced": 0, "complained": 1}
    assert stats.totals(state, 168)["confirm"]["sent"] == 1


def test_inline_sends_count_nothing(
    make_app: AppFactory, redis_client: redis.Redis
) -> None:
    """Inline (CONFIRM_ASYNC false) there may be no Redis, and a count must
    not cost a send the connection timeout: nothing is counted."""
    app = make_app()
    with app.app_context():
        app.extensions["confirm"].send_confirmation(add_user(app))
        assert len(app.extensions["confirm"].sender.outbox) == 1
    assert redis_client.keys("flask-confirm:stats:*") == []


@pytest.mark.parametrize(
    ("sent", "bounced", "complained", "expected"),
    [
        (1000, 24, 0, []),
        (1000, 25, 0, ["bounce rate 2.5%"]),
        (1000, 0, 1, ["complaint rate 0.10%"]),
        (0, 3, 3, []),
    ],
)
def test_warnings_at_half_of_ses_thresholds(
    sent: int, bounced: int, complained: int, expected: list[str]
) -> None:
    counts = {"confirm": {"sent": sent, "bounced": bounced, "complained": complained}}
    said = stats.warnings(counts)
    assert [w.split(" is ")[0] for w in said] == expected


def test_status_shows_the_counts_and_warns(async_app: Flask) -> None:
    state = async_app.extensions["confirm"]._get_state(async_app)
    stats.record(state, "sent", "confirm", 200)
    stats.record(state, "sent", "password_reset", 10)
    stats.record(state, "bounced", "confirm", 9)
    result = async_app.test_cli_runner().invoke(args=["confirm", "status"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    (confirm_row,) = [line for line in lines if line.startswith("confirm ")]
    assert confirm_row.split() == ["confirm", "200", "9", "0", "200", "9", "0"]
    (reset_row,) = [line for line in lines if line.startswith("password_reset")]
    assert reset_row.split()[1:4] == ["10", "0", "0"]
    assert not any(line.startswith("email_change ") for line in lines)  # none sent
    assert "Warning (24 h): bounce rate 4.3% is at half" in result.output


def test_a_job_writes_its_counts_together_at_its_end(
    async_app: Flask, redis_client: redis.Redis
) -> None:
    """Inside ``gathering`` (each send job) counts wait and are written in
    one round trip when it ends: none are lost, none written per mail."""
    state = async_app.extensions["confirm"]._get_state(async_app)
    with async_app.app_context():
        with stats.gathering(state):
            stats.record(state, "sent", "confirm")
            with stats.gathering(state):  # nested: the outermost writes
                stats.record(state, "sent", "confirm", 2)
            stats.record(state, "bounced", "password_reset")
            assert redis_client.keys("flask-confirm:stats:*") == []
        totals = stats.totals(state, 1)
    assert totals["confirm"]["sent"] == 3
    assert totals["password_reset"]["bounced"] == 1
    for key in redis_client.keys("flask-confirm:stats:*"):
        assert 0 < redis_client.ttl(key) <= stats.KEEP
