"""``Confirm`` is typed over the app's user model, so typed apps need no casts.

mypy checks this module (it is in ``[tool.mypy] files``, and
:func:`test_mypy_accepts_this_module` runs mypy on it): each ``assert_type``
is a claim about the types mypy infers, and each ``type: ignore[...]`` a
claim that mypy reports that error (strict mode reports an ignore that is not
needed). At run time the same calls run against a real app.
"""

from __future__ import annotations

import typing as t
from pathlib import Path

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from typing_extensions import assert_type

from flask_confirm import Confirm
from flask_confirm import ConfirmableMixin


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)

# Flask-SQLAlchemy's db.Model is not a type mypy can subclass; Base is what
# it derives from.
if t.TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model


class User(ConfirmableMixin, Model):
    __tablename__ = "typing_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(80), default="")


class Stranger:
    """Not a user model."""


def make_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY="test-secret-key-that-is-long-enough",
        SQLALCHEMY_DATABASE_URI="sqlite://",
        CONFIRM_EXTERNAL_URL="https://app.example.test",
        CONFIRM_SENDER="memory",
    )
    db.init_app(app)
    return app


def test_confirm_is_generic_over_the_user_model() -> None:
    app = make_app()
    confirm = Confirm(app, db=db, user_model=User)
    assert_type(confirm, Confirm[User])
    with app.app_context():
        db.create_all()
        db.session.add(User(email="ada@example.org", name="Ada"))
        db.session.commit()

        found = confirm.find_user("ADA@example.org")
        assert_type(found, User | None)
        assert found is not None
        assert_type(found.name, str)  # the app's own attribute, no cast
        token = confirm.make_token(found)
        assert_type(confirm.load_user(token), User)
        assert confirm.load_user(token).name == "Ada"
        assert_type(confirm.failed(), list[User])
        confirm.user_loader(lambda: found)
        assert_type(confirm.current_user(), User | None)
        assert confirm.current_user() is found
        db.drop_all()


def test_a_confirm_made_before_its_app_names_the_model() -> None:
    confirm: Confirm[User] = Confirm()
    app = make_app()
    confirm.init_app(app, db=db, user_model=User)
    with app.app_context():
        db.create_all()
        assert_type(confirm.find_user("nobody@example.org"), User | None)
        db.drop_all()


def test_an_unparameterised_confirm_is_as_loose_as_before() -> None:
    # Confirm() with no model anywhere mypy can see: Confirm[Any], whose
    # users are Any, as they were before Confirm was generic (find_user says
    # it may return None).
    confirm = Confirm()
    assert_type(confirm, Confirm[t.Any])
    app = make_app()
    confirm.init_app(app, db=db, user_model=User)
    with app.app_context():
        db.create_all()
        assert_type(confirm.find_user("nobody@example.org"), t.Any | None)
        db.drop_all()


def wrong_model_is_a_type_error(confirm: Confirm[User]) -> None:
    """Never called: what mypy must refuse."""
    confirm.send_confirmation(Stranger())  # type: ignore[arg-type]
    Confirm(user_model=Stranger)  # type: ignore[type-var]


def test_mypy_accepts_this_module() -> None:
    from mypy import api

    root = Path(__file__).resolve().parent.parent
    stdout, stderr, status = api.run(
        ["--config-file", str(root / "pyproject.toml"), __file__]
    )
    assert status == 0, stdout + stderr
