"""``queueing``: single jobs, batches, and confirmations coalesced into batch
jobs (``CONFIRM_COALESCE``), with a real Redis and real worker processes."""

from __future__ import annotations

import collections
import subprocess
import typing as t

import pytest
import redis
from flask import Flask
from rq import Queue

from conftest import AppFactory
from conftest import SMTPServer
from flask_confirm.outbox import queueing

Run = t.Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture()
def coalescing(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    redis_url: str,
    smtp_server: SMTPServer,
    tmp_path: t.Any,
) -> Flask:
    app_config.update(
        smtp_server.config,
        CONFIRM_ASYNC=True,
        CONFIRM_COALESCE=True,
        CONFIRM_REDIS_URL=redis_url,
        CONFIRM_RETRY_INTERVALS=[0],
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'queueing.sqlite'}",
    )
    return make_app()


def register(app: Flask, *emails: str) -> list[t.Any]:
    client = app.test_client()
    answers = []
    for email in emails:
        response = client.post("/register", data={"email": email})
        assert response.status_code == 201, response.data
        answers.append(response.json)
    return answers


def queued(app: Flask) -> list[t.Any]:
    with app.app_context():
        return list(app.extensions["confirm"].queue.get_jobs())


def test_confirmations_share_one_drain_job(
    coalescing: Flask, smtp_server: SMTPServer, run_worker: Run, redis_url: str
) -> None:
    emails = [f"user{i}@example.org" for i in range(120)]
    answers = register(coalescing, *emails)
    job_ids = {answer["job_id"] for answer in answers}
    assert len(job_ids) == 1
    (drain,) = queued(coalescing)
    assert drain.id in job_ids
    assert drain.args == ()  # the ids wait in a list of their own
    client = redis.Redis.from_url(redis_url)
    ids_key = "flask-confirm:coalesce:confirm:ids"
    assert client.lrange(ids_key, 0, -1) == [str(a["id"]).encode() for a in answers]

    result = run_worker("--burst")
    assert result.returncode == 0, result.stderr
    assert collections.Counter(str(m["To"]) for m in smtp_server.messages) == (
        dict.fromkeys(emails, 1)
    )
    assert client.llen(ids_key) == 0
    # One drain job, then batch jobs of CONFIRM_BATCH_SIZE (50): 50, 50, 20.
    with coalescing.app_context():
        queue = coalescing.extensions["confirm"].queue
        finished = [
            queue.fetch_job(i) for i in queue.finished_job_registry.get_job_ids()
        ]
    descriptions = sorted(job.description for job in finished if job is not None)
    assert descriptions == [
        "coalesced confirmations",
        "confirmations for 20 users",
        "confirmations for 50 users",
        "confirmations for 50 users",
    ]


def test_a_confirmation_after_the_drain_gets_a_new_job(coalescing: Flask) -> None:
    (first,) = register(coalescing, "ada@example.org")
    with coalescing.app_context():
        state = coalescing.extensions["confirm"]._get_state()
        assert queueing.drain(state) == 1
    (second,) = register(coalescing, "bob@example.org")
    assert second["job_id"] != first["job_id"]
    descriptions = [job.description for job in queued(coalescing)]
    assert descriptions == [
        "coalesced confirmations",
        "confirmations for 1 user",
        "coalesced confirmations",
    ]


def test_a_long_list_is_drained_by_several_jobs(
    coalescing: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queueing, "_DRAIN_MOST", 3)
    register(coalescing, *(f"user{i}@example.org" for i in range(5)))
    with coalescing.app_context():
        state = coalescing.extensions["confirm"]._get_state()
        assert queueing.drain(state) == 3
        queue = Queue("confirm", connection=state.redis)
        # The first drain job (run here), its batch of 3, and a new drain
        # job for the 2 left.
        descriptions = [job.description for job in queue.get_jobs()]
        assert descriptions[-2:] == [
            "confirmations for 3 users",
            "coalesced confirmations",
        ]
        assert queueing.drain(state) == 2
        assert queueing.drain(state) == 0


def test_redis_down_leaves_it_to_the_sweeper(
    make_app: AppFactory, app_config: dict[str, t.Any]
) -> None:
    app = make_app(
        CONFIRM_ASYNC=True,
        CONFIRM_COALESCE=True,
        CONFIRM_REDIS_URL="redis://127.0.0.1:1/0",
    )
    (answer,) = register(app, "ada@example.org")
    assert answer["job_id"] is None
    with app.app_context():
        user = app.extensions["test_models"]["db"].session.get(
            app.extensions["test_models"]["User"], answer["id"]
        )
        assert user.confirmation_state == "requested"
