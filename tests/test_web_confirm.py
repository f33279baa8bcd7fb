"""The confirmation page (:mod:`flask_confirm.web.confirm`) through the test
client: GET shows, POST confirms, bad and expired links, redirects and JSON,
with the memory sender and ``CONFIRM_ASYNC`` false."""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import datetime as dt
import re
import threading
import time
import typing as t

import pytest
import sqlalchemy as sa
from freezegun import freeze_time
from itsdangerous import URLSafeTimedSerializer

from flask_confirm import signals
from flask_confirm.tokens import address_digest
from flask_confirm.tokens import SALT
from flask_confirm.web.confirm import CONFIRMED_MESSAGE
from flask_confirm.web.confirm import EMAIL_CHANGED_MESSAGE
from testapp import add_flash_page
from testapp import change_email
from testapp import flashes
from testapp import get_user
from testapp import JSON
from testapp import link_in
from testapp import models
from testapp import outbox
from testapp import path_of
from testapp import Recorder
from testapp import register
from testapp import register_for_link
from testapp import set_email
from testapp import take_flashes
from testapp import text

if t.TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

    from conftest import AppFactory


# -- helpers ------------------------------------------------------------------


def delete_user(app: Flask, user_id: int) -> None:
    m = models(app)
    with app.app_context():
        m["db"].session.delete(m["db"].session.get(m["User"], user_id))
        m["db"].session.commit()


# -- the confirmation page ------------------------------------------------------


def test_get_shows_the_address_and_a_form_without_confirming(
    db_app: Flask, db_client: FlaskClient
) -> None:
    recorder = Recorder()
    user_id, path = register_for_link(db_app, db_client, "ada@example.org")
    with signals.email_confirmed.connected_to(recorder, sender=db_app):
        response = db_client.get(path)
    assert response.status_code == 200
    body = text(response)
    assert "ada@example.org" in body
    form = re.search(r"<form\b[^>]*>.*?</form>", body, re.S)
    assert form is not None
    assert re.search(r"""method=["']?post""", form.group(0), re.I)
    assert re.search(r"<button[^>]*>\s*Confirm\s*</button>", form.group(0))
    # A form without action posts back to the page's own URL (the link).
    action = re.search(r"""action=["']([^"']*)""", form.group(0))
    assert action is None or action.group(1) in ("", path)
    assert not get_user(db_app, user_id).email_confirmed
    assert recorder.calls == []
    assert flashes(db_client) == []


def test_post_confirms(db_app: Flask, db_client: FlaskClient) -> None:
    recorder = Recorder()
    user_id, path = register_for_link(db_app, db_client, "ada@example.org")
    other_id = register(db_client, "grace@example.org")
    before = dt.datetime.now(dt.timezone.utc)
    with signals.email_confirmed.connected_to(recorder, sender=db_app):
        response = db_client.post(path)
    after = dt.datetime.now(dt.timezone.utc)

    assert response.status_code == 302
    assert response.location == "/"
    assert flashes(db_client) == [("success", CONFIRMED_MESSAGE)]

    user = get_user(db_app, user_id)
    assert user.email_confirmed
    confirmed_at = user.email_confirmed_at
    if confirmed_at.tzinfo is None:  # SQLite; see test_confirmed_at_is_timezone_aware
        confirmed_at = confirmed_at.replace(tzinfo=dt.timezone.utc)
    assert before - dt.timedelta(seconds=1) <= confirmed_at <= after
    assert not get_user(db_app, other_id).email_confirmed

    assert len(recorder.calls) == 1
    sender, signalled_id, extra = recorder.calls[0]
    assert sender is db_app
    assert signalled_id == user_id
    assert extra == {}


def test_confirmed_at_is_timezone_aware(db_app: Flask, db_client: FlaskClient) -> None:
    # ConfirmableMixin: "Times are stored timezone-aware, in UTC."
    user_id, path = register_for_link(db_app, db_client, "ada@example.org")
    assert db_client.post(path).status_code == 302
    user = get_user(db_app, user_id)
    for value in (user.email_confirmed_at, user.confirmation_requested_at):
        assert value is not None
        assert value.utcoffset() == dt.timedelta(0)


