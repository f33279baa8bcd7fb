"""A blog as it looks after adopting Flask-Confirm (see ../README.md)."""

from __future__ import annotations

import os

from flask import Flask

from .extensions import confirm
from .extensions import csrf
from .extensions import db
from .extensions import login
from .extensions import migrate


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ["SECRET_KEY"],
        SQLALCHEMY_DATABASE_URI=os.environ["DATABASE_URL"],
        # What adopting Flask-Confirm added:
        CONFIRM_REDIS_URL=os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
        CONFIRM_EXTERNAL_URL=os.environ.get("EXTERNAL_URL", "http://127.0.0.1:5000"),
        CONFIRM_MAIL_FROM="Blog <no-reply@blog.example>",
        CONFIRM_BASE_TEMPLATE="base.html",
        CONFIRM_PASSWORD_RESET=True,
        MAIL_SERVER=os.environ.get("MAIL_SERVER", "localhost"),
        MAIL_PORT=int(os.environ.get("MAIL_PORT", "25")),
    )
    db.init_app(app)
    migrate.init_app(app, db)
    login.init_app(app)
    csrf.init_app(app)

    from . import models
    from .auth import bp as auth_bp
    from .main import bp as main_bp

    if not os.environ.get("BLOG_BEFORE_CONFIRM"):
        confirm.init_app(app, db=db, user_model=models.User)
    app.register_blueprint(auth_bp, url_prefix="/auth")
    app.register_blueprint(main_bp)
    return app
