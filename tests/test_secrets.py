"""No secret leaves: after a full flow with each sender, no token, link,
secret key or AWS credential is in Redis (keys or values), in the worker's
log, or in log records of the web process."""

from __future__ import annotations

import logging
import re
import subprocess
import typing as t

import pytest
import redis
from flask import Flask

from conftest import AppFactory
from conftest import SESServer
from conftest import SMTPServer
from testapp import BASE_CONFIG

TOKEN = re.compile(r"/confirm/([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)")
RULE = "-" * 72


def redis_dump(client: redis.Redis) -> bytes:
    """Every key and every value in Redis, as bytes."""
    chunks = []
    for key in client.scan_iter():
        chunks.append(key)
        chunks.append(client.dump(key) or b"")
    return b"\n".join(chunks)


def assert_nothing_leaks(token: str, *haystacks: str | bytes) -> None:
    secrets = [
        token,
        "/confirm/" + token[:20],
        BASE_CONFIG["SECRET_KEY"],
        "testing-secret-key",
    ]
    for haystack in haystacks:
        text = haystack.decode("latin-1") if isinstance(haystack, bytes) else haystack
        for secret in secrets:
            assert secret not in text


def without_console_mail(output: str) -> str:
    # The console sender prints the mail, link included, by design; that is
    # the one place the link may appear, so it is cut before scanning.
    return re.sub(rf"{RULE}.*?{RULE}", "", output, flags=re.S)


@pytest.mark.parametrize("sender", ["smtp", "ses", "console"])
def test_full_flow_leaks_nothing(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    tmp_path: t.Any,
    run_worker: t.Callable[..., subprocess.CompletedProcess[str]],
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
    sender: str,
) -> None:
    app_config.update(
        CONFIRM_ASYNC=True,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'secrets.sqlite'}",
    )
    if sender == "smtp":
        smtp: SMTPServer = request.getfixturevalue("smtp_server")
        app_config.update(smtp.config)
    elif sender == "ses":
        ses: SESServer = request.getfixturevalue("ses_server")
        app_config.update(ses.config)
    else:
        app_config.update(CONFIRM_SENDER="console")
    app = make_app()
    client = app.test_client()

    with caplog.at_level(logging.DEBUG):
        assert (
            client.post("/register", data={"email": "ada@example.org"}).status_code
            == 201
        )
        result = run_worker("--burst", "--log-level", "DEBUG")
        assert result.returncode == 0, result.stderr

        if sender == "smtp":
            mail = smtp.messages[0].get_body(("plain",)).get_content()
        elif sender == "ses":
            mail = ses.sent_messages()[0].body
        else:
            mail = result.stdout
        match = TOKEN.search(mail)
        assert match is not None, mail
        token = match.group(1)

        # The visitor opens the link and confirms: the web side logs nothing
        # of the token either.
        assert client.get(f"/confirm/{token}").status_code == 200
        assert client.post(f"/confirm/{token}").status_code == 302

    worker_log = without_console_mail(result.stdout) + result.stderr
    assert "Job OK" in worker_log
    log_records = "\n".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''}"
        for r in caplog.records
        # The test's own SMTP server logs the mail it receives, as a mail
        # server would; it is not part of the app.
        if not r.name.startswith("mail.log")
    )
    assert_nothing_leaks(token, redis_dump(redis_client), worker_log, log_records)


def test_inline_flow_with_memory_sender_leaks_nothing(
    app: Flask, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        app.test_client().post("/register", data={"email": "ada@example.org"})
        with app.app_context():
            (mail,) = app.extensions["confirm"].sender.outbox
    match = TOKEN.search(mail.text)
    assert match is not None
    log_records = "\n".join(r.getMessage() for r in caplog.records)
    assert_nothing_leaks(match.group(1), redis_dump(redis_client), log_records)
