"""End to end in a real browser: ``python -m example`` (Flask's server and an
RQ worker, in subprocesses) mails through SMTP to a server in this process,
and headless Chromium, driven by Playwright, registers, follows the mailed
link, confirms and opens the dashboard.

It needs Debian's ``chromium`` at ``/usr/bin/chromium`` (``playwright
install`` downloads browsers and is not used). Each step's screenshot is
written to ``screenshots/`` at the repository's root.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import dataclasses
import os
import re
import secrets
import signal
import subprocess
import sys
import typing as t
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect
from playwright.sync_api import Locator
from playwright.sync_api import Page

from conftest import free_port
from conftest import SCREENSHOTS
from conftest import wait_for

if t.TYPE_CHECKING:
    from conftest import SMTPServer

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "ada@example.org"
#: The example's RQ queue (``CONFIRM_QUEUE``'s default).
QUEUE = "confirm"

#: Screenshots this module writes, in the order of the steps.
STEPS = (
    "01-home",
    "02-form-filled",
    "03-registered",
    "04-mail-sent",
    "05-confirm-page",
    "06-confirmed",
    "07-dashboard-denied",
    "08-dashboard",
)

#: Environment variables the example (and Flask) read: none of the machine's
#: own may leak into the example's processes.
EXAMPLE_SETTING = re.compile(
    r"(SECRET_KEY|DATABASE_URL|REDIS_URL|PORT|(CONFIRM|MAIL|DASHBOARD|FLASK|AWS)_.*)"
)


def shoot(page: Page, step: str) -> None:
    assert step in STEPS, step
    page.screenshot(path=SCREENSHOTS / f"{step}.png", full_page=True)


# -- The example, for real ------------------------------------------------------


@dataclasses.dataclass
class Example:
    base: str
    dashboard_user: str
    dashboard_password: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture()
def example(
    tmp_path: Path, redis_url: str, smtp_server: SMTPServer
) -> cabc.Iterator[Example]:
    """``python -m example`` on a free port, configured only by environment
    variables: a fresh SQLite file, the test Redis, SMTP to ``smtp_server`` and
    dashboard credentials of its own. Serving, with its worker listening."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not EXAMPLE_SETTING.fullmatch(k)}
    env.update(
        PORT=str(port),  # CONFIRM_EXTERNAL_URL follows it
        SECRET_KEY=secrets.token_urlsafe(32),
        DATABASE_URL=f"sqlite:///{tmp_path / 'example.sqlite'}",
        REDIS_URL=redis_url,
        MAIL_SERVER=smtp_server.host,
        MAIL_PORT=str(smtp_server.port),
        DASHBOARD_USER="ops",
        DASHBOARD_PASSWORD=secrets.token_urlsafe(16),
        PYTHONUNBUFFERED="1",
    )
    running = Example(
        base=f"http://127.0.0.1:{port}",
        dashboard_user=env["DASHBOARD_USER"],
        dashboard_password=env["DASHBOARD_PASSWORD"],
        log_path=tmp_path / "example.log",
    )

    def alive() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"python -m example exited with {proc.returncode}.")

    def serving() -> bool:
        alive()
        try:
            with urllib.request.urlopen(running.base + "/", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    def worker_listening() -> bool:
        alive()
        log = running.log()
        if "Worker:    not started" in log:
            raise RuntimeError("python -m example started no worker.")
        return "Listening on" in log

    with running.log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "example"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_for(serving, 30, "python -m example to serve")
            wait_for(worker_listening, 30, "its worker to listen")
        except RuntimeError as e:
            raise RuntimeError(f"{e} Its output:\n{running.log()}") from None
        assert "sender smtp" in running.log(), running.log()
        yield running
    finally:
        # SIGTERM stops the server and, through it, the worker. The worker runs
        # in a session of its own, so a killed server would orphan it: it is
        # killed by its pid if still there.
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in re.findall(r"Worker: +started \(pid (\d+)\)", running.log()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


# -- The test -------------------------------------------------------------------


def user_row(page: Page, email: str) -> Locator:
    return page.locator(f'tr[data-email="{email}"]')


def test_register_confirm_and_dashboard_in_a_browser(
    example: Example,
    smtp_server: SMTPServer,
    new_context: t.Callable[..., BrowserContext],
) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    for step in STEPS:  # so that the check at the end sees this run's files
        (SCREENSHOTS / f"{step}.png").unlink(missing_ok=True)
    base = example.base
    page = new_context().new_page()

    # The home page, nobody registered yet.
    response = page.goto(base + "/")
    assert response is not None and response.status == 200
    expect(page.get_by_role("heading", name="Register")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Nobody has registered yet.")
    shoot(page, "01-home")

    # Register.
    page.get_by_label("Email address").fill(EMAIL)
    shoot(page, "02-form-filled")
    page.get_by_role("button", name="Register").click()
    page.wait_for_url(base + "/")
    expect(page.locator(".flash.success")).to_have_text(
        f"Thanks for registering! A confirmation link is on its way to {EMAIL}."
    )
    expect(user_row(page, EMAIL).locator("td.confirmed")).to_have_text("not yet")
    shoot(page, "03-registered")

    # The worker mails the link through SMTP to this process.
    smtp_server.wait_for_messages(1, timeout=30)
    (message,) = smtp_server.messages
    assert message["To"] == EMAIL
    assert message["From"] == "Example <no-reply@example.com>"
    link_re = rf"{re.escape(base)}/confirm/[\w.\-]+"
    text_body = message.get_body(("plain",))
    html_body = message.get_body(("html",))
    assert text_body is not None and html_body is not None
    (link,) = set(re.findall(link_re, text_body.get_content()))
    assert link in html_body.get_content()

    # The row says "sent" once the worker has recorded it (just after the
    # SMTP server accepted the mail).
    def shows_sent() -> bool:
        page.reload()
        return user_row(page, EMAIL).locator("td.sent").inner_text().startswith("sent")

    wait_for(shows_sent, 15, "the users table to show the mail as sent")
    expect(user_row(page, EMAIL).locator("td.sent")).to_have_text(
        re.compile(r"^\s*sent\s+20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC\s*$")
    )
    shoot(page, "04-mail-sent")

    # Open the link: a page with the address and a button; nothing changes yet.
    response = page.goto(link)
    assert response is not None and response.status == 200
    assert response.headers.get("referrer-policy") == "no-referrer"
    expect(page.get_by_role("heading")).to_have_text("Confirm your email address")
    expect(page.locator("main")).to_contain_text(EMAIL)
    shoot(page, "05-confirm-page")

    # Confirm: back on the home page, the user is shown as confirmed.
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(base + "/")
    expect(page.locator(".flash")).to_contain_text("Your email address is confirmed")
    expect(user_row(page, EMAIL).locator("td.confirmed")).to_have_text(
        re.compile(r"^\s*confirmed\s+20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC\s*$")
    )
    assert "not yet" not in page.locator("main table").inner_text()
    shoot(page, "06-confirmed")

    # The dashboard: denied without credentials. The home page links to it;
    # Chromium under Playwright cancels the login prompt a 401 brings up, so
    # the navigation fails, after the 401 has arrived.
    with page.expect_response(base + "/rq/") as dashboard:
        try:
            page.get_by_role("link", name="RQ dashboard").click()
            page.wait_for_load_state()
        except PlaywrightError as e:
            assert "ERR_INVALID_AUTH_CREDENTIALS" in str(e), e
    assert dashboard.value.status == 401
    assert dashboard.value.headers.get("www-authenticate") == (
        'Basic realm="rq-dashboard"'
    )
    # With wrong credentials the browser shows the 401 page.
    wrong = new_context(
        http_credentials={"username": example.dashboard_user, "password": "admin"}
    ).new_page()
    response = wrong.goto(base + "/rq")
    assert response is not None and response.status == 401
    expect(wrong.locator("body")).to_have_text(
        "The RQ dashboard needs the DASHBOARD_USER / DASHBOARD_PASSWORD credentials."
    )
    shoot(wrong, "07-dashboard-denied")

    # ...and shown to its user, with the example's queue and its finished job.
    admin = new_context(
        http_credentials={
            "username": example.dashboard_user,
            "password": example.dashboard_password,
        }
    ).new_page()
    response = admin.goto(base + "/rq")
    assert response is not None and response.status == 200
    assert admin.url == base + "/rq/"
    expect(admin.get_by_role("heading", name="Queues")).to_be_visible()
    queue_row = admin.locator("table#queues tr[data-role=queue]")
    expect(queue_row).to_have_count(1)
    expect(queue_row.locator("td").first).to_have_text(QUEUE)
    # Columns: queue, queued, deferred, scheduled, started, finished, ...
    expect(queue_row.locator("td").nth(5)).to_have_text("1")  # the send job
    shoot(admin, "08-dashboard")

    for step in STEPS:
        data = (SCREENSHOTS / f"{step}.png").read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), step
