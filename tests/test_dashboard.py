"""The RQ dashboard, mounted at ``CONFIRM_DASHBOARD_URL`` behind
``Confirm.dashboard_auth``, against the test's real Redis."""

from __future__ import annotations

import base64
import hmac
import http.client
import json
import typing as t
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import rq_dashboard
from flask import abort
from flask import Flask
from flask import request
from flask_sqlalchemy import SQLAlchemy
from playwright.sync_api import BrowserContext
from playwright.sync_api import expect
from rq import Queue
from rq.job import Job
from werkzeug.datastructures import WWWAuthenticate

from conftest import free_port
from conftest import serving
from flask_confirm import Confirm
from flask_confirm import ConfirmableMixin
from flask_confirm.outbox import queueing
from flask_confirm.tokens import address_digest
from testapp import BASE_CONFIG

if t.TYPE_CHECKING:
    import collections.abc as cabc

    import redis
    from flask.testing import FlaskClient

    from conftest import AppFactory

EMAIL = "ada@example.org"

#: The jQuery file rq-dashboard ships (its version changes with rq-dashboard's).
JQUERY = next(
    path.name
    for path in (Path(rq_dashboard.__file__).parent / "static" / "js").glob(
        "jquery-*.min.js"
    )
)

#: Dashboard URLs (relative to its mount point) of every kind: pages, JSON
#: data, static files.
READ_URLS = [
    "/",
    "/0/view/workers",
    "/0/view/jobs",
    "/0/data/queues.json",
    "/0/data/workers.json",
    "/0/data/jobs/confirm/queued/8/asc/1.json",
    "/static/css/main.css",
    f"/static/js/{JQUERY}",
    "/favicon.ico",
]


def confirm_of(app: Flask) -> Confirm:
    return t.cast("Confirm", app.extensions["confirm"])


def register(client: FlaskClient, email: str = EMAIL) -> dict[str, t.Any]:
    response = client.post("/register", data={"email": email})
    assert response.status_code == 201, response.data
    assert response.json is not None
    return t.cast("dict[str, t.Any]", response.json)


def queues_json(
    client: FlaskClient, prefix: str = "/rq"
) -> dict[str, dict[str, t.Any]]:
    response = client.get(f"{prefix}/0/data/queues.json")
    assert response.status_code == 200, response.status
    assert response.json is not None
    return {q["name"]: q for q in response.json["queues"]}


@pytest.fixture()
def async_app(make_app: AppFactory) -> Flask:
    """An app that queues its jobs in Redis (nothing works them off), one
    confirmation per job (``CONFIRM_BATCH_SIZE`` 1), so that registering
    users queues as many jobs."""
    return make_app(CONFIRM_ASYNC=True, CONFIRM_BATCH_SIZE=1)


# -- closed by default ------------------------------------------------------------


@pytest.mark.parametrize("path", READ_URLS)
def test_closed_without_dashboard_auth(async_app: Flask, path: str) -> None:
    client = async_app.test_client()
    register(client)
    for method in ("HEAD", "OPTIONS"):
        assert client.open(f"/rq{path}", method=method).status_code == 403
    response = client.get(f"/rq{path}")
    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert "confirm.dashboard_auth" in body  # says how to open it
    assert "queued" not in body and EMAIL not in body


@pytest.mark.parametrize(
    "path",
    [
        "/queue/confirm/queued/empty",
        "/queue/confirm/compact",
        "/requeue/confirm",
    ],
)
def test_closed_for_actions_without_dashboard_auth(
    async_app: Flask, redis_client: redis.Redis, path: str
) -> None:
    client = async_app.test_client()
    job_id = register(client)["job_id"]
    assert client.post(f"/rq{path}").status_code == 403
    assert client.options(f"/rq{path}").status_code == 403
    assert client.post(f"/rq/job/{job_id}/delete").status_code == 403
    with async_app.app_context():
        assert confirm_of(async_app).queue.job_ids == [job_id]
    assert Job.exists(job_id, connection=redis_client)