def test_signal_for_another_app_does_not_fire(
    make_app: AppFactory, app: Flask, client: FlaskClient
) -> None:
    other = make_app()
    recorder = Recorder()
    _, path = register_for_link(app, client, "ada@example.org")
    with signals.email_confirmed.connected_to(recorder, sender=other):
        assert client.post(path).status_code == 302
    assert recorder.calls == []


def test_default_redirect_follows_to_the_home_page(
    app: Flask, client: FlaskClient
) -> None:
    _, path = register_for_link(app, client, "ada@example.org")
    response = client.post(path, follow_redirects=True)
    assert response.request.path == "/"
    assert text(response) == "home"
    # The home page does not show flashes: the message waits in the session.
    assert flashes(client) == [("success", CONFIRMED_MESSAGE)]


def test_custom_redirect_url(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_REDIRECT_URL="/welcome")
    add_flash_page(app, "/welcome")
    client = app.test_client()
    user_id, path = register_for_link(app, client, "ada@example.org")

    response = client.post(path)
    assert response.status_code == 302
    assert response.location == "/welcome"

    page = client.get("/welcome")
    assert page.json == {
        "page": "/welcome",
        "flashes": [["success", CONFIRMED_MESSAGE]],
    }
    assert get_user(app, user_id).email_confirmed
    # Shown once only.
    assert client.get("/welcome").json == {"page": "/welcome", "flashes": []}


def test_custom_absolute_redirect_url(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_REDIRECT_URL="https://app.example.test/welcome?new=1")
    client = app.test_client()
    _, path = register_for_link(app, client, "ada@example.org")
    response = client.post(path)
    assert response.status_code == 302
    assert response.location == "https://app.example.test/welcome?new=1"


@pytest.mark.parametrize("on_get", [False, True])
@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_head_and_options_never_confirm(
    make_app: AppFactory, on_get: bool, method: str
) -> None:
    app = make_app(CONFIRM_ON_GET=on_get)
    client = app.test_client()
    recorder = Recorder()
    user_id, path = register_for_link(app, client, "ada@example.org")
    with signals.email_confirmed.connected_to(recorder, sender=app):
        for _ in range(2):
            response = client.open(path, method=method)
            assert response.status_code == 200
            assert response.data == b""
    assert not get_user(app, user_id).email_confirmed
    assert recorder.calls == []
    assert flashes(client) == []
    if method == "OPTIONS":
        allowed = {m.strip() for m in response.headers["Allow"].split(",")}
        assert {"GET", "POST"} <= allowed


def test_confirm_on_get(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_ON_GET=True)
    client = app.test_client()
    recorder = Recorder()
    user_id, path = register_for_link(app, client, "ada@example.org")
    with signals.email_confirmed.connected_to(recorder, sender=app):
        assert client.head(path).status_code == 200
        assert not get_user(app, user_id).email_confirmed
        response = client.get(path)
    assert response.status_code == 302
    assert response.location == "/"
    assert get_user(app, user_id).email_confirmed
    assert [c[1] for c in recorder.calls] == [user_id]
    assert flashes(client) == [("success", CONFIRMED_MESSAGE)]


def test_post_still_confirms_with_confirm_on_get(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_ON_GET=True)
    client = app.test_client()
    user_id, path = register_for_link(app, client, "ada@example.org")
    assert client.post(path).status_code == 302
    assert get_user(app, user_id).email_confirmed


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_not_allowed(
    app: Flask, client: FlaskClient, method: str
) -> None:
    user_id, path = register_for_link(app, client, "ada@example.org")
    assert client.open(path, method=method).status_code == 405
    assert not get_user(app, user_id).email_confirmed


