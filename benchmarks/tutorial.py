"""The baseline: the job pattern of the "Flask + Redis Queue + Amazon SES
confirmation mails" tutorial that Flask-Confirm replaces.

The web side enqueues ``send_confirmation_email(email)``; a forking RQ
``Worker`` (started by ``python -m benchmarks.tutorial_worker``, which has
imported this module and built the app, as the tutorial's ``manage.py
run_worker`` does) runs each job in a forked child that builds the link with
itsdangerous, renders the mail, opens a new connection to the provider (a
Flask-Mail SMTP connection or a new boto3 SES client), sends, and updates the
user's row.

Configured, like :mod:`benchmarks.app`, by ``FLASK_CONFIRM_BENCH_CONFIG``;
``TUTORIAL_TRANSPORT`` is ``"smtp"`` or ``"ses"``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import typing as t

import boto3
import sqlalchemy as sa
from flask import Flask
from flask import render_template_string
from flask_mail import Mail
from flask_mail import Message
from flask_sqlalchemy import SQLAlchemy
from itsdangerous import URLSafeTimedSerializer

CONFIG_ENV = "FLASK_CONFIRM_BENCH_CONFIG"
TABLE = "tutorial_user"
QUEUE = "tutorial"

db = SQLAlchemy()
mail = Mail()


class TutorialUser(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = TABLE
    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(320), unique=True, nullable=False)
    confirmed = db.Column(db.Boolean, nullable=False, default=False)
    confirmation_sent_at = db.Column(db.DateTime(timezone=True), nullable=True)


TEXT = """Hello,

Please confirm your email address by opening this link:

{{ confirm_url }}

The link is valid for 24 hours.
"""

HTML = """<p>Hello,</p>
<p>Please confirm your email address:
<a href="{{ confirm_url }}">confirm</a>.</p>
<p>The link is valid for 24 hours.</p>
"""

_app: Flask | None = None


def create_app(config: t.Mapping[str, t.Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="benchmark-secret-key-that-is-long-enough-0123456789",
        EXTERNAL_URL="https://app.example.test",
        MAIL_DEFAULT_SENDER="no-reply@example.test",
        MAIL_SUPPRESS_SEND=False,
        TUTORIAL_TRANSPORT="smtp",
        SES_REGION="us-east-1",
    )
    app.config.update(json.loads(os.environ.get(CONFIG_ENV, "{}")))
    if config:
        app.config.update(config)
    db.init_app(app)
    mail.init_app(app)
    return app


def get_app() -> Flask:
    """The process's app, built on first use (in the worker, before forking)."""
    global _app
    if _app is None:
        _app = create_app()
    return _app


def send_confirmation_email(email: str) -> None:
    """The tutorial's job: link, render, connect, send, update the row."""
    app = get_app()
    with app.app_context():
        serializer = URLSafeTimedSerializer(app.config["SECRET_KEY"])
        token = serializer.dumps(email, salt="email-confirm")
        confirm_url = f"{app.config['EXTERNAL_URL']}/confirm/{token}"
        text = render_template_string(TEXT, confirm_url=confirm_url)
        html = render_template_string(HTML, confirm_url=confirm_url)
        subject = "Confirm your email address"
        if app.config["TUTORIAL_TRANSPORT"] == "ses":
            ses = boto3.client("ses", region_name=app.config["SES_REGION"])
            ses.send_email(
                Source=app.config["MAIL_DEFAULT_SENDER"],
                Destination={"ToAddresses": [email]},
                Message={
                    "Subject": {"Data": subject},
                    "Body": {"Text": {"Data": text}, "Html": {"Data": html}},
                },
            )
        else:
            # Flask-Mail's send() opens and closes a connection per message.
            mail.send(Message(subject, recipients=[email], body=text, html=html))
        user = db.session.execute(
            sa.select(TutorialUser).filter_by(email=email)
        ).scalar_one()
        user.confirmation_sent_at = dt.datetime.now(dt.timezone.utc)
        db.session.commit()
