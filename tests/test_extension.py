"""``Confirm``, the facade: rendering a message through it, and the mail
templates an app overrides. What its methods do is tested with the modules
that do it: test_outbox.py, test_store.py, test_links.py."""

from __future__ import annotations

import typing as t

from conftest import AppFactory
from testapp import add_user


def test_message_has_link_in_both_parts_and_expiry(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_TOKEN_MAX_AGE=7200, CONFIRM_SUBJECT="Welcome!")
    confirm = app.extensions["confirm"]
    with app.app_context():
        user = add_user(app)
        message = confirm.render_message(user)
        token = message.text.split("/confirm/")[1].split()[0]
        assert confirm.load_user(token).id == user.id
    assert message.subject == "Welcome!"
    assert f"/confirm/{token}" in message.html
    assert "2 hours" in message.text and "2 hours" in message.html


def test_templates_are_overridable(make_app: AppFactory, tmp_path: t.Any) -> None:
    (tmp_path / "flask_confirm" / "mail").mkdir(parents=True)
    (tmp_path / "flask_confirm" / "mail" / "confirm.txt").write_text(
        "Custom: {{ confirm_url }}"
    )
    app = make_app()
    app.jinja_loader.searchpath.insert(0, str(tmp_path))  # type: ignore[union-attr]
    with app.app_context():
        message = app.extensions["confirm"].render_message(add_user(app))
    assert message.text.startswith("Custom: https://app.example.test/confirm/")