def test_expired_link(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_TOKEN_MAX_AGE=3600)
    client = app.test_client()
    with freeze_time("2030-01-01 12:00:00") as frozen:
        user_id, path = register_for_link(app, client, "ada@example.org")
        frozen.tick(3601)
        for method in ("GET", "POST"):
            response = client.open(path, method=method)
            assert response.status_code == 400, method
            body = text(response)
            assert "expired" in body.lower()
            assert "not valid" not in body
            assert "ada@example.org" not in body
            assert 'href="/confirm/resend"' in body
    assert not get_user(app, user_id).email_confirmed
    assert flashes(client) == []


def test_link_valid_until_max_age(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_TOKEN_MAX_AGE=3600)
    client = app.test_client()
    with freeze_time("2030-01-01 12:00:00") as frozen:
        user_id, path = register_for_link(app, client, "ada@example.org")
        frozen.tick(3600)
        assert client.post(path).status_code == 302
    assert get_user(app, user_id).email_confirmed


def _tamper(path: str) -> str:
    index = len(path) - 10  # inside the signature, not its last character
    return path[:index] + ("A" if path[index] != "A" else "B") + path[index + 1 :]


@pytest.mark.parametrize(
    "kind",
    [
        "garbage",
        "tampered",
        "truncated",
        "foreign-key",
        "deleted-user",
        "changed-address",
        "cleared-address",
        "id-of-another-type",
        "other-users-path",
    ],
)
def test_invalid_link(db_app: Flask, db_client: FlaskClient, kind: str) -> None:
    user_id, path = register_for_link(db_app, db_client, "ada@example.org")
    if kind == "garbage":
        path = "/confirm/not-a-token"
    elif kind == "tampered":
        path = _tamper(path)
    elif kind == "truncated":
        path = path[:-5]
    elif kind == "foreign-key":
        token = URLSafeTimedSerializer("another-secret-key", salt=SALT).dumps(
            [user_id, address_digest("ada@example.org")]
        )
        path = f"/confirm/{token}"
    elif kind == "deleted-user":
        delete_user(db_app, user_id)
    elif kind == "changed-address":
        set_email(db_app, user_id, "ada@example.com")
    elif kind == "cleared-address":
        # As an app that anonymises an account might.
        set_email(db_app, user_id, "")
    elif kind == "id-of-another-type":
        # Signed with this app's key, e.g. by another app sharing it whose user
        # ids are strings; this app's primary key is an integer.
        token = URLSafeTimedSerializer(db_app.secret_key, salt=SALT).dumps(
            ["user-1", address_digest("ada@example.org")]
        )
        path = f"/confirm/{token}"
    elif kind == "other-users-path":
        # Grace's link after her address changed, while Ada's is untouched.
        grace_id, path = register_for_link(db_app, db_client, "grace@example.org")
        set_email(db_app, grace_id, "grace@example.com")

    for method in ("GET", "POST"):
        response = db_client.open(path, method=method)
        assert response.status_code == 400, (kind, method)
        body = text(response)
        assert "not valid" in body
        assert "expired" not in body.lower()
        assert "ada@example.org" not in body
        assert 'href="/confirm/resend"' in body
    user = get_user(db_app, user_id)
    assert user is None or not user.email_confirmed
    assert flashes(db_client) == []


def test_invalid_pages_are_all_alike(app: Flask, client: FlaskClient) -> None:
    # Unknown user, changed address and a bad signature answer identically.
    ada, ada_path = register_for_link(app, client, "ada@example.org")
    grace, grace_path = register_for_link(app, client, "grace@example.org")
    delete_user(app, ada)
    set_email(app, grace, "grace@example.com")
    answers = {
        (r.status_code, r.get_data())
        for r in (
            client.get(ada_path),
            client.get(grace_path),
            client.get(_tamper(grace_path)),
            client.get("/confirm/x"),
        )
    }
    assert len(answers) == 1


@pytest.mark.parametrize("size", [513, 64 * 1024, 10 * 1024 * 1024])
def test_huge_token_in_path(app: Flask, client: FlaskClient, size: int) -> None:
    user_id, path = register_for_link(app, client, "ada@example.org")
    huge = path + "A" * (size - len(path))
    for method in ("GET", "POST"):
        response = client.open(huge, method=method)
        assert response.status_code == 400
        assert "not valid" in text(response)
    assert not get_user(app, user_id).email_confirmed