def test_dashboard_auth_false_is_denied(async_app: Flask) -> None:
    calls: list[str] = []

    @confirm_of(async_app).dashboard_auth
    def deny() -> bool:
        calls.append(request.path)
        return False

    client = async_app.test_client()
    job_id = register(client)["job_id"]
    for path in READ_URLS:
        response = client.get(f"/rq{path}")
        assert response.status_code == 403, path
        assert "confirm.dashboard_auth" not in response.get_data(as_text=True)
    assert client.post(f"/rq/job/{job_id}/delete").status_code == 403
    assert calls == [f"/rq{p}" for p in READ_URLS] + [f"/rq/job/{job_id}/delete"]
    with async_app.app_context():
        assert confirm_of(async_app).queue.job_ids == [job_id]


@pytest.mark.parametrize("falsy", [None, 0, "", []])
def test_dashboard_auth_falsy_is_denied(async_app: Flask, falsy: t.Any) -> None:
    confirm_of(async_app).dashboard_auth(lambda: falsy)
    assert async_app.test_client().get("/rq/0/data/queues.json").status_code == 403


def test_bare_prefix_is_guarded_and_redirected_by_a_relative_url(
    async_app: Flask,
) -> None:
    """``/rq`` belongs to no blueprint: Werkzeug would redirect it by an
    absolute URL made from the Host header (a 500 on Werkzeug 3.0 for
    ``Host: [``). It is refused while the dashboard is closed, then
    redirected to ``/rq/`` with its query string and no Host."""
    client = async_app.test_client()
    assert client.get("/rq").status_code == 403
    confirm_of(async_app).dashboard_auth(lambda: True)
    response = client.get("/rq?a=1")
    assert response.status_code == 308
    assert response.headers["Location"] == "/rq/?a=1"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_dashboard_auth_true_opens_it(async_app: Flask) -> None:
    decorated = confirm_of(async_app).dashboard_auth(lambda: True)
    assert decorated() is True  # the decorator returns the function
    client = async_app.test_client()
    assert register(client)["job_id"]

    for path in READ_URLS:
        response = client.get(f"/rq{path}")
        assert response.status_code == 200, path
        response.close()

    queues = queues_json(client)
    assert set(queues) == {"confirm"}
    assert queues["confirm"]["count"] == 1

    page = client.get("/rq/")
    assert page.status_code == 200
    assert b"RQ Dashboard" in page.data or b"rq-dashboard" in page.data.lower()


def test_dashboard_lists_each_queued_job(async_app: Flask) -> None:
    confirm_of(async_app).dashboard_auth(lambda: True)
    client = async_app.test_client()
    assert queues_json(client) == {}
    register(client, "ada@example.org")
    assert queues_json(client)["confirm"]["count"] == 1
    register(client, "grace@example.org")
    assert queues_json(client)["confirm"]["count"] == 2


def test_dashboard_auth_runs_per_request(async_app: Flask) -> None:
    @confirm_of(async_app).dashboard_auth
    def is_admin() -> bool:
        return request.headers.get("X-Admin") == "yes"

    client = async_app.test_client()
    register(client)
    assert client.get("/rq/0/data/queues.json").status_code == 403
    ok = client.get("/rq/0/data/queues.json", headers={"X-Admin": "yes"})
    assert ok.status_code == 200
    assert client.get("/rq/0/data/queues.json").status_code == 403
    # The app's own pages never consult it.
    assert client.get("/").status_code == 200
    assert client.get("/confirm/resend").status_code == 200


def test_dashboard_auth_may_abort_itself(async_app: Flask) -> None:
    @confirm_of(async_app).dashboard_auth
    def basic_auth() -> bool:
        if request.authorization is None:
            abort(401, www_authenticate=WWWAuthenticate("basic", {"realm": "rq"}))
        return request.authorization.password == "s3cret"

    client = async_app.test_client()
    response = client.get("/rq/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/rq/", auth=("admin", "wrong")).status_code == 403
    assert client.get("/rq/", auth=("admin", "s3cret")).status_code == 200


