"""The example application (``example/``) against real Redis, SMTP, worker and
web-server processes."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import typing as t
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port
from conftest import wait_for

# The example is not part of the installed package: import it from the
# repository's root, whatever pytest's import mode puts on sys.path.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from example.app import config_from_env  # noqa: E402
from example.app import confirm  # noqa: E402
from example.app import create_app  # noqa: E402
from example.app import db  # noqa: E402
from example.app import User  # noqa: E402

if t.TYPE_CHECKING:
    import collections.abc as cabc

    from flask import Flask
    from flask.testing import FlaskClient

    from conftest import SMTPServer

EXTERNAL_URL = "http://example.test"
LINK = re.compile(r"http://example\.test(/confirm/[A-Za-z0-9_.\-]+)")
NO_REDIS_URL = "redis://127.0.0.1:1/0"

#: Environment variables the example reads; cleared so that the machine's own
#: settings cannot leak into a test.
EXAMPLE_ENV = (
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "CONFIRM_EXTERNAL_URL",
    "CONFIRM_SENDER",
    "CONFIRM_MAIL_FROM",
    "CONFIRM_SES_REGION",
    "MAIL_SERVER",
    "MAIL_PORT",
    "MAIL_USE_TLS",
    "MAIL_USE_SSL",
    "MAIL_USERNAME",
    "MAIL_PASSWORD",
    "DASHBOARD_USER",
    "DASHBOARD_PASSWORD",
    "PORT",
    "FLASK_APP",
    "FLASK_DEBUG",
)


@pytest.fixture()
def example_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str
) -> dict[str, str]:
    """The environment the example runs with: a private SQLite file and the
    test Redis. Tests change it with ``monkeypatch`` before making the app."""
    for key in EXAMPLE_ENV:
        monkeypatch.delenv(key, raising=False)
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'example.sqlite'}",
        "REDIS_URL": redis_url,
        "CONFIRM_EXTERNAL_URL": EXTERNAL_URL,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture()
def make_app(example_env: dict[str, str]) -> cabc.Iterator[t.Callable[..., Flask]]:
    apps: list[Flask] = []

    def make(**config: t.Any) -> Flask:
        app = create_app(config)
        with app.app_context():
            db.create_all()
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def inline_app(make_app: t.Callable[..., Flask]) -> Flask:
    """An app that sends with the memory sender, inline."""
    return make_app(CONFIRM_SENDER="memory", CONFIRM_ASYNC=False)


def outbox(app: Flask) -> list[t.Any]:
    with app.app_context():
        return list(confirm.sender.outbox)  # type: ignore[attr-defined]


def text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", html).split())


def user_row(html: str, email: str) -> dict[str, str]:
    """The "sent" and "confirmed" cells of ``email``'s row, as text."""
    match = re.search(rf'<tr data-email="{re.escape(email)}">(.*?)</tr>', html, re.S)
    assert match is not None, f"no row for {email} in:\n{html}"
    cells = dict(re.findall(r'<td class="(sent|confirmed)">(.*?)</td>', match[1], re.S))
    return {name: text(cell) for name, cell in cells.items()}


def user_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-email="([^"]*)">', html)