def test_already_confirmed_answers_identically(
    db_app: Flask, db_client: FlaskClient
) -> None:
    recorder = Recorder()
    user_id, path = register_for_link(db_app, db_client, "ada@example.org")
    with signals.email_confirmed.connected_to(recorder, sender=db_app):
        first = db_client.post(path)
        first_flashes = take_flashes(db_client)
        confirmed_at = get_user(db_app, user_id).email_confirmed_at
        second = db_client.post(path)
        second_flashes = flashes(db_client)

    assert first.status_code == second.status_code == 302
    assert first.location == second.location == "/"
    assert first.get_data() == second.get_data()
    assert first_flashes == second_flashes == [("success", CONFIRMED_MESSAGE)]
    assert [c[1] for c in recorder.calls] == [user_id]
    assert get_user(db_app, user_id).email_confirmed_at == confirmed_at


def test_pending_page_escapes_the_address(app: Flask, client: FlaskClient) -> None:
    # Stored by the app itself: no mail goes to it (the worker refuses an
    # address that is not one), but a link made for it shows it escaped.
    user_id = register(client, "ada@example.org")
    set_email(app, user_id, "<script>x</script>@example.org")
    m = models(app)
    with app.app_context():
        user = m["db"].session.get(m["User"], user_id)
        path = path_of(m["confirm"].confirm_url(user))
    body = text(client.get(path))
    assert "<script>x</script>" not in body
    assert "&lt;script&gt;x&lt;/script&gt;@example.org" in body


# -- replay ---------------------------------------------------------------------


def test_token_replay_from_another_client(db_app: Flask) -> None:
    recorder = Recorder()
    owner = db_app.test_client()
    user_id, path = register_for_link(db_app, owner, "ada@example.org")
    replayer = db_app.test_client()  # whoever else saw the link, later
    with signals.email_confirmed.connected_to(recorder, sender=db_app):
        first = owner.post(path)
        confirmed_at = get_user(db_app, user_id).email_confirmed_at
        replays = [replayer.post(path), replayer.post(path)]
    for response in replays:
        assert response.status_code == 302
        assert response.location == "/"
        assert response.get_data() == first.get_data()
    assert [c[1] for c in recorder.calls] == [user_id]
    assert get_user(db_app, user_id).email_confirmed_at == confirmed_at
    assert take_flashes(owner) == [("success", CONFIRMED_MESSAGE)]
    assert take_flashes(replayer) == [("success", CONFIRMED_MESSAGE)] * 2


# -- JSON -----------------------------------------------------------------------


def test_json_confirm_flow(app: Flask, client: FlaskClient) -> None:
    user_id, path = register_for_link(app, client, "ada@example.org")
    response = client.get(path, headers=JSON)
    assert response.status_code == 200
    assert response.json == {
        "status": "pending",
        "email": "ada@example.org",
        "change": False,
    }
    assert not get_user(app, user_id).email_confirmed
    response = client.post(path, headers=JSON)
    assert response.status_code == 200
    assert response.json == {
        "status": "confirmed",
        "email": "ada@example.org",
        "message": CONFIRMED_MESSAGE,
    }
    assert get_user(app, user_id).email_confirmed
    assert flashes(client) == []  # a single-page app shows its own message


@pytest.mark.parametrize(
    ("token", "code"),
    [("not-a-token", "token_invalid"), ("x" * 600, "token_invalid")],
)
def test_json_token_errors(client: FlaskClient, token: str, code: str) -> None:
    for method in (client.get, client.post):
        response = method(f"/confirm/{token}", headers=JSON)
        assert response.status_code == 400
        assert response.json is not None
        assert response.json["error"] == code
        assert response.json["message"]


def test_json_expired_token(app: Flask, client: FlaskClient) -> None:
    with freeze_time("2026-01-01 00:00:00"):
        user_id, path = register_for_link(app, client, "ada@example.org")
    with freeze_time("2026-01-02 00:00:01"):
        response = client.post(path, headers=JSON)
    assert response.status_code == 400
    assert response.json == {
        "error": "token_expired",
        "message": "The link has expired.",
    }
    assert not get_user(app, user_id).email_confirmed