def test_dashboard_auth_is_not_called_outside_the_dashboard(async_app: Flask) -> None:
    calls: list[str] = []

    @confirm_of(async_app).dashboard_auth
    def record() -> bool:
        calls.append(request.path)
        return True

    client = async_app.test_client()
    register(client)
    client.get("/")
    client.get("/confirm/resend")
    client.get("/confirm/not-a-token")
    client.get("/rqx")
    client.get("/rq-not-the-dashboard/")
    assert calls == []
    client.get("/rq/")
    assert calls == ["/rq/"]


# -- the constructor form -------------------------------------------------------------


@pytest.fixture()
def own_apps() -> cabc.Iterator[list[tuple[Flask, SQLAlchemy]]]:
    """Apps built here rather than by testapp; their engines are disposed."""
    apps: list[tuple[Flask, SQLAlchemy]] = []
    yield apps
    for app, db in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def build_app(
    redis_url: str, own_apps: list[tuple[Flask, SQLAlchemy]], **config: t.Any
) -> tuple[Flask, SQLAlchemy, type[t.Any]]:
    app = Flask("dashboard_test_app")
    app.config.update(BASE_CONFIG, CONFIRM_REDIS_URL=redis_url, **config)
    db = SQLAlchemy(app)

    class Member(ConfirmableMixin, db.Model):  # type: ignore[name-defined,misc]
        id = db.Column(db.Integer, primary_key=True)
        email = db.Column(db.String(320), unique=True, nullable=False)

    with app.app_context():
        db.create_all()
    own_apps.append((app, db))
    return app, db, Member


def test_constructor_dashboard_auth(
    redis_url: str, own_apps: list[tuple[Flask, SQLAlchemy]]
) -> None:
    allowed = {"value": True}
    app, db, member = build_app(redis_url, own_apps)
    Confirm(app, db=db, user_model=member, dashboard_auth=lambda: allowed["value"])
    client = app.test_client()
    assert client.get("/rq/").status_code == 200
    assert client.get("/rq/0/data/queues.json").status_code == 200
    allowed["value"] = False
    assert client.get("/rq/").status_code == 403


def test_constructor_dashboard_auth_with_init_app(
    redis_url: str, own_apps: list[tuple[Flask, SQLAlchemy]]
) -> None:
    app, db, member = build_app(redis_url, own_apps)
    confirm = Confirm(dashboard_auth=lambda: request.args.get("key") == "k")
    confirm.init_app(app, db=db, user_model=member)
    client = app.test_client()
    assert client.get("/rq/?key=k").status_code == 200
    assert client.get("/rq/").status_code == 403


def test_constructor_dashboard_auth_can_be_replaced(
    redis_url: str, own_apps: list[tuple[Flask, SQLAlchemy]]
) -> None:
    app, db, member = build_app(redis_url, own_apps)
    confirm = Confirm(app, db=db, user_model=member, dashboard_auth=lambda: True)
    confirm.dashboard_auth(lambda: False)
    assert app.test_client().get("/rq/").status_code == 403


def test_one_confirm_for_two_apps(
    redis_url: str, own_apps: list[tuple[Flask, SQLAlchemy]]
) -> None:
    first, first_db, first_model = build_app(redis_url, own_apps)
    second, second_db, second_model = build_app(
        redis_url, own_apps, CONFIRM_DASHBOARD_URL="/ops/rq"
    )
    confirm = Confirm(dashboard_auth=lambda: True)
    confirm.init_app(first, db=first_db, user_model=first_model)
    confirm.init_app(second, db=second_db, user_model=second_model)
    assert first.test_client().get("/rq/").status_code == 200
    assert first.test_client().get("/ops/rq/").status_code == 404
    assert second.test_client().get("/ops/rq/").status_code == 200
    assert second.test_client().get("/rq/").status_code == 404


# -- where it is mounted --------------------------------------------------------


def test_dashboard_url_none_does_not_mount_it(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_DASHBOARD_URL=None)
    confirm_of(app).dashboard_auth(lambda: True)
    client = app.test_client()
    for path in ["/rq", "/rq/", "/rq/0/data/queues.json", "/rq/static/css/main.css"]:
        assert client.get(path).status_code == 404, path
    assert "rq_dashboard" not in app.blueprints
    # The rest of the app works.
    assert client.get("/confirm/resend").status_code == 200