def home(client: FlaskClient) -> str:
    response = client.get("/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def confirm_by_link(client: FlaskClient, link_path: str, email: str) -> None:
    page = client.get(link_path)
    assert page.status_code == 200
    assert email in page.get_data(as_text=True)
    assert user_row(home(client), email)["confirmed"] == "not yet"

    response = client.post(link_path)
    assert response.status_code == 302
    assert response.location == "/"
    html = home(client)
    assert "Your email address is confirmed" in html
    assert user_row(html, email)["confirmed"].startswith("confirmed 20")


# -- The page ------------------------------------------------------------------


def test_home_lists_users_with_sent_and_confirmed(
    make_app: t.Callable[..., Flask],
) -> None:
    app = make_app()
    client = app.test_client()
    html = home(client)
    assert "Nobody has registered yet." in html
    assert "<th>Email sent</th>" in html and "<th>Confirmed</th>" in html

    sent = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    with app.app_context():
        db.session.add_all(
            [
                User(email="new@example.org"),
                User(email="queued@example.org", confirmation_requested_at=sent),
                User(email="sent@example.org", confirmation_sent_at=sent),
                User(
                    email="done@example.org",
                    confirmation_sent_at=sent,
                    email_confirmed_at=sent + dt.timedelta(minutes=1),
                ),
            ]
        )
        db.session.commit()

    html = home(client)
    assert "Nobody has registered yet." not in html
    assert user_rows(html) == [
        "new@example.org",
        "queued@example.org",
        "sent@example.org",
        "done@example.org",
    ]
    assert user_row(html, "new@example.org") == {
        "sent": "not sent",
        "confirmed": "not yet",
    }
    assert user_row(html, "queued@example.org")["sent"] == (
        "queued 2024-05-06 07:08:09 UTC"
    )
    assert user_row(html, "sent@example.org") == {
        "sent": "sent 2024-05-06 07:08:09 UTC",
        "confirmed": "not yet",
    }
    assert user_row(html, "done@example.org")["confirmed"] == (
        "confirmed 2024-05-06 07:09:09 UTC"
    )
    # The dashboard link and its default credentials are in the footer.
    assert 'href="/rq/"' in html
    assert "user admin, password admin" in text(html)


# -- Registering and confirming ------------------------------------------------


def test_register_send_inline_and_confirm(make_app: t.Callable[..., Flask]) -> None:
    app = inline_app(make_app)
    client = app.test_client()

    response = client.post("/", data={"email": "  Ada@Example.ORG "})
    assert response.status_code == 302
    assert response.location == "/"
    html = home(client)
    assert "A confirmation link is on its way to ada@example.org" in html
    row = user_row(html, "ada@example.org")
    assert row["sent"].startswith("sent 20"), row
    assert row["confirmed"] == "not yet"

    (message,) = outbox(app)
    assert message.to == "ada@example.org"
    assert message.sender == "Example <no-reply@example.com>"
    (path,) = set(LINK.findall(message.text))
    confirm_by_link(client, path, "ada@example.org")


def test_register_through_worker_and_smtp(
    make_app: t.Callable[..., Flask],
    smtp_server: SMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Configured only by the environment, as in docker-compose.yml.
    monkeypatch.setenv("MAIL_SERVER", smtp_server.host)
    monkeypatch.setenv("MAIL_PORT", str(smtp_server.port))
    app = make_app()
    assert app.config["CONFIRM_SENDER"] == "smtp"
    assert app.config["CONFIRM_ASYNC"] is True
    client = app.test_client()

    assert client.post("/", data={"email": "grace@example.org"}).status_code == 302
    assert user_row(home(client), "grace@example.org")["sent"].startswith("queued ")
    assert smtp_server.messages == []  # the web request sends nothing

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "example.app:create_app",
            "confirm-worker",
            "--burst",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Job OK" in result.stdout + result.stderr

    smtp_server.wait_for_messages(1)
    (message,) = smtp_server.messages
    assert message["To"] == "grace@example.org"
    assert message["From"] == "Example <no-reply@example.com>"
    (path,) = set(LINK.findall(message.get_body(("plain",)).get_content()))
    assert user_row(home(client), "grace@example.org")["sent"].startswith("sent 20")
    confirm_by_link(client, path, "grace@example.org")


def test_duplicate_email_is_flashed(make_app: t.Callable[..., Flask]) -> None:
    app = inline_app(make_app)
    client = app.test_client()
    assert client.post("/", data={"email": "ada@example.org"}).status_code == 302
    home(client)  # consume the flash

    response = client.post("/", data={"email": "ADA@example.org"})
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "ada@example.org is already registered." in html
    assert user_rows(html) == ["ada@example.org"]
    # The session was rolled back and stays usable.
    assert client.post("/", data={"email": "bob@example.org"}).status_code == 302
    assert user_rows(home(client)) == ["ada@example.org", "bob@example.org"]
    assert [m.to for m in outbox(app)] == ["ada@example.org", "bob@example.org"]


@pytest.mark.parametrize(
    ("email", "problem"),
    [
        ("", "Please enter your email address."),
        ("   ", "Please enter your email address."),
        ("ada", "does not look like an email address"),
        ("ada@localhost", "does not look like an email address"),
        ("ada@@example.org", "does not look like an email address"),
        ("a da@example.org", "does not look like an email address"),
        ("a" * 250 + "@example.org", "too long"),
    ],
)
def test_bad_email_is_refused(
    make_app: t.Callable[..., Flask], email: str, problem: str
) -> None:
    app = inline_app(make_app)
    client = app.test_client()
    response = client.post("/", data={"email": email})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert problem in html
    assert user_rows(html) == []
    assert outbox(app) == []


def test_missing_form_field_is_refused(make_app: t.Callable[..., Flask]) -> None:
    response = inline_app(make_app).test_client().post("/")
    assert response.status_code == 400


# -- Dashboard -----------------------------------------------------------------


def test_dashboard_asks_for_basic_auth(make_app: t.Callable[..., Flask]) -> None:
    client = make_app().test_client()
    # /rq itself is guarded too, and only redirects to /rq/ once let in.
    assert client.get("/rq").status_code == 401
    redirected = client.get("/rq", auth=("admin", "admin"))
    assert redirected.status_code == 308
    assert redirected.headers["Location"] == "/rq/"

    for auth in (None, ("admin", "wrong"), ("wrong", "admin"), ("", "")):
        response = client.get("/rq/", auth=auth)
        assert response.status_code == 401, auth
        assert response.headers["WWW-Authenticate"] == 'Basic realm="rq-dashboard"'
        assert "DASHBOARD_PASSWORD" in response.get_data(as_text=True)
    assert client.get("/rq/0/data/queues.json").status_code == 401

    response = client.get("/rq/", auth=("admin", "admin"))
    assert response.status_code == 200
    assert "RQ" in response.get_data(as_text=True)
    data = client.get("/rq/0/data/queues.json", auth=("admin", "admin"))
    assert data.status_code == 200
    assert data.json == {"queues": []}


def test_dashboard_credentials_from_env(
    make_app: t.Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_USER", "ops")
    monkeypatch.setenv("DASHBOARD_PASSWORD", "s3cret-pässword")
    client = make_app().test_client()
    assert client.get("/rq/", auth=("admin", "admin")).status_code == 401
    assert client.get("/rq/", auth=("ops", "s3cret-pässword")).status_code == 200
    html = home(client)
    assert "s3cret" not in html and "password admin" not in text(html)


# -- Without Redis -------------------------------------------------------------


def test_no_redis_falls_back_to_inline(
    make_app: t.Callable[..., Flask],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_URL", NO_REDIS_URL)
    app = make_app(CONFIRM_SENDER="memory")
    assert f"No Redis answers at {NO_REDIS_URL}" in capsys.readouterr().err
    assert app.config["CONFIRM_ASYNC"] is False

    client = app.test_client()
    assert client.post("/", data={"email": "ada@example.org"}).status_code == 302
    html = home(client)
    assert user_row(html, "ada@example.org")["sent"].startswith("sent 20")
    assert "dashboard is off" in html
    assert client.get("/rq/", auth=("admin", "admin")).status_code == 404
    (message,) = outbox(app)
    (path,) = set(LINK.findall(message.text))
    confirm_by_link(client, path, "ada@example.org")


def test_redis_present_keeps_async(
    make_app: t.Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(CONFIRM_SENDER="memory")
    assert "No Redis" not in capsys.readouterr().err
    assert app.config["CONFIRM_ASYNC"] is True
    client = app.test_client()
    assert client.post("/", data={"email": "ada@example.org"}).status_code == 302
    assert user_row(home(client), "ada@example.org")["sent"].startswith("queued ")
    assert outbox(app) == []
    with app.app_context():
        assert confirm.queue.count == 1


# -- Configuration and commands ------------------------------------------------


def test_config_from_env() -> None:
    config = config_from_env({})
    assert config["CONFIRM_SENDER"] == "console"
    assert config["CONFIRM_REDIS_URL"] == "redis://localhost:6379/0"
    assert config["CONFIRM_EXTERNAL_URL"] == "http://127.0.0.1:5000"
    assert config["CONFIRM_MAIL_FROM"] == "Example <no-reply@example.com>"
    assert config["SQLALCHEMY_DATABASE_URI"] == "sqlite:///example.sqlite"
    assert config["SECRET_KEY"]
    assert (config["DASHBOARD_USER"], config["DASHBOARD_PASSWORD"]) == (
        "admin",
        "admin",
    )

    config = config_from_env(
        {
            "MAIL_SERVER": "mail.test",
            "MAIL_PORT": "2525",
            "MAIL_USE_TLS": "true",
            "SECRET_KEY": "k",
            "DATABASE_URL": "postgres://u:p@db/x",
        }
    )
    assert config["CONFIRM_SENDER"] == "smtp"
    assert (config["MAIL_SERVER"], config["MAIL_PORT"]) == ("mail.test", 2525)
    assert config["MAIL_USE_TLS"] is True
    assert config["SECRET_KEY"] == "k"
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db/x"

    config = config_from_env({"CONFIRM_SENDER": "ses", "MAIL_SERVER": "mail.test"})
    assert config["CONFIRM_SENDER"] == "ses"


def test_init_db_command(make_app: t.Callable[..., Flask]) -> None:
    app = make_app()
    with app.app_context():
        db.drop_all()
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    assert "Tables ready in sqlite:///" in result.output
    assert home(app.test_client())  # the users table is back


# -- python -m example ---------------------------------------------------------


def test_python_m_example(
    example_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The whole example: web server and worker, console mail, shutdown."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.delenv("CONFIRM_EXTERNAL_URL")  # derived from PORT
    monkeypatch.setenv("PORT", str(port))
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    log_path = tmp_path / "example.log"

    def log() -> str:
        return log_path.read_text(errors="replace")

    def get(path: str, data: dict[str, str] | None = None) -> str:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        with urllib.request.urlopen(base + path, body, timeout=10) as response:
            return t.cast(str, response.read().decode())

    def serving() -> bool:
        try:
            get("/")
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "example"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(serving, 30, "python -m example to serve")
            wait_for(lambda: "Listening on" in log(), 30, "the worker\n" + log())
            assert f" * App:       {base}/" in log()
            assert f" * Dashboard: {base}/rq/ (user admin, password admin)" in log()
            worker_pid = int(re.findall(r"Worker: +started \(pid (\d+)\)", log())[0])

            get("/", {"email": "linus@example.org"})
            wait_for(lambda: f"{base}/confirm/" in log(), 30, "the mail\n" + log())
            (link,) = set(re.findall(rf"{re.escape(base)}/confirm/[\w.\-]+", log()))
            assert "To: linus@example.org" in log()
            assert user_row(get("/"), "linus@example.org")["sent"].startswith("sent ")

            assert "linus@example.org" in get(link.removeprefix(base))
            get(link.removeprefix(base), {})  # POST, then follow the redirect
            row = user_row(get("/"), "linus@example.org")
            assert row["confirmed"].startswith("confirmed "), row

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "Stopping the worker" in log()
    assert "warm shut down" in log()
    assert log().rstrip().endswith("* Stopped.")
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)
