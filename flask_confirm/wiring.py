"""What :meth:`.Confirm.init_app` does to an app: check, build, register.

Kept apart from :mod:`.extension` so that the facade is its public methods
and nothing else. This is the one module below the facade that knows every
layer: it builds the app's :class:`.state.AppState` from the configuration
(the serializers, the sender, the Redis client and queue, the limiter) and
registers the entry points on the app (the blueprint, the CLI commands, the
dashboard, the Flask-Login binding). Internal.
"""

from __future__ import annotations

import hmac
import typing as t

from rq import Queue
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.elements import ColumnElement

from . import logins
from .config import Keys
from .config import load
from .connection import check_client
from .connection import connect
from .errors import ConfigError
from .limits import RateLimiter
from .models import ConfirmableMixin
from .models import email_column
from .models import suppression_table
from .models import user_key
from .senders import make_sender
from .sns import CertificateStore
from .sns import check_url
from .sns import SNSMessageRefused
from .state import AppState
from .state import Hooks
from .state import register
from .tasks import make_job_class
from .tokens import CANCEL_SALT
from .tokens import RESET_SALT
from .tokens import TokenSerializer

if t.TYPE_CHECKING:
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from redis import Redis
    from sqlalchemy import MetaData
    from sqlalchemy import Table

    from .config import Settings
    from .state import PasswordSetter


def set_up(
    app: Flask,
    *,
    db: SQLAlchemy | None,
    user_model: type[t.Any] | None,
    password_setter: PasswordSetter | None,
    redis: Redis | None,
    hooks: Hooks,
    extension: object,
) -> AppState:
    """Check the configuration and the arguments, build the app's state,
    register it, ``extension`` as ``app.extensions["confirm"]``, and the
    entry points on ``app``.

    :raises ConfigError: a key or an argument cannot work.
    :raises RuntimeError: Flask-Confirm is already registered on ``app``.
    """
    if "confirm" in app.extensions:
        raise RuntimeError(
            "Flask-Confirm is already registered on this app. Call init_app"
            " once per app; to change settings, change app.config before it."
        )
    if db is None or user_model is None:
        raise ConfigError(
            "Flask-Confirm needs the database and the user model: call"
            " init_app(app, db=db, user_model=User), or pass them to Confirm()."
        )
    _check_user_model(user_model)
    settings = load(app)  # checks SECRET_KEY too
    key = user_key(user_model)
    email_column(user_model, settings.email_attribute)
    if settings.password_reset:
        _check_password_reset(settings, user_model, password_setter)
    secret_keys: list[str | bytes] = [
        *(app.config.get("SECRET_KEY_FALLBACKS") or ()),
        t.cast("str | bytes", app.secret_key),
    ]
    if redis is not None:
        try:
            check_client(redis, "redis=")
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None
    redis_given = redis is not None
    if redis is None:
        # Bounded timeouts: a Redis that is down or hangs must cost a
        # request seconds at most, not the whole request.
        redis = connect(
            settings.redis_url,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=30,
        )
    job_class = make_job_class(app)
    login_binding = (
        logins.make_binding(
            secret_keys,
            user_model,
            settings.email_attribute,
            settings.password_hash_attribute,
        )
        if settings.bind_sessions
        else None
    )
    state = AppState(
        settings=settings,
        db=db,
        user_model=user_model,
        key=key,
        serializer=TokenSerializer(secret_keys, settings.token_max_age),
        reset_serializer=TokenSerializer(
            secret_keys, settings.password_reset_max_age, salt=RESET_SALT
        ),
        cancel_serializer=TokenSerializer(
            secret_keys, settings.token_max_age, salt=CANCEL_SALT
        ),
        password_setter=password_setter,
        sender=make_sender(app, settings),
        redis=redis,
        redis_given=redis_given,
        queue=Queue(settings.queue, connection=redis, job_class=job_class),
        job_class=job_class,
        # Keyed per purpose from the secret keys, so every instance of the
        # app shares the limits and nobody else can compute the keys; all
        # of them, so that a rotation keeps the limits (RateLimiter).
        limiter=RateLimiter(
            redis,
            [
                hmac.new(_as_bytes(k), b"flask-confirm.limits", "sha256").digest()
                for k in secret_keys
            ],
        ),
        login_binding=login_binding,
        suppressions=suppression_table(
            _metadata(user_model), settings.suppression_table
        ),
        hooks=hooks,
        resolver=_resolver() if settings.check_deliverability else None,
        sns_certificates=_certificates(settings) if settings.ses_events else None,
    )
    register(app, state)
    app.extensions["confirm"] = extension
    _register_entry_points(app, state)
    return state


