"""Redis as it is deployed: a client of the app's own, Sentinel URLs and a
real failover, passwords never printed, and the eviction policy checked."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import typing as t
from pathlib import Path

import pytest
import redis

from conftest import AppFactory
from conftest import RedisProcess
from conftest import SentinelGroup
from conftest import SMTPServer
from conftest import wait_for
from flask_confirm.connection import connect
from flask_confirm.connection import describe
from flask_confirm.connection import parse_sentinel_url
from flask_confirm.connection import redact
from testapp import CLIENT_KEY

DEAD_URL = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:s3cret@h/0", "redis://user:***@h/0"),
        ("redis://s3cret@h/0", "redis://***@h/0"),
        ("redis://h/0?password=s3cret&db=1", "redis://h/0?password=***&db=1"),
        (
            "redis+sentinel://:s3cret@a:1,b:2/svc/0?sentinel_password=s3cret",
            "redis+sentinel://:***@a:1,b:2/svc/0?sentinel_password=***",
        ),
    ],
)
def test_redact_hides_every_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_sentinel_url_is_parsed() -> None:
    parsed = parse_sentinel_url(
        "redis+sentinel://app:p%40ss@h1:26379,h2,[::1]:26380/my%20master/3"
        "?sentinel_username=s&sentinel_password=sp"
    )
    assert parsed.sentinels == (("h1", 26379), ("h2", 26379), ("::1", 26380))
    assert (parsed.service, parsed.db) == ("my master", 3)
    assert (parsed.username, parsed.password) == ("app", "p@ss")
    assert (parsed.sentinel_username, parsed.sentinel_password) == ("s", "sp")


def test_describe_names_no_credentials() -> None:
    plain = connect("redis://:s3cret@127.0.0.1:6390/2")
    assert describe(plain) == "redis://127.0.0.1:6390/2"
    sentinel = connect("redis+sentinel://:s3cret@h1:1,h2:2/svc/4?sentinel_password=x")
    assert describe(sentinel) == "redis+sentinel://h1:1,h2:2/svc/4"


# -- a client of the app's own ---------------------------------------------------


def test_client_given_to_confirm_is_used_everywhere(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    redis_client: redis.Redis,
    redis_url: str,
    smtp_server: SMTPServer,
    run_worker: t.Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: t.Any,
) -> None:
    """CONFIRM_REDIS_URL leads nowhere; everything goes through the client
    the app hands over: the queue, the limits, the dashboard, the worker."""
    app_config.update(
        smtp_server.config,
        CONFIRM_ASYNC=True,
        CONFIRM_REDIS_URL=DEAD_URL,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'client.sqlite'}",
        **{CLIENT_KEY: {"url": redis_url}},
    )
    app = make_app()
    app.extensions["confirm"].dashboard_auth(lambda: True)
    client = app.test_client()

    registered = client.post("/register", data={"email": "ada@example.org"})
    assert registered.status_code == 201
    job_id = registered.json["job_id"]  # type: ignore[index]
    assert job_id is not None  # queued, not left to the sweeper
    assert redis_client.lrange("rq:queue:confirm", 0, -1) == [job_id.encode()]

    assert (
        client.post("/confirm/resend", data={"email": "x@example.org"}).status_code
        == 200
    )
    assert list(redis_client.scan_iter("flask-confirm:limit:*"))

    for path in ("/rq/0/data/queues.json", "/rq/0/view/jobs", "/rq/"):
        page = client.get(path)
        assert page.status_code == 200, path
    queues = json.loads(client.get("/rq/0/data/queues.json").data)["queues"]
    assert [(q["name"], q["count"]) for q in queues] == [("confirm", 1)]
    # The dashboard's instance menu names the client, and nothing else.
    assert "127.0.0.1:1/" not in client.get("/rq/").get_data(as_text=True)

    result = run_worker("--burst")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the client given to Confirm(redis=...)" in result.stdout
    smtp_server.wait_for_messages(1)
    assert smtp_server.messages[0]["To"] == "ada@example.org"


def test_replies_are_parsed_by_hiredis(
    make_app: AppFactory, app_config: dict[str, t.Any]
) -> None:
    """hiredis is a dependency so that the app's and the worker's clients
    parse Redis replies in C (about half a worker's CPU in redis-py goes,
    benchmarks/README). redis-py passes over a hiredis it does not accept
    without a word, so the floor in pyproject.toml is checked here."""
    from redis._parsers import _HiredisParser

    app_config["CONFIRM_ASYNC"] = True
    app = make_app()
    client = app.extensions["confirm"]._get_state(app).redis
    connection = client.connection_pool.make_connection()
    assert isinstance(connection._parser, _HiredisParser)


# -- passwords ------------------------------------------------------------------


def test_worker_never_prints_the_password(
    make_redis: t.Callable[..., RedisProcess],
    run_worker: t.Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: t.Any,
) -> None:
    server = make_redis(password="pw-in-the-query-5e1")
    url = f"redis://127.0.0.1:{server.port}/0?password={server.password}"
    db = f"sqlite:///{tmp_path / 'pw.sqlite'}"
    started = run_worker("--burst", CONFIRM_REDIS_URL=url, SQLALCHEMY_DATABASE_URI=db)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "password=***" in started.stdout
    # Nor when Redis cannot be reached, in the error.
    gone = url.replace(str(server.port), "1")
    failed = run_worker("--burst", CONFIRM_REDIS_URL=gone, SQLALCHEMY_DATABASE_URI=db)
    assert failed.returncode != 0 and "CONFIRM_REDIS_URL" in failed.stderr
    for output in (started.stdout, started.stderr, failed.stdout, failed.stderr):
        assert server.password not in output


# -- the eviction policy ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "warned"),
    [
        (("--maxmemory-policy", "allkeys-lru"), True),
        ((), False),  # noeviction, Redis's default
        # CONFIG disabled, as on some managed services: the worker starts.
        (
            ("--maxmemory-policy", "allkeys-lru", "--rename-command", "CONFIG", ""),
            False,
        ),
    ],
)
def test_worker_warns_when_redis_may_evict(
    make_redis: t.Callable[..., RedisProcess],
    run_worker: t.Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: t.Any,
    args: tuple[str, ...],
    warned: bool,
) -> None:
    server = make_redis(*args)
    result = run_worker(
        "--burst",
        CONFIRM_REDIS_URL=server.url,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'evict.sqlite'}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert ("maxmemory-policy is 'allkeys-lru'" in output) is warned, output
    if warned:
        assert "maxmemory-policy noeviction" in output  # the fix


# -- Sentinel ----------------------------------------------------------------------


@pytest.mark.parametrize("given", ["url", "client"])
def test_sentinel_failover_loses_nothing(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    sentinel_group: SentinelGroup,
    smtp_server: SMTPServer,
    start_worker: t.Callable[..., subprocess.Popen[str]],
    tmp_path: t.Any,
    given: str,
) -> None:
    """The replica is promoted while users register and a long-running
    worker sends: the web side and the worker follow the new master, and
    every requested confirmation is mailed (a job lost with the old master is
    queued again by the worker's sweeps)."""
    app_config.update(
        smtp_server.config,
        CONFIRM_ASYNC=True,
        CONFIRM_SWEEP_AFTER=2,
        CONFIRM_SWEEP_INTERVAL=1,
        CONFIRM_RETRY_INTERVALS=[0],
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'failover.sqlite'}",
    )
    if given == "url":
        app_config["CONFIRM_REDIS_URL"] = sentinel_group.url
    else:
        app_config.update(
            CONFIRM_REDIS_URL=DEAD_URL, **{CLIENT_KEY: sentinel_group.client_spec}
        )
    app = make_app()
    client = app.test_client()
    worker = start_worker("--with-scheduler")
    first_master = sentinel_group.master_port()

    def register(i: int) -> str | None:
        response = client.post("/register", data={"email": f"user{i}@example.org"})
        assert response.status_code == 201  # whatever Redis is doing
        return t.cast("str | None", response.json["job_id"])  # type: ignore[index]

    assert all(register(i) for i in range(5))
    smtp_server.wait_for_messages(5, timeout=30)

    # Registrations go on while Sentinel promotes the replica and then turns
    # the old master into its replica; what the old master took meanwhile is
    # lost with its data, and left to the sweeps.
    failover = threading.Thread(target=sentinel_group.failover)
    failover.start()
    during = 5
    while failover.is_alive() and during < 100:
        register(during)
        during += 1
        time.sleep(0.2)
    failover.join()
    assert sentinel_group.master_port() != first_master

    # Afterwards the web side queues on the new master at once.
    assert all(register(i) for i in range(during, during + 5))
    emails = {f"user{i}@example.org" for i in range(during + 5)}

    def all_mailed() -> bool:
        return emails <= {str(m["To"]) for m in smtp_server.messages}

    wait_for(all_mailed, 60, "a mail to every registered user")
    assert worker.poll() is None, "the worker stopped"  # it carried on
    # The dashboard reads the new master too.
    app.extensions["confirm"].dashboard_auth(lambda: True)
    workers = client.get("/rq/0/data/workers.json")
    assert workers.status_code == 200 and len(workers.json["workers"]) == 1  # type: ignore[index]
    worker.terminate()
    assert worker.wait(30) == 0
    log = Path(worker.log_path).read_text()  # type: ignore[attr-defined]
    for secret in (sentinel_group.password, sentinel_group.sentinel_password):
        assert secret not in log
    assert "Job OK" in log


def test_sentinel_url_without_a_master_is_reported(
    run_worker: t.Callable[..., subprocess.CompletedProcess[str]],
    sentinel_group: SentinelGroup,
    tmp_path: t.Any,
) -> None:
    url = sentinel_group.url.replace("/mymaster/", "/nosuchservice/")
    result = run_worker(
        "--burst",
        CONFIRM_REDIS_URL=url,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'nomaster.sqlite'}",
    )
    assert result.returncode != 0
    assert "CONFIRM_REDIS_URL" in result.stderr and "nosuchservice" in result.stderr
    assert sentinel_group.password not in result.stderr
    assert sentinel_group.sentinel_password not in result.stderr
