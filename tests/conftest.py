"""Fixtures: real Redis, SMTP, SES (moto), databases and worker processes.

Every service a test needs is started here or found running; when that fails
the test errors loudly rather than being skipped.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import dataclasses
import email
import email.message
import email.policy
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import typing as t
import uuid
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser
from playwright.sync_api import BrowserContext
from playwright.sync_api import expect
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from testapp import CONFIG_ENV
from testapp import create_app

TESTS_DIR = Path(__file__).parent
#: Where browser tests write their screenshots (not committed).
SCREENSHOTS = TESTS_DIR.parent / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Milliseconds Playwright waits for a page, an element or a text.
TIMEOUT_MS = 15_000

POSTGRES_URL = os.environ.get(
    "FLASK_CONFIRM_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get(
    "FLASK_CONFIRM_TEST_MARIADB",
    "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: t.Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"Timed out after {timeout}s waiting for {what}.")


# -- Redis --------------------------------------------------------------------


class RedisProcess:
    """A private redis-server on a free port, which a test may stop and start
    again on the same port without harming anything else on the machine."""

    def __init__(self, workdir: Path, *args: str, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; the tests need it.")
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        #: More redis-server options, such as ("--maxmemory-policy", "allkeys-lru").
        self.args = list(args)
        self.password = password
        if password is not None:
            self.args += ["--requirepass", password, "--masterauth", password]
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        workdir = self.workdir / f"redis-{self.port}"
        workdir.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)

        def ready() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        try:
            wait_for(ready, 10, f"redis-server on port {self.port}")
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture()
def private_redis(tmp_path: Path) -> cabc.Iterator[RedisProcess]:
    """A redis-server of this test's own, to stop and start at will."""
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def make_redis(tmp_path: Path) -> cabc.Iterator[t.Callable[..., RedisProcess]]:
    """Start a redis-server of this test's own with options of its own:
    ``make_redis("--maxmemory-policy", "allkeys-lru")``."""
    servers: list[RedisProcess] = []

    def make(*args: str, password: str | None = None) -> RedisProcess:
        server = RedisProcess(tmp_path, *args, password=password)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


class SentinelGroup:
    """A master, a replica of it, and a Redis Sentinel watching them, each a
    private process on a free port; :meth:`failover` promotes the replica.

    The servers ask for ``password`` and the Sentinel for
    ``sentinel_password``, so that the tests also show neither is printed.
    """

    SERVICE = "mymaster"

    def __init__(self, workdir: Path, password: str, sentinel_password: str) -> None:
        self.password, self.sentinel_password = password, sentinel_password
        self.master = RedisProcess(workdir, password=password)
        self.master.start()
        self.replica = RedisProcess(
            workdir,
            "--replicaof",
            "127.0.0.1",
            str(self.master.port),
            password=password,
        )
        self.replica.start()
        self.port = free_port()
        config = workdir / f"sentinel-{self.port}.conf"
        # Sentinel rewrites its configuration file as it learns; it must be
        # its own, and writable.
        config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {workdir}\n"
            f"requirepass {sentinel_password}\n"
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel auth-pass {self.SERVICE} {password}\n"
            f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
            f"sentinel failover-timeout {self.SERVICE} 5000\n"
        )
        self.proc = subprocess.Popen(
            [self.master.binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL
        )
        self.client = redis.Redis(
            port=self.port, password=sentinel_password, decode_responses=True
        )
        wait_for(self._sees_replica, 30, "Sentinel to see the master and its replica")

    @property
    def url(self) -> str:
        return (
            f"redis+sentinel://:{self.password}@127.0.0.1:{self.port}"
            f"/{self.SERVICE}/0?sentinel_password={self.sentinel_password}"
        )

    @property
    def client_spec(self) -> dict[str, t.Any]:
        """The same, for :data:`testapp.CLIENT_KEY`."""
        return {
            "sentinels": [["127.0.0.1", self.port]],
            "service": self.SERVICE,
            "password": self.password,
            "sentinel_password": self.sentinel_password,
        }

    def master_port(self) -> int:
        _, port = self.client.sentinel_get_master_addr_by_name(self.SERVICE)
        return int(port)

    def _sees_replica(self) -> bool:
        try:
            replicas = self.client.sentinel_slaves(self.SERVICE)
        except redis.RedisError:
            return False
        return any(
            "s_down" not in r["flags"] and r.get("master-link-status") == "ok"
            for r in replicas
        )

    def failover(self) -> None:
        """Promote the replica (SENTINEL FAILOVER), and wait until Sentinel
        names it as the master, it acts as one, and the old master has been
        turned into its replica.

        That last step comes at Sentinel's next look at the old master, up to
        10 s later. Until then the old master still takes writes from the
        clients connected to it, and loses them when it becomes a replica:
        the split-brain window every Sentinel deployment has."""
        old = self.master_port()
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.execute_command("SENTINEL FAILOVER", self.SERVICE)
                break
            except redis.ResponseError:  # NOGOODSLAVE until its INFO is fresh
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        wait_for(lambda: self.master_port() != old, 30, "Sentinel to switch masters")
        new = redis.Redis(port=self.master_port(), password=self.password)
        wait_for(
            lambda: new.info("replication")["role"] == "master", 30, "the new master"
        )
        new.close()
        demoted = redis.Redis(port=old, password=self.password)
        wait_for(
            lambda: demoted.info("replication")["role"] == "slave",
            30,
            "the old master to become a replica",
        )
        demoted.close()

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)
        self.replica.stop()
        self.master.stop()