# -- one statement (issue 14) -----------------------------------------------------


@contextlib.contextmanager
def statements(app: Flask) -> cabc.Iterator[list[str]]:
    """The SQL statements the app's engine executes meanwhile."""
    executed: list[str] = []

    def record(conn: t.Any, cursor: t.Any, statement: str, *args: t.Any) -> None:
        executed.append(" ".join(statement.split()))

    with app.app_context():
        engine = models(app)["db"].engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield executed
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def update_returning(app: Flask) -> bool:
    with app.app_context():
        return bool(models(app)["db"].engine.dialect.update_returning)


@contextlib.contextmanager
def listening(app: Flask, receiver: t.Any, on: bool) -> cabc.Iterator[None]:
    """``receiver`` connected to ``email_confirmed`` for ``app`` if ``on``:
    the confirm POST makes a user object only for receivers."""
    if not on:
        yield
        return
    with signals.email_confirmed.connected_to(receiver, sender=app):
        yield


def verbs(executed: list[str]) -> list[str]:
    return [statement.split()[0].upper() for statement in executed]


@pytest.mark.parametrize("listened", [False, True], ids=["no-receiver", "receiver"])
def test_a_confirm_post_is_one_conditional_update(
    db_app: Flask, db_client: FlaskClient, listened: bool
) -> None:
    """The POST of an unconfirmed user's link runs one statement, ``UPDATE
    ... WHERE <id> AND email_confirmed_at IS NULL RETURNING``, and no
    ``SELECT`` of the user (MariaDB, which has no ``UPDATE ... RETURNING``:
    the ``UPDATE``, then the row). A receiver of ``email_confirmed`` reads
    the user as committed without another query."""
    user_id, path = register_for_link(db_app, db_client, "ada@example.org")
    seen: list[tuple[t.Any, ...]] = []

    def receiver(sender: Flask, user: t.Any, **extra: t.Any) -> None:
        seen.append(
            (
                user.id,
                user.email,
                user.pending_email,
                user.email_confirmed_at,
                user.confirmation_requested_at,
                user.confirmation_sent_at,
            )
        )

    with statements(db_app) as executed, listening(db_app, receiver, listened):
        response = db_client.post(path)
    assert response.status_code == 302
    assert response.location == "/"
    update = executed[0]
    assert re.search(r"^UPDATE fc_test_user SET email_confirmed_at", update), update
    assert "email_confirmed_at IS NULL" in update
    if update_returning(db_app):
        assert verbs(executed) == ["UPDATE"], executed
        assert " RETURNING " in update
    else:
        assert verbs(executed) == ["UPDATE", "SELECT"], executed
        assert " RETURNING " not in update
    user = get_user(db_app, user_id)
    assert user.email_confirmed_at is not None
    if listened:
        assert seen == [
            (
                user_id,
                "ada@example.org",
                None,
                user.email_confirmed_at,
                user.confirmation_requested_at,
                user.confirmation_sent_at,
            )
        ]


@pytest.mark.parametrize("listened", [False, True], ids=["no-receiver", "receiver"])
def test_a_link_no_longer_bound_to_the_row_rolls_the_update_back(
    db_app: Flask, db_client: FlaskClient, listened: bool
) -> None:
    """The UPDATE cannot compare the token's digest of the address; the row
    it returns is compared before the commit, and an address changed since
    the link was mailed rolls it back: unconfirmed, nothing signalled, the
    same 400 as before."""
    recorder = Recorder()
    user_id, path = register_for_link(db_app, db_client, "ada@example.org")
    set_email(db_app, user_id, "ada@example.com")
    with statements(db_app) as executed, listening(db_app, recorder, listened):
        response = db_client.post(path, headers=JSON)
    assert response.status_code == 400
    assert response.json == {
        "error": "token_invalid",
        "message": "The link is not valid.",
    }
    assert verbs(executed)[0] == "UPDATE"
    assert verbs(executed)[-1] == "SELECT"  # the user, to say what the link is
    assert not get_user(db_app, user_id).email_confirmed
    assert recorder.calls == []


