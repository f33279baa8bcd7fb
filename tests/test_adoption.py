"""Adopting Flask-Confirm into an existing app, end to end, as the docs'
"Adding Flask-Confirm to an existing app" page tells it.

``tests/existing_app/blog`` is the app: a factory, blueprints, Flask-Login,
Flask-WTF's ``CSRFProtect`` on for every view, Flask-Migrate, and a base
template with its own stylesheet. The test runs it as it was before (its
users table gets rows), adds Flask-Confirm, lets Alembic write the migration
and runs it unedited, marks the existing users confirmed, then serves the app
(waitress) with a real worker mailing through SMTP, and drives Chromium
through registration, the mailed link, a ``confirmed_required`` page and a
password reset, every form as rendered.
"""

from __future__ import annotations

import collections.abc as cabc
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import typing as t
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect
from werkzeug.security import generate_password_hash

from conftest import free_port
from conftest import SCREENSHOTS
from conftest import wait_for

if t.TYPE_CHECKING:
    from playwright.sync_api import BrowserContext
    from playwright.sync_api import Page

    from conftest import SMTPServer

APP_DIR = Path(__file__).parent / "existing_app"
EXISTING = [("ada", "ada@example.org"), ("bob", "bob@example.org")]
OLD_PASSWORD = "old password 1"
NEW_PASSWORD = "a brand new password"
BACKGROUND = "rgb(250, 245, 230)"  # body's, from blog/static/style.css