@pytest.fixture()
def sentinel_group(tmp_path: Path) -> cabc.Iterator[SentinelGroup]:
    """A master, a replica and a Sentinel of this test's own."""
    group = SentinelGroup(tmp_path, "data-secret-7f3a", "sentinel-secret-91bc")
    yield group
    group.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> cabc.Iterator[str]:
    """A private redis-server on a free port, so tests may flush it without
    touching anything else on the machine."""
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture()
def redis_url(redis_server: str) -> cabc.Iterator[str]:
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    yield redis_server
    client.flushall()
    client.close()


@pytest.fixture()
def redis_client(redis_url: str) -> cabc.Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# -- SMTP ---------------------------------------------------------------------


class SMTPSink:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.connections = 0

    async def handle_EHLO(
        self,
        server: t.Any,
        session: t.Any,
        envelope: t.Any,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: t.Any, session: t.Any, envelope: t.Any) -> str:
        message = email.message_from_bytes(
            envelope.content, policy=email.policy.default
        )
        assert isinstance(message, email.message.EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"


class FlakySink(SMTPSink):
    """Answers the first ``failures`` deliveries with ``reply`` (421 and 451
    are "try again later", 550 "no such user"), then accepts; optionally
    stalls each RCPT for ``delay`` seconds, before any mail is accepted."""

    def __init__(
        self, failures: int = 0, reply: str = "421 4.3.2 Try later", delay: float = 0
    ) -> None:
        super().__init__()
        self.failures, self.reply, self.delay = failures, reply, delay
        self.attempts = 0

    async def handle_RCPT(
        self,
        server: t.Any,
        session: t.Any,
        envelope: t.Any,
        address: str,
        options: t.Any,
    ) -> str:
        import asyncio

        self.attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.attempts <= self.failures:
            return self.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"


@dataclasses.dataclass
class SMTPServer:
    host: str
    port: int
    sink: SMTPSink

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        return self.sink.messages

    @property
    def config(self) -> dict[str, t.Any]:
        return {
            "CONFIRM_SENDER": "smtp",
            "MAIL_SERVER": self.host,
            "MAIL_PORT": self.port,
            "MAIL_SUPPRESS_SEND": False,
        }

    def wait_for_messages(self, count: int, timeout: float = 10) -> None:
        wait_for(lambda: len(self.messages) >= count, timeout, f"{count} mail(s)")


@pytest.fixture(scope="session")
def smtp_controller() -> cabc.Iterator[Controller]:
    controller = Controller(SMTPSink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture()
def make_smtp_server() -> cabc.Iterator[t.Callable[[SMTPSink], SMTPServer]]:
    """Start an SMTP server with a handler of the test's own."""
    controllers: list[Controller] = []

    def make(sink: SMTPSink) -> SMTPServer:
        controller = Controller(sink, hostname="127.0.0.1", port=free_port())
        controller.start()
        controllers.append(controller)
        return SMTPServer(controller.hostname, controller.port, sink)

    yield make
    for controller in controllers:
        controller.stop()


@pytest.fixture()
def smtp_server(smtp_controller: Controller) -> SMTPServer:
    sink = smtp_controller.handler
    sink.messages.clear()
    sink.connections = 0
    return SMTPServer(smtp_controller.hostname, smtp_controller.port, sink)


@dataclasses.dataclass(frozen=True)
class DKIMTestKey:
    """An RSA key made for the test run, and its DNS record: the tests have
    no DNS, so a stub answers for ``selector._domainkey.domain``."""

    domain: str
    selector: str
    #: PKCS#8 PEM, as OpenSSL 3 writes it.
    private_pem: str
    #: The TXT record a domain would publish: ``v=DKIM1; k=rsa; p=...``.
    record: bytes

    @property
    def config(self) -> dict[str, t.Any]:
        return {
            "CONFIRM_DKIM_DOMAIN": self.domain,
            "CONFIRM_DKIM_SELECTOR": self.selector,
            "CONFIRM_DKIM_PRIVATE_KEY": self.private_pem,
        }

    def dns(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """dkimpy's ``dnsfunc``: the one mock here, a stub DNS that knows the
        one record."""
        if isinstance(name, bytes):
            name = name.decode("ascii")
        wanted = f"{self.selector}._domainkey.{self.domain}"
        return self.record if name.rstrip(".").lower() == wanted else None


@pytest.fixture(scope="session")
def dkim_test_key() -> DKIMTestKey:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    return DKIMTestKey("example.com", "mail2026", pem, record)


# -- SES (moto server mode) ---------------------------------------------------


@dataclasses.dataclass
class SESServer:
    endpoint: str
    region: str = "us-east-1"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing-key-id",
            "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
            "AWS_DEFAULT_REGION": self.region,
        }

    @property
    def config(self) -> dict[str, t.Any]:
        return {"CONFIRM_SENDER": "ses", "CONFIRM_SES_REGION": self.region}

    def sent_messages(self) -> list[t.Any]:
        # The moto server runs in a thread of this process, so its backend's
        # state can be read directly.
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        return list(ses_backends[DEFAULT_ACCOUNT_ID][self.region].sent_messages)


@pytest.fixture(scope="session")
def moto_server() -> cabc.Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def ses_server(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> SESServer:
    import boto3
    import requests

    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    ses = SESServer(moto_server)
    for key, value in ses.env.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("sesv2", region_name=ses.region)
    client.create_email_identity(EmailIdentity="example.test")
    client.close()
    return ses


# -- Databases ----------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> cabc.Iterator[str]:
    """A database of this test run's own on the local PostgreSQL server, so that
    concurrent runs (a developer's and CI's, say) never lock each other out."""
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"flask_confirm_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as e:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {POSTGRES_URL}; start it or set"
            " FLASK_CONFIRM_TEST_POSTGRES to a server where databases can be made."
        ) from e
    try:
        yield (
            sa.make_url(POSTGRES_URL)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def mariadb_url() -> cabc.Iterator[str]:
    """A database of this test run's own on the local MariaDB (or MySQL)
    server, as :func:`postgres_url` makes one on PostgreSQL."""
    admin = sa.create_engine(MARIADB_URL)
    name = f"flask_confirm_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}`"))
    except sa.exc.OperationalError as e:
        raise RuntimeError(
            f"MariaDB is not reachable at {MARIADB_URL}; start it (for example"
            " 'start-stop-daemon --start --oknodo --background --exec"
            " /usr/sbin/mariadbd') or set FLASK_CONFIRM_TEST_MARIADB to a server"
            " where databases can be made."
        ) from e
    try:
        yield (
            sa.make_url(MARIADB_URL)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        # A file, not :memory:, so that a worker process sees the same data.
        return f"sqlite:///{tmp_path / 'test.sqlite'}"
    fixture = {"postgresql": "postgres_url", "mariadb": "mariadb_url"}[request.param]
    return t.cast(str, request.getfixturevalue(fixture))


# -- Apps -----------------------------------------------------------------------


AppFactory = t.Callable[..., Flask]


@pytest.fixture()
def app_config(redis_url: str) -> dict[str, t.Any]:
    """Configuration shared by the test's app and its worker processes; tests
    update it before calling ``make_app``."""
    return {"CONFIRM_REDIS_URL": redis_url}


@pytest.fixture()
def make_app(app_config: dict[str, t.Any]) -> cabc.Iterator[AppFactory]:
    apps: list[Flask] = []

    def make(**config: t.Any) -> Flask:
        app = create_app(**{**app_config, **config})
        with app.app_context():
            db = app.extensions["test_models"]["db"]
            db.drop_all()
            db.create_all()
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            db = app.extensions["test_models"]["db"]
            db.session.remove()
            db.drop_all()
            db.engine.dispose()


@pytest.fixture()
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def db_app(make_app: AppFactory, database_url: str) -> Flask:
    return make_app(SQLALCHEMY_DATABASE_URI=database_url)


@pytest.fixture()
def db_client(db_app: Flask) -> FlaskClient:
    return db_app.test_client()


@pytest.fixture()
def reset_app(make_app: AppFactory) -> Flask:
    return make_app(CONFIRM_PASSWORD_RESET=True)


@pytest.fixture()
def async_config(app_config: dict[str, t.Any], tmp_path: t.Any) -> dict[str, t.Any]:
    app_config.update(
        CONFIRM_ASYNC=True,
        CONFIRM_RETRY_INTERVALS=[0],
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'tasks.sqlite'}",
    )
    return app_config


@contextlib.contextmanager
def serving(app: Flask, port: int = 0) -> cabc.Iterator[str]:
    """Serve ``app`` over real HTTP on ``port`` (by default a free one), in a
    thread of this process; yield its base URL. A test whose app must know
    its own URL (:data:`CONFIRM_EXTERNAL_URL`) takes a :func:`free_port`
    first."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


# -- Workers ------------------------------------------------------------------


def _worker_env(config: dict[str, t.Any]) -> dict[str, str]:
    env = {
        **os.environ,
        CONFIG_ENV: json.dumps(config),
        "PYTHONPATH": os.pathsep.join(
            [str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]
        ),
    }
    env.pop("FLASK_APP", None)
    return env


FLASK = [sys.executable, "-m", "flask", "--app", "testapp:create_app()"]


@pytest.fixture()
def start_worker(
    app_config: dict[str, t.Any], tmp_path: Path
) -> cabc.Iterator[t.Callable[..., subprocess.Popen[str]]]:
    """Start ``flask confirm-worker`` in the background; its output goes to a
    file in tmp_path. Workers still running at the end are killed."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, **config: t.Any) -> subprocess.Popen[str]:
        log_path = tmp_path / f"worker-{len(procs)}.log"
        with log_path.open("w") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [*FLASK, "confirm-worker", *args],
                env=_worker_env({**app_config, **config}),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=TESTS_DIR,
            )
        proc.log_path = str(log_path)  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.fixture()