@pytest.mark.parametrize("url", ["/admin/rq", "/admin/rq/"])
def test_custom_dashboard_url(make_app: AppFactory, url: str) -> None:
    app = make_app(CONFIRM_DASHBOARD_URL=url, CONFIRM_ASYNC=True)
    client = app.test_client()
    register(client)
    # Still closed by default at the new place.
    assert client.get("/admin/rq/0/data/queues.json").status_code == 403
    assert client.get("/admin/rq/static/css/main.css").status_code == 403

    confirm_of(app).dashboard_auth(lambda: True)
    assert client.get("/admin/rq/").status_code == 200
    assert queues_json(client, "/admin/rq")["confirm"]["count"] == 1
    with client.get("/admin/rq/static/css/main.css") as static:
        assert static.status_code == 200
    assert client.get("/rq/").status_code == 404
    assert client.get("/rq/0/data/queues.json").status_code == 404
    # Its own links point under the new place.
    assert b'"/admin/rq/' in client.get("/admin/rq/").data


def test_default_dashboard_url_is_rq(app: Flask) -> None:
    assert app.config["CONFIRM_DASHBOARD_URL"] == "/rq"
    confirm_of(app).dashboard_auth(lambda: True)
    assert app.test_client().get("/rq/").status_code == 200


# -- what it shows about our jobs -----------------------------------------------


@pytest.mark.parametrize("full_args", [False, True])
def test_job_data_holds_only_the_user_id(
    make_app: AppFactory, redis_client: redis.Redis, full_args: bool
) -> None:
    app = make_app(CONFIRM_ASYNC=True, RQ_DASHBOARD_SHOW_FULL_ARGS=full_args)
    confirm = confirm_of(app)
    confirm.dashboard_auth(lambda: True)
    client = app.test_client()
    registered = register(client, EMAIL)
    user_id, job_id = registered["id"], registered["job_id"]

    # The job itself, as stored in Redis: no arguments at all; the ids of
    # the users who join it wait in a list of its own.
    job = Job.fetch(job_id, connection=redis_client)
    assert job.args == ()
    assert job.kwargs == {}
    assert job.origin == "confirm"
    # As it starts, the job records whom it carries in its meta.
    with app.app_context():
        state = confirm._get_state()
        assert queueing.claim(state, job) == [user_id]

    # What a token for this user would contain (its payload is deterministic).
    User = app.extensions["test_models"]["User"]
    db = app.extensions["test_models"]["db"]
    with app.app_context():
        token = confirm.make_token(db.session.get(User, user_id))
    secrets = [
        EMAIL,
        address_digest(EMAIL),
        token.split(".")[0],
        token,
        "app.example.test",
    ]

    jobs = client.get("/rq/0/data/jobs/confirm/queued/8/asc/1.json")
    assert jobs.status_code == 200
    assert jobs.json is not None
    (listed,) = jobs.json["jobs"]
    assert listed["id"] == job_id
    assert listed["description"] == (
        "flask_confirm.tasks.send_group_job()"
        if full_args
        else "confirmations for the users who joined while it waited"
    )

    info = client.get(f"/rq/0/data/job/{job_id}.json")
    assert info.status_code == 200
    assert info.json is not None
    assert info.json["id"] == job_id
    assert info.json["origin"] == "confirm"
    # The dashboard shows whom the job carries.
    assert json.loads(info.json["metadata"]) == {"users": [user_id]}
    if full_args:
        assert info.json["description"].endswith("send_group_job()")

    page = client.get(f"/rq/0/view/job/{job_id}")
    assert page.status_code == 200

    for response in (jobs, info):
        dumped = json.dumps(response.json)
        for secret in secrets:
            assert secret not in dumped, secret
    for secret in secrets:
        assert secret not in page.get_data(as_text=True), secret