class Blog:
    """Runs ``flask`` and friends for the blog, with one environment."""

    def __init__(self, tmp_path: Path, redis_url: str, smtp: SMTPServer) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database = tmp_path / "blog.sqlite"
        self.migrations = tmp_path / "migrations"
        self.logs = tmp_path
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
            "PYTHONPATH": str(APP_DIR),
            "SECRET_KEY": secrets.token_urlsafe(32),
            "DATABASE_URL": f"sqlite:///{self.database}",
            "REDIS_URL": redis_url,
            "EXTERNAL_URL": self.base,
            "MAIL_SERVER": smtp.host,
            "MAIL_PORT": str(smtp.port),
            "PYTHONUNBUFFERED": "1",
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def flask(self, *args: str, before: bool = False) -> str:
        env = {**self.env, **({"BLOG_BEFORE_CONFIRM": "1"} if before else {})}
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "blog", *args],
            env=env,
            cwd=self.logs,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (
            f"flask {' '.join(args)}:\n{done.stdout}{done.stderr}"
        )
        return done.stdout + done.stderr

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as out:
            proc = subprocess.Popen(
                args, env=self.env, cwd=self.logs, stdout=out, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture()
def blog(
    tmp_path: Path, redis_url: str, smtp_server: SMTPServer
) -> cabc.Iterator[Blog]:
    running = Blog(tmp_path, redis_url, smtp_server)
    yield running
    running.stop()


def migrate_and_adopt(blog: Blog) -> None:
    """The app before Flask-Confirm, with users; then the migration Alembic
    writes for the mixin's columns, run as written; then the backfill."""
    db = ("db",)
    blog.flask(*db, "init", "-d", str(blog.migrations), before=True)
    blog.flask(*db, "migrate", "-d", str(blog.migrations), "-m", "users", before=True)
    blog.flask(*db, "upgrade", "-d", str(blog.migrations), before=True)
    with sqlite3.connect(blog.database) as conn:
        conn.executemany(
            "INSERT INTO users (username, email, password_hash) VALUES (?, ?, ?)",
            [(u, e, generate_password_hash(OLD_PASSWORD)) for u, e in EXISTING],
        )

    out = blog.flask(*db, "migrate", "-d", str(blog.migrations), "-m", "confirm")
    assert "Detected added column 'users.email_confirmed_at'" in out, out
    blog.flask(*db, "upgrade", "-d", str(blog.migrations))
    assert "No new upgrade operations detected" in blog.flask(
        *db, "check", "-d", str(blog.migrations)
    )
    status = blog.flask("confirm", "status")
    assert re.search(r"none\s*:?\s*2", status), status
    marked = blog.flask("confirm", "mark-confirmed", "--existing")
    assert re.search(r"\b2\b", marked), marked
    status = blog.flask("confirm", "status")
    assert re.search(r"confirmed\s*:?\s*2", status), status


def serve(blog: Blog) -> None:
    server = blog.start(
        "server",
        sys.executable,
        "-m",
        "waitress",
        "--listen",
        f"127.0.0.1:{blog.port}",
        "--call",
        "blog:create_app",
    )
    worker = blog.start(
        "worker", sys.executable, "-m", "flask", "--app", "blog", "confirm-worker"
    )

    def serving() -> bool:
        for proc, name in ((server, "server"), (worker, "worker")):
            if proc.poll() is not None:
                raise RuntimeError(f"the {name} exited:\n{blog.log(name)}")
        try:
            with urllib.request.urlopen(blog.base + "/", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    wait_for(serving, 30, "the blog to serve")
    wait_for(lambda: "Listening on" in blog.log("worker"), 30, "the worker to listen")


def mailed_link(smtp: SMTPServer, count: int, to: str, base: str) -> str:
    smtp.wait_for_messages(count, timeout=30)
    message = smtp.messages[count - 1]
    assert message["To"] == to
    body = message.get_body(("plain",))
    assert body is not None
    (link,) = set(
        re.findall(rf"{re.escape(base)}/confirm/[\w.\-/]+", body.get_content())
    )
    return link


def sign_in(page: Page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/auth/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def styled_by_the_app(page: Page) -> None:
    expect(page.locator("#blog-nav")).to_be_visible()
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == BACKGROUND, background


def test_adopting_into_an_existing_app(
    blog: Blog,
    smtp_server: SMTPServer,
    new_context: t.Callable[..., BrowserContext],
) -> None:
    migrate_and_adopt(blog)
    serve(blog)
    base = blog.base
    SCREENSHOTS.mkdir(exist_ok=True)

    # An existing user, marked confirmed, goes straight through
    # confirmed_required, on GET and on POST.
    page = new_context().new_page()
    sign_in(page, base, "ada", OLD_PASSWORD)
    page.goto(f"{base}/settings")
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    page.get_by_label("Username").fill("ada2")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_have_text("Settings saved.")

    # A new user registers through the app's own form (CSRF on) ...
    page = new_context().new_page()
    page.goto(f"{base}/auth/register")
    page.get_by_label("Username").fill("cy")
    page.get_by_label("Email").fill("cy@example.org")
    page.get_by_label("Password").fill(OLD_PASSWORD)
    page.get_by_role("button", name="Register").click()
    expect(page.locator(".flash")).to_contain_text("check your inbox")
    # ... is held at the settings page until confirmed ...
    sign_in(page, base, "cy", OLD_PASSWORD)
    page.goto(f"{base}/settings")
    expect(page).to_have_url(re.compile(r"/confirm/resend$"))
    expect(page.get_by_label("Your email address")).to_have_value("cy@example.org")
    styled_by_the_app(page)

    # ... and confirms through the page the mailed link opens, in the app's
    # layout with the app's stylesheet, pressing its Confirm button.
    link = mailed_link(smtp_server, 1, "cy@example.org", base)
    page.goto(link)
    expect(page).to_have_title("Confirm your email address - Blog")
    styled_by_the_app(page)
    page.screenshot(path=SCREENSHOTS / "adoption-confirm-page.png", full_page=True)
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator(".flash")).to_have_text(
        "Your email address is confirmed. Thank you!"
    )
    page.goto(f"{base}/settings")
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()

    # An existing user resets a forgotten password through the forms.
    page = new_context().new_page()
    page.goto(f"{base}/auth/login")
    page.get_by_role("link", name="Forgot your password?").click()
    styled_by_the_app(page)
    page.get_by_label("Your email address").fill("bob@example.org")
    page.get_by_role("button", name="Send me a reset link").click()
    expect(page.get_by_role("status")).to_contain_text("on its way")
    link = mailed_link(smtp_server, 2, "bob@example.org", base)
    page.goto(link)
    expect(page).to_have_title("Choose a new password - Blog")
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_label("The same again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set password").click()
    # Lands on the app's login view, with one message.
    expect(page).to_have_url(f"{base}/auth/login")
    expect(page.locator(".flash")).to_have_text("Your password has been changed.")
    page.screenshot(path=SCREENSHOTS / "adoption-after-reset.png", full_page=True)
    sign_in(page, base, "bob", NEW_PASSWORD)
    expect(page.get_by_role("button", name="Sign out bob")).to_be_visible()

    # The migration goes back down as it came.
    blog.stop()
    blog.flask("db", "downgrade", "-d", str(blog.migrations))
    with sqlite3.connect(blog.database) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(users)")}
    assert "email_confirmed_at" not in columns
    assert {"id", "username", "email", "password_hash"} <= columns
