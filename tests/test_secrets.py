"""No secret leaves: after a full flow with each sender, no token, link,
secret key or AWS credential is in Redis (keys or values), in the worker's
log, or in log records of the web process."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import subprocess
import time
import typing as t
import urllib.parse
import urllib.request
import zlib

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from rq.job import Job
from rq.registry import FailedJobRegistry

from conftest import AppFactory
from conftest import FlakySink
from conftest import serving
from conftest import SESServer
from conftest import SMTPServer
from conftest import SMTPSink
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


# -- a refusal that names the recipient ------------------------------------------


def test_refusal_naming_the_address_is_stored_without_it(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    tmp_path: t.Any,
    make_smtp_server: t.Callable[[SMTPSink], SMTPServer],
    run_worker: t.Callable[..., subprocess.CompletedProcess[str]],
    redis_client: redis.Redis,
) -> None:
    """Issue 11, item 3: a real SMTP server answers 550 with the recipient's
    address in the reply, as Postfix does. RQ kept that text (the exception
    and its traceback) in the failed job for a year and the dashboard showed
    it. Now the job fails with the reply redacted, and the failed job lives
    for CONFIRM_FAILED_JOB_TTL."""
    gone, former = "gone.away@example.org", "former.user@example.org"
    sink = FlakySink(
        failures=10**6,
        reply="550 5.1.1 <{rcpt}>: Recipient address rejected: no mailbox {local}",
    )

    async def refuse(
        server: t.Any, session: t.Any, envelope: t.Any, address: str, options: t.Any
    ) -> str:
        local = address.partition("@")[0]
        return sink.reply.format(rcpt=address, local=local)

    sink.handle_RCPT = refuse  # type: ignore[method-assign]
    smtp = make_smtp_server(sink)
    app_config.update(
        smtp.config,
        CONFIRM_ASYNC=True,
        CONFIRM_PASSWORD_RESET=True,
        CONFIRM_FAILED_JOB_TTL=3600,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'refusal.sqlite'}",
    )
    app = make_app()
    confirm = app.extensions["confirm"]
    confirm.dashboard_auth(lambda: True)
    client = app.test_client()
    assert client.post("/register", data={"email": gone}).status_code == 201
    m = app.extensions["test_models"]
    with app.app_context():
        user = m["User"](
            email=former, email_confirmed_at=dt.datetime.now(dt.timezone.utc)
        )
        m["db"].session.add(user)
        m["db"].session.commit()
    with serving(app) as base:
        request = urllib.request.Request(
            base + "/confirm/reset",
            data=urllib.parse.urlencode({"email": former}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    result = run_worker("--burst", "--log-level", "DEBUG")
    assert result.returncode == 0, result.stderr

    failed = FailedJobRegistry("confirm", connection=redis_client)
    job_ids = failed.get_job_ids()
    assert len(job_ids) == 2
    secrets = [gone, former, "gone.away", "former.user"]
    now = time.time()
    for job_id in job_ids:
        job = Job.fetch(job_id, connection=redis_client)
        stored = job.latest_result()
        assert stored is not None and stored.exc_string
        # The provider's reply is kept, what names the recipient is not.
        assert "550 5.1.1" in stored.exc_string
        assert "Recipient address rejected" in stored.exc_string
        assert "<address>" in stored.exc_string
        texts = [stored.exc_string]
        # Older RQs keep the text, compressed, in the job's hash too.
        raw = redis_client.hget(job.key, "exc_info")
        if raw:
            texts.append(zlib.decompress(raw).decode())
        # The dashboard's JSON of the failed job and of the failed list.
        info = client.get(f"/rq/0/data/job/{job_id}.json")
        assert info.status_code == 200
        texts.append(json.dumps(info.json))
        assert "550 5.1.1" in texts[-1]
        # Bounded by the key, everything of the job: its hash, its results,
        # its place in the failed registry.
        for key in redis_client.scan_iter(f"*{job_id}*"):
            assert 0 < redis_client.ttl(key) <= 3600, key
        score = redis_client.zscore(failed.key, job_id)
        assert score is not None and score <= now + 3600
        for text in texts:
            for secret in secrets:
                assert secret not in text, (secret, text)
    listing = client.get("/rq/0/data/jobs/confirm/failed/8/asc/1.json")
    assert listing.status_code == 200
    # Nowhere in Redis, nor in the worker's log.
    dump = redis_dump(redis_client).decode("latin-1")
    worker_log = result.stdout + result.stderr
    assert "550 5.1.1" in worker_log
    for text in (dump, worker_log, json.dumps(listing.json)):
        for secret in secrets:
            assert secret not in text, secret


def test_inline_refusal_logs_and_records_no_address(
    make_app: AppFactory,
    make_smtp_server: t.Callable[[SMTPSink], SMTPServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With CONFIRM_ASYNC false the send runs in the request, and a failure
    is logged with its traceback: the web process's log, and the reason
    stored on the user, name no one either."""
    gone = "gone.away@example.org"
    sink = FlakySink(failures=10**6, reply=f"550 5.1.1 <{gone}>: no mailbox gone.away")
    app = make_app(**make_smtp_server(sink).config)
    with caplog.at_level(logging.DEBUG, logger="flask_confirm"):
        response = app.test_client().post("/register", data={"email": gone})
    assert response.status_code == 201
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if r.name == "flask_confirm"
    )
    m = app.extensions["test_models"]
    with app.app_context():
        (user,) = m["db"].session.scalars(sa.select(m["User"])).all()
        reason = user.confirmation_error
    assert "550 5.1.1" in logged and "Traceback" in logged
    assert reason is not None and "550 5.1.1 <<address>>" in reason
    for text in (logged, reason):
        assert "gone.away" not in text, text
