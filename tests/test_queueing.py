"""``queueing``: confirmations joining the send job that waits for them
(adaptive batching), batches, and ``CONFIRM_COALESCE``'s drain jobs left from
before, with a real Redis and real worker processes."""

from __future__ import annotations

import collections
import json
import subprocess
import typing as t

import pytest
import redis
from flask import Flask

from conftest import AppFactory
from conftest import SMTPServer
from conftest import wait_for
from flask_confirm.outbox import queueing

Run = t.Callable[..., subprocess.CompletedProcess[str]]
Start = t.Callable[..., subprocess.Popen[str]]


@pytest.fixture()
def async_app(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    redis_url: str,
    smtp_server: SMTPServer,
    tmp_path: t.Any,
) -> Flask:
    app_config.update(
        smtp_server.config,
        CONFIRM_ASYNC=True,
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


def state_of(app: Flask) -> t.Any:
    with app.app_context():
        return app.extensions["confirm"]._get_state()


def finished_jobs(app: Flask) -> list[t.Any]:
    with app.app_context():
        queue = state_of(app).queue
        jobs = [queue.fetch_job(i) for i in queue.finished_job_registry.get_job_ids()]
    return [job for job in jobs if job is not None]


def test_confirmations_join_the_waiting_job_up_to_the_batch_size(
    async_app: Flask, smtp_server: SMTPServer, run_worker: Run, redis_url: str
) -> None:
    emails = [f"user{i}@example.org" for i in range(120)]
    answers = register(async_app, *emails)  # no worker yet: the jobs wait
    by_job = collections.defaultdict(list)
    for answer in answers:
        by_job[answer["job_id"]].append(answer["id"])
    # CONFIRM_BATCH_SIZE is 50: the first 50 share a job, and so on.
    assert [len(ids) for ids in by_job.values()] == [50, 50, 20]
    with async_app.app_context():
        state = state_of(async_app)
        assert state.queue.job_ids == list(by_job)
        for job_id, ids in by_job.items():
            assert queueing.members(state, job_id) == ids
            job = state.queue.fetch_job(job_id)
            assert job.args == ()  # no ids, no secrets
            # The dashboard shows a waiting job's first user; the others
            # once it starts.
            assert job.meta == {"users": ids[:1]}

    result = run_worker("--burst")
    assert result.returncode == 0, result.stderr
    assert collections.Counter(str(m["To"]) for m in smtp_server.messages) == (
        dict.fromkeys(emails, 1)
    )
    # The dashboard shows whom each job carried (its meta), and the lists
    # the jobs were formed in are gone.
    carried = {job.id: job.meta["users"] for job in finished_jobs(async_app)}
    assert carried == by_job
    client = redis.Redis.from_url(redis_url)
    assert client.keys("flask-confirm:group:*") == []


def test_an_idle_worker_sends_each_confirmation_in_its_own_job(
    async_app: Flask, smtp_server: SMTPServer, start_worker: Start
) -> None:
    """One hop at a low rate: a confirmation finds no job waiting, queues its
    own, and the worker sends it at once; no drain job, no second hop."""
    worker = start_worker()
    first, second = [], []
    for i, into in enumerate((first, second)):
        into.extend(register(async_app, f"user{i}@example.org"))
        wait_for(lambda n=i + 1: len(smtp_server.messages) == n, 20, f"mail {i + 1}")
    assert first[0]["job_id"] != second[0]["job_id"]
    worker.terminate()
    worker.wait(20)
    jobs = finished_jobs(async_app)
    assert sorted(job.meta["users"] for job in jobs) == [
        [first[0]["id"]],
        [second[0]["id"]],
    ]
    assert {job.func_name for job in jobs} == {"flask_confirm.tasks.send_group_job"}


def test_a_job_that_started_takes_no_one_more(async_app: Flask) -> None:
    (first,) = register(async_app, "ada@example.org")
    with async_app.app_context():
        state = state_of(async_app)
        job = state.queue.fetch_job(first["job_id"])
        assert queueing.claim(state, job) == [first["id"]]
        (second,) = register(async_app, "bob@example.org")
        assert second["job_id"] != first["job_id"]
        # Claiming again (a retry) carries the same users as before.
        assert queueing.claim(state, job) == [first["id"]]
        assert queueing.members(state, second["job_id"]) == [second["id"]]
        assert job.get_meta()["users"] == [first["id"]]


def test_a_job_emptied_from_the_queue_is_not_joined(
    async_app: Flask, redis_client: redis.Redis
) -> None:
    """Emptying the queue (the dashboard's button, ``rq empty``) deletes the
    waiting job; the next confirmation must not join it. This relies on RQ
    keeping a job under ``Job.redis_job_namespace_prefix + id``, which this
    test pins."""
    (first,) = register(async_app, "ada@example.org")
    with async_app.app_context():
        state = state_of(async_app)
        assert redis_client.exists(f"rq:job:{first['job_id']}")
        assert state.job_class.redis_job_namespace_prefix == "rq:job:"
        state.queue.empty()
        (second,) = register(async_app, "bob@example.org")
        assert second["job_id"] != first["job_id"]
        assert state.queue.job_ids == [second["job_id"]]
        assert queueing.members(state, second["job_id"]) == [second["id"]]


def test_a_job_whose_enqueueing_failed_is_not_joined(
    async_app: Flask, redis_client: redis.Redis, app_config: dict[str, t.Any]
) -> None:
    """A Redis that refuses RQ's writes (an ACL denying HSET: a real
    refusal) fails the transaction that queues the job, its list and the
    marker together: none is left, so the next confirmation queues a job of
    its own instead of joining one no worker will run, and the first stays
    requested for the sweeper."""
    redis_client.acl_setuser(
        "nohset",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        commands=["+@all", "-hset", "-hmset"],
    )
    port = redis_client.connection_pool.connection_kwargs["port"]
    app = async_app
    state = state_of(app)
    good_redis = state.redis
    state.redis = redis.Redis.from_url(f"redis://nohset:pw@127.0.0.1:{port}/0")
    good_queue = state.queue
    state.queue = type(good_queue)(
        good_queue.name, connection=state.redis, job_class=state.job_class
    )
    try:
        (answer,) = register(app, "ada@example.org")
    finally:
        state.redis, state.queue = good_redis, good_queue
        redis_client.acl_deluser("nohset")
    assert answer["job_id"] is None
    assert redis_client.get("flask-confirm:group:confirm") is None
    (again,) = register(app, "bob@example.org")
    with app.app_context():
        assert state.queue.job_ids == [again["job_id"]]
        assert queueing.members(state, again["job_id"]) == [again["id"]]
        users = app.extensions["test_models"]["User"]
        ada = app.extensions["test_models"]["db"].session.get(users, answer["id"])
        assert ada.confirmation_state == "requested"


def test_coalesce_is_deprecated(make_app: AppFactory) -> None:
    with pytest.warns(DeprecationWarning, match="CONFIRM_COALESCE is deprecated"):
        app = make_app(CONFIRM_COALESCE=True, CONFIRM_ASYNC=True)
    (answer,) = register(app, "ada@example.org")
    with app.app_context():
        assert queueing.members(state_of(app), answer["job_id"]) == [answer["id"]]


def test_a_drain_job_queued_before_the_upgrade_still_drains(
    async_app: Flask,
    redis_client: redis.Redis,
    smtp_server: SMTPServer,
    run_worker: Run,
) -> None:
    """Ids that ``CONFIRM_COALESCE`` put in its list before this version,
    with their drain job, are still sent."""
    answers = register(async_app, "ada@example.org", "bob@example.org")
    redis_client.delete("flask-confirm:group:confirm")
    for key in redis_client.keys("flask-confirm:group:*"):
        redis_client.delete(key)
    with async_app.app_context():
        state = state_of(async_app)
        state.queue.empty()
        redis_client.rpush(
            "flask-confirm:coalesce:confirm:ids",
            *(json.dumps(a["id"]) for a in answers),
        )
        state.queue.enqueue_call("flask_confirm.tasks.drain_job")
    result = run_worker("--burst")
    assert result.returncode == 0, result.stderr
    assert sorted(str(m["To"]) for m in smtp_server.messages) == [
        "ada@example.org",
        "bob@example.org",
    ]
    assert redis_client.llen("flask-confirm:coalesce:confirm:ids") == 0


def test_redis_down_leaves_it_to_the_sweeper(
    make_app: AppFactory, app_config: dict[str, t.Any]
) -> None:
    app = make_app(CONFIRM_ASYNC=True, CONFIRM_REDIS_URL="redis://127.0.0.1:1/0")
    (answer,) = register(app, "ada@example.org")
    assert answer["job_id"] is None
    with app.app_context():
        user = app.extensions["test_models"]["db"].session.get(
            app.extensions["test_models"]["User"], answer["id"]
        )
        assert user.confirmation_state == "requested"