# -- cross-site actions ----------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "https://evil.test"},
        {"Origin": "null"},
        {"Referer": "https://evil.test/rq/"},
        {"Origin": "http://app.example.test"},  # right host, wrong scheme
        {"Origin": "https://app.example.test:8443"},  # right host, wrong port
        {"Origin": "https://app.example.test.evil.test"},
        # The request's own host is no longer trusted (DNS rebinding).
        {"Origin": "http://localhost"},
        {"Referer": "http://localhost/rq/0/view/jobs"},
    ],
)
def test_cross_site_action_is_refused(
    async_app: Flask, headers: dict[str, str]
) -> None:
    confirm_of(async_app).dashboard_auth(lambda: True)
    client = async_app.test_client()
    job_id = register(client)["job_id"]
    response = client.post(f"/rq/job/{job_id}/delete", headers=headers)
    assert response.status_code == 403
    assert b"Cross-site" in response.data
    assert queues_json(client)["confirm"]["count"] == 1  # nothing was deleted


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://app.example.test"},
        {"Origin": "https://APP.example.test:443"},
        {"Referer": "https://app.example.test/rq/0/view/jobs"},
    ],
)
def test_same_origin_action_is_allowed(
    async_app: Flask, headers: dict[str, str]
) -> None:
    confirm_of(async_app).dashboard_auth(lambda: True)
    client = async_app.test_client()
    job_id = register(client)["job_id"]
    response = client.post(f"/rq/job/{job_id}/delete", headers=headers)
    assert response.status_code == 200
    assert queues_json(client)["confirm"]["count"] == 0


def test_reading_needs_no_origin(async_app: Flask) -> None:
    confirm_of(async_app).dashboard_auth(lambda: True)
    response = async_app.test_client().get("/rq/0/data/queues.json")
    assert response.status_code == 200


def test_requeue_all_by_get_needs_same_origin(async_app: Flask) -> None:
    # rq-dashboard accepts GET for this action: an <img> on another site
    # must not be able to trigger it.
    confirm_of(async_app).dashboard_auth(lambda: True)
    client = async_app.test_client()
    assert client.get("/rq/requeue/confirm").status_code == 403
    allowed = client.get(
        "/rq/requeue/confirm", headers={"Origin": "https://app.example.test"}
    )
    assert allowed.status_code == 200


@pytest.mark.parametrize("order", ["csrf-first", "confirm-first"])
def test_actions_work_under_global_csrf_protection(
    redis_url: str, own_apps: list[tuple[Flask, SQLAlchemy]], order: str
) -> None:
    """rq-dashboard's scripts post without Flask-WTF's token: with
    CSRFProtect on for the whole app, set up before or after Flask-Confirm,
    its actions still work, and the same-origin check still refuses
    cross-site ones."""
    from flask_wtf.csrf import CSRFProtect

    app, db, member = build_app(redis_url, own_apps, CONFIRM_ASYNC=True)
    if order == "csrf-first":
        CSRFProtect(app)
    confirm = Confirm(app, db=db, user_model=member, dashboard_auth=lambda: True)
    if order == "confirm-first":
        CSRFProtect(app)
    with app.app_context():
        db.session.add(user := member(email=EMAIL))
        db.session.commit()
        job_id = confirm.send_confirmation(user)
    client = app.test_client()
    refused = client.post(
        f"/rq/job/{job_id}/delete", headers={"Origin": "https://evil.test"}
    )
    assert refused.status_code == 403
    assert queues_json(client)["confirm"]["count"] == 1
    deleted = client.post(
        f"/rq/job/{job_id}/delete", headers={"Origin": "https://app.example.test"}
    )
    assert deleted.status_code == 200, deleted.get_data(as_text=True)
    assert queues_json(client)["confirm"]["count"] == 0


# -- DNS rebinding and framing, from outside ---------------------------------------

ADMIN = ("ops", "dashboard-password-4d1e")


def basic_auth_check() -> bool:
    """The README's check: HTTP basic auth, compared in constant time."""
    auth = request.authorization
    if auth is None or auth.type != "basic":
        abort(401, www_authenticate=WWWAuthenticate("basic", {"realm": "rq"}))
    given = f"{auth.username}:{auth.password}".encode()
    return hmac.compare_digest(given, ":".join(ADMIN).encode())


