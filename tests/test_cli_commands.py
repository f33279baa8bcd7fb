"""The ``flask confirm`` commands: send, resend-all, mark-confirmed, suppressed
and unsuppress."""

from __future__ import annotations

import typing as t

from flask import Flask
from freezegun import freeze_time

from conftest import AppFactory
from conftest import SMTPServer
from testapp import models


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


def test_mark_confirmed_command(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    database_url: str,
    run_flask: t.Callable[..., t.Any],
) -> None:
    """The backfill after the migration: the users the app had are marked
    confirmed; a user mailed a link and yet to click is left alone."""
    app_config.update(SQLALCHEMY_DATABASE_URI=database_url)
    app = make_app()
    db, User = models(app)["db"], models(app)["User"]
    confirm = app.extensions["confirm"]
    with app.app_context():
        db.session.add_all(User(email=f"old{i}@example.org") for i in range(3))
        db.session.add(User(email="new@example.org"))
        db.session.commit()
        confirm.send_confirmation(User.query.filter_by(email="new@example.org").one())

    def status() -> str:
        result = run_flask("confirm", "status")
        assert result.returncode == 0, result.stderr
        return t.cast(str, result.stdout)

    assert "none           3" in status() and "sent           1" in status()
    marked = run_flask("confirm", "mark-confirmed", "--existing")
    assert marked.returncode == 0, marked.stderr
    assert "Marked 3 existing user(s) as confirmed." in marked.stdout
    after = status()
    assert "none           0" in after and "confirmed      3" in after
    assert "sent           1" in after  # never touched by --existing

    named = run_flask(
        "confirm", "mark-confirmed", "NEW@example.org", "old0@example.org"
    )
    assert named.returncode == 0, named.stderr
    assert "Marked 1 user(s) as confirmed (1 already were)." in named.stdout
    assert "confirmed      4" in status()


def test_mark_confirmed_command_refuses_unknown_addresses(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    run_flask: t.Callable[..., t.Any],
    tmp_path: t.Any,
) -> None:
    app_config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'mark.sqlite'}")
    app = make_app()
    db, User = models(app)["db"], models(app)["User"]
    with app.app_context():
        db.session.add(User(email="ada@example.org"))
        db.session.commit()

    unknown = run_flask(
        "confirm", "mark-confirmed", "ada@example.org", "nobody@example.org", "typo"
    )
    assert unknown.returncode == 1
    assert "'nobody@example.org', 'typo'" in unknown.stderr
    assert "nothing was marked" in unknown.stderr
    with app.app_context():
        assert User.query.one().confirmation_state == "none"
    for args in ((), ("--existing", "ada@example.org")):
        usage = run_flask("confirm", "mark-confirmed", *args)
        assert usage.returncode == 2 and "--existing" in usage.stderr


def test_suppressed_and_unsuppress_commands(db_app: Flask) -> None:
    confirm = db_app.extensions["confirm"]
    runner = db_app.test_cli_runner()
    result = runner.invoke(args=["confirm", "suppressed"])
    assert result.exit_code == 0 and result.output == "No suppressed addresses.\n"

    with db_app.app_context():
        with freeze_time("2030-01-01 12:00:00"):
            confirm.suppress("ada@example.org", "hard_bounce", source="ses")
        with freeze_time("2030-01-03 12:00:00"):
            confirm.suppress("Bob@Example.org", "smtp_rejected", source="smtp")
        with freeze_time("2030-01-02 12:00:00"):
            confirm.suppress("carol@example.org", "manual", source="cli")
    result = runner.invoke(args=["confirm", "suppressed"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "bob@example.org\tsmtp_rejected\tsmtp\t2030-01-03T12:00:00+00:00",
        "carol@example.org\tmanual\tcli\t2030-01-02T12:00:00+00:00",
        "ada@example.org\thard_bounce\tses\t2030-01-01T12:00:00+00:00",
    ]
    result = runner.invoke(args=["confirm", "suppressed", "--limit", "1"])
    assert result.output.splitlines() == [
        "bob@example.org\tsmtp_rejected\tsmtp\t2030-01-03T12:00:00+00:00"
    ]
    assert runner.invoke(args=["confirm", "suppressed", "--limit", "0"]).exit_code != 0

    result = runner.invoke(args=["confirm", "unsuppress", "BOB@example.org"])
    assert result.exit_code == 0, result.output
    assert "BOB@example.org is no longer suppressed." in result.output
    with db_app.app_context():
        assert not confirm.is_suppressed("bob@example.org")
        assert confirm.is_suppressed("carol@example.org")
    again = runner.invoke(args=["confirm", "unsuppress", "bob@example.org"])
    assert again.exit_code != 0 and "is not suppressed" in again.output
