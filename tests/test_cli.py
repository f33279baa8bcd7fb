"""``flask confirm-worker``: the whole flow through a real worker process."""

from __future__ import annotations

import re
import typing as t

import pytest
import redis

from conftest import AppFactory
from conftest import SESServer
from conftest import SMTPServer

LINK = re.compile(r"https://app\.example\.test/confirm/[A-Za-z0-9_.\-]+")


def models(app: t.Any) -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", app.extensions["test_models"])


def test_smtp_flow_through_worker(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    database_url: str,
    smtp_server: SMTPServer,
    run_worker: t.Callable[..., t.Any],
    redis_client: redis.Redis,
) -> None:
    app_config.update(
        smtp_server.config, SQLALCHEMY_DATABASE_URI=database_url, CONFIRM_ASYNC=True
    )
    app = make_app()
    client = app.test_client()

    response = client.post("/register", data={"email": "ada@example.org"})
    assert response.status_code == 201
    assert response.json is not None and response.json["job_id"]
    assert smtp_server.messages == []  # nothing is sent by the web request

    result = run_worker("--burst")
    assert result.returncode == 0, result.stderr
    assert "Job OK" in result.stdout, result.stdout + result.stderr
    smtp_server.wait_for_messages(1)
    (message,) = smtp_server.messages
    assert message["To"] == "ada@example.org"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    (link,) = set(LINK.findall(text))
    assert link in html

    User = models(app)["User"]
    with app.app_context():
        user = models(app)["db"].session.get(User, response.json["id"])
        assert user.confirmation_sent_at is not None
        assert not user.email_confirmed

    path = link.removeprefix("https://app.example.test")
    page = client.get(path)
    assert page.status_code == 200
    assert b"ada@example.org" in page.data
    with app.app_context():
        assert (
            not models(app)["db"].session.get(User, response.json["id"]).email_confirmed
        )

    confirmed = client.post(path)
    assert confirmed.status_code == 302
    with app.app_context():
        assert models(app)["db"].session.get(User, response.json["id"]).email_confirmed

    token = path.rsplit("/", 1)[1]
    for key in redis_client.scan_iter():
        dump = redis_client.dump(key) or b""
        assert token.encode() not in dump and b"/confirm/" not in dump
    assert token not in result.stdout + result.stderr


def test_ses_flow_through_worker(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    ses_server: SESServer,
    run_worker: t.Callable[..., t.Any],
    tmp_path: t.Any,
) -> None:
    app_config.update(
        ses_server.config,
        CONFIRM_ASYNC=True,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'ses.sqlite'}",
    )
    app = make_app()
    response = app.test_client().post("/register", data={"email": "grace@example.org"})
    assert response.status_code == 201

    result = run_worker("--burst")
    assert result.returncode == 0, result.stderr
    (sent,) = ses_server.sent_messages()
    assert sent.destinations["ToAddresses"] == ["grace@example.org"]
    assert LINK.search(sent.body)


def test_worker_requires_redis(run_worker: t.Callable[..., t.Any]) -> None:
    result = run_worker("--burst", CONFIRM_REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode != 0
    assert "CONFIRM_REDIS_URL" in result.stderr


@pytest.mark.parametrize("value", [None, ""])
def test_worker_requires_external_url(
    run_worker: t.Callable[..., t.Any], value: t.Any
) -> None:
    result = run_worker("--burst", CONFIRM_EXTERNAL_URL=value)
    assert result.returncode != 0
    assert "CONFIRM_EXTERNAL_URL" in result.stderr


def test_workers_option_runs_several_processes(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    run_worker: t.Callable[..., t.Any],
    tmp_path: t.Any,
) -> None:
    app_config.update(
        smtp_server.config,
        CONFIRM_ASYNC=True,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'pool.sqlite'}",
    )
    app = make_app()
    client = app.test_client()
    emails = [f"user{i}@example.org" for i in range(40)]
    for email in emails:
        assert client.post("/register", data={"email": email}).status_code == 201
    result = run_worker("--burst", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 process(es)" in result.stdout
    assert sorted(str(m["To"]) for m in smtp_server.messages) == sorted(emails)
    # RQ names the worker by its name, or (before 2.4.1) by its Redis key.
    names = set(
        re.findall(
            r"Worker (?:rq:worker:)?([0-9a-f]{32}): done, quitting", result.stdout
        )
    )
    assert len(names) == 2


def test_send_and_resend_all_commands(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    smtp_server: SMTPServer,
    run_flask: t.Callable[..., t.Any],
    run_worker: t.Callable[..., t.Any],
    tmp_path: t.Any,
) -> None:
    app_config.update(
        smtp_server.config,
        CONFIRM_ASYNC=True,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'ops.sqlite'}",
    )
    app = make_app()
    models = app.extensions["test_models"]
    with app.app_context():
        db, User = models["db"], models["User"]
        db.session.add_all(User(email=f"user{i}@example.org") for i in range(5))
        db.session.commit()
        app.extensions["confirm"].confirm_user(db.session.get(User, 5))

    sent = run_flask("confirm", "send", "USER1@example.org")
    assert sent.returncode == 0, sent.stderr
    assert "Queued a confirmation for user1@example.org" in sent.stdout
    assert (
        "already confirmed" in run_flask("confirm", "send", "user4@example.org").stdout
    )
    unknown = run_flask("confirm", "send", "nobody@example.org")
    assert unknown.returncode != 0 and "No user has the address" in unknown.stderr
    bad = run_flask("confirm", "send", "not an address")
    assert bad.returncode != 0 and "EMAIL" in bad.stderr

    assert (
        run_flask("confirm", "resend-all").returncode != 0
    )  # --unconfirmed is required
    # user1 was just requested: --older-than leaves it out.
    resent = run_flask("confirm", "resend-all", "--unconfirmed", "--older-than", "3600")
    assert resent.returncode == 0, resent.stderr
    assert "Queued 3 confirmation(s)." in resent.stdout
    assert run_worker("--burst").returncode == 0
    assert sorted(str(m["To"]) for m in smtp_server.messages) == [
        f"user{i}@example.org" for i in range(4)
    ]