def run_flask(
    app_config: dict[str, t.Any],
) -> t.Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``flask <args>`` for the test app in a subprocess."""

    def run(
        *args: str, timeout: float = 60, **config: t.Any
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*FLASK, *args],
            env=_worker_env({**app_config, **config}),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=TESTS_DIR,
        )

    return run


@pytest.fixture()
def run_worker(
    run_flask: t.Callable[..., subprocess.CompletedProcess[str]],
) -> t.Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``flask confirm-worker`` in a real subprocess, with the test's config."""

    def run(*args: str, **kwargs: t.Any) -> subprocess.CompletedProcess[str]:
        return run_flask("confirm-worker", *args, **kwargs)

    return run


# -- The browser ----------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> cabc.Iterator[Browser]:
    """Debian's headless Chromium, driven through Playwright's sync API."""
    if not CHROMIUM.exists():
        raise RuntimeError(
            f"{CHROMIUM} is missing; install Debian's chromium package"
            " (apt-get install chromium). `playwright install` is not used."
        )
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture()
def new_context(
    browser: Browser,
) -> cabc.Iterator[t.Callable[..., BrowserContext]]:
    """Make a fresh browser context (its own cookies and credentials)."""
    contexts: list[BrowserContext] = []

    def make(**options: t.Any) -> BrowserContext:
        context = browser.new_context(
            viewport={"width": 1000, "height": 750}, **options
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


# -- DNS ----------------------------------------------------------------------


class DNSServer:
    """A DNS server on 127.0.0.1 that answers from :attr:`records`, for the
    MX lookups of ``CONFIRM_CHECK_DELIVERABILITY`` (there is no network here):
    ``{(name, type): [rdata, ...]}``; a name with no record at all is
    NXDOMAIN, one in :attr:`silent` gets no answer (a timeout)."""

    def __init__(self) -> None:
        import socket

        self.records: dict[tuple[str, str], list[str]] = {}
        self.silent: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype))
            if name in self.silent:
                continue
            response = dns.message.make_response(query)
            if not any(known == name for known, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif rdatas := self.records.get((name, rdtype)):
                response.answer.append(
                    dns.rrset.from_text(question.name, 300, "IN", rdtype, *rdatas)
                )
            self.sock.sendto(response.to_wire(), peer)

    def resolver(self) -> t.Any:
        """A caching resolver that asks this server only, made as
        ``email_validator.caching_resolver`` makes them (whose
        ``dns_resolver`` argument email-validator 2.0 lacks)."""
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.cache = dns.resolver.LRUCache()
        resolver.lifetime = 1
        return resolver

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def dns_server() -> cabc.Iterator[DNSServer]:
    server = DNSServer()
    server.records = {
        ("example.org", "MX"): ["10 mx.example.org."],
        ("mx.example.org", "A"): ["192.0.2.10"],
        ("nomail.example.com", "MX"): ["0 ."],  # RFC 7505: accepts no mail
    }
    yield server
    server.close()
