from __future__ import annotations

import os

from flask_login import UserMixin
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from flask_confirm import ConfirmableMixin

from .extensions import db
from .extensions import login

# The app before Flask-Confirm had no mixin: the adoption test runs it so
# first, to have a users table with rows, then adds it.
_ADOPTED = () if os.environ.get("BLOG_BEFORE_CONFIRM") else (ConfirmableMixin,)


class User(UserMixin, *_ADOPTED, db.Model):  # type: ignore[misc]
    __tablename__ = "users"
    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(64), unique=True, nullable=False)
    email = db.Column(db.String(320), unique=True, nullable=False)
    password_hash = db.Column(db.String(256))

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return self.password_hash is not None and check_password_hash(
            self.password_hash, password
        )


@login.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))
