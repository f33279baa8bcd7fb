"""Sending pauses for every worker when the provider refuses the account.

moto's SES cannot suspend an account, so the refusal comes from a small HTTP
server of this test's own that answers SES v2's ``SendEmail`` as SES does for
a paused account (status 400, the error's type in ``x-amzn-ErrorType``, as
AWS's REST-JSON protocol has it): the real SES sender and botocore's own
parsing of the reply are what is tested.
"""

from __future__ import annotations

import collections.abc as cabc
import http.server
import json
import threading
import typing as t

import pytest
import redis
from flask import Flask

from conftest import AppFactory
from conftest import free_port
from flask_confirm import pauses
from flask_confirm import signals
from flask_confirm.state import get_state
from flask_confirm.tasks import send_batch_job
from flask_confirm.tasks import send_confirmation_job
from flask_confirm.tasks import send_reset_job
from testapp import models
from testapp import time_ago
from testapp import user_state


class FakeSES(http.server.ThreadingHTTPServer):
    """Answers every request with :attr:`refusal` (an SES error code), or,
    when that is ``None``, with a ``MessageId`` as SES accepts a message."""

    refusal: str | None = "SendingPausedException"
    requests: int = 0


class Handler(http.server.BaseHTTPRequestHandler):
    server: FakeSES

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests += 1
        code = self.server.refusal
        if code is None:
            status, body = 200, {"MessageId": f"m-{self.server.requests}"}
            headers = {}
        else:
            status = 400
            body = {"__type": code, "message": "Sending is paused for this account."}
            headers = {"x-amzn-ErrorType": f"{code}:"}
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {**headers, "Content-Type": "application/json"}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: t.Any) -> None:
        pass


@pytest.fixture()
def fake_ses(monkeypatch: pytest.MonkeyPatch) -> cabc.Iterator[FakeSES]:
    server = FakeSES(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield server
    server.shutdown()
    server.server_close()


def ses_app(make_app: AppFactory, **config: t.Any) -> Flask:
    return make_app(
        CONFIRM_ASYNC=True,
        CONFIRM_SENDER="ses",
        CONFIRM_SES_REGION="us-east-1",
        CONFIRM_SENDING_PAUSE=120,
        **config,
    )


def requested_users(app: Flask, *emails: str) -> list[t.Any]:
    with app.app_context():
        m = models(app)
        users = [
            m["User"](email=e, confirmation_requested_at=time_ago(0)) for e in emails
        ]
        m["db"].session.add_all(users)
        m["db"].session.commit()
        return [u.id for u in users]


def test_an_account_refusal_pauses_every_worker_and_fails_nobody(
    make_app: AppFactory, fake_ses: FakeSES, redis_client: redis.Redis
) -> None:
    app = ses_app(make_app)
    ada, bob = requested_users(app, "ada@example.org", "bob@example.org")
    paused: list[dict[str, t.Any]] = []
    failed: list[t.Any] = []
    with (
        signals.sending_paused.connected_to(lambda s, **kw: paused.append(kw), app),
        signals.confirmation_failed.connected_to(
            lambda s, **kw: failed.append(kw), app
        ),
        app.app_context(),
    ):
        # The first send hears the refusal: no retry spent, nothing failed.
        assert send_confirmation_job(ada) is None
        assert fake_ses.requests == 1
        assert [p["reason"] for p in paused] == ["SendingPausedException"]
        ttl = redis_client.ttl("flask-confirm:paused:confirm")
        assert 100 < ttl <= 120
        # Every other send, in this worker or another, waits: SES is not
        # asked again while the pause holds.
        assert send_batch_job([ada, bob]) == {"sent": 0, "skipped": 2, "failed": 0}
        assert fake_ses.requests == 1
    assert failed == []
    for user_id in (ada, bob):
        state, error = user_state(app, user_id)
        assert state == "requested"  # still owed: the sweeper queues it again
        assert error is not None and error.startswith("paused:")

    # The pause over (the key expired) and the account fixed: it is sent.
    redis_client.delete("flask-confirm:paused:confirm")
    fake_ses.refusal = None
    with app.app_context():
        assert send_confirmation_job(ada) == "m-2"
    assert user_state(app, ada)[0] == "sent"


def test_a_pause_another_worker_starts_is_heard_within_a_second(
    make_app: AppFactory, fake_ses: FakeSES, redis_client: redis.Redis
) -> None:
    """A worker that found sending not paused asks Redis again only after
    pauses.CHECK_EVERY (not once per mail of a batch); then it stops."""
    app = ses_app(make_app)
    fake_ses.refusal = None
    ada, bob, cy = requested_users(
        app, "ada@example.org", "bob@example.org", "cy@example.org"
    )
    with app.app_context():
        assert send_confirmation_job(ada) == "m-1"
        # Another worker pauses sending meanwhile.
        redis_client.set("flask-confirm:paused:confirm", b"SendingPausedException")
        assert send_confirmation_job(bob) == "m-2"  # under a second later
        get_state().memo.unpaused_at -= pauses.CHECK_EVERY
        assert send_confirmation_job(cy) is None
    assert fake_ses.requests == 2
    state, error = user_state(app, cy)
    assert state == "requested"
    assert error is not None and error.startswith("paused:")


def test_a_paused_reset_is_not_sent_and_not_retried(
    make_app: AppFactory, fake_ses: FakeSES, redis_client: redis.Redis
) -> None:
    app = ses_app(make_app, CONFIRM_PASSWORD_RESET=True)
    (ada,) = requested_users(app, "ada@example.org")
    with app.app_context():
        m = models(app)
        user = m["db"].session.get(m["User"], ada)
        user.email_confirmed_at = time_ago(0)
        m["db"].session.commit()
        fake_ses.refusal = "AccountSuspendedException"
        assert send_reset_job(ada) is None  # no exception: RQ retries nothing
    assert fake_ses.requests == 1
    assert (
        redis_client.get("flask-confirm:paused:confirm") == b"AccountSuspendedException"
    )


def test_other_refusals_do_not_pause(
    make_app: AppFactory, fake_ses: FakeSES, redis_client: redis.Redis
) -> None:
    """A refusal of the message is the user's, as before: no pause."""
    app = ses_app(make_app, CONFIRM_RETRIES=0)
    (ada,) = requested_users(app, "ada@example.org")
    fake_ses.refusal = "MessageRejected"
    with app.app_context(), pytest.raises(Exception, match="MessageRejected"):
        send_confirmation_job(ada)
    assert redis_client.exists("flask-confirm:paused:confirm") == 0
    assert user_state(app, ada)[0] == "failed"