def basic_header() -> str:
    return "Basic " + base64.b64encode(":".join(ADMIN).encode()).decode()


def send(
    base: str, method: str, path: str, headers: dict[str, str]
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request over a real socket, with exactly these headers (``Host``
    included, which urllib would not let a test forge)."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def queued(redis_client: redis.Redis) -> int:
    return Queue("confirm", connection=redis_client).count


def three_jobs(app: Flask, redis_client: redis.Redis) -> None:
    client = app.test_client()
    for name in ("ada", "grace", "edsger"):
        register(client, f"{name}@example.org")
    assert queued(redis_client) == 3


def test_dns_rebinding_cannot_empty_the_queue(
    make_app: AppFactory, redis_client: redis.Redis
) -> None:
    """The attacker's page is served from rebind.attacker.example, whose DNS
    name is then pointed at the dashboard's address: the administrator's
    browser sends ``Host`` and ``Origin`` both naming the attacker's site,
    and its credentials. Only CONFIRM_EXTERNAL_URL's origin may act."""
    app = make_app(CONFIRM_ASYNC=True, CONFIRM_BATCH_SIZE=1)
    confirm_of(app).dashboard_auth(basic_auth_check)
    three_jobs(app, redis_client)
    empty = "/rq/queue/confirm/queued/empty"
    with serving(app) as base:
        for origin in ("Origin", "Referer"):
            status, _, body = send(
                base,
                "POST",
                empty,
                {
                    "Host": "rebind.attacker.example",
                    origin: "http://rebind.attacker.example"
                    + ("/rq/" if origin == "Referer" else ""),
                    "Authorization": basic_header(),
                },
            )
            assert status == 403, body
            assert b"Cross-site" in body
            assert queued(redis_client) == 3
        # A GET action too (requeue all), sent the same way.
        status, _, _ = send(
            base,
            "GET",
            "/rq/requeue/confirm",
            {
                "Host": "rebind.attacker.example",
                "Origin": "http://rebind.attacker.example",
                "Authorization": basic_header(),
            },
        )
        assert status == 403
        # The dashboard's own page, whatever Host the proxy passes on, may.
        status, _, body = send(
            base,
            "POST",
            empty,
            {
                "Host": "127.0.0.1",
                "Origin": "https://app.example.test",
                "Authorization": basic_header(),
            },
        )
        assert status == 200, body
    assert queued(redis_client) == 0


def test_dashboard_origins_adds_origins(
    make_app: AppFactory, redis_client: redis.Redis
) -> None:
    app = make_app(
        CONFIRM_ASYNC=True,
        CONFIRM_BATCH_SIZE=1,
        CONFIRM_DASHBOARD_ORIGINS=["https://Ops.Example.org:443/"],
    )
    confirm_of(app).dashboard_auth(basic_auth_check)
    three_jobs(app, redis_client)
    empty = "/rq/queue/confirm/queued/empty"
    with serving(app) as base:
        refused, _, _ = send(
            base,
            "POST",
            empty,
            {"Origin": "https://other.example.org", "Authorization": basic_header()},
        )
        assert refused == 403
        assert queued(redis_client) == 3
        allowed, _, body = send(
            base,
            "POST",
            empty,
            {"Origin": "https://ops.example.org", "Authorization": basic_header()},
        )
        assert allowed == 200, body
    assert queued(redis_client) == 0


@pytest.mark.parametrize(
    ("path", "auth", "status"),
    [
        ("/rq/", True, 200),
        ("/rq", True, 308),  # Werkzeug's redirect to the slash
        ("/rq/0/data/queues.json", True, 200),
        ("/rq/static/css/main.css", True, 200),
        ("/rq/no/such/page", True, 404),
        ("/rq/", False, 401),  # the check asks for credentials
        ("/rq/static/css/main.css", False, 401),
    ],
)
def test_no_dashboard_answer_may_be_framed(
    make_app: AppFactory, path: str, auth: bool, status: int
) -> None:
    app = make_app(CONFIRM_ASYNC=True, CONFIRM_BATCH_SIZE=1)
    confirm_of(app).dashboard_auth(basic_auth_check)
    headers = {"Authorization": basic_header()} if auth else {}
    with serving(app) as base:
        got, answer, _ = send(base, "GET", path, headers)
    assert got == status
    assert answer["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.get_all("Content-Security-Policy", [])


@pytest.mark.parametrize("why", ["closed", "denied", "cross-site"])
def test_refusals_may_not_be_framed_either(make_app: AppFactory, why: str) -> None:
    app = make_app(CONFIRM_ASYNC=True, CONFIRM_BATCH_SIZE=1)
    if why != "closed":
        confirm_of(app).dashboard_auth(lambda: why == "cross-site")
    with serving(app) as base:
        got, answer, _ = send(
            base, "POST", "/rq/queue/confirm/queued/empty", {"Origin": "null"}
        )
    assert got == 403
    assert answer["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.get_all("Content-Security-Policy", [])


def test_the_apps_own_policy_is_kept_beside_the_frame_policy(
    make_app: AppFactory,
) -> None:
    app = make_app(CONFIRM_ASYNC=True, CONFIRM_BATCH_SIZE=1)
    confirm_of(app).dashboard_auth(lambda: True)

    @app.after_request
    def own_policy(response: t.Any) -> t.Any:
        response.headers["Content-Security-Policy"] = "img-src 'self'"
        return response

    response = app.test_client().get("/rq/")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert set(response.headers.getlist("Content-Security-Policy")) == {
        "img-src 'self'",
        "frame-ancestors 'none'",
    }
    # Elsewhere the app's answers are its own.
    elsewhere = app.test_client().get("/")
    assert "X-Frame-Options" not in elsewhere.headers
    assert elsewhere.headers.getlist("Content-Security-Policy") == ["img-src 'self'"]


def test_a_framing_page_cannot_show_the_dashboard(
    make_app: AppFactory,
    redis_client: redis.Redis,
    new_context: t.Callable[..., BrowserContext],
) -> None:
    """Clickjacking: a page on another origin frames the dashboard, under
    the administrator's credentials, and hides it under its own buttons.
    Chromium refuses to show it there; the same dashboard still opens as a
    page of its own.

    The attacker's page is served from another port of 127.0.0.1: a public
    origin's frame of a local address would be stopped by Chromium's local
    network access checks whatever the dashboard sends."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = make_app(CONFIRM_ASYNC=True, CONFIRM_BATCH_SIZE=1, CONFIRM_EXTERNAL_URL=base)
    confirm_of(app).dashboard_auth(basic_auth_check)
    three_jobs(app, redis_client)
    attacker_app = Flask("attacker")

    @attacker_app.get("/")
    def prize() -> str:
        return (
            "<h1>Win a prize</h1>"
            f'<iframe id="victim" src="{base}/rq/" width="900" height="600">'
            "</iframe>"
        )

    context = new_context(http_credentials={"username": ADMIN[0], "password": ADMIN[1]})
    with serving(app, port), serving(attacker_app) as attacker:
        page = context.new_page()
        with page.expect_response(f"{base}/rq/") as framed:
            page.goto(f"{attacker}/")
        assert framed.value.status == 200  # sent, with the credentials
        page.wait_for_load_state("load")
        # The dashboard's page would say "Queues" and list the queue with
        # its Empty button; the refused frame holds Chromium's error page.
        (frame,) = [f for f in page.frames if f is not page.main_frame]
        expect(frame.locator("body")).not_to_contain_text("Queues")
        assert frame.locator("table#queues").count() == 0
        assert not frame.url.startswith(base), frame.url
        # What the frame would have been: the dashboard, for this browser.
        own = context.new_page()
        own.goto(f"{base}/rq/")
        expect(own.get_by_role("heading", name="Queues")).to_be_visible()
        expect(own.locator("table#queues tr[data-role=queue]")).to_have_count(1)
    assert queued(redis_client) == 3