@pytest.mark.parametrize("listened", [False, True], ids=["no-receiver", "receiver"])
def test_racing_posts_confirm_and_signal_once(
    db_app: Flask, listened: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two POSTs of one link at once, each in its own thread and database
    connection: both UPDATEs are sent together, and the first holds the row
    while the second's waits. One confirms, the other finds the row
    confirmed, falls back to reading it, and answers the same."""
    from flask_confirm import links

    user_id, path = register_for_link(db_app, db_app.test_client(), "ada@example.org")
    barrier = threading.Barrier(2, timeout=20)
    racers = {}
    confirmed_by: list[str | None] = []
    original = links.confirm_link

    def confirm_link(state: t.Any, token: str) -> str | None:
        address = original(state, token)
        confirmed_by.append(address)
        return address

    monkeypatch.setattr(links, "confirm_link", confirm_link)

    def before(conn: t.Any, cursor: t.Any, statement: str, *args: t.Any) -> None:
        name = threading.current_thread().name
        if statement.startswith("UPDATE") and racers.get(name) == "ready":
            racers[name] = "updating"
            barrier.wait()  # both UPDATEs go out together

    def after(conn: t.Any, cursor: t.Any, statement: str, *args: t.Any) -> None:
        name = threading.current_thread().name
        if racers.get(name) == "updating":
            racers[name] = "updated"
            time.sleep(0.3)  # hold the row before committing

    answers: dict[str, tuple[int, str | None, bytes, list[t.Any]]] = {}

    def race(name: str) -> None:
        client = db_app.test_client()
        response = client.post(path)
        answers[name] = (
            response.status_code,
            response.location,
            response.get_data(),
            flashes(client),
        )

    recorder = Recorder()
    with (
        app_engine_events(db_app, before, after),
        listening(db_app, recorder, listened),
    ):
        threads = [
            threading.Thread(target=race, args=(name,), name=name)
            for name in ("racer-1", "racer-2")
        ]
        for thread in threads:
            racers[thread.name] = "ready"
            thread.start()
        for thread in threads:
            thread.join(30)
    assert set(racers.values()) == {"updated"}
    assert sorted(confirmed_by, key=lambda a: a is None) == ["ada@example.org", None]
    first, second = answers.values()
    assert first == second
    assert first[:2] == (302, "/")
    assert first[3] == [("success", CONFIRMED_MESSAGE)]
    assert get_user(db_app, user_id).email_confirmed
    if listened:
        assert [call[1] for call in recorder.calls] == [user_id]


@contextlib.contextmanager
def app_engine_events(
    app: Flask, before: t.Callable[..., None], after: t.Callable[..., None]
) -> cabc.Iterator[None]:
    with app.app_context():
        engine = models(app)["db"].engine
    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    try:
        yield
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)
        sa.event.remove(engine, "after_cursor_execute", after)


@pytest.mark.parametrize("listened", [False, True], ids=["no-receiver", "receiver"])
def test_an_unconfirmed_users_change_link_makes_the_change(
    db_app: Flask, db_client: FlaskClient, listened: bool
) -> None:
    """An email change asked for before the first address was confirmed:
    its link is the change's, not a confirmation of the current address,
    though the one-statement UPDATE would match the row; it is rolled back
    and the change is made as before."""
    changed: list[dict[str, t.Any]] = []
    recorder = Recorder()
    user_id, _ = register_for_link(db_app, db_client, "ada@example.org")
    change_email(db_app, db_client, user_id, "ada@example.com")
    (link_mail,) = [m for m in outbox(db_app) if m.to == "ada@example.com"]
    with (
        signals.email_changed.connected_to(
            lambda sender, **kw: changed.append(kw), sender=db_app
        ),
        listening(db_app, recorder, listened),
    ):
        response = db_client.post(path_of(link_in(link_mail)), headers=JSON)
    assert response.status_code == 200
    assert response.json == {
        "status": "confirmed",
        "email": "ada@example.com",
        "message": EMAIL_CHANGED_MESSAGE,
    }
    user = get_user(db_app, user_id)
    assert (user.email, user.pending_email) == ("ada@example.com", None)
    assert user.email_confirmed
    assert [c["old_email"] for c in changed] == ["ada@example.org"]
    if listened:
        assert [call[1] for call in recorder.calls] == [user_id]


@pytest.mark.parametrize("listened", [False, True], ids=["no-receiver", "receiver"])
def test_the_first_link_still_confirms_while_a_change_is_pending(
    db_app: Flask, db_client: FlaskClient, listened: bool
) -> None:
    """The link mailed to the current address still confirms it while a
    change asked for meanwhile is pending, in the one statement; the
    change stays pending."""
    recorder = Recorder()
    user_id, path = register_for_link(db_app, db_client, "ada@example.org")
    change_email(db_app, db_client, user_id, "ada@example.com")
    with statements(db_app) as executed, listening(db_app, recorder, listened):
        response = db_client.post(path, headers=JSON)
    assert response.json == {
        "status": "confirmed",
        "email": "ada@example.org",
        "message": CONFIRMED_MESSAGE,
    }
    assert verbs(executed) == (
        ["UPDATE"] if update_returning(db_app) else ["UPDATE", "SELECT"]
    )
    user = get_user(db_app, user_id)
    assert (user.email, user.pending_email) == ("ada@example.org", "ada@example.com")
    assert user.email_confirmed
    if listened:
        assert [call[1] for call in recorder.calls] == [user_id]


def test_a_link_signed_with_a_rotated_key_confirms_in_one_statement(
    make_app: AppFactory,
) -> None:
    app = make_app(SECRET_KEY="new-secret-key", SECRET_KEY_FALLBACKS=["old-key"])
    client = app.test_client()
    user_id = register(client, "ada@example.org")
    old = URLSafeTimedSerializer("old-key", salt=SALT)
    token = old.dumps([user_id, address_digest("ada@example.org")])
    with statements(app) as executed:
        assert client.post(f"/confirm/{token}").status_code == 302
    assert verbs(executed) == ["UPDATE"]
    assert get_user(app, user_id).email_confirmed


def test_a_signed_in_user_confirms_and_stays_signed_in(
    make_app: AppFactory, database_url: str
) -> None:
    """With Flask-Login and CONFIRM_BIND_SESSIONS: the user the session
    loaded before the confirmation is the one signalled, with the values the
    UPDATE stored (not those it was loaded with), and the session goes on
    working, since confirming changes neither address nor password."""
    from flask_login import current_user

    app = make_app(SQLALCHEMY_DATABASE_URI=database_url, TEST_LOGIN=True)
    loaded: list[t.Any] = []

    @app.before_request
    def load_the_signed_in_user() -> None:
        # As an app that reads current_user in every request: the user is in
        # the session, unconfirmed, before the view runs.
        if current_user.is_authenticated and not loaded:
            assert current_user.email_confirmed_at is None
            loaded.append(current_user._get_current_object())

    client = app.test_client()
    user_id, path = register_for_link(app, client, "ada@example.org")
    m = models(app)
    with app.app_context():
        m["db"].session.get(m["User"], user_id).set_password("a password")
        m["db"].session.commit()
    assert (
        client.post(
            "/login", data={"email": "ada@example.org", "password": "a password"}
        ).status_code
        == 200
    )
    signalled: list[t.Any] = []

    def receiver(sender: Flask, user: t.Any, **extra: t.Any) -> None:
        signalled.append((user, user.email_confirmed_at))

    with signals.email_confirmed.connected_to(receiver, sender=app):
        assert client.post(path).status_code == 302
    ((user, confirmed_at),) = signalled
    assert user is loaded[0]
    assert confirmed_at is not None
    me = client.get("/me")
    assert me.status_code == 200
    assert me.json == {"id": str(user_id), "email": "ada@example.org"}
    assert get_user(app, user_id).email_confirmed_at == confirmed_at