def _register_entry_points(app: Flask, state: AppState) -> None:
    """The blueprint, the CLI commands, the dashboard and the Flask-Login
    binding, each imported only here, once the state exists."""
    from .cli import confirm_group
    from .cli import worker_command
    from .web import create_blueprint

    if state.login_binding is not None:
        logins.bind(app, state.login_binding)
    app.register_blueprint(create_blueprint(state.settings))
    app.cli.add_command(worker_command)
    app.cli.add_command(confirm_group)
    if state.settings.dashboard_url is not None:
        from .dashboard import mount_dashboard

        mount_dashboard(app, state)


def _certificates(settings: Settings) -> CertificateStore:
    """The SNS signing certificates, the pinned ones checked now: a URL SNS
    would never sign from, or text that is not a certificate, is a mistake
    better told at start-up than as every event refused."""
    try:
        import cryptography  # noqa: F401  (the signatures need it)
    except ImportError:
        raise ConfigError(
            f"{Keys.SES_EVENTS} is on, but verifying SNS signatures needs the"
            " cryptography package: install 'flask-confirm[ses]'."
        ) from None
    for url in settings.sns_certificates:
        try:
            check_url(url, "certificate URL")
        except SNSMessageRefused as e:
            raise ConfigError(f"{Keys.SNS_CERTIFICATES}: {url!r}: {e}") from None
    try:
        return CertificateStore(settings.sns_certificates)
    except SNSMessageRefused as e:
        raise ConfigError(f"{Keys.SNS_CERTIFICATES}: {e}") from None


def _resolver() -> t.Any:
    """A DNS resolver with a cache and a short timeout, for the MX lookups
    of :data:`CONFIRM_CHECK_DELIVERABILITY`: a domain is looked up once, and
    a slow DNS costs a request seconds at most."""
    import email_validator

    return email_validator.caching_resolver(timeout=3)


def _metadata(model: type[t.Any]) -> MetaData:
    """The metadata of ``model``'s table: the app's ``db``, or the bind the
    model is on, so the suppression list lives beside the users."""
    table = t.cast("Table", sa_inspect(model).local_table)
    return table.metadata


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _check_user_model(model: type[t.Any]) -> None:
    if not (isinstance(model, type) and issubclass(model, ConfirmableMixin)):
        raise ConfigError(
            f"user_model={model!r} must be a model class that inherits from"
            " flask_confirm.ConfirmableMixin."
        )


def _check_password_reset(
    settings: Settings, model: type[t.Any], setter: PasswordSetter | None
) -> None:
    if setter is None and not callable(getattr(model, "set_password", None)):
        raise ConfigError(
            f"{Keys.PASSWORD_RESET} is on, but Flask-Confirm does not know how to"
            f" set a password: give {model.__name__} a set_password(password)"
            " method, or pass password_setter=func(user, password) to Confirm()"
            " or init_app()."
        )
    hash_attribute = getattr(model, settings.password_hash_attribute, None)
    if not isinstance(hash_attribute, (QueryableAttribute, ColumnElement)):
        raise ConfigError(
            f"{Keys.PASSWORD_RESET} is on, but {model.__name__} has no mapped"
            f" column {settings.password_hash_attribute!r}"
            f" ({Keys.PASSWORD_HASH_ATTRIBUTE}). Reset links are bound to the"
            " stored password hash, and the new one is written only where the old"
            " one is still stored, so that they work once: set the key to the name"
            " of the column that holds it."
        )
