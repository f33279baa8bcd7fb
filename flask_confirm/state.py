"""What Flask-Confirm keeps for each application, and how code finds it.

:meth:`.Confirm.init_app` builds one :class:`AppState` per app and registers
it here; every service takes it as its first argument, and the entry points
(the views, the worker's jobs, the CLI) look it up with :func:`get_state`.
Nothing below :mod:`.extension` needs the :class:`.Confirm` object itself,
which is what keeps the layers one-way (see ``docs/architecture.rst``).

The callbacks an app registers on :class:`.Confirm` with decorators (who may
see the dashboard, who is signed in, the locale of a user's mails) may come
after ``init_app``, so they live in one :class:`Hooks` object that the
``Confirm`` owns and every state it builds shares. Internal.
"""

from __future__ import annotations

import dataclasses
import typing as t
import weakref

from flask import current_app

from .addresses import check_deliverable

if t.TYPE_CHECKING:
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from redis import Redis
    from rq import Queue
    from rq.job import Job
    from sqlalchemy import Table

    from .config import Settings
    from .limits import RateLimiter
    from .logins import Binding
    from .models import UserKey
    from .senders import Sender
    from .sns import CertificateStore
    from .tokens import TokenSerializer

DashboardAuth = t.Callable[[], bool]
UserLoader = t.Callable[[], t.Any]
PasswordSetter = t.Callable[[t.Any, str], None]
MailLocale = t.Callable[[t.Any], "str | None"]


@dataclasses.dataclass
class Hooks:
    """The app's callbacks, registered on :class:`.Confirm` (its
    ``dashboard_auth``, ``user_loader`` and ``mail_locale`` decorators) and
    shared, by reference, with the state of every app it serves."""

    dashboard_auth: DashboardAuth | None = None
    user_loader: UserLoader | None = None
    mail_locale: MailLocale | None = None


@dataclasses.dataclass
class Memo:
    """What a process remembers of Redis between sends, to ask it less
    often; losing it costs a round trip, never a guarantee."""

    #: When this process last found sending not paused (:mod:`.pauses`), on
    #: the monotonic clock.
    unpaused_at: float = float("-inf")


@dataclasses.dataclass
class AppState:
    """Everything Flask-Confirm holds for one application.

    Built once by :meth:`.Confirm.init_app` from the configuration and never
    changed afterwards (apart from what tests swap in, and :attr:`memo`), so
    that a request or a job reads it without locks.
    """

    settings: Settings
    db: SQLAlchemy
    user_model: type[t.Any]
    #: The user model's primary key, and how ids become its values again.
    key: UserKey
    #: Signs confirmation links.
    serializer: TokenSerializer
    #: Signs password reset links.
    reset_serializer: TokenSerializer
    #: Signs the "this wasn't me" links of email change notices.
    cancel_serializer: TokenSerializer
    password_setter: PasswordSetter | None
    sender: Sender
    #: The web side's client: the queue, the limits, the locks, the sweeps,
    #: the dashboard.
    redis: Redis
    #: Whether :attr:`redis` was handed to :meth:`.Confirm.init_app` (then the
    #: worker uses it too) rather than made from :data:`CONFIRM_REDIS_URL`.
    redis_given: bool
    queue: Queue
    job_class: type[Job]
    limiter: RateLimiter
    #: How Flask-Login ids are stamped (:mod:`.logins`); ``None`` when
    #: :data:`CONFIRM_BIND_SESSIONS` is off.
    login_binding: Binding | None
    #: The suppression list (:mod:`.models.suppressions`), in the user
    #: model's metadata.
    suppressions: Table
    hooks: Hooks = dataclasses.field(default_factory=Hooks)
    #: The caching DNS resolver of :data:`CONFIRM_CHECK_DELIVERABILITY`;
    #: ``None`` when it is off.
    resolver: t.Any = None
    #: The SNS signing certificates of :data:`CONFIRM_SES_EVENTS`; ``None``
    #: when it is off.
    sns_certificates: CertificateStore | None = None
    memo: Memo = dataclasses.field(default_factory=Memo)

    def check_deliverable(self, email: str) -> None:
        """With :data:`CONFIRM_CHECK_DELIVERABILITY`, refuse ``email`` if its
        domain accepts no mail (:func:`.addresses.check_deliverable`).

        :raises InvalidEmail: it does not.
        """
        if self.resolver is not None:
            check_deliverable(email, self.resolver)

    def locale_for(self, user: t.Any) -> str | None:
        """The locale of ``user``'s mails, from the app's ``mail_locale``
        callback; ``None`` (the default locale) without one."""
        select = self.hooks.mail_locale
        return None if select is None else select(user)


#: Each registered app's state. Weak keys: a state lives as long as its app.
_STATES: weakref.WeakKeyDictionary[Flask, AppState] = weakref.WeakKeyDictionary()


def register(app: Flask, state: AppState) -> None:
    """Make ``state`` the one :func:`get_state` returns for ``app``."""
    _STATES[app] = state


def get_state(app: Flask | None = None) -> AppState:
    """The state of ``app``, by default the current app.

    :raises RuntimeError: Flask-Confirm is not set up on the app.
    """
    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        return _STATES[app]
    except KeyError:
        raise RuntimeError(
            "Flask-Confirm is not registered on this app. Did you forget to"
            " call 'confirm.init_app(app, db=db, user_model=User)'?"
        ) from None


def current_app_object() -> Flask:
    """The current app itself, not its proxy: signals are sent with it, and
    a proxy would not compare equal to the sender receivers connected for."""
    return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]
